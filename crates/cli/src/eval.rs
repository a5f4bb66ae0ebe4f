//! Evaluation: how much rewriting Q4_1 weights as Q8_0 at load moves perplexity.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, D};
use serde_json::json;
use sinkchat_engine::model::{read_gguf_header, Logits};
use sinkchat_engine::{CacheConfig, GgufTokenizer, LoadOptions, Model, SinkCache};

/// Perplexity of `ids` under `model`, dense (no eviction), in chunks of 256.
fn perplexity(model: &Model, ids: &[u32]) -> Result<f64> {
    let dev = Device::Cpu;
    let cfg = CacheConfig {
        sinks: 4,
        window: ids.len() + 4,
        evict_step: 1,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, &dev)?;
    let mut nll = 0f64;
    let mut count = 0usize;
    for (c, chunk) in ids.chunks(256).enumerate() {
        let logits = model.forward(chunk, &mut cache, Logits::All)?; // (n, vocab)
        let logp = candle_nn_log_softmax(&logits)?;
        let start = c * 256;
        for (i, row) in logp.iter().enumerate() {
            if let Some(&next) = ids.get(start + i + 1) {
                nll -= row[next as usize] as f64;
                count += 1;
            }
        }
    }
    Ok((nll / count as f64).exp())
}

fn candle_nn_log_softmax(logits: &candle_core::Tensor) -> Result<Vec<Vec<f32>>> {
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?.to_vec2()?)
}

pub fn requant(model_path: &Path, label: &str, body: &str, tokens: usize) -> Result<()> {
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(model_path)?)?;
    let mut ids = tk.encode(body, false)?;
    ids.truncate(tokens);
    let dev = Device::Cpu;
    let original = Model::load(
        model_path,
        &dev,
        LoadOptions {
            requantize_to_q8: false,
        },
    )?;
    let ppl_original = perplexity(&original, &ids)?;
    drop(original);
    let converted = Model::load(
        model_path,
        &dev,
        LoadOptions {
            requantize_to_q8: true,
        },
    )?;
    let ppl_converted = perplexity(&converted, &ids)?;
    let change = (ppl_converted - ppl_original) / ppl_original * 100.0;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "text": label,
            "tokens": ids.len(),
            "perplexity_original_q4_1": (ppl_original * 1000.0).round() / 1000.0,
            "perplexity_converted_q8_0": (ppl_converted * 1000.0).round() / 1000.0,
            "change_percent": (change * 1000.0).round() / 1000.0,
        }))?
    );
    Ok(())
}
