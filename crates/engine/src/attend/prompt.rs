//! A prompt chunk's attention (several queries at once), reading the cache in place, on the CPU.
//!
//! Why: through candle a chunk of `n` queries over `read` slots cost a widened copy of K and V
//! (an f16 cache), a batched matmul `q · Kᵀ` over every slot (the causal half included), a
//! pass to scale the scores, one to add an `(n, read)` mask built on one thread, a softmax that
//! calls `expf` on all `n · read` scores (the masked half too), a second matmul with V and a
//! transpose: about a third of a 512-token prompt on SmolLM2, much of it on one thread while
//! the other waited. Here each query head takes four queries at a time: their scores against
//! 32 slots come from one register tile (K transposed once per chunk, so a row of it is 32
//! consecutive slots), blocks of slots that every query of the four has yet to reach are
//! skipped, visibility is decided from the slots' text positions as the mask did, and the
//! softmax-weighted sum of V is a second register tile. The order of additions differs from
//! candle's (the tests bound the difference), and `e^x` is ours, within 2 ulp where libm's
//! `expf` is within 1; nothing else is approximated.
//!
//! Same contract as [`super::DecodeAttention`] for the sinks: slots `0..sinks` are scored with
//! the query rotated to its cache place, the rest with the query rotated to its text position.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::{f32s, Rows};
use crate::par::SendPtr;
use crate::vecmath::{exp_neg, fma};
use crate::Result;

/// Queries of one head taken together (the rows of a register tile).
const TQ: usize = 4;
/// Slots scored together (the columns of a register tile; two 16-lane vectors).
const KB: usize = 32;

/// `softmax(q · Kᵀ · scale + mask) · V` for a chunk of queries, the mask given by positions.
///
/// Inputs: `q` of shape `(1 | 2, n_head, n, head_dim)`: the queries rotated to their text
/// positions, then (with `sinks > 0`) rotated to their cache places; `k` and `v` of shape
/// `(n_kv_head, capacity, head_dim)`, f32 or f16. Output: `(n, n_head · head_dim)`, the heads of
/// each query side by side (what the output projection reads).
///
/// Query `i` (text position `q_pos[i]`) sees slot `j` (holding text position `p =
/// slot_pos[j]`) unless the slot is empty (`u64::MAX`), `p > q_pos[i]`, or, for a window token
/// (`p >= pinned`), `q_pos[i] - p >= view`: exactly [`crate::SinkCache`]'s mask.
#[derive(Debug, Clone, Copy)]
pub struct PromptAttention<'a> {
    /// Slots read: `slot_pos.len()`.
    pub read: usize,
    /// Slots scored with the second query (0: `q` holds one).
    pub sinks: usize,
    pub scale: f32,
    /// Text position held by each slot read, `u64::MAX` for none.
    pub slot_pos: &'a [u64],
    /// Text position of each query.
    pub q_pos: &'a [u64],
    /// Slots holding positions below this are pinned: never hidden by `view`.
    pub pinned: u64,
    /// Window tokens this far behind a query or more are hidden (evaluation only; `u64::MAX`).
    pub view: u64,
}

impl PromptAttention<'_> {
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        Ok(q.contiguous()?.apply_op3_no_bwd(k, v, self)?)
    }

    #[inline]
    fn sees(&self, q: u64, p: u64) -> bool {
        crate::cache::visible(q, p, self.pinned, self.view)
    }
}

/// Slots widened per work item of the preparation.
const PREP: usize = 64;

impl CustomOp3 for PromptAttention<'_> {
    fn name(&self) -> &'static str {
        "prompt-attention"
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
        let q = f32s(sq, lq, "q")?;
        let (ks, vs) = (Rows::of(sk, lk, "K")?, Rows::of(sv, lv, "V")?);
        let (nq, nh, n, hd) = lq.shape().dims4()?;
        let (nkv, cap, hd2) = lk.shape().dims3()?;
        let read = self.read;
        if hd != hd2
            || lv.shape() != lk.shape()
            || nkv == 0
            || nh % nkv != 0
            || nq != 1 + usize::from(self.sinks > 0)
            || self.q_pos.len() != n
            || self.slot_pos.len() != read
            || read == 0
            || read > cap
            || self.sinks > read
            || n == 0
        {
            candle_core::bail!(
                "prompt attention: q {:?}, K {:?}, V {:?}, {} positions, {read} slots, {} sinks don't fit",
                lq.shape(),
                lk.shape(),
                lv.shape(),
                self.q_pos.len(),
                self.sinks
            );
        }
        let rep = nh / nkv;
        let padded = read.div_ceil(KB) * KB;
        let blocks = padded / KB;

        // K of each head transposed (`hd` rows of `padded` slots, zero past `read`), and V
        // widened when it is f16 (an f32 V is read where it lies): once per chunk, in parallel.
        let mut kt = vec![0f32; nkv * hd * padded];
        let mut v16 = match vs {
            Rows::F16 { .. } => vec![0f32; nkv * read * hd],
            Rows::F32(_) => Vec::new(),
        };
        {
            let (kt_ptr, v_ptr) = (SendPtr(kt.as_mut_ptr()), SendPtr(v16.as_mut_ptr()));
            let parts = read.div_ceil(PREP);
            let prep = |item: usize| {
                let (kt_ptr, v_ptr) = (kt_ptr, v_ptr);
                let (g, j0) = (item / parts, (item % parts) * PREP);
                let m = PREP.min(read - j0);
                let src = (g * cap + j0) * hd;
                let mut rows = vec![0f32; m * hd];
                ks.widen(src, &mut rows);
                for d in 0..hd {
                    // SAFETY: item (g, j0) writes only slots j0..j0 + m of head g's rows, and
                    // `kt` outlives the pool's parallel region.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(kt_ptr.0.add((g * hd + d) * padded + j0), m)
                    };
                    for (l, o) in dst.iter_mut().enumerate() {
                        *o = rows[l * hd + d];
                    }
                }
                if matches!(vs, Rows::F16 { .. }) {
                    // SAFETY: as above, slots j0..j0 + m of head g's V.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(v_ptr.0.add((g * read + j0) * hd), m * hd)
                    };
                    vs.widen(src, dst);
                }
            };
            candle_core::utils::barrier_pool()
                .execute_chunked(nkv * parts, |items| items.for_each(prep));
        }
        // Head g's V rows.
        let v_rows = |g: usize| -> &[f32] {
            match vs {
                Rows::F16 { .. } => &v16[g * read * hd..(g + 1) * read * hd],
                Rows::F32(d) => &d[g * cap * hd..g * cap * hd + read * hd],
            }
        };

        // The lowest and highest text positions in each block of slots: a block whose lowest
        // is past every query of a tile is skipped whole (the causal half of a chunk); one
        // whose highest every query has reached (and that holds no empty slot) needs no mask.
        let (block_min, block_max): (Vec<u64>, Vec<u64>) = (0..blocks)
            .map(|b| {
                let s = &self.slot_pos[b * KB..read.min((b + 1) * KB)];
                let min = s.iter().copied().min().unwrap_or(u64::MAX);
                let max = if s.len() < KB {
                    u64::MAX
                } else {
                    s.iter().copied().max().unwrap_or(u64::MAX)
                };
                (min, max)
            })
            .unzip();

        #[cfg(target_arch = "x86_64")]
        let avx512 = std::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        let tiles = n.div_ceil(TQ);
        let width = nh * hd;
        let mut out = vec![0f32; n * width];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let (kt, block_min, block_max) = (&kt, &block_min, &block_max);
        let work = |item: usize| {
            let p = out_ptr;
            let (h, tile) = (item / tiles, item % tiles);
            let g = h / rep;
            let kt = &kt[g * hd * padded..(g + 1) * hd * padded];
            let i0 = tile * TQ;
            let tq = TQ.min(n - i0);
            let row = |which: usize, i: usize| {
                let at = ((which * nh + h) * n + i) * hd;
                &q[at..at + hd]
            };
            let mut qt = vec![0f32; TQ * hd];
            for t in 0..tq {
                qt[t * hd..(t + 1) * hd].copy_from_slice(row(0, i0 + t));
            }
            let q_pos = &self.q_pos[i0..i0 + tq];
            let q_max = q_pos.iter().copied().max().unwrap_or(0);
            let q_min = q_pos.iter().copied().min().unwrap_or(0);

            // Scores of the blocks any query of the tile reaches.
            let mut scores = vec![f32::NEG_INFINITY; TQ * padded];
            // Rows past the chunk's last query weigh nothing.
            scores[tq * padded..].fill(0.0);
            let mut last_block = 0;
            for b in 0..blocks {
                if block_min[b] > q_max {
                    continue;
                }
                last_block = b + 1;
                let acc = score_tile(avx512, &qt, hd, &kt[b * KB..], padded);
                let unmasked = self.view == u64::MAX && block_max[b] <= q_min;
                for t in 0..tq {
                    let dst = &mut scores[t * padded + b * KB..t * padded + (b + 1) * KB];
                    if unmasked {
                        for (o, a) in dst.iter_mut().zip(&acc[t]) {
                            *o = a * self.scale;
                        }
                        continue;
                    }
                    for (l, (o, a)) in dst.iter_mut().zip(&acc[t]).enumerate() {
                        let j = b * KB + l;
                        if j < read && self.sees(q_pos[t], self.slot_pos[j]) {
                            *o = a * self.scale;
                        }
                    }
                }
            }
            // The sinks, with each query at its cache place.
            for t in 0..tq {
                let place = if self.sinks > 0 {
                    row(1, i0 + t)
                } else {
                    &[][..]
                };
                for j in 0..self.sinks {
                    if self.sees(q_pos[t], self.slot_pos[j]) {
                        let s = (0..hd).fold(0f32, |s, d| fma(place[d], kt[d * padded + j], s));
                        scores[t * padded + j] = s * self.scale;
                    }
                }
            }

            // Softmax over the slots reached, then the weighted sum of V.
            let span = (last_block * KB).min(read);
            let mut inv = [0f32; TQ];
            for t in 0..tq {
                let s = &mut scores[t * padded..t * padded + span];
                let max = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                if max == f32::NEG_INFINITY {
                    // Nothing visible (never for a query that sees itself): zeros.
                    s.fill(0.0);
                    continue;
                }
                for x in s.iter_mut() {
                    *x = exp_neg(*x - max);
                }
                inv[t] = 1.0 / sum(s);
            }
            let mut y = vec![0f32; TQ * hd];
            weighted_sum(&scores, padded, span, v_rows(g), hd, &mut y);
            for t in 0..tq {
                let at = (i0 + t) * width + h * hd;
                for x in &mut y[t * hd..(t + 1) * hd] {
                    *x *= inv[t];
                }
                // SAFETY: item (h, tile) writes only its own queries' head `h`; `out` outlives
                // the pool's parallel region.
                unsafe { std::ptr::copy_nonoverlapping(y[t * hd..].as_ptr(), p.0.add(at), hd) };
            }
        };
        candle_core::utils::barrier_pool()
            .execute_chunked(nh * tiles, |items| items.for_each(work));
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }
}

/// The sum of `s`, in sixteen lanes (a loop the compiler vectorizes).
#[inline]
fn sum(s: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = s.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `Σ_d qt[t·hd + d] · kt[d·stride + l]` for four queries `t` against 32 slots `l`.
#[inline]
fn score_tile(avx512: bool, qt: &[f32], hd: usize, kt: &[f32], stride: usize) -> [[f32; KB]; TQ] {
    assert!(qt.len() >= TQ * hd && (hd == 0 || (hd - 1) * stride + KB <= kt.len()));
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: `avx512` says the CPU has AVX-512 F; the bounds are asserted above.
        return unsafe { score_tile_avx512(qt, hd, kt, stride) };
    }
    let _ = avx512;
    let mut acc = [[0f32; KB]; TQ];
    for d in 0..hd {
        let k = &kt[d * stride..d * stride + KB];
        for t in 0..TQ {
            let x = qt[t * hd + d];
            for l in 0..KB {
                acc[t][l] = fma(x, k[l], acc[t][l]);
            }
        }
    }
    acc
}

/// [`score_tile`] in AVX-512: the 128 sums in eight named registers across the whole head
/// (written with arrays, the compiler stored them back to memory at every step).
///
/// # Safety
/// The CPU has AVX-512 F; `qt` holds `TQ · hd` values and `kt` `(hd - 1) · stride + KB`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn score_tile_avx512(qt: &[f32], hd: usize, kt: &[f32], stride: usize) -> [[f32; KB]; TQ] {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_ps();
    let (mut a0, mut a1, mut b0, mut b1, mut c0, mut c1, mut e0, mut e1) = (z, z, z, z, z, z, z, z);
    let (q, k) = (qt.as_ptr(), kt.as_ptr());
    for d in 0..hd {
        // SAFETY (loads): within `kt` and `qt` by the caller's bounds.
        let (k0, k1) = unsafe {
            (
                _mm512_loadu_ps(k.add(d * stride)),
                _mm512_loadu_ps(k.add(d * stride + 16)),
            )
        };
        let x = unsafe { _mm512_set1_ps(*q.add(d)) };
        a0 = _mm512_fmadd_ps(x, k0, a0);
        a1 = _mm512_fmadd_ps(x, k1, a1);
        let x = unsafe { _mm512_set1_ps(*q.add(hd + d)) };
        b0 = _mm512_fmadd_ps(x, k0, b0);
        b1 = _mm512_fmadd_ps(x, k1, b1);
        let x = unsafe { _mm512_set1_ps(*q.add(2 * hd + d)) };
        c0 = _mm512_fmadd_ps(x, k0, c0);
        c1 = _mm512_fmadd_ps(x, k1, c1);
        let x = unsafe { _mm512_set1_ps(*q.add(3 * hd + d)) };
        e0 = _mm512_fmadd_ps(x, k0, e0);
        e1 = _mm512_fmadd_ps(x, k1, e1);
    }
    let mut acc = [[0f32; KB]; TQ];
    for (row, (lo, hi)) in acc.iter_mut().zip([(a0, a1), (b0, b1), (c0, c1), (e0, e1)]) {
        // SAFETY: each row holds 32 values.
        unsafe {
            _mm512_storeu_ps(row.as_mut_ptr(), lo);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), hi);
        }
    }
    acc
}

/// `y[t] = Σ_j p[t][j] · v[j]` over the first `span` slots, for four queries.
#[inline]
fn weighted_sum(p: &[f32], stride: usize, span: usize, v: &[f32], hd: usize, y: &mut [f32]) {
    match hd {
        64 => weighted_sum_n::<64>(p, stride, span, v, y),
        128 => weighted_sum_n::<128>(p, stride, span, v, y),
        _ => {
            for j in 0..span {
                let row = &v[j * hd..(j + 1) * hd];
                for t in 0..TQ {
                    let w = p[t * stride + j];
                    for (yd, vd) in y[t * hd..(t + 1) * hd].iter_mut().zip(row) {
                        *yd = fma(w, *vd, *yd);
                    }
                }
            }
        }
    }
}

/// [`weighted_sum`] for a head size known at compile time: the four rows of `HD` sums stay in
/// registers across the slots.
#[inline]
fn weighted_sum_n<const HD: usize>(
    p: &[f32],
    stride: usize,
    span: usize,
    v: &[f32],
    y: &mut [f32],
) {
    let mut acc = [[0f32; HD]; TQ];
    for j in 0..span {
        let row: &[f32; HD] = v[j * HD..(j + 1) * HD].try_into().unwrap();
        for t in 0..TQ {
            let w = p[t * stride + j];
            for d in 0..HD {
                acc[t][d] = fma(w, row[d], acc[t][d]);
            }
        }
    }
    for t in 0..TQ {
        y[t * HD..(t + 1) * HD].copy_from_slice(&acc[t]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Deterministic values in [-1, 1].
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((x >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The definition, in f64: for each query and head, the visible slots' scores (the sinks
    /// with the place query), their softmax, the weighted sum of V.
    fn reference(
        op: &PromptAttention,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: [usize; 5],
    ) -> Vec<f32> {
        let [nh, n, hd, nkv, cap] = dims;
        let rep = nh / nkv;
        let mut out = vec![0f32; n * nh * hd];
        for i in 0..n {
            for h in 0..nh {
                let base = (h / rep) * cap * hd;
                let mut s = Vec::new();
                for j in 0..op.read {
                    // `SinkCache::mask`'s rule, written out apart from the op's.
                    let (qp, p) = (op.q_pos[i], op.slot_pos[j]);
                    let hidden = p >= op.pinned && p <= qp && qp - p >= op.view;
                    if p == u64::MAX || p > qp || hidden {
                        continue;
                    }
                    let which = usize::from(j < op.sinks);
                    let qr = &q[((which * nh + h) * n + i) * hd..][..hd];
                    let kr = &k[base + j * hd..][..hd];
                    let dot: f64 = qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    s.push((j, dot * op.scale as f64));
                }
                let max = s.iter().fold(f64::NEG_INFINITY, |a, b| a.max(b.1));
                let z: f64 = s.iter().map(|x| (x.1 - max).exp()).sum();
                for d in 0..hd {
                    let y: f64 = s
                        .iter()
                        .map(|&(j, x)| (x - max).exp() / z * v[base + j * hd + d] as f64)
                        .sum();
                    out[i * nh * hd + h * hd + d] = y as f32;
                }
            }
        }
        out
    }

    /// Cases a chat meets: a first prompt (slots in order, causal), a chunk after the ring has
    /// wrapped (slots out of order, evicted holes, sinks scored at their places), a view, odd
    /// counts of queries and slots, head sizes with and without a fixed-size path, grouped
    /// heads, f32 and f16 caches.
    #[test]
    fn equals_the_definition() {
        let mut worst = 0f32;
        for (case, &(hd, n, read, sinks, wrapped, view)) in [
            (64, 13, 13, 0, false, u64::MAX),
            (64, 5, 70, 4, true, u64::MAX),
            (128, 9, 41, 4, true, u64::MAX),
            (48, 7, 37, 0, false, u64::MAX),
            (64, 1, 45, 4, true, u64::MAX),
            (64, 11, 40, 4, false, 6),
        ]
        .iter()
        .enumerate()
        {
            let (nkv, rep, cap) = (2, 3, read + 3);
            let nh = nkv * rep;
            // Slot positions: sinks 0..4 then the window; wrapped: the ring's oldest half sits
            // after its newest, and two slots are evicted holes.
            let total = read - sinks;
            let mut slot_pos: Vec<u64> = (0..sinks as u64).collect();
            let first = if wrapped { 1000u64 } else { sinks as u64 };
            let window: Vec<u64> = (0..total as u64).map(|j| first + j).collect();
            let cut = if wrapped { total / 2 } else { 0 };
            slot_pos.extend(window[cut..].iter().chain(&window[..cut]));
            if wrapped {
                slot_pos[sinks + 1] = u64::MAX;
                slot_pos[read - 2] = u64::MAX;
            }
            // The chunk's queries are the newest tokens.
            let newest = first + total as u64 - 1;
            let q_pos: Vec<u64> = (0..n as u64).map(|i| newest + 1 + i - n as u64).collect();
            let op = PromptAttention {
                read,
                sinks: if wrapped { sinks } else { 0 },
                scale: 1.0 / (hd as f32).sqrt(),
                slot_pos: &slot_pos,
                q_pos: &q_pos,
                pinned: sinks as u64,
                view,
            };
            let nq = 1 + usize::from(op.sinks > 0);
            let q = values(nq * nh * n * hd, case as u32 * 3);
            let k = values(nkv * cap * hd, case as u32 * 3 + 1);
            let v = values(nkv * cap * hd, case as u32 * 3 + 2);
            for dtype in [DType::F32, DType::F16] {
                let t = |x: &[f32], shape: &[usize]| {
                    Tensor::from_slice(x, shape, &Device::Cpu).unwrap()
                };
                let kt = t(&k, &[nkv, cap, hd]).to_dtype(dtype).unwrap();
                let vt = t(&v, &[nkv, cap, hd]).to_dtype(dtype).unwrap();
                // The definition on the values as stored.
                let stored = |x: &Tensor| {
                    x.to_dtype(DType::F32)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                let want = reference(&op, &q, &stored(&kt), &stored(&vt), [nh, n, hd, nkv, cap]);
                let got = op.forward(&t(&q, &[nq, nh, n, hd]), &kt, &vt).unwrap();
                assert_eq!(got.dims(), &[n, nh * hd]);
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (a, b) in got.iter().zip(&want) {
                    assert!(a.is_finite(), "case {case} {dtype:?}: {a}");
                    worst = worst.max((a - b).abs());
                }
            }
        }
        assert!(worst < 1e-5, "off by {worst}");
    }

    /// Each query's result does not depend on the other queries of its chunk: a chunk run
    /// whole and run as single queries give the same bits (so a prompt fed in chunks of any
    /// size builds the same memory).
    #[test]
    fn a_query_is_computed_alike_in_any_chunk() {
        let (nh, hd, read, n) = (4, 64, 50, 10);
        let slot_pos: Vec<u64> = (0..read as u64).collect();
        let q_pos: Vec<u64> = (40..50).collect();
        let q = values(nh * n * hd, 5);
        let kv = Tensor::from_vec(values(nh * read * hd, 6), (nh, read, hd), &Device::Cpu).unwrap();
        let op = PromptAttention {
            read,
            sinks: 0,
            scale: 0.125,
            slot_pos: &slot_pos,
            q_pos: &q_pos,
            pinned: 4,
            view: u64::MAX,
        };
        let qt = Tensor::from_vec(q, (1, nh, n, hd), &Device::Cpu).unwrap();
        let whole = op.forward(&qt, &kv, &kv).unwrap();
        for i in 0..n {
            let one = PromptAttention {
                q_pos: &q_pos[i..i + 1],
                ..op
            };
            let qi = qt.narrow(2, i, 1).unwrap();
            let got = one
                .forward(&qi, &kv, &kv)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let want = whole.get(i).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want, "query {i}");
        }
    }

    /// Shapes that do not fit, and positions that do not match, are refused.
    #[test]
    fn refuses_what_does_not_fit() {
        let kv = Tensor::zeros((1, 8, 32), DType::F32, &Device::Cpu).unwrap();
        let q = Tensor::zeros((1, 2, 3, 32), DType::F32, &Device::Cpu).unwrap();
        let slots: Vec<u64> = (0..9).collect();
        let pos = [5u64, 6, 7];
        let ok = PromptAttention {
            read: 8,
            sinks: 0,
            scale: 1.0,
            slot_pos: &slots[..8],
            q_pos: &pos,
            pinned: 0,
            view: u64::MAX,
        };
        assert!(ok.forward(&q, &kv, &kv).is_ok());
        for bad in [
            PromptAttention {
                read: 9,
                slot_pos: &slots,
                ..ok
            },
            PromptAttention {
                q_pos: &pos[..2],
                ..ok
            },
            PromptAttention { sinks: 2, ..ok },
            PromptAttention {
                read: 0,
                slot_pos: &[],
                ..ok
            },
        ] {
            assert!(bad.forward(&q, &kv, &kv).is_err(), "{bad:?}");
        }
    }
}
