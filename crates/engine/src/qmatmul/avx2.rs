//! AVX2 tiles: dot products of `R` weight rows with `T` activation rows, each weight block
//! unpacked once and used for every token of the tile (so a prompt reuses it), and each
//! activation block loaded once per tile row (it stays in L1).
//!
//! Integer sums come from `maddubs` (unsigned 8-bit times signed 8-bit, pairs summed to 16
//! bits) and `madd` (to 32 bits). The ranges are chosen so that nothing saturates:
//! - legacy signed formats (Q4_0, Q5_0, Q8_0) use `|w| * sign(a, w)`: at most 128 * 127 * 2;
//! - unsigned formats (Q4_1, Q5_1, and the K-quants before their offset or minimum) at most
//!   63 * 128 * 2 = 16,128;
//! - a K-quant super-block's sum, scales included, stays under 2^31 (see each tile).
//!
//! Every function needs AVX2, FMA and F16C (checked once, in `super::available`). Where the
//! CPU also has AVX512-VNNI (with VL), the `*_vnni` twins do the 8-bit sums with `vpdpbusd`
//! (one instruction instead of `maddubs` + `madd`, no saturation) on 256-bit registers; the
//! legacy signed formats then feed the activations as the unsigned operand (`a + 128`) and
//! start each sum from `-128 Σ w`, so no per-token sign fix-up is needed. Both give the same
//! integers.

use std::arch::x86_64::*;

use super::act::{Act256, Act32};

/// The legacy 32-element formats, as const parameters of [`tile32`].
pub(super) const Q4_0: u8 = 0;
pub(super) const Q4_1: u8 = 1;
pub(super) const Q5_0: u8 = 2;
pub(super) const Q5_1: u8 = 3;
pub(super) const Q8_0: u8 = 4;
/// IQ4_NL: Q4_0's block, the 4-bit values looked up in the codebook.
pub(super) const IQ4_NL: u8 = 5;

const fn bytes32(k: u8) -> usize {
    match k {
        Q4_0 | IQ4_NL => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    }
}

const fn signed32(k: u8) -> bool {
    matches!(k, Q4_0 | Q5_0 | Q8_0 | IQ4_NL)
}

/// 16 bytes of 4-bit indices as the 32 codebook values they name (low nibbles first).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_values(p: *const u8) -> __m256i {
    // SAFETY: the codebook is 16 bytes; the caller guarantees 16 readable bytes at `p`.
    let (book, idx) = unsafe {
        (
            _mm_loadu_si128(super::act::KVALUES_IQ4NL.as_ptr() as *const __m128i),
            nibbles(p),
        )
    };
    _mm256_shuffle_epi8(_mm256_set_m128i(book, book), idx)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes at `p`.
    let bits = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 16 bytes of nibbles as 32 values: low nibbles (elements 0..16), then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    let raw = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
        _mm256_set1_epi8(0x0F),
    )
}

/// `0x10` in byte `j` where bit `j` of `x` is set (the fifth bit of Q5 values).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes at `p`.
    let x = unsafe { std::ptr::read_unaligned(p as *const u32) };
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_and_si256(
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)),
        _mm256_set1_epi8(0x10),
    )
}

/// One legacy block: `(d, m, values)`, values signed for Q4_0/Q5_0/Q8_0 (offset removed) and
/// IQ4_NL (codebook values), unsigned for Q4_1/Q5_1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32<const K: u8>(p: *const u8) -> (f32, f32, __m256i) {
    // SAFETY (all arms): the caller guarantees one whole block at `p`.
    unsafe {
        match K {
            IQ4_NL => (f16_at(p), 0.0, iq4_values(p.add(2))),
            Q4_0 => (
                f16_at(p),
                0.0,
                _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)),
            ),
            Q4_1 => (f16_at(p), f16_at(p.add(2)), nibbles(p.add(4))),
            Q5_0 => {
                let v = _mm256_or_si256(nibbles(p.add(6)), fifth_bits(p.add(2)));
                (f16_at(p), 0.0, _mm256_sub_epi8(v, _mm256_set1_epi8(16)))
            }
            Q5_1 => (
                f16_at(p),
                f16_at(p.add(2)),
                _mm256_or_si256(nibbles(p.add(8)), fifth_bits(p.add(4))),
            ),
            _ => (
                f16_at(p),
                0.0,
                _mm256_loadu_si256(p.add(2) as *const __m256i),
            ),
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `Σ u * s` over groups of 4 bytes, added to `acc`: `vpdpbusd` with VNNI, else `maddubs`
/// (never saturating for the ranges above) and `madd`.
#[inline(always)]
unsafe fn dot4<const VNNI: bool>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY (both arms): the callers are compiled with the features of their variant.
    unsafe {
        if VNNI {
            _mm256_dpbusd_epi32(acc, u, s)
        } else {
            _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
            )
        }
    }
}

/// Legacy formats against 32-value activation blocks (Q8_0, or Q8_1 for Q4_1/Q5_1).
#[inline(always)]
unsafe fn tile32_body<const VNNI: bool, const K: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act32; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY (whole body): the caller's contract (features, `nb` blocks behind each pointer).
    unsafe {
        let bytes = bytes32(K);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut mins = [[0f32; T]; R];
        let flip = _mm256_set1_epi8(-128);
        for b in 0..nb {
            let mut qa = [_mm256_setzero_si256(); T];
            let mut da = [_mm256_setzero_ps(); T];
            let mut sa = [0f32; T];
            for t in 0..T {
                let blk = &*a[t].add(b);
                qa[t] = _mm256_loadu_si256(blk.qs.as_ptr() as *const __m256i);
                if VNNI && signed32(K) {
                    qa[t] = _mm256_xor_si256(qa[t], flip); // a + 128, as unsigned
                }
                da[t] = _mm256_set1_ps(blk.d);
                sa[t] = blk.s;
            }
            for r in 0..R {
                let p = w[r].wrapping_add(b * bytes);
                // The block 8 ahead: decoding waits on these loads. A hint; never faults.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(8 * bytes) as *const i8);
                let (dw, mw, qw) = load32::<K>(p);
                let dw = _mm256_set1_ps(dw);
                if signed32(K) && VNNI {
                    // Σ (a + 128) w - 128 Σ w = Σ a w.
                    let base = _mm256_sub_epi32(
                        _mm256_setzero_si256(),
                        dot4::<true>(_mm256_setzero_si256(), flip, qw),
                    );
                    for t in 0..T {
                        let s = dot4::<true>(base, qa[t], qw);
                        acc[r][t] = _mm256_fmadd_ps(
                            _mm256_mul_ps(dw, da[t]),
                            _mm256_cvtepi32_ps(s),
                            acc[r][t],
                        );
                    }
                } else if signed32(K) {
                    let ax = _mm256_sign_epi8(qw, qw);
                    for t in 0..T {
                        let sy = _mm256_sign_epi8(qa[t], qw);
                        let s = dot4::<false>(_mm256_setzero_si256(), ax, sy);
                        acc[r][t] = _mm256_fmadd_ps(
                            _mm256_mul_ps(dw, da[t]),
                            _mm256_cvtepi32_ps(s),
                            acc[r][t],
                        );
                    }
                } else {
                    for t in 0..T {
                        let s = dot4::<VNNI>(_mm256_setzero_si256(), qw, qa[t]);
                        acc[r][t] = _mm256_fmadd_ps(
                            _mm256_mul_ps(dw, da[t]),
                            _mm256_cvtepi32_ps(s),
                            acc[r][t],
                        );
                        mins[r][t] += mw * sa[t];
                    }
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum_ps(acc[r][t]) + mins[r][t];
            }
        }
        out
    }
}

/// Q4_K (`Q5 = false`, 144-byte super-blocks) and Q5_K (`Q5 = true`, 176 bytes) against Q8_K
/// activations. Per super-block: `d * da * Σ sc q a - dmin * da * Σ m bsum`, each sum an exact
/// integer per lane (at most 256 * 63 * 31 * 128 < 2^31 in all).
#[inline(always)]
unsafe fn tile_k45_body<const Q5: bool, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let bytes = if Q5 { 176 } else { 144 };
        let m4 = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut da = [_mm256_setzero_ps(); T];
            let mut bsums = [_mm256_setzero_si256(); T];
            for t in 0..T {
                let blk = &*a[t].add(b);
                da[t] = _mm256_set1_ps(blk.d);
                bsums[t] = _mm256_loadu_si256(blk.bsums.as_ptr() as *const __m256i);
            }
            for r in 0..R {
                let p = w[r].wrapping_add(b * bytes);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(bytes) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(bytes + 64) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(bytes + 128) as *const i8);
                let (d, dmin) = (_mm256_set1_ps(f16_at(p)), _mm256_set1_ps(f16_at(p.add(2))));
                let s = std::slice::from_raw_parts(p.add(4), 12);
                let mut sc = [0i16; 8];
                let mut mn = [0i16; 16];
                for j in 0..8 {
                    let (x, m) = super::act::scale_min_k4(j, s);
                    sc[j] = x as i16;
                    mn[2 * j] = m as i16;
                    mn[2 * j + 1] = m as i16;
                }
                // Each minimum twice, against the two sums of 16 of its sub-block.
                let mins = _mm256_loadu_si256(mn.as_ptr() as *const __m256i);
                let qs = if Q5 {
                    p.wrapping_add(48)
                } else {
                    p.wrapping_add(16)
                };
                let mut qh = if Q5 {
                    _mm256_loadu_si256(p.add(16) as *const __m256i)
                } else {
                    _mm256_setzero_si256()
                };
                let mut sumi = [_mm256_setzero_si256(); T];
                for c in 0..4 {
                    let raw = _mm256_loadu_si256(qs.add(32 * c) as *const __m256i);
                    let mut lo = _mm256_and_si256(raw, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    if Q5 {
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, one), 4));
                        let h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 1), one);
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
                        qh = _mm256_srli_epi16(qh, 2);
                    }
                    let (s_lo, s_hi) = (
                        _mm256_set1_epi16(sc[2 * c]),
                        _mm256_set1_epi16(sc[2 * c + 1]),
                    );
                    for t in 0..T {
                        let aq = (*a[t].add(b)).qs.as_ptr().add(64 * c);
                        let a_lo = _mm256_loadu_si256(aq as *const __m256i);
                        let a_hi = _mm256_loadu_si256(aq.add(32) as *const __m256i);
                        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
                        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p_lo, p_hi));
                    }
                }
                for t in 0..T {
                    let m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums[t]));
                    let v = _mm256_fmsub_ps(d, _mm256_cvtepi32_ps(sumi[t]), _mm256_mul_ps(dmin, m));
                    acc[r][t] = _mm256_fmadd_ps(da[t], v, acc[r][t]);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum_ps(acc[r][t]);
            }
        }
        out
    }
}

/// Q6_K (210-byte super-blocks: low nibbles, two high bits, 16 signed scales, `d` last)
/// against Q8_K activations: `d * da * Σ sc (q - 32) a`, computed per lane as the exact integer
/// `Σ sc q a - 32 Σ sc bsum` (at most 2^28 each).
#[inline(always)]
unsafe fn tile_q6k_body<const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        const BYTES: usize = 210;
        let m4 = _mm256_set1_epi8(0x0F);
        let m3 = _mm256_set1_epi8(3);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut da = [_mm256_setzero_ps(); T];
            let mut bsums = [_mm256_setzero_si256(); T];
            for t in 0..T {
                let blk = &*a[t].add(b);
                da[t] = _mm256_set1_ps(blk.d);
                bsums[t] = _mm256_loadu_si256(blk.bsums.as_ptr() as *const __m256i);
            }
            for r in 0..R {
                let p = w[r].wrapping_add(b * BYTES);
                for k in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BYTES + 64 * k) as *const i8);
                }
                let d = _mm256_set1_ps(f16_at(p.add(208)));
                let sc = std::slice::from_raw_parts(p.add(192) as *const i8, 16);
                let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
                let mut sumi = [_mm256_setzero_si256(); T];
                for n in 0..2 {
                    let l0 = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
                    let l1 = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
                    let hb = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
                    let high = |v: __m256i| _mm256_slli_epi16(_mm256_and_si256(v, m3), 4);
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(l0, m4), high(hb)),
                        _mm256_or_si256(_mm256_and_si256(l1, m4), high(_mm256_srli_epi16(hb, 2))),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            high(_mm256_srli_epi16(hb, 4)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            high(_mm256_srli_epi16(hb, 6)),
                        ),
                    ];
                    for (g, qg) in q.iter().enumerate() {
                        let j = 8 * n + 2 * g;
                        let scv = _mm256_set_m128i(
                            _mm_set1_epi16(sc[j + 1] as i16),
                            _mm_set1_epi16(sc[j] as i16),
                        );
                        for t in 0..T {
                            let aq = _mm256_loadu_si256(
                                (*a[t].add(b)).qs.as_ptr().add(128 * n + 32 * g) as *const __m256i,
                            );
                            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(*qg, aq), scv);
                            sumi[t] = _mm256_add_epi32(sumi[t], s);
                        }
                    }
                }
                for t in 0..T {
                    let corr = _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums[t]), 5);
                    let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], corr));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(d, da[t]), v, acc[r][t]);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum_ps(acc[r][t]);
            }
        }
        out
    }
}

/// IQ4_XS (136-byte super-blocks: `d`, 6-bit scales in two parts, 128 bytes of codebook
/// indices) against Q8_K activations, as ggml runs it: `d * da * Σ_part (ls - 32) Σ v a` with
/// `v` the codebook values; the sum over a super-block an exact integer per lane (at most
/// 8 * 32 * 32 * 127 * 127 < 2^28).
#[inline(always)]
unsafe fn tile_iq4xs_body<const VNNI: bool, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        const BYTES: usize = 136;
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut da = [_mm256_setzero_ps(); T];
            for t in 0..T {
                da[t] = _mm256_set1_ps((*a[t].add(b)).d);
            }
            for r in 0..R {
                let p = w[r].wrapping_add(b * BYTES);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BYTES) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BYTES + 64) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(BYTES + 128) as *const i8);
                let sb = std::slice::from_raw_parts(p, 8);
                let mut sumi = [_mm256_setzero_si256(); T];
                for part in 0..8 {
                    let v = iq4_values(p.add(8 + 16 * part));
                    let ls = _mm256_set1_epi32(super::act::iq4xs_scale(sb, part));
                    let av = _mm256_sign_epi8(v, v);
                    for t in 0..T {
                        let q = _mm256_loadu_si256(
                            (*a[t].add(b)).qs.as_ptr().add(32 * part) as *const __m256i
                        );
                        let s = dot4::<VNNI>(_mm256_setzero_si256(), av, _mm256_sign_epi8(q, v));
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_mullo_epi32(s, ls));
                    }
                }
                let d = _mm256_set1_ps(f16_at(p));
                for t in 0..T {
                    acc[r][t] = _mm256_fmadd_ps(
                        _mm256_mul_ps(d, da[t]),
                        _mm256_cvtepi32_ps(sumi[t]),
                        acc[r][t],
                    );
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum_ps(acc[r][t]);
            }
        }
        out
    }
}

// The entry points: each body compiled for the instruction set it runs on.

/// # Safety
/// AVX2/FMA/F16C, and `nb` super-blocks behind every pointer.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_iq4xs<const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile_iq4xs_body::<false, R, T>(w, a, nb) }
}

/// # Safety
/// As [`tile_iq4xs`], plus AVX512-VNNI and AVX512-VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn tile_iq4xs_vnni<const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile_iq4xs_body::<true, R, T>(w, a, nb) }
}

/// # Safety
/// AVX2/FMA/F16C, and `nb` blocks behind every pointer.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile32<const K: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act32; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile32_body::<false, K, R, T>(w, a, nb) }
}

/// # Safety
/// As [`tile32`], plus AVX512-VNNI and AVX512-VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn tile32_vnni<const K: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act32; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile32_body::<true, K, R, T>(w, a, nb) }
}

/// # Safety
/// AVX2/FMA/F16C, and `nb` super-blocks behind every pointer.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_k45<const Q5: bool, const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile_k45_body::<Q5, R, T>(w, a, nb) }
}

/// # Safety
/// AVX2/FMA/F16C, and `nb` super-blocks behind every pointer.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_q6k<const R: usize, const T: usize>(
    w: [*const u8; R],
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe { tile_q6k_body::<R, T>(w, a, nb) }
}
