//! `Model`: our llama-family forward pass on candle's quantized matmul, reading and writing a
//! [`SinkCache`] passed in from outside, so one loaded model serves many conversations.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, DType, Device, Layout, Module, Shape, Tensor, D};

use crate::attend::{DecodeAttention, PromptAttention, QueryRope};
use crate::cache::{SinkCache, Visibility, WritePlan};
use crate::qmatmul::{self, QGroup, QMatrix};
use crate::rope;
use crate::spec::ModelSpec;
use crate::{Error, Result};

/// How matmul weights run on the CPU (on a GPU they always run as stored, with candle's
/// kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuWeights {
    /// The default: weights exactly as the file stores them, nothing converted; Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K through SinkChat's AVX2 kernels
    /// ([`crate::qmatmul`]), anything else (and everything on a CPU without AVX2, slowly for
    /// Q4_1 and Q5_0, whose candle kernels are scalar) through candle's. Converting at load would
    /// change the model: Q4_1 rewritten as Q8_0 moved perplexity on Emma by +0.52%
    /// (`docs/bench/kernels-perplexity.json`), more than the 0.5% this project allows.
    #[default]
    Native,
    /// Every weight as stored, through candle's own kernels (the reference).
    Candle,
    /// Q4_0 and Q4_1 rewritten as Q8_0 at load (the former default: candle's Q8_0 kernel, about
    /// twice the weight memory, and a slightly different model).
    Q8_0,
}

/// How to load weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    pub cpu_weights: CpuWeights,
    /// Measurement only (`sinkchat eval kernels --nudge`): move each RMS-norm weight by one ulp
    /// up, down or not at all, pseudo-randomly from this seed. The model is the same to float
    /// precision, but every rounding downstream can land differently, as it does when a kernel
    /// sums in another order; runs over several seeds give the spread that rounding alone makes
    /// in a perplexity, the floor against which two kernels can be compared. `None` in the app.
    pub nudge: Option<u64>,
}

/// Matrices that read the same input, run as one product where the kernel allows.
#[derive(Debug)]
enum Proj {
    /// Formats our kernels run, on the CPU: one op, the input quantized once per kind of
    /// activation block, one parallel region.
    Fused(QGroup),
    /// Anything else, one candle matmul each.
    Each(Vec<QMatMul>),
}

impl Proj {
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Proj::Fused(g) => {
                let y = g.forward(x)?;
                let mut parts = Vec::new();
                let mut at = 0;
                for w in g.widths() {
                    parts.push(y.narrow(D::Minus1, at, w)?);
                    at += w;
                }
                Ok(parts)
            }
            Proj::Each(ms) => ms.iter().map(|m| Ok(m.forward(x)?)).collect(),
        }
    }

    fn forward1(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Fused(g) => Ok(g.forward(x)?),
            Proj::Each(ms) => Ok(ms[0].forward(x)?),
        }
    }
}

/// Splits a projection's outputs into `widths`: one output per width already (separate
/// matrices, or a fused group), or one output holding them side by side (Phi-3's fused
/// `attn_qkv` and `ffn_up`).
fn split_outputs(parts: Vec<Tensor>, widths: &[usize]) -> Result<Vec<Tensor>> {
    if parts.len() == widths.len() {
        return Ok(parts);
    }
    let whole = if parts.len() == 1 {
        parts.into_iter().next().expect("one")
    } else {
        Tensor::cat(&parts, D::Minus1)?
    };
    let mut out = Vec::with_capacity(widths.len());
    let mut at = 0;
    for &w in widths {
        out.push(whole.narrow(D::Minus1, at, w)?);
        at += w;
    }
    Ok(out)
}

/// `silu(gate) · up`: on the CPU one pass of our own over the two halves of the gate/up
/// output, in parallel over tokens (candle's `silu` walked the strided half on one thread and
/// called `expf` per value, then a second op multiplied); elsewhere candle's ops.
fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu() && gate.dtype() == DType::F32 {
        Ok(gate.apply_op2_no_bwd(up, &SwiGlu)?)
    } else {
        Ok((candle_nn::ops::silu(gate)? * up)?)
    }
}

struct SwiGlu;

/// Offsets of each row (last dimension) of a layout whose rows are contiguous.
fn row_starts(l: &Layout) -> candle_core::Result<Vec<usize>> {
    let (dims, strides) = (l.dims(), l.stride());
    let Some((&width, lead)) = dims.split_last() else {
        candle_core::bail!("swiglu: a scalar");
    };
    if width > 1 && strides[dims.len() - 1] != 1 {
        candle_core::bail!("swiglu: rows must be contiguous");
    }
    let rows: usize = lead.iter().product();
    Ok((0..rows)
        .map(|mut i| {
            let mut at = l.start_offset();
            for (&n, &st) in lead.iter().zip(strides).rev() {
                at += (i % n) * st;
                i /= n;
            }
            at
        })
        .collect())
}

impl candle_core::CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(g), CpuStorage::F32(u)) = (s1, s2) else {
            candle_core::bail!("swiglu: f32 only");
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("swiglu: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let width = *l1.dims().last().unwrap_or(&1);
        let (gs, us) = (row_starts(l1)?, row_starts(l2)?);
        let mut out = vec![0f32; gs.len() * width];
        crate::par::rows_mut(&mut out, width, 4, |i, o| {
            let (g, u) = (&g[gs[i]..gs[i] + width], &u[us[i]..us[i] + width]);
            for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                *o = crate::vecmath::swiglu(*g, *u);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    /// Q, K and V (three matrices, or Phi-3's one).
    qkv: Proj,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    /// Qwen3's RMS norms over each head of Q and K, before RoPE.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    wo: Proj,
    ffn_norm: Tensor,
    /// Gate and up (two matrices, or Phi-3's one holding gate then up).
    gate_up: Proj,
    /// Rows of the gate (and of up).
    ffn_width: usize,
    down: Proj,
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
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Proj,
    inv_freqs: Vec<f64>,
    /// Scale of the RoPE tables (Phi-3.5's LongRoPE attention factor; 1 elsewhere).
    rope_scale: f64,
    device: Device,
    weight_dtype: GgmlDType,
    /// One-token steps use [`DecodeAttention`] (on the CPU and on CUDA) instead of candle's
    /// matmul/softmax. `SINKCHAT_ATTENTION=candle` turns it off, to measure the difference.
    fused_decode: bool,
    /// Masked chunks use [`PromptAttention`] (CPU only); `SINKCHAT_ATTENTION=candle` turns it
    /// off too.
    fused_prompt: bool,
}

fn open_gguf(path: &Path) -> Result<(gguf_file::Content, BufReader<File>)> {
    let file = File::open(path).map_err(|source| Error::ModelFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::new(file);
    let invalid = |reason: String| Error::InvalidGguf {
        path: path.to_path_buf(),
        reason,
    };
    // candle's reader divides by the file's `general.alignment`: a crafted 0 panics inside
    // it. Any panic of the reader is a malformed file, not a crash.
    let ct = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gguf_file::Content::read(&mut reader)
    }))
    .map_err(|_| invalid("its header is malformed (the GGUF reader failed on it)".into()))?
    .map_err(|e| invalid(e.to_string()))?;
    check_tensor_index(&ct, file_len).map_err(invalid)?;
    Ok((ct, reader))
}

/// Largest size one tensor dimension may have (the widest real vocabularies are ~262K).
const MAX_DIM: u64 = 1 << 24;

/// Bytes tensor `info` takes in the file, with every product checked.
pub(crate) fn tensor_bytes(info: &gguf_file::TensorInfo) -> Option<u64> {
    let mut elems: u64 = 1;
    for &d in info.shape.dims() {
        if d as u64 > MAX_DIM {
            return None;
        }
        elems = elems.checked_mul(d as u64)?;
    }
    let bs = info.ggml_dtype.block_size() as u64;
    (elems / bs).checked_mul(info.ggml_dtype.type_size() as u64)
}

/// Every tensor of the index has sane dimensions and lies inside the file: checked before
/// anything is sized from it, so a crafted or truncated file fails here, in plain words.
fn check_tensor_index(ct: &gguf_file::Content, file_len: u64) -> std::result::Result<(), String> {
    // (A file with no tensors, a vocabulary-only GGUF, may end before its aligned data start:
    // only tensors are checked against the file's end.)
    for (name, info) in &ct.tensor_infos {
        // An empty tensor is no weight; candle would also view its empty buffer (whose
        // pointer is only byte-aligned) as f32 or quant blocks, which is undefined behaviour
        // (found by tests/fuzz.rs: the process aborted).
        if info.shape.dims().contains(&0) {
            return Err(format!(
                "tensor {name} has an empty dimension {:?}",
                info.shape.dims()
            ));
        }
        let Some(bytes) = tensor_bytes(info) else {
            return Err(format!(
                "tensor {name} declares impossible dimensions {:?}",
                info.shape.dims()
            ));
        };
        let end = ct
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|o| o.checked_add(bytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(format!(
                "tensor {name} runs past the end of the file (truncated?)"
            ));
        }
    }
    Ok(())
}

/// Reads only the header of a GGUF file: metadata and tensor index.
pub fn read_gguf_header(path: &Path) -> Result<gguf_file::Content> {
    Ok(open_gguf(path)?.0)
}

impl Model {
    /// Loads a GGUF file onto `device`.
    pub fn load(path: &Path, device: &Device, opts: LoadOptions) -> Result<Self> {
        // The header is read with every tensor checked to lie inside the file (see
        // `open_gguf`): a truncated download fails with a plain message before any read.
        let (ct, mut reader) = open_gguf(path)?;
        let spec = ModelSpec::from_gguf(&ct)?;
        let mut ld = Loader {
            ct: &ct,
            reader: &mut reader,
            path,
            device,
            cpu_weights: if device.is_cpu() {
                Some(opts.cpu_weights)
            } else {
                None
            },
            weight_dtype: None,
            nudge: opts.nudge,
        };
        let arch = spec.architecture;
        let mut layers = Vec::with_capacity(spec.n_layer);
        for i in 0..spec.n_layer {
            let p = format!("blk.{i}");
            let (bq, bk, bv) = (
                ld.optional_f32(&format!("{p}.attn_q.bias"))?,
                ld.optional_f32(&format!("{p}.attn_k.bias"))?,
                ld.optional_f32(&format!("{p}.attn_v.bias"))?,
            );
            if arch == crate::Architecture::Qwen2 && (bq.is_none() || bk.is_none() || bv.is_none())
            {
                return Err(Error::MissingTensor(format!("{p}.attn_q/k/v.bias")));
            }
            let (q_norm, k_norm) = if arch == crate::Architecture::Qwen3 {
                (
                    Some(ld.f32(&format!("{p}.attn_q_norm.weight"))?),
                    Some(ld.f32(&format!("{p}.attn_k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            let (qkv, gate_up, ffn_width) = if arch == crate::Architecture::Phi3 {
                let up = format!("{p}.ffn_up.weight");
                let rows = ld.rows(&up)?;
                (
                    ld.proj(&[&format!("{p}.attn_qkv.weight")])?,
                    ld.proj(&[&up])?,
                    rows / 2,
                )
            } else {
                let gate = format!("{p}.ffn_gate.weight");
                let rows = ld.rows(&gate)?;
                (
                    ld.proj(&[
                        &format!("{p}.attn_q.weight"),
                        &format!("{p}.attn_k.weight"),
                        &format!("{p}.attn_v.weight"),
                    ])?,
                    ld.proj(&[&gate, &format!("{p}.ffn_up.weight")])?,
                    rows,
                )
            };
            layers.push(Layer {
                attn_norm: ld.f32(&format!("{p}.attn_norm.weight"))?,
                qkv,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                wo: ld.proj(&[&format!("{p}.attn_output.weight")])?,
                ffn_norm: ld.f32(&format!("{p}.ffn_norm.weight"))?,
                gate_up,
                ffn_width,
                down: ld.proj(&[&format!("{p}.ffn_down.weight")])?,
            });
        }
        let embed = ld.f32("token_embd.weight")?;
        let norm = ld.f32("output_norm.weight")?;
        // Without output.weight the embeddings are tied.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            ld.proj(&["output.weight"])?
        } else {
            ld.proj(&["token_embd.weight"])?
        };
        let weight_dtype = ld.weight_dtype.unwrap_or(GgmlDType::F32);
        if embed.dims() != [spec.vocab_size, spec.embedding_length] {
            return Err(Error::InvalidGguf {
                path: path.to_path_buf(),
                reason: format!(
                    "token_embd.weight has shape {:?}, expected [{}, {}]",
                    embed.dims(),
                    spec.vocab_size,
                    spec.embedding_length
                ),
            });
        }
        let mut inv_freqs = rope::inv_freqs(spec.head_dim, spec.rope_freq_base);
        // Per-frequency divisors, as llama.cpp applies them: Llama 3.1/3.2's `rope_freqs` (its
        // long-context scaling, which changes the low frequencies at every position), else
        // Phi-3.5's LongRoPE factors for contexts up to the original length (the cache's
        // places stay far below it); and a scale on the tables.
        let factors = match ld.optional_f32("rope_freqs.weight")? {
            Some(f) => Some(("rope_freqs.weight", f)),
            None => ld
                .optional_f32("rope_factors_short.weight")?
                .map(|f| ("rope_factors_short.weight", f)),
        };
        if let Some((name, f)) = factors {
            let f: Vec<f32> = f.flatten_all()?.to_vec1()?;
            if f.len() != inv_freqs.len() || f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                return Err(Error::InvalidGguf {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{name} has {} values, expected {} positive ones",
                        f.len(),
                        inv_freqs.len()
                    ),
                });
            }
            for (x, s) in inv_freqs.iter_mut().zip(f) {
                *x /= s as f64;
            }
        }
        let rope_scale = ct
            .metadata
            .get(&format!(
                "{}.rope.scaling.attn_factor",
                spec.architecture.gguf_name()
            ))
            .and_then(|v| v.to_f32().ok())
            .map(f64::from)
            .filter(|x| x.is_finite() && *x > 0.0)
            .unwrap_or(1.0);
        let fused_decode = std::env::var("SINKCHAT_ATTENTION").as_deref() != Ok("candle")
            && (device.is_cpu() || (device.is_cuda() && spec.head_dim % 4 == 0));
        Ok(Self {
            spec,
            embed,
            layers,
            norm,
            output,
            inv_freqs,
            rope_scale,
            device: device.clone(),
            weight_dtype,
            fused_decode,
            fused_prompt: fused_decode && device.is_cpu(),
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The quantization the layers' matmuls run in (after any rewrite at load).
    pub fn weight_dtype(&self) -> GgmlDType {
        self.weight_dtype
    }

    /// Feeds `tokens` through the model, writing their K and V into `cache` and evicting as
    /// needed. `tokens.len()` must not exceed `cache.max_chunk()`; use [`Model::prefill`] for
    /// longer inputs.
    pub fn forward(&self, tokens: &[u32], cache: &mut SinkCache, logits: Logits) -> Result<Tensor> {
        let n = tokens.len();
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        let plan = cache.plan_write(n);
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?; // (1, n, d)

        let tables = |at: &[u64]| -> Result<(Tensor, Tensor)> {
            let (c, s) = rope::tables(at, &self.inv_freqs, &self.device)?;
            Ok(if self.rope_scale == 1.0 {
                (c, s)
            } else {
                ((c * self.rope_scale)?, (s * self.rope_scale)?)
            })
        };
        let (cos_t, sin_t) = tables(&plan.positions)?;
        let split = !cache.positions_are_places() && cache.sinks_read() > 0;
        let place_tables = if split {
            Some(tables(&plan.places)?)
        } else {
            None
        };
        // On the CPU a masked chunk's attention applies the mask itself, from the slots' text
        // positions; elsewhere candle adds it as a tensor.
        let visibility = (plan.needs_mask && self.fused_prompt).then(|| cache.visibility());
        let mask = if plan.needs_mask && visibility.is_none() {
            Some(cache.mask(&plan.positions)?)
        } else {
            None
        };
        let ctx = StepCtx {
            plan: &plan,
            cos_t: &cos_t,
            sin_t: &sin_t,
            place_tables: place_tables.as_ref(),
            mask: mask.as_ref(),
            visibility: visibility.as_ref(),
            read_len: cache.read_len(),
            sinks_read: cache.sinks_read(),
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.spec.rms_norm_eps as f32)?;
            let attn = self.attention(layer, &h, cache, li, &ctx)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.spec.rms_norm_eps as f32)?;
            let gu = split_outputs(layer.gate_up.forward(&h)?, &[layer.ffn_width; 2])?;
            let m = layer.down.forward1(&swiglu(&gu[0], &gu[1])?)?;
            x = (x + m)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(1, n - 1, 1)?,
            Logits::All => x,
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.spec.rms_norm_eps as f32)?;
        let out = self.output.forward1(&x)?.squeeze(0)?; // (n|1, vocab)
        Ok(match logits {
            Logits::Last => out.squeeze(0)?,
            Logits::All => out,
        })
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
        ctx: &StepCtx<'_>,
    ) -> Result<Tensor> {
        let s = &self.spec;
        let n = ctx.plan.positions.len();
        let (hd, nh, nkv) = (s.head_dim, s.n_head, s.n_kv_head);
        let rep = nh / nkv;
        let neox = s.architecture.rope_is_neox();
        let qkv = split_outputs(layer.qkv.forward(h)?, &[nh * hd, nkv * hd, nkv * hd])?;
        let bias = |y: &Tensor, b: &Option<Tensor>| -> Result<Tensor> {
            Ok(match b {
                Some(b) => y.broadcast_add(b)?,
                None => y.clone(),
            })
        };
        // (1, n, heads*hd) -> (1, heads, n, hd)
        let q = bias(&qkv[0], &layer.bq)?
            .reshape((1, n, nh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = bias(&qkv[1], &layer.bk)?
            .reshape((1, n, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        // Qwen3: each head of Q and K is RMS-normed before RoPE.
        let head_norm = |x: Tensor, w: &Option<Tensor>| -> Result<Tensor> {
            Ok(match w {
                Some(w) => candle_nn::ops::rms_norm(&x, w, s.rms_norm_eps as f32)?,
                None => x,
            })
        };
        let q = head_norm(q, &layer.q_norm)?;
        let k = head_norm(k, &layer.k_norm)?;
        let v = bias(&qkv[2], &layer.bv)?
            .reshape((1, n, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = rope::apply(&k, ctx.cos_t, ctx.sin_t, neox)?.squeeze(0)?; // (nkv, n, hd)
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
        let scale = 1.0 / (hd as f64).sqrt();
        if n == 1 && !ctx.plan.needs_mask && self.fused_decode {
            // One decode step: our kernel rotates the query and reads K and V in place (see
            // `attend`).
            let (place, sinks) = match ctx.place_tables {
                None => (None, 0),
                Some((cos_p, sin_p)) => (Some((cos_p, sin_p)), ctx.sinks_read),
            };
            let op = DecodeAttention {
                read,
                sinks,
                scale: scale as f32,
                rope: Some(QueryRope {
                    text: (ctx.cos_t, ctx.sin_t),
                    place,
                    neox,
                }),
            };
            let y = op.forward(&q.reshape((1, nh, hd))?, &kv.k, &kv.v)?;
            return layer.wo.forward1(&y.reshape((1, 1, nh * hd))?);
        }
        if let Some(vis) = ctx.visibility {
            // A prompt chunk (or a step past evicted holes) on the CPU: see `attend::prompt`.
            let q_text = rope::apply(&q, ctx.cos_t, ctx.sin_t, neox)?; // (1, nh, n, hd)
            let (q_all, sinks) = match ctx.place_tables {
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
        let q_text = rope::apply(&q, ctx.cos_t, ctx.sin_t, neox)?.reshape((nkv, rep * n, hd))?;
        // Prompt chunks compute in f32: an f16 cache's slots read are widened once per chunk.
        let keys = SinkCache::read_f32(&kv.k, read)?;
        let scores = match ctx.place_tables {
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
        let scores = match ctx.mask {
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

/// `xs` with each nonzero value moved by one ulp (`+1`, `-1` or `0` in its bit pattern, from a
/// hash of `seed`, `name` and the index: the same seed nudges the same way on every run).
fn nudged(xs: &[f32], seed: u64, name: &str) -> Vec<f32> {
    // FNV-1a of the name, then splitmix64 per value.
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut z = seed ^ salt ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            match (x.is_finite() && x != 0.0, z % 3) {
                (true, 1) => f32::from_bits(x.to_bits() + 1),
                (true, 2) => f32::from_bits(x.to_bits() - 1),
                _ => x,
            }
        })
        .collect()
}

/// Reads named tensors of one GGUF file, choosing each matmul's kernel.
struct Loader<'a> {
    ct: &'a gguf_file::Content,
    reader: &'a mut BufReader<File>,
    path: &'a Path,
    device: &'a Device,
    /// `None` on a GPU: weights run as stored.
    cpu_weights: Option<CpuWeights>,
    weight_dtype: Option<GgmlDType>,
    /// [`LoadOptions::nudge`].
    nudge: Option<u64>,
}

impl Loader<'_> {
    fn q(&mut self, name: &str) -> Result<QTensor> {
        if !self.ct.tensor_infos.contains_key(name) {
            return Err(Error::MissingTensor(name.to_string()));
        }
        self.ct
            .tensor(self.reader, name, self.device)
            .map_err(|e| Error::InvalidGguf {
                path: self.path.to_path_buf(),
                reason: format!("tensor {name}: {e}"),
            })
    }

    /// Rows of a matrix (its first GGUF dimension is the row length).
    fn rows(&self, name: &str) -> Result<usize> {
        let info = self
            .ct
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        match info.shape.dims() {
            [rows, _] => Ok(*rows),
            d => Err(Error::InvalidGguf {
                path: self.path.to_path_buf(),
                reason: format!("tensor {name} has shape {d:?}, expected a matrix"),
            }),
        }
    }

    fn f32(&mut self, name: &str) -> Result<Tensor> {
        let t = self.q(name)?.dequantize(self.device)?;
        match self.nudge {
            Some(seed) if name.ends_with("norm.weight") => {
                let v = nudged(&t.flatten_all()?.to_vec1::<f32>()?, seed, name);
                Ok(Tensor::from_vec(v, t.shape(), self.device)?)
            }
            _ => Ok(t),
        }
    }

    fn optional_f32(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.ct.tensor_infos.contains_key(name) {
            Ok(Some(self.f32(name)?))
        } else {
            Ok(None)
        }
    }

    /// The matrices `names`, which read the same input.
    fn proj(&mut self, names: &[&str]) -> Result<Proj> {
        let ts = names
            .iter()
            .map(|n| self.q(n))
            .collect::<Result<Vec<_>>>()?;
        // The layers' format is what the model "runs in"; the output matrix (often kept at a
        // higher precision) does not count.
        let counts = !names
            .iter()
            .any(|n| *n == "output.weight" || *n == "token_embd.weight");
        let native = self.cpu_weights == Some(CpuWeights::Native) && qmatmul::available();
        // `SINKCHAT_CANDLE_KERNELS=Q6K,Q8_0` (for measuring): these formats run through
        // candle's kernels, the rest through ours.
        let to_candle = std::env::var("SINKCHAT_CANDLE_KERNELS").unwrap_or_default();
        let ours = |t: &QTensor| {
            qmatmul::Format::of(t.dtype()).is_some()
                && !to_candle
                    .split(',')
                    .any(|f| f.trim() == format!("{:?}", t.dtype()))
        };
        if native && ts.iter().all(ours) {
            if counts {
                self.weight_dtype.get_or_insert(ts[0].dtype());
            }
            let mats = ts
                .iter()
                .map(|t| Ok(Arc::new(QMatrix::from_qtensor(t)?)))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Proj::Fused(QGroup::new(mats)?));
        }
        let mut out = Vec::with_capacity(ts.len());
        for t in ts {
            // Only when asked for (`CpuWeights::Q8_0`, for comparisons): see `Native`.
            let rewrite = self.cpu_weights == Some(CpuWeights::Q8_0)
                && matches!(t.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1);
            let t = if rewrite {
                QTensor::quantize(&t.dequantize(self.device)?, GgmlDType::Q8_0)?
            } else {
                t
            };
            if counts {
                self.weight_dtype.get_or_insert(t.dtype());
            }
            out.push(QMatMul::from_qtensor(t)?);
        }
        Ok(Proj::Each(out))
    }
}

/// Per-forward values shared by all layers.
struct StepCtx<'a> {
    plan: &'a WritePlan,
    cos_t: &'a Tensor,
    sin_t: &'a Tensor,
    place_tables: Option<&'a (Tensor, Tensor)>,
    mask: Option<&'a Tensor>,
    /// Set where [`PromptAttention`] runs a masked chunk (then `mask` is `None`).
    visibility: Option<&'a Visibility>,
    read_len: usize,
    sinks_read: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--nudge` moves each value by at most one ulp, moves about two thirds of them, never
    /// touches a zero, and is a function of its seed and the tensor's name.
    #[test]
    fn nudge_moves_by_an_ulp_and_repeats() {
        let xs: Vec<f32> = (0..3000)
            .map(|i| 0.5 + i as f32 * 1e-3)
            .chain([0.0])
            .collect();
        let a = nudged(&xs, 7, "blk.0.attn_norm.weight");
        let moved = xs.iter().zip(&a).filter(|(x, y)| x != y).count();
        for (x, y) in xs.iter().zip(&a) {
            assert!(
                (x.to_bits() as i64 - y.to_bits() as i64).abs() <= 1,
                "{x} -> {y}"
            );
        }
        assert!((1800..2200).contains(&moved), "{moved} of 3001 moved");
        assert_eq!(a.last(), Some(&0.0));
        assert_eq!(a, nudged(&xs, 7, "blk.0.attn_norm.weight"));
        assert_ne!(a, nudged(&xs, 8, "blk.0.attn_norm.weight"));
        assert_ne!(a, nudged(&xs, 7, "blk.1.attn_norm.weight"));
    }

    /// Our SwiGLU on the two strided halves of a gate/up output equals candle's `silu(g) · u`
    /// (a decode step's one row and a prompt chunk's many, and a 3-d contiguous pair).
    #[test]
    fn swiglu_equals_candles_silu_times_up() {
        for (n, f) in [(1, 40), (3, 17), (37, 96)] {
            let vals: Vec<f32> = (0..n * 2 * f)
                .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 90.0)
                .collect();
            let gu = Tensor::from_vec(vals, (1, n, 2 * f), &Device::Cpu).unwrap();
            let (g, u) = (gu.narrow(2, 0, f).unwrap(), gu.narrow(2, f, f).unwrap());
            let want = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
            for (g, u) in [
                (g.clone(), u.clone()),
                (g.contiguous().unwrap(), u.contiguous().unwrap()),
            ] {
                let got = swiglu(&g, &u).unwrap();
                assert_eq!(got.dims(), want.dims());
                let (a, b) = (
                    got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-6 * y.abs().max(1e-3),
                        "{n}x{f}: {x} against {y}"
                    );
                }
            }
        }
    }
}
