//! Sentence vectors, for recall and search by meaning (#36): all-MiniLM-L6-v2 (a 6-layer BERT,
//! 22M parameters, 384 dimensions, Apache-2.0) run by our BERT encoder on candle
//! ([`crate::bert`]) with its own `tokenizers` tokenizer, pooled as its sentence-transformers
//! configuration says: the mean of the last layer's token vectors (padding left out), then
//! scaled to length 1, so that the dot product of two vectors is their cosine similarity.
//!
//! A text longer than the model's 256 tokens (its `max_seq_length`) is embedded by its start:
//! the first 254 word pieces, as sentence-transformers itself truncates. A message's opening is
//! where a chat message says what it is about; the words of the rest stay findable by the
//! full-text index. An empty text is embedded too (the vector of `[CLS] [SEP]`), never an error.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert::{Bert, Config};
use crate::error::{Error, Result};

/// The length of a vector.
pub const DIM: usize = 384;

/// The model's folder inside the models folder: `meaning/all-MiniLM-L6-v2`.
pub const FOLDER: &str = "meaning/all-MiniLM-L6-v2";

/// The files the model's folder holds (the set-up installs them, each SHA-256 checked).
pub const FILES: [&str; 4] = [
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "1_Pooling/config.json",
];

/// How many texts go through the model at once.
const BATCH: usize = 16;

/// The embedding model, loaded.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

fn fault(what: impl std::fmt::Display) -> Error {
    Error::Embedder(what.to_string())
}

fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| fault(format!("{}: {e}", path.display())))?;
    Ok((path, bytes))
}

impl Embedder {
    /// Loads the model from its folder (the files of [`FILES`]), on the CPU: a 22M-parameter
    /// model embeds a message in milliseconds there, and leaves the GPU's memory to the chat.
    pub fn open(dir: &Path) -> Result<Self> {
        let (_, pooling) = read(dir, "1_Pooling/config.json")?;
        let pooling: serde_json::Value = serde_json::from_slice(&pooling).map_err(fault)?;
        if pooling["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
            return Err(fault(
                "its pooling is not the mean of the tokens, which is what SinkChat computes",
            ));
        }
        let (_, config) = read(dir, "config.json")?;
        let config: Config = serde_json::from_slice(&config).map_err(fault)?;
        if let Some(why) = config.unsupported() {
            return Err(fault(why));
        }
        let (path, _) = read(dir, "tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(&path).map_err(fault)?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: 256,
                ..Default::default()
            }))
            .map_err(fault)?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: 0,
            pad_token: "[PAD]".into(),
            ..Default::default()
        }));
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is the model's own, opened read-only; candle maps it as it maps
        // every safetensors file.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| fault(format!("{}: {e}", weights.display())))?;
        let model = Bert::load(vb, &config).map_err(fault)?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// One vector of [`DIM`] numbers, of length 1, per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(self.batch(chunk)?);
        }
        Ok(out)
    }

    fn batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Text past the first 64 KiB cannot reach the first 256 tokens: tokenizing it would
        // only cost time (a 100,000-character message).
        let texts: Vec<&str> = texts.iter().map(|t| head(t, 65_536)).collect();
        let enc = self.tokenizer.encode_batch(texts, true).map_err(fault)?;
        let n = enc.len();
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &enc {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        // Mean over the real tokens, then length 1.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sum = hidden.broadcast_mul(&m)?.sum(1)?;
        let count = m.sum(1)?;
        let mean = sum.broadcast_div(&count)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The cosine similarity of two vectors of length 1: their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_cuts_at_a_character_boundary() {
        assert_eq!(head("abc", 10), "abc");
        assert_eq!(head("aé", 2), "a");
        assert_eq!(head("ééé", 4), "éé");
    }
}
