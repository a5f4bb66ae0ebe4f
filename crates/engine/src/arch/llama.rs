//! Llama, SmolLM2, Llama 3, Mistral: separate Q, K, V without biases (read if a file has
//! them), SwiGLU, interleaved RoPE (GGUF's llama layout).

use super::*;

pub const RECIPE: Recipe = Recipe {
    arch: Architecture::Llama,
    qkv: Qkv::Separate,
    gate_up: GateUp::Separate,
    bias: Bias::Optional,
    qk_norm: false,
    rope_neox: false,
    activation: Activation::Silu,
    post_norms: false,
    embed_scale: false,
    sliding_period: None,
};
