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
use candle_transformers::models::{quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3};
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
