//! AVX-512 (F, BW, DQ, VL, VNNI) tiles for the legacy 32-element formats, two blocks per
//! 512-bit register.
//!
//! The blocks of each row are laid out in pairs at load ([`pair`]): both scales together,
//! then both minimums (Q4_1/Q5_1), both 32-bit masks of fifth bits (Q5), and both blocks'
//! values. Nothing is converted: the bytes are the file's, only their order changes, so a pair
//! takes one load per field. Q5's fifth bits go straight into a mask register. A row with an
//! odd number of blocks ends in a pair whose second block is zeros (scale 0).
//!
//! The integer sums are `vpdpbusd` as in the VNNI variant of `avx2`: activations are the
//! unsigned operand (`a + 128`) for signed weights, each sum starting from `-128 Σ w`.

use std::arch::x86_64::*;

use super::act::Act32;
use super::avx2::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};

/// Bytes of one pair of blocks (twice the file's block).
pub(super) const fn pair_bytes(k: u8) -> usize {
    match k {
        Q4_0 => 36,
        Q4_1 => 40,
        Q5_0 => 44,
        Q5_1 => 48,
        _ => 68,
    }
}

const fn has_min(k: u8) -> bool {
    matches!(k, Q4_1 | Q5_1)
}

const fn has_fifth(k: u8) -> bool {
    matches!(k, Q5_0 | Q5_1)
}

const fn signed(k: u8) -> bool {
    matches!(k, Q4_0 | Q5_0 | Q8_0)
}

/// Lays out one row's `nb` file blocks (`src`) as `nb.div_ceil(2)` pairs into `dst`.
pub(super) fn pair(k: u8, src: &[u8], nb: usize, dst: &mut [u8]) {
    let bb = pair_bytes(k) / 2;
    let zero = vec![0u8; bb];
    for (i, out) in dst.chunks_exact_mut(2 * bb).enumerate() {
        let b0 = &src[2 * i * bb..(2 * i + 1) * bb];
        let b1 = if 2 * i + 1 < nb {
            &src[(2 * i + 1) * bb..(2 * i + 2) * bb]
        } else {
            &zero
        };
        let mut at = 0;
        let mut put = |x: &[u8], y: &[u8]| {
            out[at..at + x.len()].copy_from_slice(x);
            out[at + x.len()..at + 2 * x.len()].copy_from_slice(y);
            at += 2 * x.len();
        };
        put(&b0[0..2], &b1[0..2]);
        let mut from = 2;
        if has_min(k) {
            put(&b0[2..4], &b1[2..4]);
            from = 4;
        }
        if has_fifth(k) {
            put(&b0[from..from + 4], &b1[from..from + 4]);
            from += 4;
        }
        put(&b0[from..], &b1[from..]);
    }
}

/// One pair: the two scales (each over its half), the two minimums (low two lanes), values.
#[inline(always)]
unsafe fn load_pair<const K: u8>(p: *const u8) -> (__m512, __m128, __m512i) {
    // SAFETY (whole body): the caller guarantees one whole pair at `p` and the features.
    unsafe {
        let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let two_f16 = |q: *const u8| {
            _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(q as *const i32)))
        };
        let d = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(two_f16(p)));
        let mut at = 4;
        let m = if has_min(K) {
            at = 8;
            two_f16(p.add(4))
        } else {
            _mm_setzero_ps()
        };
        let fifth = if has_fifth(K) {
            let bits = std::ptr::read_unaligned(p.add(at) as *const u64);
            at += 8;
            _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), _mm512_set1_epi8(0x10))
        } else {
            _mm512_setzero_si512()
        };
        let q = if K == Q8_0 {
            _mm512_loadu_si512(p.add(at) as *const _)
        } else {
            // [qs0, qs0, qs1, qs1] per 128-bit lane, the odd lanes shifted to the high nibbles.
            let raw = _mm512_castsi256_si512(_mm256_loadu_si256(p.add(at) as *const __m256i));
            let dup = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), raw);
            let s = 0x0004_0004_0004_0004i64;
            let shifts = _mm512_set_epi64(s, s, 0, 0, s, s, 0, 0);
            let v = _mm512_and_si512(_mm512_srlv_epi16(dup, shifts), _mm512_set1_epi8(0x0F));
            let v = _mm512_or_si512(v, fifth);
            match K {
                Q4_0 => _mm512_sub_epi8(v, _mm512_set1_epi8(8)),
                Q5_0 => _mm512_sub_epi8(v, _mm512_set1_epi8(16)),
                _ => v,
            }
        };
        (d, m, q)
    }
}

/// Dot products of `R` paired rows with `T` activation rows of `nb` blocks.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL/VNNI, AVX2, FMA, F16C; each `w[r]` addresses `nb.div_ceil(2)` pairs and
/// each `a[t]` `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(super) unsafe fn tile<const K: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act32; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let pb = pair_bytes(K);
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut mins = [[_mm_setzero_ps(); T]; R];
        for i in 0..nb.div_ceil(2) {
            let b = 2 * i;
            let two = b + 1 < nb;
            let mut qa = [_mm512_setzero_si512(); T];
            let mut da = [_mm512_setzero_ps(); T];
            let mut sa = [_mm_setzero_ps(); T];
            for t in 0..T {
                let a0 = &*a[t].add(b);
                let lo = _mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i);
                let (hi, d1, s1) = if two {
                    let a1 = &*a[t].add(b + 1);
                    (
                        _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i),
                        a1.d,
                        a1.s,
                    )
                } else {
                    (_mm256_setzero_si256(), 0.0, 0.0)
                };
                qa[t] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                if signed(K) {
                    qa[t] = _mm512_xor_si512(qa[t], flip); // a + 128, as unsigned
                }
                da[t] = _mm512_insertf32x8(_mm512_set1_ps(a0.d), _mm256_set1_ps(d1), 1);
                sa[t] = _mm_set_ps(0.0, 0.0, s1, a0.s);
            }
            for r in 0..R {
                let p = w[r].wrapping_add(i * pb);
                // No software prefetch: with one row streamed at a time (see `run_tiles`) the
                // hardware prefetcher keeps up, and hints measured no better.
                let (dw, mw, qw) = load_pair::<K>(p);
                if signed(K) {
                    // Σ (a + 128) w - 128 Σ w = Σ a w, per lane.
                    let base = _mm512_sub_epi32(
                        _mm512_setzero_si512(),
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, qw),
                    );
                    for t in 0..T {
                        let s = _mm512_dpbusd_epi32(base, qa[t], qw);
                        acc[r][t] = _mm512_fmadd_ps(
                            _mm512_mul_ps(dw, da[t]),
                            _mm512_cvtepi32_ps(s),
                            acc[r][t],
                        );
                    }
                } else {
                    for t in 0..T {
                        let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qw, qa[t]);
                        acc[r][t] = _mm512_fmadd_ps(
                            _mm512_mul_ps(dw, da[t]),
                            _mm512_cvtepi32_ps(s),
                            acc[r][t],
                        );
                        mins[r][t] = _mm_fmadd_ps(mw, sa[t], mins[r][t]);
                    }
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                let m = mins[r][t];
                out[r][t] = _mm512_reduce_add_ps(acc[r][t])
                    + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
            }
        }
        out
    }
}
