//! Looks at a GGUF file without loading its weights and says, in plain words, whether the engine
//! can run it. Used before a model is offered in the app: after a download and on import.

use std::path::Path;

use crate::arch::Recipe;
use crate::chat::ChatTemplate;
use crate::model::read_header;
use crate::spec::ModelSpec;
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
    /// Transformer layers.
    pub layers: u32,
    pub trained_context: usize,
    pub file_bytes: u64,
    /// K and V bytes per token of the window in f32 (an f16 cache stores half); sliding layers
    /// keep a memory of fixed size on top (counted in `memory_bytes`).
    pub kv_bytes_per_token: u64,
    /// Memory to run it on the CPU ([`run_memory`]): the file (weights as stored, the
    /// vocabulary), tied embeddings a second time, and a 2,048-token cache in f16 (the precision
    /// a new install uses; "Exact" in Settings adds as much again).
    pub memory_bytes: u64,
    /// The vocabulary type (`gpt2`: byte-level BPE, `llama`: SentencePiece).
    pub vocabulary: String,
    /// The chat template's family (`ChatML`, `Llama 3`, `Mistral`, `Phi-3`, `Gemma`, or `the
    /// file's own`).
    pub chat_template: String,
    /// Whether the file carries its template; without one SinkChat speaks ChatML to it.
    pub template_from_file: bool,
}

/// Reads a GGUF header, checks the architecture, hyper-parameters, tensor list and tokenizer,
/// and summarises the model. Errors are the engine's plain-sentence errors.
pub fn inspect(path: &Path) -> Result<ModelSummary> {
    let header = read_header(path)?;
    let ct = &header.ct;
    let spec = ModelSpec::from_gguf(ct)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|source| Error::ModelFileUnreadable {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut needed: Vec<String> = vec!["token_embd.weight".into(), "output_norm.weight".into()];
    for i in 0..spec.n_layer {
        needed.extend(
            Recipe::of(spec.architecture)
                .block_tensors()
                .iter()
                .map(|t| format!("blk.{i}.{t}")),
        );
    }
    if let Some(missing) = needed.iter().find(|n| !ct.tensor_infos.contains_key(*n)) {
        return Err(Error::MissingTensor(missing.clone()));
    }
    let mut parameters = 0u64;
    let mut bytes_by_type: Vec<(String, u64)> = Vec::new();
    // `read_header` checked every tensor's size and place in the file.
    for (name, info) in &ct.tensor_infos {
        let bytes = crate::model::tensor_bytes(info, header.foreign(name)).unwrap_or(0);
        parameters += info.shape.dims().iter().map(|&d| d as u64).product::<u64>();
        let ty = header.type_name(name, info);
        match bytes_by_type.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, b)) => *b += bytes,
            None => bytes_by_type.push((ty, bytes)),
        }
    }
    // What the engine holds: the file (weights as stored, and the vocabulary and its merges,
    // held by the tokenizer); embeddings tied to the output twice: once for the lookup, once
    // as the output matrix.
    let mut held = file_bytes;
    if !ct.tensor_infos.contains_key("output.weight") {
        if let Some(e) = ct.tensor_infos.get("token_embd.weight") {
            held += crate::model::tensor_bytes(e, header.foreign("token_embd.weight")).unwrap_or(0);
        }
    }
    let quantization = bytes_by_type
        .iter()
        .max_by_key(|(_, b)| *b)
        .map(|(t, _)| t.clone())
        .unwrap_or_else(|| "none".into());
    let tokenizer = GgufTokenizer::from_gguf(ct)?;
    let template = ChatTemplate::for_tokenizer(&tokenizer)?;
    let kv = spec.kv_bytes_per_token() as u64;
    Ok(ModelSummary {
        name: spec.name.clone(),
        architecture: spec.architecture.gguf_name().to_string(),
        quantization,
        parameters,
        layers: spec.n_layer as u32,
        trained_context: spec.trained_context,
        file_bytes,
        kv_bytes_per_token: kv,
        memory_bytes: run_memory(held, kv, spec.sliding_kv_bytes() as u64),
        vocabulary: tokenizer.vocab_type().gguf_name().to_string(),
        chat_template: template.family().to_string(),
        template_from_file: template.from_file(),
    })
}

/// The window a new install keeps, in tokens: the figure [`run_memory`] counts.
pub const DEFAULT_WINDOW_TOKENS: u64 = 2048;

/// Memory to run a model on the CPU, the one figure the Models screen shows for every model
/// (installed, from [`inspect`]; in the catalog, from the entry's shape): the weights as held
/// (`weights_held`: as stored, tied embeddings twice), a [`DEFAULT_WINDOW_TOKENS`] cache in f16
/// (the precision a new install uses; `kv_bytes_per_token` and `sliding_kv_bytes` are f32
/// figures, see [`ModelSpec::kv_bytes_per_token`]).
pub const fn run_memory(weights_held: u64, kv_bytes_per_token: u64, sliding_kv_bytes: u64) -> u64 {
    weights_held + (DEFAULT_WINDOW_TOKENS * kv_bytes_per_token + sliding_kv_bytes) / 2
}

/// Checks the first bytes of a GGUF file (a download's first kilobytes) for an architecture, a
/// vocabulary or a weight type (`general.file_type`) the engine does not run, so such a file is
/// refused before it is fetched. `Ok(())` when the prefix shows nothing wrong, including when
/// it ends before the keys.
pub fn check_header_prefix(bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(b"GGUF") {
        return Err(Error::NotGguf("the download".into()));
    }
    crate::model::check_runnable(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kvs: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((kvs.len() as u64 + 1).to_le_bytes());
        // A number and then the strings.
        b.extend(12u64.to_le_bytes());
        b.extend(b"general.size");
        b.extend(4u32.to_le_bytes());
        b.extend(7u32.to_le_bytes());
        for (k, v) in kvs {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(8u32.to_le_bytes());
            b.extend((v.len() as u64).to_le_bytes());
            b.extend(v.as_bytes());
        }
        b
    }

    #[test]
    fn header_prefix_refuses_what_the_engine_cannot_run() {
        let ok = header(&[
            ("general.architecture", "qwen3"),
            ("tokenizer.ggml.model", "llama"),
        ]);
        check_header_prefix(&ok).unwrap();
        // Cut anywhere: nothing is concluded from a partial key.
        for n in 0..ok.len() {
            if n >= 4 {
                check_header_prefix(&ok[..n]).unwrap();
            }
        }
        let e = check_header_prefix(&header(&[("general.architecture", "mamba")])).unwrap_err();
        assert!(
            e.to_string().contains("'mamba'") && e.to_string().contains("not supported"),
            "{e}"
        );
        let e = check_header_prefix(&header(&[
            ("general.architecture", "llama"),
            ("tokenizer.ggml.model", "t5"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("'t5'"), "{e}");
        assert!(check_header_prefix(b"<html>").is_err());
    }
}
