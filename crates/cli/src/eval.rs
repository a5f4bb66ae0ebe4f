//! Evaluation: how much rewriting Q4_1 weights as Q8_0 at load moves perplexity.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::eval::{self, Mode};
use sinkchat_engine::model::read_gguf_header;
use sinkchat_engine::{CpuWeights, GgufTokenizer, LoadOptions, Model};

/// Perplexity of `ids` under `model`, dense (no eviction), in chunks of 256: the perplexity
/// tool's own dense mode.
fn perplexity(model: &Model, ids: &[u32]) -> Result<f64> {
    Ok(eval::run(model, ids, Mode::Dense, 256, usize::MAX, |_| {})?.perplexity)
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
            cpu_weights: CpuWeights::Candle,
        },
    )?;
    let ppl_original = perplexity(&original, &ids)?;
    drop(original);
    let converted = Model::load(
        model_path,
        &dev,
        LoadOptions {
            cpu_weights: CpuWeights::Q8_0,
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
