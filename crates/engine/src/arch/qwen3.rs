//! Qwen3: an RMS norm on each head of Q and K before RoPE, heads of a width of their own
//! (`key_length`), NeoX RoPE, SwiGLU, no biases.

use super::*;

pub const RECIPE: Recipe = Recipe {
    arch: Architecture::Qwen3,
    qkv: Qkv::Separate,
    gate_up: GateUp::Separate,
    bias: Bias::Optional,
    qk_norm: true,
    rope_neox: true,
    activation: Activation::Silu,
    post_norms: false,
    embed_scale: false,
    sliding_period: None,
};
