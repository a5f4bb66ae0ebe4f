//! Looks at a GGUF file without loading its weights and says, in plain words, whether the engine
//! can run it. Used before a model is offered in the app: after a download and on import.

use std::path::Path;

use candle_core::quantized::GgmlDType;

use crate::model::read_gguf_header;
use crate::spec::{Architecture, ModelSpec};
use crate::chat::ChatTemplate;
use crate::tokenizer::GgufTokenizer;
use crate::{Error, Result};

/// What a user needs to know about a model file before using it.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct ModelSummary {
    /// `general.name`, else the architecture.
    pub name: String,
    pub architecture: String,
    /// The weights' main quantization (the type holding most of the bytes), e.g. `Q4_K`.
    pub quantization: String,
    /// Parameter count from the tensor shapes.
    pub parameters: u64,
    pub trained_context: usize,
    pub file_bytes: u64,
    /// K and V bytes per cached token in f32 (the engine's cache format).
    pub kv_bytes_per_token: u64,
    /// Rough memory to run it: weights as stored (embeddings in f32) plus a 2,048-token cache.
    pub memory_bytes: u64,
    /// The vocabulary type (`gpt2`: byte-level BPE, `llama`: SentencePiece).
    pub vocabulary: String,
    /// The chat template's family (`ChatML`, `Llama 3`, `Mistral`, `Phi-3`, `Gemma`, or `the
    /// file's own`).
    pub chat_template: String,
    /// Whether the file carries its template; without one SinkChat speaks ChatML to it.
    pub template_from_file: bool,
}

/// Tensors each block of an architecture needs.
fn block_tensors(arch: Architecture) -> &'static [&'static str] {
    const LLAMA: &[&str] = &[
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    const QWEN2: &[&str] = &[
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    const QWEN3: &[&str] = &[
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    const PHI3: &[&str] = &[
        "attn_norm.weight",
        "attn_qkv.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    match arch {
        Architecture::Llama => LLAMA,
        Architecture::Qwen2 => QWEN2,
        Architecture::Qwen3 => QWEN3,
        Architecture::Phi3 => PHI3,
    }
}

/// Reads a GGUF header, checks the architecture, hyper-parameters, tensor list and tokenizer,
/// and summarises the model. Errors are the engine's plain-sentence errors.
pub fn inspect(path: &Path) -> Result<ModelSummary> {
    let ct = read_gguf_header(path)?;
    let spec = ModelSpec::from_gguf(&ct)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|source| Error::ModelFileUnreadable {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut needed: Vec<String> = vec!["token_embd.weight".into(), "output_norm.weight".into()];
    for i in 0..spec.n_layer {
        needed.extend(
            block_tensors(spec.architecture)
                .iter()
                .map(|t| format!("blk.{i}.{t}")),
        );
    }
    if let Some(missing) = needed.iter().find(|n| !ct.tensor_infos.contains_key(*n)) {
        return Err(Error::MissingTensor(missing.clone()));
    }
    let mut parameters = 0u64;
    let mut bytes_by_type: Vec<(GgmlDType, u64)> = Vec::new();
    let mut weight_bytes_cpu = 0u64;
    for (name, info) in &ct.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let bs = info.ggml_dtype.block_size() as u64;
        let bytes = elems / bs * info.ggml_dtype.type_size() as u64;
        if ct.tensor_data_offset + info.offset + bytes > file_bytes {
            return Err(Error::InvalidGguf {
                path: path.to_path_buf(),
                reason: format!("tensor {name} runs past the end of the file (truncated?)"),
            });
        }
        parameters += elems;
        match bytes_by_type
            .iter_mut()
            .find(|(t, _)| *t == info.ggml_dtype)
        {
            Some((_, b)) => *b += bytes,
            None => bytes_by_type.push((info.ggml_dtype, bytes)),
        }
        // What the CPU holds after loading (see `model::CpuWeights::Native`): every matrix as
        // stored.
        weight_bytes_cpu += bytes;
    }
    // The engine dequantizes embeddings and norms to f32.
    weight_bytes_cpu += (spec.vocab_size * spec.embedding_length * 4) as u64;
    let quantization = bytes_by_type
        .iter()
        .max_by_key(|(_, b)| *b)
        .map(|(t, _)| format!("{t:?}"))
        .unwrap_or_else(|| "none".into());
    let tokenizer = GgufTokenizer::from_gguf(&ct)?;
    let template = ChatTemplate::for_tokenizer(&tokenizer)?;
    let kv = spec.kv_bytes_per_token() as u64;
    Ok(ModelSummary {
        name: spec.name.clone(),
        architecture: spec.architecture.gguf_name().to_string(),
        quantization,
        parameters,
        trained_context: spec.trained_context,
        file_bytes,
        kv_bytes_per_token: kv,
        memory_bytes: weight_bytes_cpu + 2048 * kv,
        vocabulary: tokenizer.vocab_type().gguf_name().to_string(),
        chat_template: template.family().to_string(),
        template_from_file: template.from_file(),
    })
}
