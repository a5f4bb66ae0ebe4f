//! Looks at a GGUF file without loading its weights and says, in plain words, whether the engine
//! can run it. Used before a model is offered in the app: after a download and on import.

use std::path::Path;

use candle_core::quantized::GgmlDType;

use crate::arch::Recipe;
use crate::chat::ChatTemplate;
use crate::model::read_gguf_header;
use crate::spec::{Architecture, ModelSpec};
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
    /// K and V bytes per token of the window in f32 (an f16 cache stores half); sliding layers
    /// keep a memory of fixed size on top (counted in `memory_bytes`).
    pub kv_bytes_per_token: u64,
    /// Rough memory to run it: weights as stored (embeddings in f32) plus a 2,048-token cache
    /// in f16 (the precision a new install uses; "Exact" in Settings adds as much again).
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
    let mut bytes_by_type: Vec<(GgmlDType, u64)> = Vec::new();
    let mut weight_bytes_cpu = 0u64;
    // `read_gguf_header` checked every tensor's size and place in the file.
    for info in ct.tensor_infos.values() {
        let bytes = crate::model::tensor_bytes(info).unwrap_or(0);
        parameters += info.shape.dims().iter().map(|&d| d as u64).product::<u64>();
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
    // The embeddings stay as stored (rows are dequantized when read); tied to the output,
    // they are held twice: once for the lookup, once as the output matrix.
    if !ct.tensor_infos.contains_key("output.weight") {
        if let Some(e) = ct.tensor_infos.get("token_embd.weight") {
            weight_bytes_cpu += crate::model::tensor_bytes(e).unwrap_or(0);
        }
    }
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
        memory_bytes: weight_bytes_cpu + (2048 * kv + spec.sliding_kv_bytes() as u64) / 2,
        vocabulary: tokenizer.vocab_type().gguf_name().to_string(),
        chat_template: template.family().to_string(),
        template_from_file: template.from_file(),
    })
}

/// Checks the first bytes of a GGUF file (a download's first kilobytes) for an architecture or
/// a vocabulary type the engine does not run, so such a file is refused before it is fetched.
/// `Ok(())` when the prefix shows nothing wrong, including when it ends before the keys.
pub fn check_header_prefix(bytes: &[u8]) -> Result<()> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Some(a)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn string(&mut self) -> Option<&[u8]> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.take(n)
        }
        /// Skips a value of GGUF type `t`; None when the prefix ends or the type is unknown.
        fn skip(&mut self, t: u32) -> Option<()> {
            let size = match t {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                8 => return self.string().map(|_| ()),
                9 => {
                    let et = self.u32()?;
                    let n = self.u64()?;
                    for _ in 0..n {
                        self.skip(et)?;
                    }
                    return Some(());
                }
                _ => return None,
            };
            self.take(size).map(|_| ())
        }
    }
    let mut r = R(bytes);
    if r.take(4) != Some(b"GGUF".as_slice()) {
        return Err(Error::NotGguf("the download".into()));
    }
    let Some(version) = r.u32() else {
        return Ok(());
    };
    if version < 2 {
        return Ok(()); // GGUF v1 counts are 32-bit; the full check after download handles it
    }
    let (Some(_tensors), Some(kvs)) = (r.u64(), r.u64()) else {
        return Ok(());
    };
    for _ in 0..kvs {
        let Some(key) = r.string().map(|k| String::from_utf8_lossy(k).into_owned()) else {
            return Ok(());
        };
        let Some(t) = r.u32() else { return Ok(()) };
        if t == 8 && (key == "general.architecture" || key == "tokenizer.ggml.model") {
            let Some(v) = r.string() else { return Ok(()) };
            let v = String::from_utf8_lossy(v);
            if key == "general.architecture" {
                Architecture::parse(&v)?;
            } else {
                crate::tokenizer::VocabType::parse(&v)?;
            }
        } else if r.skip(t).is_none() {
            return Ok(());
        }
    }
    Ok(())
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
