//! Q4_1 matrix products on the CPU with AVX2, as a candle custom op.
//!
//! Why: candle has no SIMD kernel for Q4_1 (its `vec_dot` for Q4_1 is the scalar reference),
//! so the engine used to rewrite Q4_1 weights as Q8_0 at load. That made every decode step
//! read 143 MB of weights for SmolLM2-135M instead of 97, and the rewrite moved perplexity.
//! This kernel runs the weights exactly as the GGUF file stores them (the 20-byte blocks are
//! copied, not converted), so nothing about the model changes and a decode step reads the
//! fewest bytes.
//!
//! The arithmetic is llama.cpp's `ggml_vec_dot_q4_1_q8_1`, which candle's reference follows
//! too: each activation row is quantized to 8 bits per block of 32 (a scale `d` and the scaled
//! sum `s`, both rounded to f16 as in ggml), and a block's dot product is
//! `d_w * d_a * Σ q_w q_a + m_w * s_a`. The integer sums use `maddubs` (unsigned 4-bit weights
//! times signed 8-bit activations), four weight rows and two tokens per tile so a prompt reuses
//! each loaded block. Several matrices that read the same input (Q, K, V; gate, up) run as one
//! op: the input is quantized once and the threads split all their rows in one parallel region,
//! on candle's own persistent thread pool, so there is one wake-up per group, not per matrix.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;

use crate::{Error, Result};

const QK: usize = 32;

fn internal(msg: String) -> Error {
    Error::Compute(candle_core::Error::Msg(msg))
}

/// One Q4_1 block as GGUF stores it: scale `d` and minimum `m` (f16 bits), then 32 4-bit
/// values, element `j` in the low nibble of byte `j` and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct BlockQ4_1 {
    d: u16,
    m: u16,
    qs: [u8; QK / 2],
}

/// One quantized activation block: `d` and `s = d * Σ qs`, each already rounded to f16 (as
/// ggml's `block_q8_1`), kept as f32 so the kernel needs no conversion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

/// A Q4_1 weight matrix of `rows` outputs by `cols` inputs, row-major blocks.
#[derive(Debug)]
pub struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    blocks: Vec<BlockQ4_1>,
}

impl Q4_1Matrix {
    /// Copies the blocks of a Q4_1 tensor of shape `(rows, cols)`.
    pub fn from_qtensor(t: &QTensor) -> Result<Self> {
        if t.dtype() != GgmlDType::Q4_1 {
            return Err(internal(format!(
                "the Q4_1 kernel was given a {:?} tensor",
                t.dtype()
            )));
        }
        let (rows, cols) = t.shape().dims2()?;
        if cols % QK != 0 {
            return Err(internal(format!(
                "a Q4_1 matrix of {cols} columns is not whole blocks"
            )));
        }
        let data = t.data()?;
        let blocks: Vec<BlockQ4_1> = data
            .chunks_exact(std::mem::size_of::<BlockQ4_1>())
            .map(|b| BlockQ4_1 {
                d: u16::from_le_bytes([b[0], b[1]]),
                m: u16::from_le_bytes([b[2], b[3]]),
                qs: b[4..20].try_into().expect("16 bytes"),
            })
            .collect();
        if blocks.len() != rows * cols / QK {
            return Err(internal(format!(
                "a Q4_1 matrix of {rows}x{cols} holds {} blocks",
                blocks.len()
            )));
        }
        Ok(Self { rows, cols, blocks })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row(&self, r: usize) -> &[BlockQ4_1] {
        let nb = self.cols / QK;
        &self.blocks[r * nb..(r + 1) * nb]
    }
}

/// Whether this CPU runs the kernel (AVX2, FMA and F16C; checked once).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantizes one row of activations, as ggml's `quantize_row_q8_1` (and candle's
/// `BlockQ8_1::from_float`) do, f16 rounding of `d` and `s` included.
fn quantize_row(xs: &[f32], out: &mut [BlockQ8_1]) {
    for (x, y) in xs.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let d16 = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, v) in y.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        y.d = d16.to_f32();
        y.s = f16::from_f32(f16::from_f32(sum as f32).to_f32() * y.d).to_f32();
    }
}

/// The plain-Rust dot product of one weight row and one activation row (the reference the
/// SIMD tiles are tested against).
fn dot_scalar(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut si = 0i32;
        for j in 0..QK / 2 {
            si += (w.qs[j] & 0x0F) as i32 * a.qs[j] as i32;
            si += (w.qs[j] >> 4) as i32 * a.qs[j + QK / 2] as i32;
        }
        let (d, m) = (f16::from_bits(w.d).to_f32(), f16::from_bits(w.m).to_f32());
        sum += si as f32 * d * a.d + m * a.s;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockQ4_1, BlockQ8_1, QK};
    use std::arch::x86_64::*;

    /// Dot products of `R` weight rows (`w[r]`, `nb` blocks each) with `T` activation rows.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and every pointer must address `nb` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile<const R: usize, const T: usize>(
        w: [*const BlockQ4_1; R],
        a: [*const BlockQ8_1; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut mins = [[0f32; T]; R];
        for b in 0..nb {
            let mut qa = [_mm256_setzero_si256(); T];
            let mut da = [0f32; T];
            let mut sa = [0f32; T];
            for t in 0..T {
                // SAFETY: the caller guarantees `nb` blocks behind each pointer.
                let blk = unsafe { &*a[t].add(b) };
                qa[t] = unsafe { _mm256_loadu_si256(blk.qs.as_ptr() as *const __m256i) };
                da[t] = blk.d;
                sa[t] = blk.s;
            }
            for r in 0..R {
                // Ask for the block 8 ahead (160 bytes) now: decoding waits on these loads.
                // A hint only: it never faults, even past the end of the row.
                _mm_prefetch::<_MM_HINT_T0>(w[r].wrapping_add(b + 8) as *const i8);
                // SAFETY: as above.
                let blk = unsafe { &*w[r].add(b) };
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
                    (blk.d as u32 | ((blk.m as u32) << 16)) as i32,
                ));
                let dw = _mm_cvtss_f32(dm);
                let mw = _mm_cvtss_f32(_mm_movehdup_ps(dm));
                let raw = unsafe { _mm_loadu_si128(blk.qs.as_ptr() as *const __m128i) };
                let qw = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                for t in 0..T {
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qa[t]), ones);
                    acc[r][t] = _mm256_fmadd_ps(
                        _mm256_set1_ps(dw * da[t]),
                        _mm256_cvtepi32_ps(p),
                        acc[r][t],
                    );
                    mins[r][t] += mw * sa[t];
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum(acc[r][t]) + mins[r][t];
            }
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    const _: () = assert!(QK == 32);
}

/// Rows of one matrix for tokens `t0..t1`, written to `out[t * ld + col0 + r]`.
///
/// # Safety
/// `out` must be valid for those writes, and no other thread may write the same elements.
unsafe fn run_rows(
    m: &Q4_1Matrix,
    rows: std::ops::Range<usize>,
    acts: &[BlockQ8_1],
    tokens: std::ops::Range<usize>,
    out: *mut f32,
    ld: usize,
    col0: usize,
) {
    let nb = m.cols / QK;
    let act = |t: usize| acts[t * nb..].as_ptr();
    let put = |t: usize, r: usize, v: f32| {
        // SAFETY: the caller owns these elements.
        unsafe { *out.add(t * ld + col0 + r) = v }
    };
    #[cfg(target_arch = "x86_64")]
    if available() {
        let mut r = rows.start;
        while r + 4 <= rows.end {
            let w = [
                m.row(r).as_ptr(),
                m.row(r + 1).as_ptr(),
                m.row(r + 2).as_ptr(),
                m.row(r + 3).as_ptr(),
            ];
            let mut t = tokens.start;
            while t + 2 <= tokens.end {
                // SAFETY: AVX2/FMA/F16C checked; rows and activations hold `nb` blocks.
                let v = unsafe { avx2::tile::<4, 2>(w, [act(t), act(t + 1)], nb) };
                for (i, row) in v.iter().enumerate() {
                    put(t, r + i, row[0]);
                    put(t + 1, r + i, row[1]);
                }
                t += 2;
            }
            if t < tokens.end {
                // SAFETY: as above.
                let v = unsafe { avx2::tile::<4, 1>(w, [act(t)], nb) };
                for (i, row) in v.iter().enumerate() {
                    put(t, r + i, row[0]);
                }
            }
            r += 4;
        }
        for r in r..rows.end {
            for t in tokens.clone() {
                // SAFETY: as above.
                let v = unsafe { avx2::tile::<1, 1>([m.row(r).as_ptr()], [act(t)], nb) };
                put(t, r, v[0][0]);
            }
        }
        return;
    }
    for r in rows {
        for t in tokens.clone() {
            put(t, r, dot_scalar(m.row(r), &acts[t * nb..(t + 1) * nb]));
        }
    }
}

/// Tokens handled together inside one work item, so a thread's weight rows and the
/// activations they meet both stay in cache during a prompt.
const TOKEN_BLOCK: usize = 64;
/// Rows per work item (a multiple of the 4-row tile).
const ROW_BLOCK: usize = 16;

/// `x @ W^T` for every matrix of a group that reads the same input, outputs side by side.
#[derive(Debug, Clone)]
pub struct Q4_1Group {
    mats: Vec<Arc<Q4_1Matrix>>,
}

impl Q4_1Group {
    pub fn new(mats: Vec<Arc<Q4_1Matrix>>) -> Result<Self> {
        let Some(first) = mats.first() else {
            return Err(internal("an empty group of matrices".into()));
        };
        if mats.iter().any(|m| m.cols != first.cols) {
            return Err(internal(
                "matrices of one group must read the same input width".into(),
            ));
        }
        Ok(Self { mats })
    }

    /// Output widths, in order.
    pub fn widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.mats.iter().map(|m| m.rows)
    }

    /// Runs the group on `x` of shape `(..., cols)` and returns `(..., Σ rows)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1_no_bwd(self)?)
    }

    /// The product on plain slices: `x` holds `n` rows of `cols`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        let cols = self.mats[0].cols;
        let nb = cols / QK;
        let mut acts = vec![BlockQ8_1::default(); n * nb];
        for (xr, ar) in x.chunks_exact(cols).zip(acts.chunks_exact_mut(nb)) {
            quantize_row(xr, ar);
        }
        let ld: usize = self.widths().sum();
        let mut out = vec![0f32; n * ld];
        // Work items: (matrix, row block, token block).
        let mut items = Vec::new();
        let mut col0 = 0;
        for m in &self.mats {
            for r in (0..m.rows).step_by(ROW_BLOCK) {
                for t in (0..n).step_by(TOKEN_BLOCK) {
                    items.push((
                        m.as_ref(),
                        col0,
                        r..(r + ROW_BLOCK).min(m.rows),
                        t..(t + TOKEN_BLOCK).min(n),
                    ));
                }
            }
            col0 += m.rows;
        }
        let out_ptr = SendPtr(out.as_mut_ptr());
        let acts = &acts;
        let items = &items;
        let run = |range: std::ops::Range<usize>| {
            let p = out_ptr;
            for (m, col0, rows, toks) in &items[range] {
                // SAFETY: `out` outlives the parallel region, and the items cover disjoint
                // (token, column) elements, each item run by exactly one thread.
                unsafe { run_rows(m, rows.clone(), acts, toks.clone(), p.0, ld, *col0) };
            }
        };
        if items.len() == 1 {
            run(0..1);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(items.len(), run);
        }
        out
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only written at disjoint places by the pool's threads while the
// owning Vec is alive (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl CustomOp1 for Q4_1Group {
    fn name(&self) -> &'static str {
        "q4_1-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("the Q4_1 matmul takes f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the Q4_1 matmul takes contiguous input");
        };
        let dims = layout.shape().dims();
        let cols = self.mats[0].cols;
        if dims.last() != Some(&cols) {
            candle_core::bail!("the Q4_1 matmul expects {cols} inputs, got shape {dims:?}");
        }
        let x = &data[start..end];
        let n = x.len() / cols;
        let out = self.matmul(x, n);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty") = self.widths().sum();
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        // A small LCG: reproducible values in [-1, 1) with some large outliers.
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn q4_1(rows: usize, cols: usize, seed: u64) -> QTensor {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()
    }

    /// Every tile shape (4x2, 4x1 and the 1x1 tail), against candle's own Q4_1 matmul on the
    /// same blocks, and against the scalar reference here.
    #[test]
    fn matches_candle_q4_1_matmul() {
        // (candle's reference asserts an even number of blocks per row.)
        for (rows, cols, n) in [(64, 576, 1), (67, 128, 5), (192, 1536, 3), (8, 64, 130)] {
            let qt = q4_1(rows, cols, rows as u64 * 31 + cols as u64);
            let ours =
                Q4_1Group::new(vec![Arc::new(Q4_1Matrix::from_qtensor(&qt).unwrap())]).unwrap();
            let x = Tensor::from_vec(random(n * cols, 7 + n as u64), (1, n, cols), &Device::Cpu)
                .unwrap();
            let got = ours.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, n, rows]);
            let want = QMatMul::from_qtensor(qt).unwrap().forward(&x).unwrap();
            let (got, want) = (
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale,
                "{rows}x{cols}, {n} tokens: off by {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn simd_tiles_match_the_scalar_dot() {
        let (rows, cols, n) = (9, 160, 3);
        let m = Q4_1Matrix::from_qtensor(&q4_1(rows, cols, 5)).unwrap();
        let x = random(n * cols, 11);
        let nb = cols / QK;
        let mut acts = vec![BlockQ8_1::default(); n * nb];
        for (xr, ar) in x.chunks_exact(cols).zip(acts.chunks_exact_mut(nb)) {
            quantize_row(xr, ar);
        }
        let m = Arc::new(m);
        let got = Q4_1Group::new(vec![m.clone()]).unwrap().matmul(&x, n);
        for t in 0..n {
            for r in 0..rows {
                let want = dot_scalar(m.row(r), &acts[t * nb..(t + 1) * nb]);
                let g = got[t * rows + r];
                assert!(
                    (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "({t},{r}): {g} vs {want}"
                );
            }
        }
    }

    /// A group equals its matrices run one by one, side by side.
    #[test]
    fn a_group_concatenates_its_matrices() {
        let cols = 128;
        let mats: Vec<_> = [(32, 1u64), (12, 2), (40, 3)]
            .iter()
            .map(|&(r, s)| Arc::new(Q4_1Matrix::from_qtensor(&q4_1(r, cols, s)).unwrap()))
            .collect();
        let n = 3;
        let x = random(n * cols, 9);
        let all = Q4_1Group::new(mats.clone()).unwrap().matmul(&x, n);
        let ld = 84;
        let mut col0 = 0;
        for m in &mats {
            let one = Q4_1Group::new(vec![m.clone()]).unwrap().matmul(&x, n);
            for t in 0..n {
                assert_eq!(
                    &all[t * ld + col0..t * ld + col0 + m.rows],
                    &one[t * m.rows..(t + 1) * m.rows]
                );
            }
            col0 += m.rows;
        }
    }

    #[test]
    fn refuses_other_formats() {
        let w = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q4_1Matrix::from_qtensor(&q8).is_err());
    }
}
