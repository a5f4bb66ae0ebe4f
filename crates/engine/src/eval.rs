//! Perplexity of a long text under the four attention modes of the StreamingLLM paper
//! (Xiao et al. 2023, section 4.1): dense, window, sliding window with re-computation, and
//! attention sinks plus a rolling window (this engine's cache).
//!
//! Every mode logs the negative log-likelihood of each token it scores, indexed by the
//! position of the predicted token in the text, so that runs can be compared token for token.

use std::time::{Duration, Instant};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::model::Logits;
use crate::{CacheConfig, Error, KvPrecision, Model, Result, SinkCache};

/// How much of the past each predicted token sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    /// The whole history at its true positions (fails past the trained context).
    Dense,
    /// The last `window` tokens only, positions re-assigned from 0, no sinks.
    Window { window: usize },
    /// For each scored token, a fresh forward over the last `window` tokens; only every
    /// `stride`-th token is scored, because each costs a whole forward.
    Recompute { window: usize, stride: usize },
    /// StreamingLLM: `sinks` pinned first tokens plus the `window - sinks` most recent.
    Streaming { sinks: usize, window: usize },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Dense => "dense",
            Mode::Window { .. } => "window",
            Mode::Recompute { .. } => "recompute",
            Mode::Streaming { .. } => "streaming",
        }
    }

    /// Attention sinks kept (0 except in streaming mode).
    pub fn sinks(&self) -> usize {
        match self {
            Mode::Streaming { sinks, .. } => *sinks,
            _ => 0,
        }
    }

    /// Tokens of context each query sees at most (the whole text for dense).
    pub fn window(&self, text_len: usize) -> usize {
        match self {
            Mode::Dense => text_len,
            Mode::Window { window }
            | Mode::Recompute { window, .. }
            | Mode::Streaming { window, .. } => *window,
        }
    }
}

/// Where a run stands, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tokens fed through the model so far (for recompute: scored tokens).
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
}

/// Timing and memory of one stretch of a run, to show that cost stays flat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    /// Index of the last token fed in this stretch, plus one.
    pub end: usize,
    pub ms_per_token: f64,
    pub rss_mib: f64,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRun {
    #[serde(flatten)]
    pub mode: Mode,
    /// Tokens of text fed (the scored tokens are `1..tokens`, or a sample for recompute).
    pub tokens: usize,
    /// `(index of the predicted token, its NLL in nats)`, in text order.
    pub nll: Vec<(usize, f64)>,
    pub perplexity: f64,
    /// Wall time per token fed (per scored token for recompute).
    pub ms_per_token: f64,
    pub peak_rss_mib: f64,
    pub segments: Vec<Segment>,
}

/// `exp(mean NLL)` of a log.
pub fn perplexity_of(nll: &[(usize, f64)]) -> f64 {
    if nll.is_empty() {
        return f64::NAN;
    }
    (nll.iter().map(|(_, x)| x).sum::<f64>() / nll.len() as f64).exp()
}

/// Resident memory of this process, MiB (0 where /proc is not there).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// NLL in nats of `target` under one row of logits: `logsumexp(row) - row[target]`, in f64.
fn token_nll(row: &[f32], target: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - row[target as usize] as f64
}

/// Scores `ids` under `mode` with an f32 cache. Chunked modes feed `chunk` tokens per forward;
/// the results equal feeding one token at a time (see [`SinkCache::with_view`]). `segment`
/// tokens make one timing stretch.
pub fn run(
    model: &Model,
    ids: &[u32],
    mode: Mode,
    chunk: usize,
    segment: usize,
    on_progress: impl FnMut(Progress),
) -> Result<EvalRun> {
    run_with(
        model,
        ids,
        mode,
        KvPrecision::F32,
        chunk,
        segment,
        on_progress,
    )
}

/// [`run`] with the cache in `precision`.
pub fn run_with(
    model: &Model,
    ids: &[u32],
    mode: Mode,
    precision: KvPrecision,
    chunk: usize,
    segment: usize,
    mut on_progress: impl FnMut(Progress),
) -> Result<EvalRun> {
    if ids.len() < 2 {
        return Err(Error::EmptyInput);
    }
    let dev: &Device = model.device();
    let spec = model.spec();
    let chunk = chunk.max(1);
    let started = Instant::now();
    let mut nll = Vec::with_capacity(ids.len());
    let mut peak = rss_mib();
    let mut segments = Vec::new();
    let mut seg_start = (0usize, Instant::now());
    let mut close_segment = |end: usize, force: bool, peak: &mut f64| {
        let rss = rss_mib();
        *peak = peak.max(rss);
        if end - seg_start.0 >= segment || (force && end > seg_start.0) {
            let ms = seg_start.1.elapsed().as_secs_f64() * 1000.0 / (end - seg_start.0) as f64;
            segments.push(Segment {
                end,
                ms_per_token: ms,
                rss_mib: rss,
            });
            seg_start = (end, Instant::now());
        }
    };

    let fed = match mode {
        Mode::Recompute { window, stride } => {
            if window == 0 || stride == 0 {
                return Err(Error::InvalidCacheConfig(
                    "recompute needs a window and a stride of at least one token".into(),
                ));
            }
            let cfg = CacheConfig {
                sinks: 0,
                window,
                evict_step: 1,
                precision,
            };
            let mut cache = SinkCache::new(spec, cfg, dev)?;
            let targets: Vec<usize> = (stride..ids.len()).step_by(stride).collect();
            for (k, &t) in targets.iter().enumerate() {
                cache.clear();
                let ctx = &ids[t.saturating_sub(window)..t];
                let logits = model.forward(ctx, &mut cache, Logits::Last)?;
                nll.push((t, token_nll(&logits.to_vec1::<f32>()?, ids[t])));
                close_segment(k + 1, false, &mut peak);
                on_progress(Progress {
                    done: k + 1,
                    total: targets.len(),
                    elapsed: started.elapsed(),
                });
            }
            close_segment(targets.len(), true, &mut peak);
            targets.len()
        }
        _ => {
            let mut cache = match mode {
                Mode::Dense => SinkCache::new(
                    spec,
                    CacheConfig {
                        sinks: 0,
                        window: ids.len(),
                        evict_step: 1,
                        precision,
                    },
                    dev,
                )?,
                Mode::Window { window } => {
                    SinkCache::with_view(spec, 0, window, chunk, precision, dev)?
                }
                Mode::Streaming { sinks, window } => {
                    if window <= sinks {
                        return Err(Error::InvalidCacheConfig(format!(
                            "a cache of {window} tokens leaves no window after {sinks} sinks"
                        )));
                    }
                    SinkCache::with_view(spec, sinks, window - sinks, chunk, precision, dev)?
                }
                Mode::Recompute { .. } => unreachable!(),
            };
            let chunk = chunk.min(cache.max_chunk());
            let mut start = 0;
            while start < ids.len() {
                let end = (start + chunk).min(ids.len());
                let logits = model
                    .forward(&ids[start..end], &mut cache, Logits::All)?
                    .to_vec2::<f32>()?;
                for (r, row) in logits.iter().enumerate() {
                    let target = start + r + 1;
                    if target < ids.len() {
                        nll.push((target, token_nll(row, ids[target])));
                    }
                }
                start = end;
                close_segment(end, false, &mut peak);
                on_progress(Progress {
                    done: end,
                    total: ids.len(),
                    elapsed: started.elapsed(),
                });
            }
            close_segment(ids.len(), true, &mut peak);
            ids.len()
        }
    };
    Ok(EvalRun {
        mode,
        tokens: ids.len(),
        perplexity: perplexity_of(&nll),
        ms_per_token: started.elapsed().as_secs_f64() * 1000.0 / fed as f64,
        peak_rss_mib: peak,
        segments,
        nll,
    })
}

/// A text scored piece by piece through a StreamingLLM cache (sinks plus a rolling window,
/// exact as in [`Mode::Streaming`]), where each piece may bring context of its own that is
/// read but not scored: recalled text put before a message, as the chat does. Positions stay
/// by place in the cache; the context scrolls out like any token.
pub struct Stream<'a> {
    model: &'a Model,
    cache: SinkCache,
    sinks: usize,
    window: usize,
    chunk: usize,
    fed: u64,
    /// The logits after the last token fed: they predict the next piece's first token.
    last: Option<Vec<f32>>,
}

impl<'a> Stream<'a> {
    /// `window` counts the sinks, as in [`Mode::Streaming`].
    pub fn new(model: &'a Model, sinks: usize, window: usize, chunk: usize) -> Result<Self> {
        if window <= sinks {
            return Err(Error::InvalidCacheConfig(format!(
                "a cache of {window} tokens leaves no window after {sinks} sinks"
            )));
        }
        let cache = SinkCache::with_view(
            model.spec(),
            sinks,
            window - sinks,
            chunk.max(1),
            KvPrecision::F32,
            model.device(),
        )?;
        let chunk = chunk.max(1).min(cache.max_chunk());
        Ok(Self {
            model,
            cache,
            sinks,
            window,
            chunk,
            fed: 0,
            last: None,
        })
    }

    /// Tokens fed so far (context included).
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Position of the oldest token the next token sees after the sinks: anything before it
    /// (and after the sinks) has left the model's view.
    pub fn visible_from(&self) -> u64 {
        (self.sinks as u64).max(self.fed.saturating_sub((self.window - self.sinks) as u64))
    }

    /// Feeds `context` (read, not scored) and then `scored`; returns the NLL in nats of each
    /// token of `scored` (the text's very first token has no prediction and is left out).
    pub fn feed(&mut self, context: &[u32], scored: &[u32]) -> Result<Vec<f64>> {
        let all: Vec<u32> = context.iter().chain(scored).copied().collect();
        let mut nll = Vec::with_capacity(scored.len());
        if context.is_empty() {
            if let (Some(row), Some(&first)) = (&self.last, scored.first()) {
                nll.push(token_nll(row, first));
            }
        }
        let mut start = 0;
        while start < all.len() {
            let end = (start + self.chunk).min(all.len());
            let rows = self
                .model
                .forward(&all[start..end], &mut self.cache, Logits::All)?
                .to_vec2::<f32>()?;
            for (r, row) in rows.into_iter().enumerate() {
                let next = start + r + 1; // this row predicts all[next]
                if next >= context.len() && next < all.len() {
                    nll.push(token_nll(&row, all[next]));
                } else if next == all.len() {
                    self.last = Some(row);
                }
            }
            start = end;
        }
        self.fed += all.len() as u64;
        Ok(nll)
    }
}
