//! `ModelSpec`: the shape of a llama-family model, parsed and checked from GGUF metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::arch::{AttentionKind, Recipe};
use crate::{Error, Result};

/// The GGUF architectures our forward pass implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama, SmolLM2, Llama 3, Mistral: interleaved RoPE, no attention biases.
    Llama,
    /// Qwen2 / Qwen2.5: NeoX RoPE, biases on Q, K and V.
    Qwen2,
    /// Qwen3: NeoX RoPE, an RMS norm on each head of Q and K, a head width of its own.
    Qwen3,
    /// Phi-3 / Phi-3.5: NeoX RoPE, Q, K and V in one matrix, gate and up in one matrix.
    Phi3,
    /// Gemma 3: five of every six layers attend to a sliding window, Q/K norms, GeGLU, norms
    /// after attention and the feed-forward block, scaled embeddings.
    Gemma3,
}

impl Architecture {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            "phi3" => Ok(Self::Phi3),
            "gemma3" => Ok(Self::Gemma3),
            other => Err(Error::UnsupportedArchitecture(other.to_string())),
        }
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Phi3 => "phi3",
            Self::Gemma3 => "gemma3",
        }
    }

    /// Every architecture the engine runs.
    pub const ALL: [Architecture; 5] = [
        Self::Llama,
        Self::Qwen2,
        Self::Qwen3,
        Self::Phi3,
        Self::Gemma3,
    ];
}

/// Hyper-parameters of a model, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSpec {
    pub architecture: Architecture,
    pub name: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub embedding_length: usize,
    pub rope_freq_base: f64,
    pub rms_norm_eps: f64,
    /// The context length the model was trained with (`{arch}.context_length`).
    pub trained_context: usize,
    pub vocab_size: usize,
    /// Layers that attend to a sliding window (where the architecture has them): the window,
    /// and which layers (`{arch}.attention.sliding_window`, and the pattern's period or list).
    pub sliding: Option<Sliding>,
    /// RoPE's base for sliding layers (`{arch}.rope.freq_base_swa`, else 10,000).
    pub rope_freq_base_sliding: f64,
    /// Linear RoPE scaling of the global layers (`{arch}.rope.scaling.factor` with a linear
    /// scaling type): positions are divided by it.
    pub rope_linear_factor: f64,
    /// The query's scale before attention (Gemma 3's 27B differs from 1/sqrt(head width)).
    pub attention_scale: f64,
    /// `tanh` soft-capping of the final logits (`{arch}.final_logit_softcapping`), where set.
    pub final_logit_softcap: Option<f64>,
    /// What each layer attends to ([`crate::arch::Recipe::attention_kinds`]): the cache keeps
    /// one ring per kind.
    pub layer_kinds: Vec<AttentionKind>,
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| Error::MissingMetadata(key.to_string()))
}

fn get_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize> {
    let v = get(md, key)?;
    let n = match v {
        Value::U32(n) => *n as u64,
        Value::U64(n) => *n,
        Value::I32(n) if *n >= 0 => *n as u64,
        Value::I64(n) if *n >= 0 => *n as u64,
        _ => {
            return Err(Error::MissingMetadata(format!(
                "{key} (as a positive integer)"
            )))
        }
    };
    Ok(n as usize)
}

fn get_f64(md: &HashMap<String, Value>, key: &str) -> Option<f64> {
    md.get(key).and_then(|v| match v {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        _ => None,
    })
}

/// Which layers attend to a sliding window, and how far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sliding {
    /// Tokens a sliding layer sees, itself included.
    pub window: usize,
    /// Per layer: whether it slides.
    pub layers: Vec<bool>,
}

/// Which of `n_layer` layers slide, and over how many tokens: the window from
/// `{a}.attention.sliding_window`, the layers from `{a}.attention.sliding_window_pattern` (a
/// list of booleans, or a period: every `period`-th layer is global) or the architecture's
/// period. A window that is missing, zero or longer than the trained context, or a list of
/// another length is refused in words.
fn sliding_layers(
    md: &HashMap<String, Value>,
    a: &str,
    n_layer: usize,
    period: usize,
    trained_context: usize,
) -> Result<Sliding> {
    let key = format!("{a}.attention.sliding_window");
    let window = md
        .get(&key)
        .ok_or_else(|| Error::MissingMetadata(format!("{key} (the sliding window's length)")))
        .and_then(|_| get_usize(md, &key))?;
    let bad = Error::Malformed;
    if window == 0 || window > trained_context.max(1 << 20) {
        return Err(bad(format!(
            "its sliding window of {window} tokens does not fit a model trained on {trained_context}"
        )));
    }
    let pattern_key = format!("{a}.attention.sliding_window_pattern");
    let layers: Vec<bool> = match md.get(&pattern_key) {
        Some(Value::Array(v)) => {
            let flags: Option<Vec<bool>> = v
                .iter()
                .map(|x| match x {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect();
            match flags {
                Some(f) if f.len() == n_layer => f,
                _ => {
                    return Err(bad(format!(
                        "its sliding-window pattern lists {} values for {n_layer} layers",
                        v.len()
                    )))
                }
            }
        }
        Some(_) => {
            let p = get_usize(md, &pattern_key)?;
            (0..n_layer).map(|i| p == 0 || i % p < p - 1).collect()
        }
        None => (0..n_layer).map(|i| i % period < period - 1).collect(),
    };
    Ok(Sliding { window, layers })
}

/// Bounds on a model's shape, far above any real model (the largest open models have ~130
/// layers, 128 heads and a width of 16K-25K).
const MAX_LAYERS: usize = 1024;
const MAX_HEADS: usize = 1024;
const MAX_WIDTH: usize = 1 << 17;

impl ModelSpec {
    /// Reads and validates the hyper-parameters of a GGUF file.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let md = &ct.metadata;
        let arch_name = get(md, "general.architecture")?
            .to_string()
            .map_err(|_| Error::MissingMetadata("general.architecture".into()))?;
        let architecture = Architecture::parse(arch_name)?;
        let a = architecture.gguf_name();
        let n_head = get_usize(md, &format!("{a}.attention.head_count"))?;
        let n_kv_head = md
            .get(&format!("{a}.attention.head_count_kv"))
            .map(|_| get_usize(md, &format!("{a}.attention.head_count_kv")))
            .transpose()?
            .unwrap_or(n_head);
        let embedding_length = get_usize(md, &format!("{a}.embedding_length"))?;
        let n_layer = get_usize(md, &format!("{a}.block_count"))?;
        if n_head == 0 || n_kv_head == 0 || n_layer == 0 || embedding_length == 0 {
            return Err(Error::MissingMetadata(
                "non-zero head, layer and embedding counts".into(),
            ));
        }
        // Bounds far above any real model, checked before anything is sized from them (a
        // crafted file could otherwise ask for a vector of 2^40 layers).
        if n_layer > MAX_LAYERS
            || n_head > MAX_HEADS
            || n_kv_head > n_head
            || embedding_length > MAX_WIDTH
        {
            // No real model comes near these: a damaged or forged header.
            return Err(Error::Malformed(format!(
                "its header declares {n_layer} layers, {n_head} heads ({n_kv_head} for keys and values) and a width of {embedding_length}, far beyond any real model (at most {MAX_LAYERS} layers, {MAX_HEADS} heads, a width of {MAX_WIDTH})"
            )));
        }
        // Qwen3 (and others) give heads a width of their own (`key_length`); else the
        // embedding is split evenly between the heads.
        let key_length = md
            .get(&format!("{a}.attention.key_length"))
            .map(|_| get_usize(md, &format!("{a}.attention.key_length")))
            .transpose()?;
        let value_length = md
            .get(&format!("{a}.attention.value_length"))
            .map(|_| get_usize(md, &format!("{a}.attention.value_length")))
            .transpose()?;
        if n_head % n_kv_head != 0 || (key_length.is_none() && embedding_length % n_head != 0) {
            return Err(Error::MissingMetadata(format!(
                "consistent head counts (heads {n_head}, kv heads {n_kv_head}, width {embedding_length})"
            )));
        }
        let head_dim = key_length.unwrap_or(embedding_length / n_head);
        if head_dim == 0 || head_dim > 1024 {
            return Err(Error::Malformed(format!(
                "its header declares heads {head_dim} wide, which no real model has"
            )));
        }
        if value_length.is_some_and(|v| v != head_dim) {
            return Err(Error::UnsupportedArchitecture(format!(
                "{a} with heads of width {head_dim} (keys) and {} (values)",
                value_length.unwrap_or(head_dim)
            )));
        }
        let rope_dim = md
            .get(&format!("{a}.rope.dimension_count"))
            .map(|_| get_usize(md, &format!("{a}.rope.dimension_count")))
            .transpose()?
            .unwrap_or(head_dim);
        if rope_dim != head_dim || head_dim % 2 != 0 {
            return Err(Error::UnsupportedArchitecture(format!(
                "{a} with partial rotary embeddings (rope dims {rope_dim}, head dim {head_dim})"
            )));
        }
        let trained_context = get_usize(md, &format!("{a}.context_length")).unwrap_or(2048);
        let vocab_size = match md.get("tokenizer.ggml.tokens") {
            Some(Value::Array(v)) => v.len(),
            _ => ct
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?,
        };
        let name = md
            .get("general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| a.to_string());
        let recipe = Recipe::of(architecture);
        let sliding = match recipe.sliding_period {
            Some(period) => Some(sliding_layers(md, a, n_layer, period, trained_context)?),
            None => None,
        };
        // Linear RoPE scaling, as llama.cpp reads it (the type defaults to linear).
        let scaling_type = md
            .get(&format!("{a}.rope.scaling.type"))
            .and_then(|v| v.to_string().ok().cloned());
        let rope_linear_factor = match (
            scaling_type.as_deref(),
            get_f64(md, &format!("{a}.rope.scaling.factor")),
        ) {
            (None | Some("linear"), Some(f)) if f.is_finite() && f > 0.0 => f,
            _ => 1.0,
        };
        let final_logit_softcap = get_f64(md, &format!("{a}.final_logit_softcapping"))
            .filter(|c| c.is_finite() && *c > 0.0);
        let mut spec = Self {
            architecture,
            name,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            embedding_length,
            rope_freq_base: get_f64(md, &format!("{a}.rope.freq_base")).unwrap_or(10_000.0),
            rms_norm_eps: get_f64(md, &format!("{a}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            trained_context,
            vocab_size,
            sliding,
            rope_freq_base_sliding: get_f64(md, &format!("{a}.rope.freq_base_swa"))
                .filter(|b| b.is_finite() && *b > 0.0)
                .unwrap_or(10_000.0),
            rope_linear_factor,
            attention_scale: 0.0,
            final_logit_softcap,
            layer_kinds: Vec::new(),
        };
        spec.attention_scale = recipe.attention_scale(&spec);
        spec.layer_kinds = recipe.attention_kinds(&spec);
        Ok(spec)
    }

    /// Bytes of K and V that one token of the window takes in f32: over the global layers
    /// (every layer of most models; a sliding layer keeps a memory of fixed size instead,
    /// [`ModelSpec::sliding_kv_bytes`]).
    pub fn kv_bytes_per_token(&self) -> usize {
        let global = self
            .layer_kinds
            .iter()
            .filter(|k| **k == AttentionKind::Global)
            .count();
        let layers = if self.layer_kinds.is_empty() {
            self.n_layer
        } else {
            global
        };
        2 * layers * self.n_kv_head * self.head_dim * 4
    }

    /// Bytes in f32 of the sliding layers' memories, whatever the window: each keeps its span
    /// and the room for a chunk ([`crate::cache::SLIDING_CHUNK`]).
    pub fn sliding_kv_bytes(&self) -> usize {
        self.layer_kinds
            .iter()
            .map(|k| match k {
                &AttentionKind::Sliding(n) => {
                    let slots = n + n.min(crate::cache::SLIDING_CHUNK) - 1;
                    2 * self.n_kv_head * slots * self.head_dim * 4
                }
                AttentionKind::Global => 0,
            })
            .sum()
    }
}
