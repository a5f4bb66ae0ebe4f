//! Evaluation: whether the way the weights are run moves perplexity (SinkChat's Q4_1 kernel,
//! candle's reference, and the Q8_0 rewrite).

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::eval::{self, Mode};
use sinkchat_engine::model::read_gguf_header;
use sinkchat_engine::{CpuWeights, GgufTokenizer, LoadOptions, Model};

/// Perplexity of `ids` under `model`, dense (no eviction), in chunks of `chunk` (256: the
/// perplexity tool's own dense mode).
fn perplexity(model: &Model, ids: &[u32], chunk: usize) -> Result<f64> {
    Ok(eval::run(model, ids, Mode::Dense, chunk, usize::MAX, |_| {})?.perplexity)
}

/// Dense perplexity of the same tokens three ways: the Q4_1 weights through candle's reference
/// kernel, through SinkChat's AVX2 kernel (the default), and rewritten as Q8_0 (the former
/// default). The first two run the same model; the third is a different one.
pub fn requant(model_path: &Path, label: &str, body: &str, tokens: usize) -> Result<()> {
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(model_path)?)?;
    let mut ids = tk.encode(body, false)?;
    ids.truncate(tokens);
    let dev = Device::Cpu;
    let run = |w: CpuWeights| -> Result<(f64, String)> {
        let m = Model::load(
            model_path,
            &dev,
            LoadOptions {
                cpu_weights: w,
                ..Default::default()
            },
        )?;
        Ok((perplexity(&m, &ids, 256)?, m.weight_type().to_string()))
    };
    let (reference, _) = run(CpuWeights::Candle)?;
    let (native, native_dtype) = run(CpuWeights::Native)?;
    let (q8, _) = run(CpuWeights::Q8_0)?;
    let pct = |x: f64| ((x - reference) / reference * 100.0 * 1000.0).round() / 1000.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "text": label,
            "tokens": ids.len(),
            "perplexity_candle_q4_1": r3(reference),
            "perplexity_sinkchat_default": r3(native),
            "sinkchat_default_runs": native_dtype,
            "perplexity_q8_0_rewrite": r3(q8),
            "sinkchat_default_change_percent": pct(native),
            "q8_0_rewrite_change_percent": pct(q8),
        }))?
    );
    Ok(())
}

/// How [`kernels`] runs.
pub struct KernelRun {
    /// `"candle"` or `"sinkchat"`.
    pub side: String,
    /// Tokens per forward; 1 runs every token through the one-token paths.
    pub chunk: usize,
    /// [`LoadOptions::nudge`]: the norm weights moved by an ulp from this seed.
    pub nudge: Option<u64>,
}

/// Dense perplexity of the first `tokens` tokens of a text under candle's own kernels
/// (`side = "candle"`) or SinkChat's (`"sinkchat"`, the default loading), for any GGUF. Both run
/// the same weights with the same arithmetic. One side per run, so a script can keep each
/// figure until the binary changes (`scripts/bench-kquants.sh`). The JSON lists the file's
/// tensor types too.
pub fn kernels(
    model_path: &Path,
    label: &str,
    body: &str,
    tokens: usize,
    how: KernelRun,
    out: Option<std::path::PathBuf>,
) -> Result<()> {
    let KernelRun { side, chunk, nudge } = how;
    anyhow::ensure!(chunk >= 1, "--chunk must be at least 1");
    let weights = match side.as_str() {
        "candle" => CpuWeights::Candle,
        "sinkchat" => CpuWeights::Native,
        other => anyhow::bail!("--side takes candle or sinkchat, not {other}"),
    };
    // With the real types of the tensors candle does not read (not their stand-in).
    let header = sinkchat_engine::model::read_header(model_path)?;
    let tk = GgufTokenizer::from_gguf(&header.ct)?;
    let mut ids = tk.encode(body, false)?;
    ids.truncate(tokens);
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    for (name, info) in &header.ct.tensor_infos {
        *types.entry(header.type_name(name, info)).or_default() += 1;
    }
    let m = Model::load(
        model_path,
        &Device::Cpu,
        LoadOptions {
            cpu_weights: weights,
            nudge,
        },
    )?;
    let t = std::time::Instant::now();
    let p = perplexity(&m, &ids, chunk)?;
    eprintln!(
        "{side}: perplexity {p:.4} in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    crate::bench::write_json(
        out,
        json!({
            "model": model_path.file_name().map(|n| n.to_string_lossy().to_string()),
            "kernels": side,
            "tensor_types": types,
            "text": label,
            "tokens": ids.len(),
            "chunk": chunk,
            "nudge": nudge,
            "perplexity": (p * 10000.0).round() / 10000.0,
        }),
    )
}
