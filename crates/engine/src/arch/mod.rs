//! Architectures as recipes: what each GGUF architecture stores for a block and how the one
//! forward pass ([`crate::model`]) reads it, as data rather than `if arch ==` branches. A new
//! architecture is a file here with its [`Recipe`] (and, where it needs an op the forward pass
//! lacks, that op); the loader, `inspect` and the cache read the same recipe.

mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

use crate::spec::{Architecture, ModelSpec};

/// How a block's Q, K and V are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qkv {
    /// Three matrices, `attn_q`, `attn_k`, `attn_v`.
    Separate,
    /// One matrix `attn_qkv` holding Q, K then V (Phi-3).
    Fused,
}

/// How a block's feed-forward gate and up projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateUp {
    /// Two matrices, `ffn_gate` and `ffn_up`.
    Separate,
    /// One matrix `ffn_up` holding the gate then up (Phi-3).
    Fused,
}

/// Whether Q, K and V carry biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    None,
    /// Read where the file has them.
    Optional,
    /// The architecture always has them: a file without is incomplete (Qwen2).
    Required,
}

/// The feed-forward block's activation of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (SwiGLU).
    Silu,
    /// `gelu(gate) * up` with the tanh approximation (GeGLU).
    GeluTanh,
}

/// What a layer's attention sees, which decides the cache it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Every earlier token: the layer keeps the sinks and the rolling window (StreamingLLM).
    Global,
    /// Only the last `n` tokens, itself included, as the model was trained: the layer keeps a
    /// plain ring of them and needs no sinks.
    Sliding(usize),
}

/// What an architecture stores and how the forward pass reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub arch: Architecture,
    pub qkv: Qkv,
    pub gate_up: GateUp,
    pub bias: Bias,
    /// An RMS norm over each head of Q and K before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// NeoX RoPE rotates pairs (i, i + d/2); the llama layout of GGUF rotates (2i, 2i + 1).
    pub rope_neox: bool,
    pub activation: Activation,
    /// Norms after attention and after the feed-forward block, before each joins the residual
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// The token embeddings are scaled by the square root of the width.
    pub embed_scale: bool,
    /// Some layers attend to a sliding window: by default every layer but each `n`-th
    /// (the file's metadata may say otherwise, see [`crate::spec::Sliding`]).
    pub sliding_period: Option<usize>,
}

impl Recipe {
    /// The recipe of `arch`.
    pub fn of(arch: Architecture) -> &'static Recipe {
        match arch {
            Architecture::Llama => &llama::RECIPE,
            Architecture::Qwen2 => &qwen2::RECIPE,
            Architecture::Qwen3 => &qwen3::RECIPE,
            Architecture::Phi3 => &phi3::RECIPE,
            Architecture::Gemma3 => &gemma3::RECIPE,
        }
    }

    /// The scale of a query's scores: 1/sqrt(head width), but for Gemma 3's 27B model (62
    /// layers), which was trained with 1/sqrt(width / heads), as llama.cpp reads it.
    pub fn attention_scale(&self, spec: &ModelSpec) -> f64 {
        let d = match (self.arch, spec.n_layer) {
            (Architecture::Gemma3, 62) => spec.embedding_length / spec.n_head,
            _ => spec.head_dim,
        };
        1.0 / (d as f64).sqrt()
    }

    /// The tensors every block must have (names after `blk.{i}.`); optional biases are not
    /// listed.
    pub fn block_tensors(&self) -> Vec<&'static str> {
        let mut t = vec!["attn_norm.weight"];
        match self.qkv {
            Qkv::Separate => t.extend(["attn_q.weight", "attn_k.weight", "attn_v.weight"]),
            Qkv::Fused => t.push("attn_qkv.weight"),
        }
        if self.bias == Bias::Required {
            t.extend(["attn_q.bias", "attn_k.bias", "attn_v.bias"]);
        }
        if self.qk_norm {
            t.extend(["attn_q_norm.weight", "attn_k_norm.weight"]);
        }
        t.extend(["attn_output.weight", "ffn_norm.weight"]);
        match self.gate_up {
            GateUp::Separate => t.extend(["ffn_gate.weight", "ffn_up.weight"]),
            GateUp::Fused => t.push("ffn_up.weight"),
        }
        t.push("ffn_down.weight");
        if self.post_norms {
            t.extend(["post_attention_norm.weight", "post_ffw_norm.weight"]);
        }
        t
    }

    /// What each layer of `spec` attends to.
    pub fn attention_kinds(&self, spec: &ModelSpec) -> Vec<AttentionKind> {
        match &spec.sliding {
            Some(s) => s
                .layers
                .iter()
                .map(|&slides| match slides {
                    true => AttentionKind::Sliding(s.window),
                    false => AttentionKind::Global,
                })
                .collect(),
            None => vec![AttentionKind::Global; spec.n_layer],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_a_recipe_naming_its_own_tensors() {
        for arch in Architecture::ALL {
            let r = Recipe::of(arch);
            assert_eq!(r.arch, arch);
            let t = r.block_tensors();
            assert!(t.contains(&"attn_norm.weight") && t.contains(&"ffn_down.weight"));
            assert_eq!(t.contains(&"attn_qkv.weight"), r.qkv == Qkv::Fused);
            assert_eq!(
                t.contains(&"ffn_gate.weight"),
                r.gate_up == GateUp::Separate
            );
            assert_eq!(t.contains(&"attn_q.bias"), r.bias == Bias::Required);
            assert_eq!(t.contains(&"attn_q_norm.weight"), r.qk_norm);
        }
        assert!(!Recipe::of(Architecture::Llama).rope_neox);
        assert!(Recipe::of(Architecture::Qwen2).rope_neox);
    }
}
