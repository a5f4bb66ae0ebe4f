//! `Model`: our forward pass on quantized weights, reading and writing a [`SinkCache`] passed
//! in from outside, so one loaded model serves many conversations. One pass for every
//! architecture: what differs between them is data ([`crate::arch::Recipe`]): which tensors a
//! block has, the RoPE layout, the activation, the extra norms.
//!
//! Submodules: [`gguf`] (the header, checked), [`load`] (weights into a model, each matmul's
//! kernel chosen), [`ops`] (fused projections and gated activations).

mod gguf;
mod load;
mod ops;
mod weight_types;

use candle_core::{Device, Tensor, D};

use crate::arch::{Activation, AttentionKind, Recipe};
use crate::attend::{DecodeAttention, PromptAttention, QueryRope};
use crate::cache::{Ring, SinkCache, Visibility, WritePlan};
use crate::rope;
use crate::spec::ModelSpec;
use crate::{Error, Result};

pub(crate) use gguf::tensor_bytes;
pub use gguf::{read_gguf_header, read_header, Header};
pub use load::{CpuWeights, LoadOptions};
pub(crate) use weight_types::check_runnable;
pub use weight_types::{ggml_type_name, runs_ggml_type, TYPES_THAT_RUN};

use ops::{split_outputs, swiglu, Embeddings, Proj};

/// One block's weights, as its recipe stores them.
#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    /// Q, K and V (three matrices, or Phi-3's one).
    qkv: Proj,
    /// Biases of Q, K and V, where the file has them.
    biases: [Option<Tensor>; 3],
    /// RMS norms over each head of Q and K, before RoPE (Qwen3).
    qk_norm: Option<[Tensor; 2]>,
    wo: Proj,
    ffn_norm: Tensor,
    /// Gate and up (two matrices, or Phi-3's one holding gate then up).
    gate_up: Proj,
    /// Rows of the gate (and of up).
    ffn_width: usize,
    down: Proj,
    /// Norms of the attention's and the feed-forward block's outputs before each joins the
    /// residual (Gemma).
    post_norms: Option<[Tensor; 2]>,
}

/// Which logits a forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's, shape `(vocab,)`.
    Last,
    /// Every token's, shape `(n, vocab)` (perplexity evaluation).
    All,
}

/// A loaded model. Immutable: all per-conversation state lives in the [`SinkCache`].
#[derive(Debug)]
pub struct Model {
    spec: ModelSpec,
    recipe: &'static Recipe,
    embed: Embeddings,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Proj,
    inv_freqs: Vec<f64>,
    /// Scale of the RoPE tables (Phi-3.5's LongRoPE attention factor; 1 elsewhere).
    rope_scale: f64,
    /// RoPE's frequencies for sliding layers where they differ from the global layers' (Gemma
    /// 3's local base).
    local_rope: Option<Vec<f64>>,
    device: Device,
    /// ggml's name of the layers' weight type (`Q4_K`, `IQ4_XS`, ...).
    weight_type: String,
    /// One-token steps use [`DecodeAttention`] (on the CPU and on CUDA) instead of candle's
    /// matmul/softmax. `SINKCHAT_ATTENTION=candle` turns it off, to measure the difference.
    fused_decode: bool,
    /// Masked chunks use [`PromptAttention`] (CPU only); `SINKCHAT_ATTENTION=candle` turns it
    /// off too.
    fused_prompt: bool,
}

impl Model {
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// ggml's name of the weight type the layers' matmuls run in (after any rewrite at
    /// load), e.g. `Q4_K`, `IQ4_XS`.
    pub fn weight_type(&self) -> &str {
        &self.weight_type
    }

    /// Feeds `tokens` through the model, writing their K and V into `cache` and evicting as
    /// needed. `tokens.len()` must not exceed `cache.max_chunk()`; use [`Model::prefill`] for
    /// longer inputs.
    pub fn forward(&self, tokens: &[u32], cache: &mut SinkCache, logits: Logits) -> Result<Tensor> {
        let n = tokens.len();
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        let plans = cache.plan_write(n);
        let ctxs = plans
            .into_iter()
            .zip(cache.rings_ref())
            .map(|(plan, ring)| self.step_ctx(plan, ring))
            .collect::<Result<Vec<_>>>()?;
        let mut x = self.embed.lookup(tokens, &self.device)?.unsqueeze(0)?; // (1, n, d)
        if self.recipe.embed_scale {
            x = (x * (self.spec.embedding_length as f64).sqrt())?;
        }
        let eps = self.spec.rms_norm_eps as f32;
        for (li, layer) in self.layers.iter().enumerate() {
            let ctx = &ctxs[cache.ring_of(li)];
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let mut attn = self.attention(layer, &h, cache, li, ctx)?;
            if let Some([after_attn, _]) = &layer.post_norms {
                attn = candle_nn::ops::rms_norm(&attn, after_attn, eps)?;
            }
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gu = split_outputs(layer.gate_up.forward(&h)?, &[layer.ffn_width; 2])?;
            let act = match self.recipe.activation {
                Activation::Silu => swiglu(&gu[0], &gu[1])?,
                Activation::GeluTanh => (gu[0].gelu()? * &gu[1])?,
            };
            let mut m = layer.down.forward1(&act)?;
            if let Some([_, after_ffn]) = &layer.post_norms {
                m = candle_nn::ops::rms_norm(&m, after_ffn, eps)?;
            }
            x = (x + m)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(1, n - 1, 1)?,
            Logits::All => x,
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        let mut out = self.output.forward1(&x)?.squeeze(0)?; // (n|1, vocab)
        if let Some(cap) = self.spec.final_logit_softcap {
            out = ((out / cap)?.tanh()? * cap)?;
        }
        Ok(match logits {
            Logits::Last => out.squeeze(0)?,
            Logits::All => out,
        })
    }

    /// What every layer of one ring needs for this step: RoPE tables at the tokens' text
    /// positions (and at their cache places, for the sinks), and what each query may see.
    fn step_ctx(&self, plan: WritePlan, ring: &Ring) -> Result<StepCtx> {
        let (inv_freqs, scale) = self.rope_for(ring.kind);
        let tables = |at: &[u64]| -> Result<(Tensor, Tensor)> {
            let (c, s) = rope::tables(at, inv_freqs, &self.device)?;
            Ok(if scale == 1.0 {
                (c, s)
            } else {
                ((c * scale)?, (s * scale)?)
            })
        };
        let (cos_t, sin_t) = tables(&plan.positions)?;
        let split = !ring.positions_are_places() && ring.sinks_read() > 0;
        let place_tables = if split {
            Some(tables(&plan.places)?)
        } else {
            None
        };
        // On the CPU a masked chunk's attention applies the mask itself, from the slots' text
        // positions; elsewhere candle adds it as a tensor.
        let visibility = (plan.needs_mask && self.fused_prompt).then(|| ring.visibility());
        let mask = if plan.needs_mask && visibility.is_none() {
            Some(ring.mask(&plan.positions, &self.device)?)
        } else {
            None
        };
        Ok(StepCtx {
            plan,
            cos_t,
            sin_t,
            place_tables,
            mask,
            visibility,
            read_len: ring.read_len(),
            sinks_read: ring.sinks_read(),
        })
    }

    /// RoPE's frequencies and table scale for layers of `kind`.
    fn rope_for(&self, kind: AttentionKind) -> (&[f64], f64) {
        match (kind, &self.local_rope) {
            (AttentionKind::Sliding(_), Some(local)) => (local, 1.0),
            _ => (&self.inv_freqs, self.rope_scale),
        }
    }

    /// Feeds any number of tokens in chunks of at most `chunk`, returning the last logits.
    pub fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut SinkCache,
        chunk: usize,
        mut on_chunk: impl FnMut(usize),
    ) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        let chunk = chunk.clamp(1, cache.max_chunk());
        let mut last = None;
        let mut done = 0;
        for c in tokens.chunks(chunk) {
            last = Some(self.forward(c, cache, Logits::Last)?);
            done += c.len();
            on_chunk(done);
        }
        Ok(last.expect("non-empty"))
    }

    fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        cache: &mut SinkCache,
        li: usize,
        ctx: &StepCtx,
    ) -> Result<Tensor> {
        let s = &self.spec;
        let n = ctx.plan.positions.len();
        let (hd, nh, nkv) = (s.head_dim, s.n_head, s.n_kv_head);
        let rep = nh / nkv;
        let neox = self.recipe.rope_neox;
        let qkv = split_outputs(layer.qkv.forward(h)?, &[nh * hd, nkv * hd, nkv * hd])?;
        let [bq, bk, bv] = &layer.biases;
        let bias = |y: &Tensor, b: &Option<Tensor>| -> Result<Tensor> {
            Ok(match b {
                Some(b) => y.broadcast_add(b)?,
                None => y.clone(),
            })
        };
        // (1, n, heads*hd) -> (1, heads, n, hd)
        let q = bias(&qkv[0], bq)?
            .reshape((1, n, nh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = bias(&qkv[1], bk)?
            .reshape((1, n, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        // Qwen3: each head of Q and K is RMS-normed before RoPE.
        let (q, k) = match &layer.qk_norm {
            Some([qn, kn]) => (
                candle_nn::ops::rms_norm(&q, qn, s.rms_norm_eps as f32)?,
                candle_nn::ops::rms_norm(&k, kn, s.rms_norm_eps as f32)?,
            ),
            None => (q, k),
        };
        let v = bias(&qkv[2], bv)?
            .reshape((1, n, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = rope::apply(&k, &ctx.cos_t, &ctx.sin_t, neox)?.squeeze(0)?; // (nkv, n, hd)
        let v = v.squeeze(0)?;

        // Write the chunk's K and V in place, one slice per contiguous run of slots, in the
        // cache's precision (rounded once, here).
        let kv = &mut cache.layers[li];
        let (k, v) = (k.to_dtype(kv.k.dtype())?, v.to_dtype(kv.v.dtype())?);
        let slots = &ctx.plan.slots;
        let mut start = 0;
        while start < n {
            let mut end = start + 1;
            while end < n && slots[end] == slots[end - 1] + 1 {
                end += 1;
            }
            let len = end - start;
            kv.k.slice_set(&k.narrow(1, start, len)?.contiguous()?, 1, slots[start])?;
            kv.v.slice_set(&v.narrow(1, start, len)?.contiguous()?, 1, slots[start])?;
            start = end;
        }

        let read = ctx.read_len;
        let scale = s.attention_scale;
        if n == 1 && !ctx.plan.needs_mask && self.fused_decode {
            // One decode step: our kernel rotates the query and reads K and V in place (see
            // `attend`).
            let (place, sinks) = match &ctx.place_tables {
                None => (None, 0),
                Some((cos_p, sin_p)) => (Some((cos_p, sin_p)), ctx.sinks_read),
            };
            let op = DecodeAttention {
                read,
                sinks,
                scale: scale as f32,
                rope: Some(QueryRope {
                    text: (&ctx.cos_t, &ctx.sin_t),
                    place,
                    neox,
                }),
            };
            let y = op.forward(&q.reshape((1, nh, hd))?, &kv.k, &kv.v)?;
            return layer.wo.forward1(&y.reshape((1, 1, nh * hd))?);
        }
        if let Some(vis) = &ctx.visibility {
            // A prompt chunk (or a step past evicted holes) on the CPU: see `attend::prompt`.
            let q_text = rope::apply(&q, &ctx.cos_t, &ctx.sin_t, neox)?; // (1, nh, n, hd)
            let (q_all, sinks) = match &ctx.place_tables {
                None => (q_text, 0),
                Some((cos_p, sin_p)) => {
                    let q_place = rope::apply(&q, cos_p, sin_p, neox)?;
                    (Tensor::cat(&[q_text, q_place], 0)?, ctx.sinks_read)
                }
            };
            let op = PromptAttention {
                read,
                sinks,
                scale: scale as f32,
                slot_pos: &vis.slot_pos,
                q_pos: &ctx.plan.positions,
                pinned: vis.pinned,
                view: vis.view,
            };
            let y = op.forward(&q_all, &kv.k, &kv.v)?; // (n, nh * hd)
            return layer.wo.forward1(&y.reshape((1, n, nh * hd))?);
        }
        let q_text = rope::apply(&q, &ctx.cos_t, &ctx.sin_t, neox)?.reshape((nkv, rep * n, hd))?;
        // Prompt chunks compute in f32: an f16 cache's slots read are widened once per chunk.
        let keys = SinkCache::read_f32(&kv.k, read)?;
        let scores = match &ctx.place_tables {
            None => q_text.matmul(&keys.t()?)?,
            Some((cos_p, sin_p)) => {
                // Sinks are scored with the query at its cache place, the window with the
                // query at its text position (equal distances, see `cache`).
                let sr = ctx.sinks_read;
                let q_place = rope::apply(&q, cos_p, sin_p, neox)?.reshape((nkv, rep * n, hd))?;
                let s_sinks = q_place.matmul(&keys.narrow(1, 0, sr)?.t()?)?;
                let s_win = q_text.matmul(&keys.narrow(1, sr, read - sr)?.t()?)?;
                Tensor::cat(&[s_sinks, s_win], D::Minus1)?
            }
        };
        let scores = (scores * scale)?;
        let scores = match &ctx.mask {
            None => scores,
            Some(m) => scores
                .reshape((nkv, rep, n, read))?
                .broadcast_add(m)?
                .reshape((nkv, rep * n, read))?,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let values = SinkCache::read_f32(&kv.v, read)?;
        let y = probs.matmul(&values)?; // (nkv, rep*n, hd)
        let y = y
            .reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((1, n, nh * hd))?;
        layer.wo.forward1(&y)
    }
}

/// What the layers of one ring share in one forward.
struct StepCtx {
    plan: WritePlan,
    cos_t: Tensor,
    sin_t: Tensor,
    place_tables: Option<(Tensor, Tensor)>,
    mask: Option<Tensor>,
    /// Set where [`PromptAttention`] runs a masked chunk (then `mask` is `None`).
    visibility: Option<Visibility>,
    read_len: usize,
    sinks_read: usize,
}
