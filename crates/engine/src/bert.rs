//! A BERT encoder (Devlin et al. 2019), as the meaning model needs it: token, position and
//! segment embeddings, then post-norm layers of self-attention over the whole text (padding
//! masked) and a GELU feed-forward, in f32 on the CPU, with candle's tensors and layers.
//!
//! Ours rather than candle-transformers' `BertModel`: the same ~100 lines of arithmetic
//! (checked against sentence-transformers' vectors by `tests/embed.rs`), without making the
//! engine, and so every build of the app and the CUDA build, compile a crate of some hundred
//! model families.

use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// What the model's `config.json` says, as far as the encoder needs.
#[derive(Debug, Deserialize)]
pub(crate) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl Config {
    /// Why this encoder cannot run a model of this configuration, in words; `None`: it can.
    pub fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!(
                "its activation is {:?}; SinkChat runs BERT models with \"gelu\"",
                self.hidden_act
            ));
        }
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                return Some(format!(
                    "its position embeddings are {p:?}; SinkChat runs \"absolute\" ones"
                ));
            }
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "its width {} does not split into {} attention heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    out_norm: LayerNorm,
    up: Linear,
    down: Linear,
    down_norm: LayerNorm,
}

pub(crate) struct Bert {
    words: Embedding,
    positions: Embedding,
    segments: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    max_len: usize,
}

impl Bert {
    /// The encoder's weights under their Hugging Face names (`embeddings.*`,
    /// `encoder.layer.N.*`; the pooler is not used).
    pub fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: linear(h, h, a.pp("self.query"))?,
                key: linear(h, h, a.pp("self.key"))?,
                value: linear(h, h, a.pp("self.value"))?,
                out: linear(h, h, a.pp("output.dense"))?,
                out_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                up: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                down: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                down_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            segments: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            max_len: c.max_position_embeddings,
        })
    }

    /// The last layer's vector of each token: `ids` and `mask` are (texts, tokens), `mask` 1
    /// for a real token and 0 for padding; every text is one segment.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (n, len) = ids.dims2()?;
        if len > self.max_len {
            candle_core::bail!("{len} tokens, more than the model's {}", self.max_len);
        }
        let dev = ids.device();
        let positions = Tensor::arange(0u32, len as u32, dev)?;
        let mut x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .broadcast_add(&self.segments.forward(&Tensor::zeros(1, DType::U32, dev)?)?)?;
        x = self.norm.forward(&x)?;
        // Padding gets the least f32 before the softmax, as the reference implementation does.
        let hide = ((mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * f32::MIN as f64)?
            .reshape((n, 1, 1, len))?;
        let width = x.dim(2)?;
        let d = width / self.heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((n, len, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = 1.0 / (d as f64).sqrt();
        for l in &self.layers {
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&hide)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = p
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, len, width))?;
            x = l.out_norm.forward(&(l.out.forward(&ctx)? + &x)?)?;
            let f = l.down.forward(&l.up.forward(&x)?.gelu_erf()?)?;
            x = l.down_norm.forward(&(f + &x)?)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    fn minilm() -> Config {
        serde_json::from_str(
            r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
                "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                "position_embedding_type": "absolute", "model_type": "bert"}"#,
        )
        .unwrap()
    }

    #[test]
    fn what_the_encoder_cannot_run_is_said_in_words() {
        assert_eq!(minilm().unsupported(), None);
        let tanh = Config {
            hidden_act: "gelu_new".into(),
            ..minilm()
        };
        assert!(tanh.unsupported().unwrap().contains("gelu_new"));
        let relative = Config {
            position_embedding_type: Some("relative_key".into()),
            ..minilm()
        };
        assert!(relative.unsupported().unwrap().contains("relative_key"));
        let odd = Config {
            num_attention_heads: 7,
            ..minilm()
        };
        assert!(odd.unsupported().unwrap().contains("7 attention heads"));
    }
}
