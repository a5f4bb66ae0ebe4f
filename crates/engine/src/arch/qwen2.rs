//! Qwen2 and Qwen2.5: biases on Q, K and V (always), NeoX RoPE, SwiGLU.

use super::*;

pub const RECIPE: Recipe = Recipe {
    arch: Architecture::Qwen2,
    qkv: Qkv::Separate,
    gate_up: GateUp::Separate,
    bias: Bias::Required,
    qk_norm: false,
    rope_neox: true,
    activation: Activation::Silu,
    post_norms: false,
    embed_scale: false,
    sliding_period: None,
};
