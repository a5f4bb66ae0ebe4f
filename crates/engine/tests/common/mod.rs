//! Shared helpers of the engine's integration tests: the real SmolLM2 file, and tiny
//! random-weight GGUF files written for each architecture.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The default model, installed by `scripts/setup.sh` into `.data/models`.
pub fn smollm_path() -> PathBuf {
    if let Ok(p) = std::env::var("SINKCHAT_MODEL") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join(".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "the default model is missing at {}: run `scripts/setup.sh test-deps` first",
        p.display()
    );
    p
}

/// Shape of a tiny model.
pub struct Tiny {
    pub arch: &'static str,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub tied: bool,
    /// Width of a head when it is not `dim / heads` (Qwen3's `key_length`).
    pub head_dim: Option<usize>,
    /// Gemma: which layers slide, and the window.
    pub sliding: Option<(Vec<bool>, usize)>,
}

impl Tiny {
    pub fn llama(layers: usize) -> Self {
        Self {
            arch: "llama",
            layers,
            heads: 4,
            kv_heads: 2,
            dim: 64,
            ffn: 128,
            vocab: 96,
            tied: false,
            head_dim: None,
            sliding: None,
        }
    }
    /// Qwen3: per-head Q/K norms, and heads wider than `dim / heads` (4 x 32 > 64).
    pub fn qwen3(layers: usize) -> Self {
        Self {
            arch: "qwen3",
            head_dim: Some(32),
            tied: true,
            ..Self::llama(layers)
        }
    }
    /// Gemma 3: heads wider than `dim / heads`, Q/K norms, post norms, GeGLU, tied output; the
    /// layers of `sliding` attend to a sliding window of `window` tokens (the file's pattern
    /// lists each layer, so one layer can be either kind).
    pub fn gemma3(sliding: &[bool], window: usize) -> Self {
        Self {
            arch: "gemma3",
            layers: sliding.len(),
            head_dim: Some(32),
            kv_heads: 1,
            tied: true,
            sliding: Some((sliding.to_vec(), window)),
            ..Self::llama(sliding.len())
        }
    }
    /// Phi-3: fused QKV and gate/up matrices.
    pub fn phi3(layers: usize) -> Self {
        Self {
            arch: "phi3",
            ..Self::llama(layers)
        }
    }
    /// A model whose every matrix has rows of whole 256-value super-blocks (the K-quants).
    pub fn wide(mut self) -> Self {
        self.dim = 256;
        self.ffn = 512;
        self
    }
    pub fn qwen2(layers: usize) -> Self {
        Self {
            arch: "qwen2",
            layers,
            heads: 4,
            kv_heads: 2,
            dim: 64,
            ffn: 128,
            vocab: 96,
            tied: true,
            head_dim: None,
            sliding: None,
        }
    }
}

/// A deterministic pseudo-random tensor in [-scale, scale].
fn rand_tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Writes a tiny random-weight GGUF of the given architecture, matmul weights in `dtype`.
pub fn write_tiny(t: &Tiny, path: &Path, dtype: GgmlDType) {
    write_tiny_with(t, path, dtype, Vec::new())
}

/// [`write_tiny`] with more metadata (a real vocabulary's `tokenizer.*` keys, say).
pub fn write_tiny_with(t: &Tiny, path: &Path, dtype: GgmlDType, extra: Vec<(String, Value)>) {
    let a = t.arch;
    let hd = t.head_dim.unwrap_or(t.dim / t.heads);
    let q_width = t.heads * hd;
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(format!("tiny-{a}"))),
        (
            format!("{a}.attention.head_count"),
            Value::U32(t.heads as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(t.kv_heads as u32),
        ),
        (format!("{a}.embedding_length"), Value::U32(t.dim as u32)),
        (format!("{a}.block_count"), Value::U32(t.layers as u32)),
        (format!("{a}.context_length"), Value::U32(4096)),
        (format!("{a}.rope.dimension_count"), Value::U32(hd as u32)),
        (format!("{a}.rope.freq_base"), Value::F32(10000.0)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{a}.feed_forward_length"), Value::U32(t.ffn as u32)),
    ];
    md.extend(extra);
    if a == "qwen3" {
        // candle-transformers' Qwen3 computes its RoPE tables in f16 unless told f32.
        md.push(("general.dtype".into(), Value::U32(0)));
    }
    if let Some(hd) = t.head_dim {
        md.push((format!("{a}.attention.key_length"), Value::U32(hd as u32)));
        md.push((format!("{a}.attention.value_length"), Value::U32(hd as u32)));
    }
    if let Some((layers, window)) = &t.sliding {
        md.push((
            format!("{a}.attention.sliding_window"),
            Value::U32(*window as u32),
        ));
        md.push((
            format!("{a}.attention.sliding_window_pattern"),
            Value::Array(layers.iter().map(|&b| Value::Bool(b)).collect()),
        ));
        md.push((format!("{a}.rope.freq_base_swa"), Value::F32(1000.0)));
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut seed = 1;
    let mut add = |name: String,
                   shape: &[usize],
                   q: bool,
                   scale: f32,
                   tensors: &mut Vec<(String, QTensor)>| {
        seed += 1;
        let x = rand_tensor(shape, seed, scale);
        let dt = if q { dtype } else { GgmlDType::F32 };
        tensors.push((name, QTensor::quantize(&x, dt).unwrap()));
    };
    let ones = |n: usize| {
        QTensor::quantize(
            &(rand_tensor(&[n], 99, 0.2).affine(1.0, 1.0).unwrap()),
            GgmlDType::F32,
        )
        .unwrap()
    };
    add(
        "token_embd.weight".into(),
        &[t.vocab, t.dim],
        true,
        1.0,
        &mut tensors,
    );
    tensors.push(("output_norm.weight".into(), ones(t.dim)));
    if !t.tied {
        add(
            "output.weight".into(),
            &[t.vocab, t.dim],
            true,
            0.5,
            &mut tensors,
        );
    }
    let kv = t.kv_heads * hd;
    for i in 0..t.layers {
        let p = format!("blk.{i}");
        tensors.push((format!("{p}.attn_norm.weight"), ones(t.dim)));
        tensors.push((format!("{p}.ffn_norm.weight"), ones(t.dim)));
        if a == "phi3" {
            add(
                format!("{p}.attn_qkv.weight"),
                &[q_width + 2 * kv, t.dim],
                true,
                0.4,
                &mut tensors,
            );
        } else {
            add(
                format!("{p}.attn_q.weight"),
                &[q_width, t.dim],
                true,
                0.4,
                &mut tensors,
            );
            add(
                format!("{p}.attn_k.weight"),
                &[kv, t.dim],
                true,
                0.4,
                &mut tensors,
            );
            add(
                format!("{p}.attn_v.weight"),
                &[kv, t.dim],
                true,
                0.4,
                &mut tensors,
            );
        }
        add(
            format!("{p}.attn_output.weight"),
            &[t.dim, q_width],
            true,
            0.3,
            &mut tensors,
        );
        if a == "phi3" {
            add(
                format!("{p}.ffn_up.weight"),
                &[2 * t.ffn, t.dim],
                true,
                0.3,
                &mut tensors,
            );
        } else {
            add(
                format!("{p}.ffn_gate.weight"),
                &[t.ffn, t.dim],
                true,
                0.3,
                &mut tensors,
            );
            add(
                format!("{p}.ffn_up.weight"),
                &[t.ffn, t.dim],
                true,
                0.3,
                &mut tensors,
            );
        }
        if a == "gemma3" {
            tensors.push((format!("{p}.post_attention_norm.weight"), ones(t.dim)));
            tensors.push((format!("{p}.post_ffw_norm.weight"), ones(t.dim)));
        }
        if a == "qwen3" || a == "gemma3" {
            let norm = |seed: u64| {
                QTensor::quantize(
                    &(rand_tensor(&[hd], seed, 0.2).affine(1.0, 1.0).unwrap()),
                    GgmlDType::F32,
                )
                .unwrap()
            };
            tensors.push((format!("{p}.attn_q_norm.weight"), norm(50 + i as u64)));
            tensors.push((format!("{p}.attn_k_norm.weight"), norm(70 + i as u64)));
        }
        add(
            format!("{p}.ffn_down.weight"),
            &[t.dim, t.ffn],
            true,
            0.3,
            &mut tensors,
        );
        if a == "qwen2" {
            add(
                format!("{p}.attn_q.bias"),
                &[t.dim],
                false,
                0.2,
                &mut tensors,
            );
            add(format!("{p}.attn_k.bias"), &[kv], false, 0.2, &mut tensors);
            add(format!("{p}.attn_v.bias"), &[kv], false, 0.2, &mut tensors);
        }
    }
    let mut f = std::fs::File::create(path).unwrap();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// The `tokenizer.*` keys of a GGUF file (one of llama.cpp's `ggml-vocab-*.gguf`), and its
/// number of tokens, to put a real vocabulary on a tiny model.
pub fn vocab_keys(vocab: &Path) -> (Vec<(String, Value)>, usize) {
    let mut f = std::fs::File::open(vocab).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `scripts/setup.sh test-deps`)",
            vocab.display()
        )
    });
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let n = match ct.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(v)) => v.len(),
        _ => panic!("{} has no tokenizer.ggml.tokens", vocab.display()),
    };
    let keys = ct
        .metadata
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    (keys, n)
}

/// A tiny model of shape `t` with the vocabulary of `vocab`, matmul weights in Q8_0.
pub fn write_tiny_with_vocab(mut t: Tiny, path: &Path, vocab: &Path) {
    let (keys, n) = vocab_keys(vocab);
    t.vocab = n;
    write_tiny_with(&t, path, GgmlDType::Q8_0, keys);
}

/// llama.cpp's vocabulary file `name`, unpacked by the set-up into `.cache/vocab`.
pub fn vocab_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/vocab")
        .join(name)
}

/// Rewrites a GGUF: with `requantize`, every Q4_0/Q4_1 matmul weight becomes Q8_0 as the
/// engine does at load; with `to_f32`, every tensor is then stored dequantized in f32, so two
/// implementations can be compared on plain float matmuls.
pub fn write_converted(src: &Path, dst: &Path, requantize: bool, to_f32: bool) {
    let mut r = std::fs::File::open(src).unwrap();
    let ct = gguf_file::Content::read(&mut r).unwrap();
    let dev = Device::Cpu;
    let mut tensors = Vec::new();
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let t = ct.tensor(&mut r, name, &dev).unwrap();
        let t = if requantize
            && matches!(t.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1)
            && name != "token_embd.weight"
        {
            QTensor::quantize(&t.dequantize(&dev).unwrap(), GgmlDType::Q8_0).unwrap()
        } else {
            t
        };
        let t = if to_f32 {
            QTensor::quantize(&t.dequantize(&dev).unwrap(), GgmlDType::F32).unwrap()
        } else {
            t
        };
        tensors.push((name.clone(), t));
    }
    // Tied embeddings: the engine keeps the embedding table as stored and requantizes only
    // its use as the output matmul, so the converted file gets an explicit output.weight.
    if !ct.tensor_infos.contains_key("output.weight") {
        let e = ct.tensor(&mut r, "token_embd.weight", &dev).unwrap();
        if requantize && matches!(e.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1) {
            let q = QTensor::quantize(&e.dequantize(&dev).unwrap(), GgmlDType::Q8_0).unwrap();
            let q = if to_f32 {
                QTensor::quantize(&q.dequantize(&dev).unwrap(), GgmlDType::F32).unwrap()
            } else {
                q
            };
            tensors.push(("output.weight".into(), q));
        }
    }
    let md: Vec<(&str, &Value)> = ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut f, &md, &tr).unwrap();
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The meaning model's folder (all-MiniLM-L6-v2), installed by `scripts/setup.sh` beside the
/// default model.
pub fn meaning_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root
        .join(".data/models")
        .join(sinkchat_engine::embed::FOLDER);
    assert!(
        p.join("model.safetensors").exists(),
        "the meaning model is missing at {}: run `scripts/setup.sh test-deps` first",
        p.display()
    );
    p
}
