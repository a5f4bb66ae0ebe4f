//! One decode step's attention, reading the cache where it lies: on the CPU here, on a CUDA
//! GPU in `attend.cu` (same contract; the tests compare the two).
//!
//! Why: through candle, a one-token step costs a batched matmul `q · Kᵀ` (the gemm crate packs
//! the whole K window first, which alone took a tenth of a decode step), a softmax, a second
//! matmul with V, and, once the sinks are scored at their own places, a concatenation. Here
//! each query head walks its K/V head once, in place, and the heads are spread over candle's
//! thread pool. Prompt chunks (several queries, a mask) have their own CPU kernel,
//! [`PromptAttention`]; on a GPU they go through candle's matmuls.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, D};

use crate::par::SendPtr;
use crate::Result;

pub mod prompt;
pub use prompt::PromptAttention;

/// `softmax(q · Kᵀ · scale) · V` for one query per head.
///
/// Inputs: `q` of shape `(2, n_head, head_dim)` (the query rotated to its text position, then
/// rotated to its cache place) or `(1, n_head, head_dim)` when both are the same; `k` and `v`
/// of shape `(n_kv_head, capacity, head_dim)`. Slots `0..sinks` are scored with the second
/// query, slots `sinks..read` with the first. Output: `(n_head, head_dim)`.
///
/// With `rope` set, `q` is `(1, n_head, head_dim)` as the projection gave it, and the op rotates
/// it itself, to its text position and (when `rope.place` is set) to its cache place: on a GPU
/// that saves the launches of those rotations and of joining the two queries, which were what
/// made a streaming step dearer than a plain one.
#[derive(Debug, Clone, Copy)]
pub struct DecodeAttention<'a> {
    pub read: usize,
    pub sinks: usize,
    pub scale: f32,
    pub rope: Option<QueryRope<'a>>,
}

/// RoPE tables for the one query of a decode step: each `(1, head_dim / 2)` f32, from
/// [`crate::rope::tables`], on the op's device.
#[derive(Debug, Clone, Copy)]
pub struct QueryRope<'a> {
    /// `(cos, sin)` at the query's text position.
    pub text: (&'a Tensor, &'a Tensor),
    /// `(cos, sin)` at its cache place, which scores the sinks; `None` when no sinks are read
    /// apart from the window (or the two positions are equal).
    pub place: Option<(&'a Tensor, &'a Tensor)>,
    /// Rotate pairs `(i, i + d/2)` (GPT-NeoX style, qwen2) instead of `(2i, 2i + 1)`.
    pub neox: bool,
}

impl QueryRope<'_> {
    /// `q` (`(n_head, head_dim)` values) rotated with `(cos, sin)`, as `rope::apply` does.
    fn rotate(
        &self,
        q: &[f32],
        hd: usize,
        table: (&Tensor, &Tensor),
    ) -> candle_core::Result<Vec<f32>> {
        let cos = table.0.flatten_all()?.to_vec1::<f32>()?;
        let sin = table.1.flatten_all()?.to_vec1::<f32>()?;
        let half = hd / 2;
        if cos.len() != half || sin.len() != half {
            candle_core::bail!(
                "decode attention: RoPE tables of {} values for a head of {hd}",
                cos.len()
            );
        }
        let mut out = vec![0f32; q.len()];
        for (x, y) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
            for i in 0..half {
                let (i0, i1) = if self.neox {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (x[i0], x[i1]);
                y[i0] = x0 * cos[i] - x1 * sin[i];
                y[i1] = x0 * sin[i] + x1 * cos[i];
            }
        }
        Ok(out)
    }
}

impl DecodeAttention<'_> {
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        Ok(q.contiguous()?.apply_op3_no_bwd(k, v, self)?)
    }
}

fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(d) = s else {
        candle_core::bail!("attention: {what} must be f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("attention: {what} must be contiguous");
    };
    Ok(&d[a..b])
}

/// K or V of the cache as stored: f32, or f16 widened as it is read (with F16C, eight values
/// per instruction inside the dot product itself: a conversion call per row cost more than the
/// f16 cache saved in reading).
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    F16 { d: &'a [half::f16], simd: bool },
}

impl<'a> Rows<'a> {
    fn of(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<Self> {
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("attention: {what} must be contiguous");
        };
        Ok(match s {
            CpuStorage::F32(d) => Rows::F32(&d[a..b]),
            CpuStorage::F16(d) => Rows::F16 {
                d: &d[a..b],
                simd: f16_simd(),
            },
            _ => candle_core::bail!("attention: {what} must be f32 or f16"),
        })
    }

    /// `out.len()` values from `start`, widened to f32.
    fn widen(&self, start: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match *self {
            Rows::F32(d) => out.copy_from_slice(&d[start..start + out.len()]),
            Rows::F16 { d, .. } => d[start..start + out.len()].convert_to_f32_slice(out),
        }
    }

    /// `q · row j` (`hd` values from `start`).
    #[inline]
    fn dot(&self, q: &[f32], start: usize, j: usize) -> f32 {
        let at = start + j * q.len();
        match *self {
            Rows::F32(d) => dot(q, &d[at..at + q.len()]),
            Rows::F16 { d, simd } => {
                let row = &d[at..at + q.len()];
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: `simd` says the CPU has AVX2, FMA and F16C.
                    return unsafe { f16x86::dot(q, row) };
                }
                let _ = simd;
                q.iter().zip(row).map(|(a, b)| a * b.to_f32()).sum()
            }
        }
    }

    /// `y += w · row j` (`y.len()` values from `start`).
    #[inline]
    fn add_scaled(&self, w: f32, start: usize, j: usize, y: &mut [f32]) {
        let at = start + j * y.len();
        match *self {
            Rows::F32(d) => {
                let n = y.len();
                for (yd, vd) in y.iter_mut().zip(&d[at..at + n]) {
                    *yd += w * vd;
                }
            }
            Rows::F16 { d, simd } => {
                let row = &d[at..at + y.len()];
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: as in `dot`.
                    return unsafe { f16x86::add_scaled(w, row, y) };
                }
                let _ = simd;
                for (yd, vd) in y.iter_mut().zip(row) {
                    *yd += w * vd.to_f32();
                }
            }
        }
    }
}

/// Whether this CPU widens f16 with F16C and has AVX2 and FMA (checked once per step).
fn f16_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod f16x86 {
    use std::arch::x86_64::*;

    /// Eight f16 values from `p`, widened.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const half::f16) -> __m256 {
        // SAFETY: the caller guarantees eight readable values at `p`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p as *const __m128i) })
    }

    /// Eight f32 values of `a` from `i`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f32x8(a: &[f32], i: usize) -> __m256 {
        debug_assert!(i + 8 <= a.len());
        // SAFETY: the caller guarantees `i + 8 <= a.len()`.
        unsafe { _mm256_loadu_ps(a.as_ptr().add(i)) }
    }

    /// Eight f16 values of `b` from `i`, widened.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16x8(b: &[half::f16], i: usize) -> __m256 {
        debug_assert!(i + 8 <= b.len());
        // SAFETY: the caller guarantees `i + 8 <= b.len()`.
        unsafe { load8(b.as_ptr().add(i)) }
    }

    /// `a · b` over their common length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot(a: &[f32], b: &[half::f16]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY (each load): `i + 8 <= n` or `i + 16 <= n`, within both slices.
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(unsafe { f32x8(a, i) }, unsafe { f16x8(b, i) }, s0);
            s1 = _mm256_fmadd_ps(unsafe { f32x8(a, i + 8) }, unsafe { f16x8(b, i + 8) }, s1);
            i += 16;
        }
        if i + 8 <= n {
            s0 = _mm256_fmadd_ps(unsafe { f32x8(a, i) }, unsafe { f16x8(b, i) }, s0);
            i += 8;
        }
        let s = _mm256_add_ps(s0, s1);
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        let mut sum = _mm_cvtss_f32(h);
        for k in i..n {
            sum += a[k] * b[k].to_f32();
        }
        sum
    }

    /// `y += w · v` over their common length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn add_scaled(w: f32, v: &[half::f16], y: &mut [f32]) {
        let n = v.len().min(y.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`, within both slices.
            let acc = _mm256_fmadd_ps(wv, unsafe { f16x8(v, i) }, unsafe { f32x8(y, i) });
            unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(i), acc) };
            i += 8;
        }
        for k in i..n {
            y[k] += w * v[k].to_f32();
        }
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums, so the compiler keeps them in one vector register.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The shapes one call works on, checked.
struct Dims {
    nq: usize,
    nh: usize,
    hd: usize,
    cap: usize,
    /// Query heads per K/V head.
    rep: usize,
}

impl DecodeAttention<'_> {
    fn dims(&self, lq: &Layout, lk: &Layout, lv: &Layout) -> candle_core::Result<Dims> {
        let (nq, nh, hd) = lq.shape().dims3()?;
        let (nkv, cap, hd2) = lk.shape().dims3()?;
        if hd != hd2
            || lv.shape() != lk.shape()
            || nkv == 0
            || nh % nkv != 0
            || !(1..=2).contains(&nq)
        {
            candle_core::bail!(
                "decode attention: shapes q {:?}, K {:?}, V {:?} don't fit",
                lq.shape(),
                lk.shape(),
                lv.shape()
            );
        }
        if self.rope.is_some() && nq != 1 {
            candle_core::bail!("decode attention: rotates one query, not {nq}");
        }
        if hd % 2 != 0 {
            candle_core::bail!("decode attention: odd head size {hd}");
        }
        if self.read > cap || self.sinks > self.read {
            candle_core::bail!("decode attention: reads {} of {cap} slots", self.read);
        }
        if self.read == 0 {
            candle_core::bail!("decode attention: the cache is empty");
        }
        Ok(Dims {
            nq,
            nh,
            hd,
            cap,
            rep: nh / nkv,
        })
    }
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            f32s(sq, lq, "q")?,
            Rows::of(sk, lk, "K")?,
            Rows::of(sv, lv, "V")?,
        );
        let Dims {
            nq,
            nh,
            hd,
            cap,
            rep,
        } = self.dims(lq, lk, lv)?;
        // With `rope`, rotate here: queries laid out as (text, place?) like a rotated `q`.
        let rotated;
        let (q, nq) = match &self.rope {
            None => (q, nq),
            Some(r) => {
                let mut both = r.rotate(q, hd, r.text)?;
                if let Some(place) = r.place {
                    both.extend(r.rotate(q, hd, place)?);
                }
                rotated = both;
                (&rotated[..], rotated.len() / (nh * hd))
            }
        };
        let read = self.read;
        let mut out = vec![0f32; nh * hd];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let head = |h: usize| {
            let p = out_ptr;
            let head_start = (h / rep) * cap * hd;
            let q_text = &q[h * hd..(h + 1) * hd];
            let q_place = if nq == 2 {
                &q[(nh + h) * hd..(nh + h + 1) * hd]
            } else {
                q_text
            };
            let mut scores: Vec<f32> = (0..read)
                .map(|j| {
                    let qh = if j < self.sinks { q_place } else { q_text };
                    k.dot(qh, head_start, j) * self.scale
                })
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            let mut y = vec![0f32; hd];
            for (j, s) in scores.iter().enumerate() {
                v.add_scaled(s * inv, head_start, j, &mut y);
            }
            // SAFETY: each head writes only its own `hd` outputs, and `out` outlives the pool's
            // parallel region.
            unsafe { std::ptr::copy_nonoverlapping(y.as_ptr(), p.0.add(h * hd), hd) };
        };
        candle_core::utils::barrier_pool().execute_chunked(nh, |hs| hs.for_each(head));
        Ok((CpuStorage::F32(out), Shape::from((nh, hd))))
    }

    /// Two launches (`attend.cu`): per query head and chunk of 128 keys a partial softmax-
    /// weighted sum, then a merge of the chunks. Same contract as on the CPU.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        sq: &candle_core::CudaStorage,
        lq: &Layout,
        sk: &candle_core::CudaStorage,
        lk: &Layout,
        sv: &candle_core::CudaStorage,
        lv: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::{CudaStorage, WrapErr};

        const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attend.ptx"));
        const MODULE: &str = "sinkchat_attend";
        // Both as in attend.cu.
        const THREADS: usize = 128;
        const CHUNK: usize = 128;

        /// A contiguous view of `s` as `T`; `four`: the kernel reads it four values at a time
        /// (K and V rows), so it must start on a multiple of four.
        fn view<'a, T: candle_core::cuda_backend::CudaDType>(
            s: &'a CudaStorage,
            l: &Layout,
            what: &str,
            four: bool,
        ) -> candle_core::Result<CudaView<'a, T>> {
            let Some((a, b)) = l.contiguous_offsets() else {
                candle_core::bail!("decode attention: {what} must be contiguous");
            };
            if four && a % 4 != 0 {
                candle_core::bail!("decode attention: {what} must start on a multiple of 4 values");
            }
            Ok(s.as_cuda_slice::<T>()?.slice(a..b))
        }

        let Dims {
            nq,
            nh,
            hd,
            cap,
            rep,
        } = self.dims(lq, lk, lv)?;
        if hd % 4 != 0 {
            candle_core::bail!(
                "decode attention on a GPU needs a head size divisible by 4, not {hd}"
            );
        }
        let q = view::<f32>(sq, lq, "q", false)?;
        // The cache in f32, or in f16 (the compact memory): one kernel for each.
        let f16 = match (sk.dtype(), sv.dtype()) {
            (candle_core::DType::F32, candle_core::DType::F32) => false,
            (candle_core::DType::F16, candle_core::DType::F16) => true,
            (a, b) => candle_core::bail!("decode attention: K in {a:?} and V in {b:?}"),
        };
        let dev = sq.device();
        // The RoPE tables (read locks held until the launch is queued). Without `rope` the
        // kernel ignores them; q stands in so that every pointer is valid.
        let tables: Vec<&Tensor> = match &self.rope {
            None => vec![],
            Some(r) => {
                let (cp, sp) = r.place.unwrap_or(r.text);
                vec![r.text.0, r.text.1, cp, sp]
            }
        };
        let guards: Vec<_> = tables.iter().map(|t| t.storage_and_layout()).collect();
        let mut table_views = Vec::with_capacity(4);
        for (st, l) in &guards {
            let candle_core::Storage::Cuda(cs) = &**st else {
                candle_core::bail!("decode attention: RoPE tables must be on the GPU");
            };
            if l.shape().elem_count() != hd / 2 {
                candle_core::bail!(
                    "decode attention: RoPE tables of {:?} for a head of {hd}",
                    l.shape()
                );
            }
            table_views.push(view::<f32>(cs, l, "a RoPE table", false)?);
        }
        while table_views.len() < 4 {
            table_views.push(view::<f32>(sq, lq, "q", false)?);
        }
        let (two_q, rope_mode) = match &self.rope {
            None => (nq == 2, 0i32),
            Some(r) => (r.place.is_some(), if r.neox { 2 } else { 1 }),
        };
        let nsplit = self.read.div_ceil(CHUNK);
        // SAFETY: every element is written by the kernels below before it is read.
        let part = unsafe { dev.alloc::<f32>(nh * nsplit * (hd + 2))? };
        let out = unsafe { dev.alloc::<f32>(nh * hd)? };

        let name = if f16 {
            "sink_decode_partial_f16"
        } else {
            "sink_decode_partial_f32"
        };
        let partial = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let mut b = partial.builder();
        b.arg(&q);
        let (kh, vh, kf, vf);
        if f16 {
            kh = view::<half::f16>(sk, lk, "K", true)?;
            vh = view::<half::f16>(sv, lv, "V", true)?;
            b.arg(&kh);
            b.arg(&vh);
        } else {
            kf = view::<f32>(sk, lk, "K", true)?;
            vf = view::<f32>(sv, lv, "V", true)?;
            b.arg(&kf);
            b.arg(&vf);
        }
        for t in &table_views {
            b.arg(t);
        }
        b.arg(&part);
        candle_core::builder_arg!(
            b,
            nh as i32,
            rep as i32,
            cap as i32,
            hd as i32,
            self.read as i32,
            self.sinks as i32,
            i32::from(two_q),
            rope_mode,
            self.scale
        );
        let cfg = LaunchConfig {
            grid_dim: (nh as u32, nsplit as u32, 1),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: ((2 * hd + CHUNK + THREADS + THREADS / 32) * 4) as u32,
        };
        // SAFETY: the arguments match the kernel's signature; the shapes were checked above.
        unsafe { b.launch(cfg) }.w()?;

        let combine = dev.get_or_load_custom_func("sink_decode_combine", MODULE, PTX)?;
        let mut b = combine.builder();
        b.arg(&part);
        b.arg(&out);
        candle_core::builder_arg!(b, hd as i32, nsplit as i32);
        let cfg = LaunchConfig {
            grid_dim: (nh as u32, 1, 1),
            block_dim: (hd.min(1024) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((nh, hd)),
        ))
    }
}

/// Checks [`DecodeAttention`] on `device` against candle's matmul/softmax computed on the CPU,
/// on deterministic values: sequence lengths on and around the GPU kernel's 128-key chunks, one
/// or two queries, given rotated or rotated by the op (both RoPE pairings), head sizes 64, 128
/// and 80, grouped-query heads, the cache in f32 and in f16. Returns the largest absolute
/// difference over all outputs (the values are in [-1, 1]). The GPU benchmarks run it first, so
/// their figures come with proof that the fast path computes the same thing there.
pub fn max_error_against_reference(device: &Device) -> Result<f32> {
    let cases = [
        // (nkv, rep, cap, hd, read, sinks, queries)
        (2, 3, 40, 64, 29, 4, 2),
        (2, 3, 40, 64, 29, 0, 2),
        (3, 3, 5000, 64, 1, 0, 1),
        (3, 3, 5000, 64, 127, 4, 2),
        (3, 3, 5000, 64, 128, 4, 2),
        (3, 3, 5000, 64, 129, 4, 2),
        (3, 3, 5000, 64, 1024, 4, 2),
        (3, 3, 5000, 64, 4100, 16, 2),
        (1, 4, 300, 128, 300, 0, 1),
        (2, 2, 200, 80, 150, 4, 2),
    ];
    let mut worst = 0f32;
    for (i, &(nkv, rep, cap, hd, read, sinks, nq)) in cases.iter().enumerate() {
        let nh = nkv * rep;
        let seed = 10 * i as u32;
        let scale = 1.0 / (hd as f32).sqrt();
        let on = |t: &Tensor| t.to_device(device);
        let diff = |got: Tensor, want: Tensor| -> Result<f32> {
            Ok((got.to_device(&Device::Cpu)? - want)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?)
        };
        // The cache in f32, and in f16 (the compact memory, read widened): the reference
        // computes on the very values the cache holds.
        for f16 in [false, true] {
            let stored =
                |t: Tensor| -> Result<Tensor> { Ok(if f16 { t.to_dtype(DType::F16)? } else { t }) };
            let k = stored(test_values(&[nkv, cap, hd], seed + 1)?)?;
            let v = stored(test_values(&[nkv, cap, hd], seed + 2)?)?;
            let (k_d, v_d) = (on(&k)?, on(&v)?);
            let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
            // Queries given rotated.
            let q = test_values(&[nq, nh, hd], seed + 3)?;
            let op = DecodeAttention {
                read,
                sinks,
                scale,
                rope: None,
            };
            let want = reference(&q, &k, &v, op)?;
            worst = worst.max(diff(op.forward(&on(&q)?, &k_d, &v_d)?, want)?);
            // The raw query, rotated by the op: to text position 3,000,017 and, with two
            // queries, to cache place 1,021 (a long conversation's numbers), both pairings of
            // dimensions.
            let raw = test_values(&[1, nh, hd], seed + 4)?;
            let freqs = crate::rope::inv_freqs(hd, 10_000.0);
            let text = crate::rope::tables(&[3_000_017], &freqs, &Device::Cpu)?;
            let place = crate::rope::tables(&[1_021], &freqs, &Device::Cpu)?;
            let neox = i % 2 == 1;
            let rot = |t: &(Tensor, Tensor)| -> Result<Tensor> {
                crate::rope::apply(&raw.reshape((1, nh, 1, hd))?, &t.0, &t.1, neox)?
                    .reshape((1, nh, hd))
                    .map_err(Into::into)
            };
            let q_both = if nq == 2 {
                Tensor::cat(&[rot(&text)?, rot(&place)?], 0)?
            } else {
                rot(&text)?
            };
            let want = reference(&q_both, &k, &v, op)?;
            let (text_d, place_d) = ((on(&text.0)?, on(&text.1)?), (on(&place.0)?, on(&place.1)?));
            let op = DecodeAttention {
                rope: Some(QueryRope {
                    text: (&text_d.0, &text_d.1),
                    place: (nq == 2).then_some((&place_d.0, &place_d.1)),
                    neox,
                }),
                ..op
            };
            worst = worst.max(diff(op.forward(&on(&raw)?, &k_d, &v_d)?, want)?);
        }
    }
    Ok(worst)
}

/// Deterministic values in [-1, 1] on the CPU.
fn test_values(shape: &[usize], seed: u32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0
                - 1.0
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// candle's matmul/softmax on the same values: the sinks scored with the last query, the rest
/// of the first `read` slots with the first.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor, op: DecodeAttention) -> Result<Tensor> {
    let (nkv, _, hd) = k.dims3()?;
    let (nq, nh, _) = q.dims3()?;
    let (read, sinks) = (op.read, op.sinks);
    let q_text = q.get(0)?.reshape((nkv, nh / nkv, hd))?;
    let q_place = q.get(nq - 1)?.reshape((nkv, nh / nkv, hd))?;
    let kr = k.narrow(1, 0, read)?;
    let s_text = q_text.matmul(&kr.t()?)?;
    let s_place = q_place.matmul(&kr.t()?)?;
    let s = Tensor::cat(
        &[
            s_place.narrow(D::Minus1, 0, sinks)?,
            s_text.narrow(D::Minus1, sinks, read - sinks)?,
        ],
        D::Minus1,
    )?;
    let p = candle_nn::ops::softmax_last_dim(&(s * op.scale as f64)?)?;
    Ok(p.matmul(&v.narrow(1, 0, read)?)?.reshape((nh, hd))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against candle's matmul/softmax on the same values, with and without the sinks scored
    /// by a second query, for grouped-query heads.
    #[test]
    fn matches_candle_attention() {
        let err = max_error_against_reference(&Device::Cpu).unwrap();
        assert!(err < 1e-5, "off by {err}");
    }

    /// The CUDA kernels against the same reference, the cache in f32 and in f16. Runs where the
    /// `cuda` feature is built and a GPU is present; CI builds it against the stub driver
    /// (`scripts/cuda-toolkit.sh`), finds no device and says so; the GPU benchmarks run the same
    /// check first.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_matches_candle_attention() {
        let Ok(gpu) = Device::new_cuda(0) else {
            eprintln!("no CUDA device: skipped");
            return;
        };
        let err = max_error_against_reference(&gpu).unwrap();
        assert!(err < 1e-5, "off by {err}");
    }

    /// An f16 cache: the op reads the f16 values as they are stored (widened exactly), so it
    /// equals the reference on the same values widened to f32.
    #[test]
    fn reads_an_f16_cache() {
        let (nkv, rep, cap, hd, read, sinks) = (2, 3, 40, 64, 37, 4);
        let nh = nkv * rep;
        let half = |t: Tensor| t.to_dtype(DType::F16).unwrap();
        let k16 = half(test_values(&[nkv, cap, hd], 7).unwrap());
        let v16 = half(test_values(&[nkv, cap, hd], 8).unwrap());
        let q = test_values(&[2, nh, hd], 9).unwrap();
        let op = DecodeAttention {
            read,
            sinks,
            scale: 0.125,
            rope: None,
        };
        let widen = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let want = reference(&q, &widen(&k16), &widen(&v16), op).unwrap();
        let got = op.forward(&q, &k16, &v16).unwrap();
        let err = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-5, "off by {err}");
    }

    /// The F16C path and the plain one agree, on every length around the 8- and 16-value steps.
    #[test]
    fn f16_rows_read_alike_with_and_without_simd() {
        for n in 1..=40usize {
            let q: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
            let d: Vec<half::f16> = (0..3 * n)
                .map(|i| half::f16::from_f32(((i * 5 % 13) as f32 - 6.0) / 4.0))
                .collect();
            let plain = Rows::F16 { d: &d, simd: false };
            let fast = Rows::F16 {
                d: &d,
                simd: f16_simd(),
            };
            for j in 0..3 {
                let (a, b) = (plain.dot(&q, 0, j), fast.dot(&q, 0, j));
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "n {n} row {j}: {a} {b}"
                );
                let (mut ya, mut yb) = (q.clone(), q.clone());
                plain.add_scaled(0.37, 0, j, &mut ya);
                fast.add_scaled(0.37, 0, j, &mut yb);
                for (a, b) in ya.iter().zip(&yb) {
                    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "n {n} row {j}");
                }
            }
        }
    }

    /// Reading past the 8 slots of the cache, or reading none.
    #[test]
    fn refuses_reads_the_cache_cannot_serve() {
        let k = test_values(&[1, 8, 32], 1).unwrap();
        let q = test_values(&[1, 2, 32], 2).unwrap();
        for read in [9, 0] {
            let op = DecodeAttention {
                read,
                sinks: 0,
                scale: 1.0,
                rope: None,
            };
            assert!(op.forward(&q, &k, &k).is_err(), "read {read}");
        }
    }
}
