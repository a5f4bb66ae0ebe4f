//! The ops of a block that candle does not give as we need them: projections that read the
//! same input run as one product ([`Proj`]), the split of a fused output, and the gated
//! feed-forward activations in one parallel pass of our own on the CPU.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, DType, Device, Layout, Module, Shape, Tensor, D};

use crate::qmatmul::QGroup;
use crate::Result;

/// Matrices that read the same input, run as one product where the kernel allows.
#[derive(Debug)]
pub(crate) enum Proj {
    /// Formats our kernels run, on the CPU: one op, the input quantized once per kind of
    /// activation block, one parallel region.
    Fused(QGroup),
    /// Anything else, one candle matmul each.
    Each(Vec<QMatMul>),
}

impl Proj {
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
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

    pub fn forward1(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Fused(g) => Ok(g.forward(x)?),
            Proj::Each(ms) => Ok(ms[0].forward(x)?),
        }
    }
}

/// The token embeddings. On the CPU they stay as the file stores them and only the rows of the
/// tokens read are dequantized: a 262K-token vocabulary in f32 takes four to eight times the
/// file's bytes (2.7 GB for Gemma 3 4B's, 0.7 GB for the 270M model's), for a lookup of a few
/// rows per step. Elsewhere, one f32 table on the device.
#[derive(Debug)]
pub(crate) enum Embeddings {
    Rows {
        /// The table's bytes, row after row.
        data: Vec<u8>,
        dtype: GgmlDType,
        rows: usize,
        width: usize,
    },
    Table(Tensor),
    /// A table in a format candle does not read (IQ4_NL, IQ4_XS): rows dequantized by our
    /// reference when looked up.
    Blocks(crate::qmatmul::QMatrix),
}

impl Embeddings {
    /// A table of blocks only our code reads: kept as stored on the CPU, in f32 on a GPU.
    pub fn from_blocks(m: crate::qmatmul::QMatrix, device: &Device) -> Result<Self> {
        if device.is_cpu() {
            return Ok(Embeddings::Blocks(m));
        }
        let w: Vec<f32> = (0..m.rows()).flat_map(|r| m.dequantize_row(r)).collect();
        Ok(Embeddings::Table(Tensor::from_vec(
            w,
            (m.rows(), m.cols()),
            device,
        )?))
    }

    pub fn new(q: QTensor, device: &Device) -> Result<Self> {
        let dims = q.shape().dims().to_vec();
        let [rows, width] = dims[..] else {
            return Ok(Embeddings::Table(q.dequantize(device)?));
        };
        if !device.is_cpu() || width % q.dtype().block_size() != 0 {
            return Ok(Embeddings::Table(q.dequantize(device)?));
        }
        Ok(Embeddings::Rows {
            data: q.data()?.into_owned(),
            dtype: q.dtype(),
            rows,
            width,
        })
    }

    /// `(rows, width)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Embeddings::Rows { rows, width, .. } => Ok((*rows, *width)),
            Embeddings::Blocks(m) => Ok((m.rows(), m.cols())),
            Embeddings::Table(t) => Ok(t.dims2()?),
        }
    }

    /// The rows of `ids`, `(n, width)` in f32. An id past the table is refused in words.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embeddings::Table(t) => Ok(t.index_select(&Tensor::new(ids, device)?, 0)?),
            Embeddings::Blocks(m) => {
                let mut out = Vec::with_capacity(ids.len() * m.cols());
                for &id in ids {
                    if id as usize >= m.rows() {
                        return Err(crate::Error::Internal(format!(
                            "token {id} is past the vocabulary of {}",
                            m.rows()
                        )));
                    }
                    out.extend(m.dequantize_row(id as usize));
                }
                Ok(Tensor::from_vec(out, (ids.len(), m.cols()), device)?)
            }
            Embeddings::Rows {
                data,
                dtype,
                rows,
                width,
            } => {
                let row_bytes = width / dtype.block_size() * dtype.type_size();
                let mut gathered = Vec::with_capacity(ids.len() * row_bytes);
                for &id in ids {
                    let id = id as usize;
                    if id >= *rows {
                        return Err(crate::Error::Internal(format!(
                            "token {id} is past the vocabulary of {rows}"
                        )));
                    }
                    gathered.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                let q = qtensor_from_ggml(*dtype, &gathered, vec![ids.len(), *width], device)?;
                Ok(q.dequantize(device)?)
            }
        }
    }
}

/// Splits a projection's outputs into `widths`: one output per width already (separate
/// matrices, or a fused group), or one output holding them side by side (Phi-3's fused
/// `attn_qkv` and `ffn_up`).
pub(crate) fn split_outputs(parts: Vec<Tensor>, widths: &[usize]) -> Result<Vec<Tensor>> {
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
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// (a decode step's one row and a prompt chunk's many, and a 3-d contiguous pair).
    /// A row looked up from the table as stored equals the same row of the table dequantized
    /// whole, for block formats and for f32.
    #[test]
    fn embedding_rows_equal_the_dequantized_table() {
        let vals: Vec<f32> = (0..7 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let t = Tensor::from_vec(vals, (7, 64), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::F32] {
            let q = QTensor::quantize(&t, dtype).unwrap();
            let whole = q.dequantize(&Device::Cpu).unwrap();
            let e = Embeddings::new(q, &Device::Cpu).unwrap();
            assert!(matches!(e, Embeddings::Rows { .. }), "{dtype:?}");
            assert_eq!(e.dims().unwrap(), (7, 64));
            let ids = [6u32, 0, 3, 3];
            let got = e.lookup(&ids, &Device::Cpu).unwrap();
            let want = whole
                .index_select(&Tensor::new(&ids[..], &Device::Cpu).unwrap(), 0)
                .unwrap();
            assert_eq!(
                got.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap(),
                "{dtype:?}"
            );
            assert!(e.lookup(&[7], &Device::Cpu).is_err());
        }
    }

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
