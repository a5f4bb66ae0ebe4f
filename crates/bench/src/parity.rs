//! `sinkchat-bench eval parity`: SinkChat against the reference engine on real weights. The
//! same text, the same tokens, the same context: llama.cpp's `llama-perplexity` (built from the
//! source package the set-up fetches) scores the first chunk of `ctx` tokens of a text, and
//! SinkChat scores the same chunk the way that tool does (BOS in the chunk's first place, one
//! dense pass, the second half of the chunk scored: the predictions of tokens `ctx/2 + 1 ..
//! ctx - 1`). Two engines that run the same model agree to well under 1%; a forward pass that
//! misreads an architecture does not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::model::{read_gguf_header, Logits};
use sinkchat_engine::{CacheConfig, GgufTokenizer, KvPrecision, LoadOptions, Model, SinkCache};

/// What one file scored.
pub struct Parity {
    pub sinkchat_ppl: f64,
    pub llamacpp_ppl: f64,
    pub tokens: usize,
}

/// The chunk llama-perplexity scores first: the text's first `ctx` tokens (BOS where the model
/// adds one) with BOS put in the first place.
fn first_chunk(tk: &GgufTokenizer, text: &str, ctx: usize) -> Result<Vec<u32>> {
    let mut ids = tk.encode(text, false)?;
    if let (true, Some(bos)) = (tk.add_bos, tk.bos) {
        ids.insert(0, bos);
    }
    if ids.len() < 2 * ctx {
        bail!(
            "the text holds {} tokens; llama-perplexity needs twice the context ({})",
            ids.len(),
            2 * ctx
        );
    }
    ids.truncate(ctx);
    if let (true, Some(bos)) = (tk.add_bos, tk.bos) {
        ids[0] = bos;
    }
    Ok(ids)
}

/// SinkChat's perplexity of `ids` scored as llama-perplexity scores a chunk: a cache that holds
/// all of it (nothing evicted, so this is the model itself), f32 K and V.
pub fn sinkchat_ppl(model: &Model, ids: &[u32]) -> Result<f64> {
    let n = ids.len();
    let cfg = CacheConfig {
        sinks: 4,
        window: n,
        evict_step: 1,
        precision: KvPrecision::F32,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, model.device())?;
    let chunk = cache.max_chunk().min(256);
    let first = n / 2;
    let mut nll = 0f64;
    let mut count = 0usize;
    let mut at = 0;
    for c in ids.chunks(chunk) {
        let logits = model.forward(c, &mut cache, Logits::All)?; // (len, vocab)
        let rows: Vec<Vec<f32>> = logits.to_vec2()?;
        for (k, row) in rows.iter().enumerate() {
            let pos = at + k;
            if pos < first || pos + 1 >= n {
                continue;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            let logp = row[ids[pos + 1] as usize] as f64 - max - sum.ln();
            nll -= logp;
            count += 1;
        }
        at += c.len();
    }
    Ok((nll / count as f64).exp())
}

/// llama-perplexity's final estimate on `text_file` with a context of `ctx`, first chunk only.
fn llamacpp_ppl(bin: &Path, model: &Path, text_file: &Path, ctx: usize) -> Result<f64> {
    let out = Command::new(bin)
        .args(["-m", &model.display().to_string()])
        .args(["-f", &text_file.display().to_string()])
        .args([
            "-c",
            &ctx.to_string(),
            "-b",
            &ctx.to_string(),
            "--chunks",
            "1",
        ])
        .args(["-t", &crate::bench::threads()])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ppl = text
        .lines()
        .find_map(|l| l.split("Final estimate: PPL = ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse::<f64>().ok());
    match ppl {
        Some(p) if out.status.success() => Ok(p),
        _ => bail!("llama-perplexity gave no estimate:\n{text}"),
    }
}

/// Scores the first `ctx` tokens of `text` with both engines.
pub fn compare(model_path: &Path, text: &str, ctx: usize, llamacpp: &Path) -> Result<Parity> {
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(model_path)?)?;
    // Enough text for llama-perplexity's check (twice the context), and no more.
    let mut chars = text.len().min(ctx * 16);
    while tk.encode(&text[..floor_char(text, chars)], false)?.len() < 2 * ctx + 8 {
        if chars >= text.len() {
            break;
        }
        chars = (chars * 2).min(text.len());
    }
    let part = &text[..floor_char(text, chars)];
    let ids = first_chunk(&tk, part, ctx)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("text.txt");
    std::fs::write(&file, part)?;
    let llamacpp_ppl = llamacpp_ppl(llamacpp, model_path, &file, ctx)?;
    let model = Model::load(model_path, &Device::Cpu, LoadOptions::default())?;
    let sinkchat_ppl = sinkchat_ppl(&model, &ids)?;
    Ok(Parity {
        sinkchat_ppl,
        llamacpp_ppl,
        tokens: ctx,
    })
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `eval parity`: every model given, one row each, into `out` (merged with the rows already
/// there for other models).
pub fn run(
    models: &[PathBuf],
    label: &str,
    text: &str,
    ctx: usize,
    llamacpp: &Path,
    out: Option<PathBuf>,
) -> Result<()> {
    let mut rows = Vec::new();
    for m in models {
        let p = compare(m, text, ctx, llamacpp)?;
        let ratio = p.sinkchat_ppl / p.llamacpp_ppl;
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprintln!(
            "{name}: SinkChat {:.4}, llama.cpp {:.4} ({:+.3}%)",
            p.sinkchat_ppl,
            p.llamacpp_ppl,
            (ratio - 1.0) * 100.0
        );
        rows.push(json!({
            "model": name,
            "text": label,
            "tokens": p.tokens,
            "sinkchat_ppl": (p.sinkchat_ppl * 1e4).round() / 1e4,
            "llamacpp_ppl": (p.llamacpp_ppl * 1e4).round() / 1e4,
            "difference_percent": ((ratio - 1.0) * 1e5).round() / 1e3,
        }));
    }
    for r in rows {
        println!("{}", serde_json::to_string(&r)?);
        if let Some(out) = &out {
            crate::recall_bench::write_entry(out, r)?;
        }
    }
    Ok(())
}
