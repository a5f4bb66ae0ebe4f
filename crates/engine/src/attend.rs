//! One decode step's attention on the CPU, reading the cache where it lies.
//!
//! Why: through candle, a one-token step costs a batched matmul `q · Kᵀ` (the gemm crate packs
//! the whole K window first, which alone took a tenth of a decode step), a softmax, a second
//! matmul with V, and, once the sinks are scored at their own places, a concatenation. Here
//! each query head walks its K/V head once, in place, and the heads are spread over candle's
//! thread pool. Prompt chunks (several queries, a mask) still go through candle's matmuls,
//! which are efficient at that size.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::Result;

/// `softmax(q · Kᵀ · scale) · V` for one query per head.
///
/// Inputs: `q` of shape `(2, n_head, head_dim)` (the query rotated to its text position, then
/// rotated to its cache place) or `(1, n_head, head_dim)` when both are the same; `k` and `v`
/// of shape `(n_kv_head, capacity, head_dim)`. Slots `0..sinks` are scored with the second
/// query, slots `sinks..read` with the first. Output: `(n_head, head_dim)`.
#[derive(Debug, Clone, Copy)]
pub struct DecodeAttention {
    pub read: usize,
    pub sinks: usize,
    pub scale: f32,
}

impl DecodeAttention {
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        Ok(q.contiguous()?.apply_op3_no_bwd(k, v, self)?)
    }
}

fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(d) = s else {
        candle_core::bail!("decode attention: {what} must be f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("decode attention: {what} must be contiguous");
    };
    Ok(&d[a..b])
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

impl CustomOp3 for DecodeAttention {
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
        let (q, k, v) = (f32s(sq, lq, "q")?, f32s(sk, lk, "K")?, f32s(sv, lv, "V")?);
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
        if self.read > cap || self.sinks > self.read {
            candle_core::bail!("decode attention: reads {} of {cap} slots", self.read);
        }
        let rep = nh / nkv;
        let read = self.read;
        let mut out = vec![0f32; nh * hd];
        let out_ptr = OutPtr(out.as_mut_ptr());
        let head = |h: usize| {
            let p = out_ptr;
            let kv = h / rep;
            let kh = &k[kv * cap * hd..(kv * cap + read) * hd];
            let vh = &v[kv * cap * hd..(kv * cap + read) * hd];
            let q_text = &q[h * hd..(h + 1) * hd];
            let q_place = if nq == 2 {
                &q[(nh + h) * hd..(nh + h + 1) * hd]
            } else {
                q_text
            };
            let mut scores: Vec<f32> = kh
                .chunks_exact(hd)
                .enumerate()
                .map(|(j, kj)| {
                    let qh = if j < self.sinks { q_place } else { q_text };
                    dot(qh, kj) * self.scale
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
            for (s, vj) in scores.iter().zip(vh.chunks_exact(hd)) {
                let w = s * inv;
                for (yd, vd) in y.iter_mut().zip(vj) {
                    *yd += w * vd;
                }
            }
            // SAFETY: each head writes only its own `hd` outputs, and `out` outlives the pool's
            // parallel region.
            unsafe { std::ptr::copy_nonoverlapping(y.as_ptr(), p.0.add(h * hd), hd) };
        };
        if read == 0 {
            candle_core::bail!("decode attention: the cache is empty");
        }
        candle_core::utils::barrier_pool().execute_chunked(nh, |hs| hs.for_each(head));
        Ok((CpuStorage::F32(out), Shape::from((nh, hd))))
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: see the one use above: disjoint writes while the buffer lives.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    fn t(shape: &[usize], seed: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Against candle's matmul/softmax on the same values, with and without the sinks scored
    /// by a second query, for grouped-query heads (3 queries per K/V head).
    #[test]
    fn matches_candle_attention() {
        let (nkv, rep, cap, hd, read) = (2, 3, 40, 64, 29);
        let nh = nkv * rep;
        let k = t(&[nkv, cap, hd], 1);
        let v = t(&[nkv, cap, hd], 2);
        let scale = 1.0 / (hd as f32).sqrt();
        for sinks in [0, 4] {
            let q = t(&[2, nh, hd], 3 + sinks as u32);
            let op = DecodeAttention { read, sinks, scale };
            let got = op.forward(&q, &k, &v).unwrap();
            let q_text = q.get(0).unwrap().reshape((nkv, rep, hd)).unwrap();
            let q_place = q.get(1).unwrap().reshape((nkv, rep, hd)).unwrap();
            let kr = k.narrow(1, 0, read).unwrap();
            let s_text = q_text.matmul(&kr.t().unwrap()).unwrap();
            let s_place = q_place.matmul(&kr.t().unwrap()).unwrap();
            let s = Tensor::cat(
                &[
                    s_place.narrow(D::Minus1, 0, sinks).unwrap(),
                    s_text.narrow(D::Minus1, sinks, read - sinks).unwrap(),
                ],
                D::Minus1,
            )
            .unwrap();
            let p = candle_nn::ops::softmax_last_dim(&(s * scale as f64).unwrap()).unwrap();
            let want = p
                .matmul(&v.narrow(1, 0, read).unwrap())
                .unwrap()
                .reshape((nh, hd))
                .unwrap();
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "sinks {sinks}: off by {diff}");
        }
    }

    #[test]
    fn refuses_reading_past_the_cache() {
        let k = t(&[1, 8, 32], 1);
        let q = t(&[1, 2, 32], 2);
        let op = DecodeAttention {
            read: 9,
            sinks: 0,
            scale: 1.0,
        };
        assert!(op.forward(&q, &k, &k).is_err());
    }
}
