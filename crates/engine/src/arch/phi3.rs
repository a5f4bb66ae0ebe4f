//! Phi-3 and Phi-3.5: Q, K and V in one matrix, gate and up in one matrix, NeoX RoPE (with
//! Phi-3.5's LongRoPE factors read by the loader), SwiGLU.

use super::*;

pub const RECIPE: Recipe = Recipe {
    arch: Architecture::Phi3,
    qkv: Qkv::Fused,
    gate_up: GateUp::Fused,
    bias: Bias::Optional,
    qk_norm: false,
    rope_neox: true,
    activation: Activation::Silu,
    post_norms: false,
    embed_scale: false,
    sliding_period: None,
};
