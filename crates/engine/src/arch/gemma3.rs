//! Gemma 3 (270M, 1B, 4B, 12B, 27B): five of every six layers attend only to a sliding window
//! (512 tokens for the small models, from the file), each sixth layer to everything; an RMS
//! norm on each head of Q and K, NeoX RoPE with a base of its own for the sliding layers, GeGLU
//! (tanh GELU), norms after attention and after the feed-forward block, the embeddings scaled
//! by the square root of the width, the output tied to them. (The GGUF's norm weights already
//! hold Gemma's `1 + w`.) Read from llama.cpp's `src/models/gemma3.cpp`.

use super::*;

pub const RECIPE: Recipe = Recipe {
    arch: Architecture::Gemma3,
    qkv: Qkv::Separate,
    gate_up: GateUp::Separate,
    bias: Bias::None,
    qk_norm: true,
    rope_neox: true,
    activation: Activation::GeluTanh,
    post_norms: true,
    embed_scale: true,
    sliding_period: Some(6),
};
