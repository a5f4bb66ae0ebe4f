//! `sinkchat-bench memory`: what one long chat's memory takes with a cache per kind of layer
//! (sliding layers keep only their trained window, global layers the sinks and the window),
//! against one cache shape for every layer (what an engine that ignores the difference keeps),
//! and against a dense cache that keeps every token (what a plain context would need). A stream
//! of `tokens` tokens goes through the model with the app's default memory (4 sinks, a window
//! of 2,044, f16); the figures: the cache's bytes, the process's resident memory after the
//! stream, and the decode cost per token at the end against the start.
//!
//! The one-shape run treats the sliding layers as global (the memory and speed an engine would
//! spend; its text is not used).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::arch::AttentionKind;
use sinkchat_engine::{CacheConfig, KvPrecision, LoadOptions, Model, SinkCache};

fn mib(b: f64) -> f64 {
    (b / (1 << 20) as f64 * 10.0).round() / 10.0
}

/// One stream through a cache made for `spec_kinds`: cache bytes, RSS after, ms per decode
/// token right after 2,000 tokens and after the whole stream.
fn stream(
    model: &Model,
    kinds: Vec<AttentionKind>,
    cfg: CacheConfig,
    ids: &[u32],
) -> Result<serde_json::Value> {
    let mut spec = model.spec().clone();
    spec.layer_kinds = kinds;
    let mut cache = SinkCache::new(&spec, cfg, model.device())?;
    let chunk = cache.max_chunk().min(256);
    let early = 2000.min(ids.len());
    model.prefill(&ids[..early], &mut cache, chunk, |_| {})?;
    let ms_early = crate::bench::decode_ms(model, &mut cache, 32)?;
    let t = Instant::now();
    model.prefill(&ids[early..], &mut cache, chunk, |_| {})?;
    let prefill_s = t.elapsed().as_secs_f64();
    let ms_late = crate::bench::decode_ms(model, &mut cache, 32)?;
    let stats = cache.stats();
    Ok(json!({
        "cache_mib": mib(stats.bytes as f64),
        "rss_mib_after": sinkchat_engine::eval::rss_mib(),
        "tokens_seen": stats.tokens_seen,
        "decode_ms_at_2k": (ms_early * 100.0).round() / 100.0,
        "decode_ms_at_end": (ms_late * 100.0).round() / 100.0,
        "prefill_tokens_per_s": ((ids.len() - early) as f64 / prefill_s).round(),
    }))
}

pub fn run(model_path: &Path, tokens: usize, out: Option<PathBuf>) -> Result<()> {
    let model = Model::load(model_path, &Device::Cpu, LoadOptions::default())?;
    let spec = model.spec().clone();
    let cfg = CacheConfig {
        sinks: 4,
        window: 2044,
        evict_step: 1,
        precision: KvPrecision::F16,
    };
    let ids = crate::bench::tokens(tokens, spec.vocab_size);
    let rss_model = sinkchat_engine::eval::rss_mib();
    let per_layer = stream(&model, spec.layer_kinds.clone(), cfg, &ids)?;
    eprintln!("per-layer cache: {per_layer}");
    let one_shape = stream(&model, vec![AttentionKind::Global; spec.n_layer], cfg, &ids)?;
    eprintln!("one shape for every layer: {one_shape}");
    // A dense cache of the whole stream (every layer keeps every token), computed: allocating
    // it is the point it makes.
    let dense = 2 * spec.n_layer * spec.n_kv_head * spec.head_dim * 2 * tokens;
    let sliding = spec
        .layer_kinds
        .iter()
        .filter(|k| **k != AttentionKind::Global)
        .count();
    crate::bench::write_json(
        out,
        json!({
            "model": model_path.file_name().map(|n| n.to_string_lossy().to_string()),
            "layers": spec.n_layer,
            "sliding_layers": sliding,
            "sliding_window": spec.sliding.as_ref().map(|s| s.window),
            "tokens": tokens,
            "cache": { "sinks": cfg.sinks, "window": cfg.window, "precision": "f16" },
            "rss_mib_model_loaded": rss_model,
            "per_layer_cache": per_layer,
            "one_cache_shape": one_shape,
            "dense_cache_mib": mib(dense as f64),
        }),
    )
}
