//! The sink cache after evictions.
//!
//! With one layer, a layer's K and V depend only on the tokens, so "a fresh forward over
//! exactly the cache's content at positions 0..n-1" is well defined: candle-transformers'
//! reference model run on the held tokens. The streaming logits must equal it, and each cached
//! key, rotated from its text position to its cache place, must equal the key the fresh
//! forward computed at that place.

mod common;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use candle_transformers::models::{
    quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use common::*;
use sinkchat_engine::model::Logits;
use sinkchat_engine::{CacheConfig, LoadOptions, Model, SinkCache};

fn reference_logits(path: &std::path::Path, ids: &[u32]) -> Tensor {
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let x = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let arch = ct.metadata["general.architecture"]
        .to_string()
        .unwrap()
        .clone();
    let dev = &Device::Cpu;
    let y = match arch.as_str() {
        "llama" => quantized_llama::ModelWeights::from_gguf(ct, &mut f, dev)
            .unwrap()
            .forward(&x, 0),
        "qwen3" => quantized_qwen3::ModelWeights::from_gguf(ct, &mut f, dev)
            .unwrap()
            .forward(&x, 0),
        "phi3" => quantized_phi3::ModelWeights::from_gguf(false, ct, &mut f, dev)
            .unwrap()
            .forward(&x, 0),
        _ => quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, dev)
            .unwrap()
            .forward(&x, 0),
    }
    .unwrap();
    y.flatten_all().unwrap()
}

/// Rotates a key stored at text position `from` to position `to` (RoPE is a rotation, so
/// R(to) = R(to - from) R(from)); angles in f64.
fn rerotate(k: &[f32], from: u64, to: u64, neox: bool) -> Vec<f32> {
    let d = k.len();
    let mut out = k.to_vec();
    for i in 0..d / 2 {
        let theta = 1.0 / 10_000f64.powf((2 * i) as f64 / d as f64);
        let a = (to as f64 - from as f64) * theta;
        let (c, s) = (a.cos(), a.sin());
        let (x, y) = if neox {
            (i, i + d / 2)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (kx, ky) = (k[x] as f64, k[y] as f64);
        out[x] = (kx * c - ky * s) as f32;
        out[y] = (kx * s + ky * c) as f32;
    }
    out
}

fn check_arch(arch: &str, chunked: bool, evict_step: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-layer.gguf");
    let t = match arch {
        "llama" => Tiny::llama(1),
        "qwen3" => Tiny::qwen3(1),
        "phi3" => Tiny::phi3(1),
        _ => Tiny::qwen2(1),
    };
    write_tiny(&t, &path, GgmlDType::F32);
    let neox = arch != "llama";
    let model = Model::load(&path, &Device::Cpu, LoadOptions::default()).unwrap();
    let cfg = CacheConfig {
        sinks: 4,
        window: 16,
        evict_step,
        precision: sinkchat_engine::KvPrecision::F32,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, &Device::Cpu).unwrap();
    let stream: Vec<u32> = (0..77u32).map(|i| (i * 31 + 7) % 96).collect();
    let mut logits = None;
    if chunked {
        logits = Some(model.prefill(&stream, &mut cache, 5, |_| {}).unwrap());
    } else {
        for &tok in &stream {
            logits = Some(model.forward(&[tok], &mut cache, Logits::Last).unwrap());
        }
    }
    let logits = logits.unwrap();
    assert!(cache.stats().evicted_total > 0);
    assert_eq!(cache.tokens_seen(), stream.len() as u64);

    // The held tokens, by cache place.
    let positions = cache.slot_positions();
    let places = cache.slot_places();
    let mut held: Vec<(u64, u64, usize)> = positions
        .iter()
        .zip(&places)
        .enumerate()
        .filter_map(|(slot, (p, q))| Some((q.as_ref().copied()?, p.as_ref().copied()?, slot)))
        .collect();
    held.sort();
    let ids: Vec<u32> = held
        .iter()
        .map(|&(_, pos, _)| stream[pos as usize])
        .collect();
    assert_eq!(
        held.iter().map(|h| h.0).collect::<Vec<_>>(),
        (0..held.len() as u64).collect::<Vec<_>>()
    );

    // Next-token logits equal a fresh forward over exactly the held tokens at 0..n-1.
    let fresh = reference_logits(&path, &ids);
    let e = rel_err(&logits, &fresh);
    assert!(
        e < 1e-3,
        "{arch} chunked={chunked}: logits differ from a fresh forward by {e}"
    );

    // Each cached key, moved to its place, equals the fresh forward's key at that place.
    let mut fresh_cache = SinkCache::new(
        model.spec(),
        CacheConfig {
            sinks: 0,
            window: 64,
            evict_step: 1,
            precision: sinkchat_engine::KvPrecision::F32,
        },
        &Device::Cpu,
    )
    .unwrap();
    model.forward(&ids, &mut fresh_cache, Logits::Last).unwrap();
    let ks = cache.layer_keys(0).to_vec3::<f32>().unwrap(); // (kv_heads, slots, hd)
    let kf = fresh_cache.layer_keys(0).to_vec3::<f32>().unwrap();
    let mut worst = 0f32;
    for (place, pos, slot) in &held {
        for h in 0..ks.len() {
            let moved = rerotate(&ks[h][*slot], *pos, *place, neox);
            for (a, b) in moved.iter().zip(&kf[h][*place as usize]) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    assert!(
        worst < 1e-4,
        "{arch}: cached key off by {worst} after re-positioning"
    );
}

#[test]
fn llama_after_evictions_equals_fresh_forward_token_by_token() {
    check_arch("llama", false, 1);
}

#[test]
fn llama_after_chunked_prefill_and_block_eviction() {
    check_arch("llama", true, 4);
}

#[test]
fn qwen2_after_evictions_equals_fresh_forward() {
    check_arch("qwen2", false, 1);
    check_arch("qwen2", true, 3);
}

#[test]
fn qwen3_after_evictions_equals_fresh_forward() {
    check_arch("qwen3", false, 1);
    check_arch("qwen3", true, 3);
}

#[test]
fn phi3_after_evictions_equals_fresh_forward() {
    check_arch("phi3", false, 1);
    check_arch("phi3", true, 3);
}

/// Gemma 3 with one layer of each kind, after evictions. candle-transformers' Gemma 3 runs
/// its feed-forward block with SiLU where the model (and llama.cpp) use GELU, so the fresh
/// forward here is our own pass over a cache big enough to evict nothing; that the pass itself
/// is Gemma 3's is checked against llama.cpp on the real 270M file (`eval parity`,
/// `tests/parity_llamacpp.rs`).
/// - A global layer keeps the sinks and the window: the next-token logits equal a fresh
///   forward over the held tokens at places 0..n-1.
/// - A sliding layer (window 8) keeps its own ring with no sinks: they equal a fresh forward
///   over the last 8 tokens, which is all the layer was trained to see.
fn check_gemma3(sliding: bool, chunked: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gemma3.gguf");
    write_tiny(&Tiny::gemma3(&[sliding], 8), &path, GgmlDType::F32);
    let model = Model::load(&path, &Device::Cpu, LoadOptions::default()).unwrap();
    let cfg = CacheConfig {
        sinks: 4,
        window: 16,
        evict_step: 1,
        precision: sinkchat_engine::KvPrecision::F32,
    };
    let mut cache = SinkCache::new(model.spec(), cfg, &Device::Cpu).unwrap();
    let stream: Vec<u32> = (0..77u32).map(|i| (i * 31 + 7) % 96).collect();
    let logits = if chunked {
        model.prefill(&stream, &mut cache, 5, |_| {}).unwrap()
    } else {
        let mut l = None;
        for &tok in &stream {
            l = Some(model.forward(&[tok], &mut cache, Logits::Last).unwrap());
        }
        l.unwrap()
    };
    assert_eq!(cache.tokens_seen(), stream.len() as u64);
    assert!(cache.stats().evicted_total > 0);
    let stats = cache.stats();
    assert_eq!(stats.sliding_layers, sliding as usize);
    let ids: Vec<u32> = if sliding {
        assert_eq!(stats.sliding_window, 8);
        assert!(
            stats.capacity < 4 + 16,
            "a sliding layer keeps no sinks: {stats:?}"
        );
        stream[stream.len() - 8..].to_vec()
    } else {
        let mut held: Vec<(u64, u64)> = cache
            .slot_places()
            .iter()
            .zip(cache.slot_positions())
            .filter_map(|(q, p)| Some(((*q)?, p?)))
            .collect();
        held.sort();
        held.iter().map(|&(_, pos)| stream[pos as usize]).collect()
    };
    let mut fresh = SinkCache::new(
        model.spec(),
        CacheConfig { window: 64, ..cfg },
        &Device::Cpu,
    )
    .unwrap();
    let want = model.forward(&ids, &mut fresh, Logits::Last).unwrap();
    let e = rel_err(&logits, &want);
    assert!(
        e < 1e-3,
        "gemma3 sliding={sliding} chunked={chunked}: logits differ from a fresh forward by {e}"
    );
    // Not by accident: the whole stream read afresh in a cache that evicts nothing gives the
    // same logits when the layer slides (it never sees more than its window), and one token
    // fewer than the window gives others.
    let mut big = SinkCache::new(
        model.spec(),
        CacheConfig { window: 128, ..cfg },
        &Device::Cpu,
    )
    .unwrap();
    let whole = model.prefill(&stream, &mut big, 8, |_| {}).unwrap();
    let e_whole = rel_err(&logits, &whole);
    assert_eq!(
        e_whole < 1e-3,
        sliding,
        "the whole stream afresh: {e_whole}"
    );
    let mut short = SinkCache::new(
        model.spec(),
        CacheConfig { window: 64, ..cfg },
        &Device::Cpu,
    )
    .unwrap();
    let fewer = model.forward(&ids[1..], &mut short, Logits::Last).unwrap();
    assert!(
        rel_err(&logits, &fewer) > 1e-3,
        "one token fewer changes them"
    );
}

#[test]
fn gemma3_global_layer_after_evictions_equals_fresh_forward() {
    check_gemma3(false, false);
    check_gemma3(false, true);
}

#[test]
fn gemma3_sliding_layer_keeps_exactly_its_window() {
    check_gemma3(true, false);
    check_gemma3(true, true);
}

/// The compact (f16) memory on the real SmolLM2, against the f32 one: a prompt chunk, then 300
/// decode steps on English text with evictions all along (4 sinks + a window of 124). Its
/// distance from the f32 memory is measured against the model's own noise floor: the f32
/// memory fed the same prompt one token at a time instead of as one chunk (the one-token
/// attention kernel instead of the prompt kernel: another order of f32 sums, which the 8-bit
/// quantization of each matmul's input amplifies; chunks of several tokens give bit-identical
/// results, so they measure no floor). f16 must stay within twice that
/// floor, and keep the most likely token at nearly every step. (Perplexity over whole
/// novels: docs/BENCHMARKS.md.)
#[test]
fn an_f16_memory_is_within_the_f32_noise_floor() {
    use sinkchat_engine::model::read_gguf_header;
    use sinkchat_engine::sampling::argmax;
    use sinkchat_engine::{GgufTokenizer, KvPrecision};
    let path = smollm_path();
    let model = Model::load(&path, &Device::Cpu, LoadOptions::default()).unwrap();
    let tk = GgufTokenizer::from_gguf(&read_gguf_header(&path).unwrap()).unwrap();
    let text = "It was a bright cold day in April, and the clocks were striking thirteen. \
        The old harbour town woke slowly: fishermen mended their nets on the quay, gulls argued \
        over scraps, and the baker on Mill Street pulled the first loaves from his oven. ";
    let ids = tk.encode(&text.repeat(8), false).unwrap();
    assert!(ids.len() > 400, "{} tokens", ids.len());
    let cache = |precision| {
        let cfg = CacheConfig {
            sinks: 4,
            window: 124,
            evict_step: 1,
            precision,
        };
        SinkCache::new(model.spec(), cfg, &Device::Cpu).unwrap()
    };
    let mut full = cache(KvPrecision::F32);
    let mut rechunked = cache(KvPrecision::F32);
    let mut half = cache(KvPrecision::F16);
    assert_eq!(half.stats().bytes * 2, full.stats().bytes);
    let prompt = &ids[..100];
    model.forward(prompt, &mut full, Logits::Last).unwrap();
    model.forward(prompt, &mut half, Logits::Last).unwrap();
    for c in prompt.chunks(1) {
        model.forward(c, &mut rechunked, Logits::Last).unwrap();
    }
    let (mut kl_half, mut kl_floor, mut same) = (0f64, 0f64, 0usize);
    let steps = &ids[100..400];
    for &tok in steps {
        let step = |c: &mut SinkCache| {
            let l = model.forward(&[tok], c, Logits::Last).unwrap();
            l.to_vec1::<f32>().unwrap()
        };
        let (a, b, c) = (step(&mut full), step(&mut half), step(&mut rechunked));
        kl_half += kl(&a, &b);
        kl_floor += kl(&a, &c);
        same += (argmax(&a) == argmax(&b)) as usize;
    }
    assert!(full.stats().evicted_total > 250, "the window scrolled");
    let n = steps.len() as f64;
    let (kl_half, kl_floor) = (kl_half / n, kl_floor / n);
    eprintln!("mean KL from the f32 memory: f16 {kl_half:e}, f32 rechunked {kl_floor:e}; same top token {same}/{}", steps.len());
    assert!(kl_floor > 0.0, "the floor is measured");
    assert!(
        kl_half < 2.0 * kl_floor,
        "f16 {kl_half:e} against a floor of {kl_floor:e}"
    );
    assert!(
        same * 100 >= steps.len() * 97,
        "same top token at {same} of {} steps",
        steps.len()
    );
}

/// KL(p || q) of the softmaxes of two logit vectors, in nats.
fn kl(a: &[f32], b: &[f32]) -> f64 {
    let log_softmax = |v: &[f32]| {
        let m = v.iter().fold(f32::NEG_INFINITY, |x, &y| x.max(y)) as f64;
        let z = v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
        v.iter().map(|&x| x as f64 - z).collect::<Vec<f64>>()
    };
    let (la, lb) = (log_softmax(a), log_softmax(b));
    la.iter().zip(&lb).map(|(p, q)| p.exp() * (p - q)).sum()
}
