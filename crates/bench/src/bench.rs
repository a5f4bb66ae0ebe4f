//! Speed benchmarks that print figures and write them as JSON for `docs/bench/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::model::read_gguf_header;
use sinkchat_engine::model::Logits;
use sinkchat_engine::sampling::argmax;
use sinkchat_engine::{CacheConfig, GgufTokenizer, KvPrecision, LoadOptions, Model, SinkCache};

pub(crate) fn threads() -> String {
    std::env::var("CANDLE_NUM_THREADS")
        .or_else(|_| std::env::var("RAYON_NUM_THREADS"))
        .unwrap_or_else(|_| {
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_default()
        })
}

/// A deterministic token stream that looks like text to the model (ids of common tokens).
pub(crate) fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut s = 12345u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (200 + (s >> 33) as usize % (vocab.min(20_000) - 200)) as u32
        })
        .collect()
}

/// The device a benchmark runs on: the CPU unless `gpu` is asked for, which must then be there
/// (a build with `--features cuda` or `metal` and a GPU that answers).
pub fn device(which: Option<&str>) -> Result<Device> {
    match which.unwrap_or("cpu") {
        "cpu" => Ok(Device::Cpu),
        "gpu" => {
            let d = sinkchat_engine::device::best_device();
            if d.is_cpu() {
                anyhow::bail!(
                    "no GPU answered: build with --features cuda (or metal) on a machine with one"
                );
            }
            Ok(d)
        }
        other => anyhow::bail!("--device takes cpu or gpu, not {other}"),
    }
}

fn device_name(dev: &Device) -> &'static str {
    sinkchat_engine::device::device_label(dev)
}

pub(crate) fn write_json(out: Option<PathBuf>, v: serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(&v)?;
    println!("{text}");
    if let Some(p) = out {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The best of three rounds of [`decode_once`], in ms per token (the best round is the one
/// least disturbed by the machine).
pub(crate) fn decode_ms(model: &Model, cache: &mut SinkCache, n: usize) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(decode_once(model, cache, n)?);
    }
    Ok(best)
}

/// The model's greedy answer to a fixed question on `dev`: a check that the figures come from
/// a forward pass that computes the right thing there, not only a fast one.
fn sample_answer(
    model: &Model,
    model_path: &Path,
    dev: &Device,
    precision: KvPrecision,
) -> Result<String> {
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(model_path)?)?;
    // The question in the model's own chat template (ChatML, Llama 3, Gemma, ...).
    let template = sinkchat_engine::ChatTemplate::for_tokenizer(&tk)?;
    let text = template.render(&[("user", "What is the capital of France?")], true)?;
    let mut prompt = tk.encode(&text, true)?;
    if let (true, Some(bos)) = (tk.add_bos, tk.bos) {
        if prompt.first() != Some(&bos) {
            prompt.insert(0, bos);
        }
    }
    let cfg = CacheConfig {
        sinks: 4,
        window: 124,
        evict_step: 1,
        precision,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, dev)?;
    let mut logits = model.forward(&prompt, &mut cache, Logits::Last)?;
    let mut out = Vec::new();
    for _ in 0..12 {
        let next = argmax(&logits.to_vec1::<f32>()?);
        out.push(next);
        logits = model.forward(&[next], &mut cache, Logits::Last)?;
    }
    Ok(tk.decode(&out)?)
}

/// Rounds of the flat-cost benchmark, and tokens decoded per conversation in each.
const ROUNDS: usize = 20;
const ROUND_TOKENS: usize = 128;

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Decodes `n` greedy tokens after the current cache content, in ms per token.
fn decode_once(model: &Model, cache: &mut SinkCache, n: usize) -> Result<f64> {
    let mut logits = model.forward(&[1000], cache, Logits::Last)?;
    let t = Instant::now();
    for _ in 0..n {
        let next = argmax(&logits.to_vec1::<f32>()?);
        logits = model.forward(&[next], cache, Logits::Last)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0 / n as f64)
}

/// Runs llama.cpp's `llama-bench` on the same file, if given, and returns (prompt, decode) tok/s.
fn llamacpp(bin: &Path, model: &Path, prompt: usize, gen: usize) -> Result<(f64, f64)> {
    let out = std::process::Command::new(bin)
        .args([
            "-m",
            &model.display().to_string(),
            "-p",
            &prompt.to_string(),
            "-n",
            &gen.to_string(),
            "-t",
            &threads(),
            "-o",
            "json",
            "-r",
            "3",
        ])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("llama-bench output")?;
    let mut pp = 0.0;
    let mut tg = 0.0;
    for r in v.as_array().into_iter().flatten() {
        let ts = r["avg_ts"].as_f64().unwrap_or(0.0);
        if r["n_prompt"].as_u64().unwrap_or(0) > 0 {
            pp = ts;
        } else {
            tg = ts;
        }
    }
    Ok((pp, tg))
}

pub fn decode(
    model_path: &Path,
    prompt: usize,
    gen: usize,
    llama: Option<PathBuf>,
    out: Option<PathBuf>,
    dev: Device,
    precision: KvPrecision,
) -> Result<()> {
    // Our one-token attention against candle's on the CPU, on this device, before timing it.
    let attention_error = sinkchat_engine::attend::max_error_against_reference(&dev)?;
    eprintln!(
        "decode attention on {}: largest error {attention_error:e}",
        device_name(&dev)
    );
    if attention_error > 1e-4 {
        anyhow::bail!(
            "decode attention on {} is off by {attention_error}",
            device_name(&dev)
        );
    }
    let model = Model::load(model_path, &dev, LoadOptions::default())?;
    let cfg = CacheConfig {
        sinks: 4,
        window: prompt + gen + 64,
        evict_step: 1,
        precision,
    };
    let ids = tokens(prompt, model.spec().vocab_size);
    // Warm-up, then best of three.
    let mut best_pp = 0f64;
    let mut best_tg = 0f64;
    let mut best_tg_after = 0f64;
    let mut cache_device = String::new();
    for _ in 0..3 {
        let mut cache = SinkCache::new(model.spec(), cfg, &dev)?;
        let t = Instant::now();
        model.prefill(&ids, &mut cache, 512, |_| {})?;
        best_pp = best_pp.max(prompt as f64 / t.elapsed().as_secs_f64());
        // Decoding right after the prompt (the cache holds `prompt` to `prompt + gen` tokens).
        let ms = decode_once(&model, &mut cache, gen)?;
        best_tg_after = best_tg_after.max(1000.0 / ms);
        cache_device = cache.stats().device;
        // llama-bench's own decode test: `gen` tokens from an empty cache.
        let mut fresh = SinkCache::new(model.spec(), cfg, &dev)?;
        let ms = decode_once(&model, &mut fresh, gen)?;
        best_tg = best_tg.max(1000.0 / ms);
    }
    let answer = sample_answer(&model, model_path, &dev, precision)?;
    eprintln!("greedy answer on {}: {answer:?}", device_name(&dev));
    let (lpp, ltg) = match &llama {
        Some(b) => llamacpp(b, model_path, prompt, gen)?,
        None => (f64::NAN, f64::NAN),
    };
    let num = |x: f64| {
        if x.is_finite() {
            json!((x * 10.0).round() / 10.0)
        } else {
            json!(null)
        }
    };
    write_json(
        out,
        json!({
            "model": model_path.file_name().map(|n| n.to_string_lossy().to_string()),
            "weights": model.weight_type().to_string(),
            "device": device_name(&dev),
            "cache_device": cache_device,
            "cache_precision": precision.on(&dev),
            "capital_of_france": answer,
            "decode_attention_max_error": attention_error,
            "attention": std::env::var("SINKCHAT_ATTENTION").unwrap_or_else(|_| "sinkchat".into()),
            "threads": threads(),
            "prompt_tokens": prompt,
            "generated_tokens": gen,
            "sinkchat_tokens_per_s": num(best_tg),
            "sinkchat_tokens_per_s_after_prompt": num(best_tg_after),
            "llamacpp_tokens_per_s": num(ltg),
            "sinkchat_prompt_tokens_per_s": num(best_pp),
            "llamacpp_prompt_tokens_per_s": num(lpp),
        }),
    )
}

pub fn flat(
    model_path: &Path,
    depths: &[usize],
    out: Option<PathBuf>,
    dev: Device,
    precision: KvPrecision,
) -> Result<()> {
    let model = Model::load(model_path, &dev, LoadOptions::default())?;
    let vocab = model.spec().vocab_size;
    let n = ROUND_TOKENS;
    // One conversation per depth (4 sinks + 1020 window), each filled to its depth by chunked
    // prefill, plus a plain cache that never evicts. All are filled first, then measured in
    // turns (round r decodes `n` tokens in each), and each reports its median round: a machine
    // that slows down over a long run then weighs on every depth alike instead of on the last
    // ones measured, and one slow or fast round (a 2-core machine swings by 10%) moves nothing.
    let cfg = CacheConfig {
        sinks: 4,
        window: 1020,
        evict_step: 1,
        precision,
    };
    let stream = tokens((*depths.iter().max().unwrap_or(&0)).max(4096 + 200), vocab);
    let mut caches = Vec::new();
    let mut progress = crate::progress::Progress::new(
        "flat: filling, then measuring",
        (depths.len() + ROUNDS * (depths.len() + 1)) as u64,
        "steps",
    );
    for &d in depths {
        let mut cache = SinkCache::new(model.spec(), cfg, &dev)?;
        model.prefill(&stream[..d], &mut cache, 256, |_| {})?;
        progress.println(format!("filled to {d} tokens"));
        progress.inc();
        caches.push((d.to_string(), Some(cache)));
    }
    // The plain cache is refilled before each of its rounds so that it holds 1024 tokens on
    // average while it is measured (1024 - n/2 up to 1024 + n/2 + 1), as the streaming ones do.
    let mut plain = SinkCache::new(
        model.spec(),
        CacheConfig {
            sinks: 4,
            window: 4096,
            evict_step: 1,
            precision,
        },
        &dev,
    )?;
    let plain_fill = &stream[..1024 - n / 2];
    caches.push(("plain".to_string(), None));
    let mut rounds = vec![Vec::with_capacity(ROUNDS); caches.len()];
    for round in 0..ROUNDS {
        for ((name, cache), r) in caches.iter_mut().zip(rounds.iter_mut()) {
            let ms = match cache {
                Some(c) => decode_once(&model, c, n)?,
                None => {
                    plain.clear();
                    model.prefill(plain_fill, &mut plain, 256, |_| {})?;
                    decode_once(&model, &mut plain, n)?
                }
            };
            r.push(ms);
            progress.println(format!("round {round}, {name}: {ms:.2} ms/token"));
            progress.inc();
        }
    }
    progress.finish();
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let mut at_depth = serde_json::Map::new();
    let mut best_at_depth = serde_json::Map::new();
    let mut all_rounds = serde_json::Map::new();
    for ((name, _), r) in caches.iter().zip(&rounds) {
        if name != "plain" {
            at_depth.insert(name.clone(), json!(round2(median(r))));
            best_at_depth.insert(
                name.clone(),
                json!(round2(r.iter().copied().fold(f64::INFINITY, f64::min))),
            );
        }
        all_rounds.insert(
            name.clone(),
            json!(r.iter().map(|&x| round2(x)).collect::<Vec<_>>()),
        );
    }
    // The machine's speed drifts over seconds (rounds of one cache swing by 10-20% here), and
    // all caches drift together: the ratio of two caches measured in the same round cancels
    // that, so these medians of per-round ratios are the figures to judge the goals by.
    let plain_rounds = rounds.last().expect("plain cache");
    let first_rounds = &rounds[0];
    let paired = |a: &[f64], b: &[f64]| {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        (median(&r) * 1000.0).round() / 1000.0
    };
    let mut ratios = serde_json::Map::new();
    for ((name, _), r) in caches.iter().zip(&rounds) {
        if name != "plain" {
            ratios.insert(
                format!("{name}/{}", caches[0].0),
                json!(paired(r, first_rounds)),
            );
            ratios.insert(format!("{name}/plain"), json!(paired(r, plain_rounds)));
        }
    }
    let plain_ms = median(plain_rounds);
    let cache_device = plain.stats().device;
    drop(caches);
    drop(plain);
    // Sliding window with re-computation and streaming, at windows 1024 and 4096.
    let mut recompute = serde_json::Map::new();
    let mut streaming = serde_json::Map::new();
    for w in [1024usize, 4096] {
        let reps = 3;
        let t = Instant::now();
        for r in 0..reps {
            let mut c = SinkCache::new(
                model.spec(),
                CacheConfig {
                    sinks: 0,
                    window: w,
                    evict_step: 1,
                    precision,
                },
                &dev,
            )?;
            model.prefill(&stream[r..r + w], &mut c, 512, |_| {})?;
        }
        let rec = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
        let mut c = SinkCache::new(
            model.spec(),
            CacheConfig {
                sinks: 4,
                window: w - 4,
                evict_step: 1,
                precision,
            },
            &dev,
        )?;
        model.prefill(&stream[..w + 200], &mut c, 256, |_| {})?;
        let st = decode_ms(&model, &mut c, n)?;
        eprintln!(
            "window {w}: recompute {rec:.1} ms/token, streaming {st:.2} ms/token ({:.1}x)",
            rec / st
        );
        recompute.insert(w.to_string(), json!((rec * 10.0).round() / 10.0));
        streaming.insert(w.to_string(), json!((st * 100.0).round() / 100.0));
    }
    write_json(
        out,
        json!({
            "model": model_path.file_name().map(|n| n.to_string_lossy().to_string()),
            "threads": threads(),
            "device": device_name(&dev),
            "cache_device": cache_device,
            "cache_precision": precision.on(&dev),
            "attention": std::env::var("SINKCHAT_ATTENTION").unwrap_or_else(|_| "sinkchat".into()),
            "rounds": ROUNDS,
            "tokens_per_round": n,
            "statistic": "median of the rounds",
            "cache": {"sinks": 4, "window": 1020},
            "ms_per_token": at_depth,
            "best_round_ms_per_token": best_at_depth,
            "round_ms_per_token": all_rounds,
            "paired_ratio_medians": ratios,
            "plain_cache_ms_per_token": (plain_ms * 100.0).round() / 100.0,
            "recompute_ms_per_token": recompute,
            "streaming_ms_per_token": streaming,
        }),
    )
}

/// Throughput of SinkChat's quantized matmul kernels against candle's, per weight format, for
/// one decode step (1 token) and one prompt chunk (`prompt` tokens), in GMAC/s: the figures
/// behind the decode and prompt speeds, without the rest of the forward pass.
pub fn kernels(prompt: usize, out: Option<PathBuf>) -> Result<()> {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Module, Tensor};
    use sinkchat_engine::qmatmul::{QGroup, QMatrix};
    use std::sync::Arc;
    let formats = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];
    // A feed-forward matrix of a 0.5B model (896 -> 4864); 1024 columns for the K-quants,
    // whose rows must be whole super-blocks of 256.
    let rows = 4864;
    let mut results = Vec::new();
    for dtype in formats {
        let cols = if dtype.block_size() == 256 { 1024 } else { 896 };
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu)?;
        let qt = QTensor::quantize(&w, dtype)?;
        let ours = QGroup::new(vec![Arc::new(QMatrix::from_qtensor(&qt)?)])?;
        let theirs = QMatMul::from_qtensor(qt)?;
        let mut row = serde_json::Map::new();
        row.insert("format".into(), json!(format!("{dtype:?}")));
        for (label, n) in [("decode", 1usize), ("prompt", prompt)] {
            let x = Tensor::randn(0f32, 1.0, (1, n, cols), &Device::Cpu)?;
            let macs = (rows * cols * n) as f64;
            let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
                f()?;
                let reps = (2e9 / macs).ceil().clamp(1.0, 2000.0) as usize;
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        f()?;
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                Ok(macs / best / 1e9)
            };
            let ours_g = time(&|| {
                ours.forward(&x)?;
                Ok(())
            })?;
            let theirs_g = time(&|| {
                theirs.forward(&x)?;
                Ok(())
            })?;
            eprintln!(
                "{dtype:?} {label:>6} ({n} tokens): sinkchat {ours_g:6.2} GMAC/s, candle {theirs_g:6.2} GMAC/s ({:.2}x)",
                ours_g / theirs_g
            );
            row.insert(
                format!("sinkchat_{label}_gmac_per_s"),
                json!((ours_g * 100.0).round() / 100.0),
            );
            row.insert(
                format!("candle_{label}_gmac_per_s"),
                json!((theirs_g * 100.0).round() / 100.0),
            );
        }
        results.push(serde_json::Value::Object(row));
    }
    write_json(
        out,
        json!({ "threads": threads(), "rows": rows, "prompt_tokens": prompt, "formats": results }),
    )
}

/// The Models screen's decode estimate against the measured decode of each file: the app's
/// calibration (`sinkchat_engine::probe` on the smallest file, `Speed::calibrated`), then for
/// every file the estimate from its size and layers beside `decode`'s own figure (`gen`
/// tokens from an empty cache, the best of three rounds).
pub fn recommend(models: &[PathBuf], gen: usize, out: Option<PathBuf>) -> Result<()> {
    use sinkchat_hub::recommend::Speed;
    let shape = |p: &Path| -> Result<(u64, u32)> {
        let spec = sinkchat_engine::ModelSpec::from_gguf(&read_gguf_header(p)?)?;
        Ok((std::fs::metadata(p)?.len(), spec.n_layer as u32))
    };
    let mut files = Vec::new();
    for p in models {
        sinkchat_hub::check_model(p).with_context(|| format!("checking {}", p.display()))?;
        files.push((p.clone(), shape(p)?));
    }
    let (small, (small_bytes, small_layers)) = files
        .iter()
        .min_by_key(|(_, (b, _))| *b)
        .cloned()
        .context("no model")?;
    let rate = sinkchat_engine::probe::weight_read_rate()?;
    let step = sinkchat_engine::probe::decode_seconds(&small, 32)?;
    let speed = Speed::calibrated(rate, step, small_bytes, small_layers);
    eprintln!(
        "weights read at {:.1} GB/s; {} decodes at {:.1} tokens/s; {:.3} ms a layer beyond its bytes",
        rate / 1e9,
        small.display(),
        1.0 / step,
        speed.layer_s * 1e3
    );
    let mut rows = Vec::new();
    for (p, (bytes, layers)) in &files {
        let estimate = speed.tokens_per_s(*bytes, *layers);
        let model = Model::load(p, &Device::Cpu, LoadOptions::default())?;
        let cfg = CacheConfig {
            sinks: 4,
            window: gen + 64,
            evict_step: 1,
            precision: KvPrecision::F16,
        };
        let mut best = 0f64;
        for _ in 0..3 {
            let mut cache = SinkCache::new(model.spec(), cfg, &Device::Cpu)?;
            best = best.max(1000.0 / decode_once(&model, &mut cache, gen)?);
        }
        let row = json!({
            "model": p.file_name().map(|n| n.to_string_lossy().to_string()),
            "weights": model.weight_type().to_string(),
            "file_bytes": bytes,
            "layers": layers,
            "estimated_tokens_per_s": (estimate * 10.0).round() / 10.0,
            "measured_tokens_per_s": (best * 10.0).round() / 10.0,
            "estimate_over_measured": (estimate / best * 1000.0).round() / 1000.0,
        });
        eprintln!("{row}");
        rows.push(row);
    }
    write_json(
        out,
        json!({
            "threads": threads(),
            "calibrated_on": small.file_name().map(|n| n.to_string_lossy().to_string()),
            "weight_read_gb_per_s": (rate / 1e8).round() / 10.0,
            "layer_ms": (speed.layer_s * 1e6).round() / 1e3,
            "rows": rows,
        }),
    )
}
