//! Loading a model: the GGUF header checked ([`super::gguf`]), the architecture's recipe
//! ([`crate::arch::Recipe`]) read block by block, each matmul given its kernel (ours for the
//! formats [`crate::qmatmul`] runs on the CPU, candle's otherwise), RoPE's frequencies with a
//! file's per-frequency factors.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Tensor};

use crate::arch::{Bias, GateUp, Qkv, Recipe};
use crate::qmatmul::{self, QGroup, QMatrix};
use crate::rope;
use crate::spec::ModelSpec;
use crate::{Error, Result};

use super::gguf::open_gguf;
use super::ops::{Embeddings, Proj};
use super::{Layer, Model};

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
    /// Measurement only (`sinkchat-bench eval kernels --nudge`): move each RMS-norm weight by one ulp
    /// up, down or not at all, pseudo-randomly from this seed. The model is the same to float
    /// precision, but every rounding downstream can land differently, as it does when a kernel
    /// sums in another order; runs over several seeds give the spread that rounding alone makes
    /// in a perplexity, the floor against which two kernels can be compared. `None` in the app.
    pub nudge: Option<u64>,
}

impl Model {
    /// Loads a GGUF file onto `device`.
    pub fn load(path: &Path, device: &Device, opts: LoadOptions) -> Result<Self> {
        // The header is read with every tensor checked to lie inside the file (see
        // `open_gguf`): a truncated download fails with a plain message before any read.
        let (header, mut reader) = open_gguf(path)?;
        let ct = &header.ct;
        let spec = ModelSpec::from_gguf(ct)?;
        let mut ld = Loader {
            ct,
            header: &header,
            reader: &mut reader,
            path,
            device,
            cpu_weights: if device.is_cpu() {
                Some(opts.cpu_weights)
            } else {
                None
            },
            weight_type: None,
            nudge: opts.nudge,
        };
        let recipe = Recipe::of(spec.architecture);
        let mut layers = Vec::with_capacity(spec.n_layer);
        for i in 0..spec.n_layer {
            layers.push(ld.layer(recipe, &format!("blk.{i}"))?);
        }
        let embed = match ld.foreign("token_embd.weight")? {
            Some(m) => Embeddings::from_blocks(m, device)?,
            None => Embeddings::new(ld.q("token_embd.weight")?, device)?,
        };
        let norm = ld.f32("output_norm.weight")?;
        // Without output.weight the embeddings are tied.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            ld.proj(&["output.weight"])?
        } else {
            ld.proj(&["token_embd.weight"])?
        };
        let weight_type = ld.weight_type.take().unwrap_or_else(|| "F32".into());
        if embed.dims()? != (spec.vocab_size, spec.embedding_length) {
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
        // Linear scaling divides every position of the global layers by the factor.
        if spec.rope_linear_factor != 1.0 {
            for x in inv_freqs.iter_mut() {
                *x /= spec.rope_linear_factor;
            }
        }
        // Sliding layers rotate with a base of their own (unscaled), as llama.cpp's
        // `get_rope_freq_base` gives them.
        let local_rope = spec
            .sliding
            .as_ref()
            .map(|_| rope::inv_freqs(spec.head_dim, spec.rope_freq_base_sliding));
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
            recipe,
            embed,
            layers,
            norm,
            output,
            inv_freqs,
            rope_scale,
            local_rope,
            device: device.clone(),
            weight_type,
            fused_decode,
            fused_prompt: fused_decode && device.is_cpu(),
        })
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
    /// The same header, with the formats of the tensors candle does not read.
    header: &'a super::gguf::Header,
    reader: &'a mut BufReader<File>,
    path: &'a Path,
    device: &'a Device,
    /// `None` on a GPU: weights run as stored.
    cpu_weights: Option<CpuWeights>,
    weight_type: Option<String>,
    /// [`LoadOptions::nudge`].
    nudge: Option<u64>,
}

impl Loader<'_> {
    /// One block (`blk.{i}` is `p`) as `recipe` stores it.
    fn layer(&mut self, recipe: &Recipe, p: &str) -> Result<Layer> {
        let biases = match recipe.bias {
            Bias::None => [None, None, None],
            Bias::Optional | Bias::Required => [
                self.optional_f32(&format!("{p}.attn_q.bias"))?,
                self.optional_f32(&format!("{p}.attn_k.bias"))?,
                self.optional_f32(&format!("{p}.attn_v.bias"))?,
            ],
        };
        if recipe.bias == Bias::Required && biases.iter().any(Option::is_none) {
            return Err(Error::MissingTensor(format!("{p}.attn_q/k/v.bias")));
        }
        let qk_norm = if recipe.qk_norm {
            Some([
                self.f32(&format!("{p}.attn_q_norm.weight"))?,
                self.f32(&format!("{p}.attn_k_norm.weight"))?,
            ])
        } else {
            None
        };
        let qkv = match recipe.qkv {
            Qkv::Separate => self.proj(&[
                &format!("{p}.attn_q.weight"),
                &format!("{p}.attn_k.weight"),
                &format!("{p}.attn_v.weight"),
            ])?,
            Qkv::Fused => self.proj(&[&format!("{p}.attn_qkv.weight")])?,
        };
        let up = format!("{p}.ffn_up.weight");
        let (gate_up, ffn_width) = match recipe.gate_up {
            GateUp::Separate => {
                let gate = format!("{p}.ffn_gate.weight");
                let rows = self.rows(&gate)?;
                (self.proj(&[&gate, &up])?, rows)
            }
            GateUp::Fused => {
                let rows = self.rows(&up)?;
                (self.proj(&[&up])?, rows / 2)
            }
        };
        let post_norms = if recipe.post_norms {
            Some([
                self.f32(&format!("{p}.post_attention_norm.weight"))?,
                self.f32(&format!("{p}.post_ffw_norm.weight"))?,
            ])
        } else {
            None
        };
        Ok(Layer {
            attn_norm: self.f32(&format!("{p}.attn_norm.weight"))?,
            qkv,
            biases,
            qk_norm,
            wo: self.proj(&[&format!("{p}.attn_output.weight")])?,
            ffn_norm: self.f32(&format!("{p}.ffn_norm.weight"))?,
            gate_up,
            ffn_width,
            down: self.proj(&[&format!("{p}.ffn_down.weight")])?,
            post_norms,
        })
    }

    /// A tensor of a format candle does not read (IQ4_NL, IQ4_XS), its blocks read as stored;
    /// `None` for any other tensor.
    fn foreign(&mut self, name: &str) -> Result<Option<QMatrix>> {
        let Some(format) = self.header.foreign(name) else {
            return Ok(None);
        };
        let info = &self.ct.tensor_infos[name];
        let invalid = |reason: String| Error::InvalidGguf {
            path: self.path.to_path_buf(),
            reason,
        };
        let (rows, cols) = match info.shape.dims() {
            [rows, cols] => (*rows, *cols),
            d => {
                return Err(invalid(format!(
                    "tensor {name} has shape {d:?}, expected a matrix"
                )))
            }
        };
        // `open_gguf` checked that it lies inside the file.
        let len = super::gguf::tensor_bytes(info, Some(format)).unwrap_or(0) as usize;
        let mut bytes = vec![0u8; len];
        self.reader
            .seek(SeekFrom::Start(self.ct.tensor_data_offset + info.offset))
            .and_then(|_| self.reader.read_exact(&mut bytes))
            .map_err(|e| invalid(format!("tensor {name}: {e}")))?;
        Ok(Some(QMatrix::from_blocks(format, rows, cols, bytes)?))
    }

    fn q(&mut self, name: &str) -> Result<QTensor> {
        if !self.ct.tensor_infos.contains_key(name) {
            return Err(Error::MissingTensor(name.to_string()));
        }
        if let Some(f) = self.header.foreign(name) {
            // Vectors (norms, biases) are never stored so; a file that does is not one
            // llama.cpp writes.
            return Err(Error::InvalidGguf {
                path: self.path.to_path_buf(),
                reason: format!(
                    "tensor {name} is stored as {}, which only matrices may be",
                    f.name()
                ),
            });
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
        if names.iter().any(|n| self.header.foreign(n).is_some()) {
            return self.foreign_proj(names);
        }
        let ts = names
            .iter()
            .map(|n| self.q(n))
            .collect::<Result<Vec<_>>>()?;
        let counts = is_layer(names);
        let native = self.ours();
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
                self.weight_type
                    .get_or_insert_with(|| format!("{:?}", ts[0].dtype()));
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
                self.weight_type
                    .get_or_insert_with(|| format!("{:?}", t.dtype()));
            }
            out.push(QMatMul::from_qtensor(t)?);
        }
        Ok(Proj::Each(out))
    }

    /// Whether matrices run through our kernels: the default loading, on a CPU that has them.
    fn ours(&self) -> bool {
        self.cpu_weights == Some(CpuWeights::Native) && qmatmul::available()
    }

    /// Notes the layers' weight type from the first matrix of a layer's group.
    fn note_weight_type(&mut self, names: &[&str]) {
        if is_layer(names) && self.weight_type.is_none() {
            let n = names[0];
            self.weight_type = Some(self.header.type_name(n, &self.ct.tensor_infos[n]));
        }
    }

    /// [`Loader::proj`] when some of the matrices are in a format only our kernels read:
    /// through them where they run (the CPU, with AVX2), as stored, beside the group's other
    /// matrices as stored (one of a type our kernels lack, F16 say, as Q8_0). Elsewhere (a GPU,
    /// an older CPU, the candle reference) candle runs the group: its own types as stored, ours
    /// dequantized and requantized to Q8_0 (close to the file, not its exact weights).
    fn foreign_proj(&mut self, names: &[&str]) -> Result<Proj> {
        self.note_weight_type(names);
        if !self.ours() {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let q = match self.foreign(n)? {
                    Some(m) => {
                        let w: Vec<f32> = (0..m.rows()).flat_map(|r| m.dequantize_row(r)).collect();
                        let bytes = quantize_q8_0(&w, m.rows(), m.cols())?;
                        candle_core::quantized::ggml_file::qtensor_from_ggml(
                            GgmlDType::Q8_0,
                            &bytes,
                            vec![m.rows(), m.cols()],
                            self.device,
                        )?
                    }
                    None => self.q(n)?,
                };
                out.push(QMatMul::from_qtensor(q)?);
            }
            return Ok(Proj::Each(out));
        }
        let mut mats = Vec::with_capacity(names.len());
        for n in names {
            let m = match self.foreign(n)? {
                Some(m) => m,
                None => {
                    let t = self.q(n)?;
                    if qmatmul::Format::of(t.dtype()).is_some() {
                        QMatrix::from_qtensor(&t)?
                    } else {
                        let (rows, cols) = t.shape().dims2()?;
                        let w = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
                        let bytes = quantize_q8_0(&w, rows, cols)?;
                        QMatrix::from_blocks(qmatmul::Format::Q8_0, rows, cols, bytes)?
                    }
                }
            };
            mats.push(Arc::new(m.for_kernels()));
        }
        Ok(Proj::Fused(QGroup::new(mats)?))
    }
}

/// Whether a group is a layer's (whose format is what the model "runs in"); the output matrix,
/// often kept at a higher precision, does not count.
fn is_layer(names: &[&str]) -> bool {
    !names
        .iter()
        .any(|n| *n == "output.weight" || *n == "token_embd.weight")
}

/// `w` (`rows` by `cols`, f32) as Q8_0 blocks, candle's quantizer.
fn quantize_q8_0(w: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>> {
    let t = Tensor::from_slice(w, (rows, cols), &Device::Cpu)?;
    Ok(QTensor::quantize(&t, GgmlDType::Q8_0)?.data()?.into_owned())
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
}
