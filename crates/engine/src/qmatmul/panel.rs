//! AVX-512 (F, BW, VL, VNNI) panels of 16 rows: the GEMM layout of ggml's and candle's
//! repacked x86 kernels, for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K, IQ4_NL and IQ4_XS (the
//! last two keep their 4-bit codebook indices, looked up with one byte shuffle per register).
//!
//! Layout (made at load by [`pack`]; the file's bytes, reordered, nothing converted): rows in
//! panels of 16 (the last padded with zero rows), and for each panel the blocks in order, each
//! as
//! - the 16 rows' scales `d` (f16), then their minimums `m` (Q4_1, Q5_1);
//! - Q5: eight 64-bit masks of fifth bits, mask `g` holding bit `4 * row + j` of value
//!   `4g + j` of that row;
//! - the values in groups of 4: a 64-byte register holds values `4g..4g + 4` of all 16 rows
//!   (row-major in 4-byte lanes). 4-bit formats keep two groups per register: group `h` in the
//!   low nibbles, `h + 4` in the high ones; Q8_0 stores `w + 128`.
//!
//! So one `vpdpbusd` with 4 broadcast activation bytes adds 4 products to each of 16 rows, a
//! block is 8 of them into one accumulator, and its scales are applied once per block per 16
//! rows: no horizontal sums, and the weights stay in registers across 8 tokens. Weights are
//! the unsigned operand (as stored: offset 8 for Q4_0, 16 for Q5_0, 128 for Q8_0), so each
//! block's sum starts from `-offset * Σ a` (the activation block's exact integer sum).

use std::arch::x86_64::*;

use super::act::{iq4xs_scale, scale_min_k4, values32, Act256, Act32, KVALUES_IQ4NL};
use super::avx2::{IQ4_NL, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::Format;

/// Rows per panel.
pub(super) const ROWS: usize = 16;

const fn has_min(k: u8) -> bool {
    matches!(k, Q4_1 | Q5_1)
}

const fn has_fifth(k: u8) -> bool {
    matches!(k, Q5_0 | Q5_1)
}

const fn offset(k: u8) -> i32 {
    match k {
        Q4_0 => 8,
        Q5_0 => 16,
        Q8_0 | IQ4_NL => 128,
        _ => 0,
    }
}

/// Bytes of one block of one panel: 16 times the file's block.
pub(super) const fn block_bytes(k: u8) -> usize {
    16 * match k {
        Q4_0 | IQ4_NL => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    }
}

/// IQ4 codebook values plus 128: what an index stands for as `vpdpbusd`'s unsigned operand.
const IQ4_BOOK_U8: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// The 32 4-bit indices of 16 bytes of IQ4 codes (low nibbles, then high).
fn iq4_indices(qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = qs[j] & 0x0F;
        v[j + 16] = qs[j] >> 4;
    }
    v
}

/// The unsigned values (offset kept, as `vpdpbusd` takes them) of one file block; IQ4_NL's
/// codebook indices (the tile looks them up).
fn values(k: u8, b: &[u8]) -> [u8; 32] {
    if k == IQ4_NL {
        return iq4_indices(&b[2..18]);
    }
    let f = match k {
        Q4_0 => Format::Q4_0,
        Q4_1 => Format::Q4_1,
        Q5_0 => Format::Q5_0,
        Q5_1 => Format::Q5_1,
        _ => Format::Q8_0,
    };
    values32(f, b).map(|v| (v + offset(k)) as u8)
}

/// The 16 rows' blocks `b` (each `bytes` long) of panel `p`, zeros past the last row.
fn panel_blocks<'b, 'a: 'b>(
    p: usize,
    b: usize,
    bytes: usize,
    rows: usize,
    zero: &'b [u8],
    row: &impl Fn(usize) -> &'a [u8],
) -> Vec<&'b [u8]> {
    (0..ROWS)
        .map(|i| match p * ROWS + i {
            r if r < rows => &row(r)[b * bytes..(b + 1) * bytes],
            _ => &zero[..bytes],
        })
        .collect()
}

/// Packs `rows` rows of `nb` file blocks each (`row(r)` gives row `r`'s bytes) into panels.
pub(super) fn pack<'a>(k: u8, rows: usize, nb: usize, row: impl Fn(usize) -> &'a [u8]) -> Vec<u8> {
    let fb = block_bytes(k) / 16;
    let panels = rows.div_ceil(ROWS);
    let mut out = vec![0u8; panels * nb * block_bytes(k)];
    let zero = vec![0u8; fb];
    for (p, panel) in out.chunks_exact_mut(nb * block_bytes(k)).enumerate() {
        for (b, dst) in panel.chunks_exact_mut(block_bytes(k)).enumerate() {
            let blocks = panel_blocks(p, b, fb, rows, &zero, &row);
            let mut at = 0;
            for blk in &blocks {
                dst[at..at + 2].copy_from_slice(&blk[0..2]);
                at += 2;
            }
            if has_min(k) {
                for blk in &blocks {
                    dst[at..at + 2].copy_from_slice(&blk[2..4]);
                    at += 2;
                }
            }
            let vals: Vec<[u8; 32]> = blocks.iter().map(|blk| values(k, blk)).collect();
            if has_fifth(k) {
                for g in 0..8 {
                    let mut mask = 0u64;
                    for (i, v) in vals.iter().enumerate() {
                        for j in 0..4 {
                            mask |= (((v[4 * g + j] >> 4) & 1) as u64) << (4 * i + j);
                        }
                    }
                    dst[at..at + 8].copy_from_slice(&mask.to_le_bytes());
                    at += 8;
                }
            }
            if k == Q8_0 {
                for g in 0..8 {
                    for v in &vals {
                        dst[at..at + 4].copy_from_slice(&v[4 * g..4 * g + 4]);
                        at += 4;
                    }
                }
            } else {
                for h in 0..4 {
                    for v in &vals {
                        for j in 0..4 {
                            dst[at] = (v[4 * h + j] & 0x0F) | ((v[4 * (h + 4) + j] & 0x0F) << 4);
                            at += 1;
                        }
                    }
                }
            }
            debug_assert_eq!(at, block_bytes(k));
        }
    }
    out
}

/// The 8 value registers of one panel block (`p` at its values), each 16 rows by 4 values.
#[inline(always)]
unsafe fn load_values<const K: u8>(p: *const u8, fifth: *const u8) -> [__m512i; 8] {
    // SAFETY (whole body): the caller guarantees one whole panel block.
    unsafe {
        let mut w = [_mm512_setzero_si512(); 8];
        if K == Q8_0 {
            for (g, wg) in w.iter_mut().enumerate() {
                *wg = _mm512_loadu_si512(p.add(64 * g) as *const _);
            }
            return w;
        }
        let m4 = _mm512_set1_epi8(0x0F);
        for h in 0..4 {
            let raw = _mm512_loadu_si512(p.add(64 * h) as *const _);
            w[h] = _mm512_and_si512(raw, m4);
            w[h + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        }
        if K == IQ4_NL {
            let book = _mm512_broadcast_i32x4(_mm_loadu_si128(IQ4_BOOK_U8.as_ptr() as *const _));
            for wg in w.iter_mut() {
                *wg = _mm512_shuffle_epi8(book, *wg);
            }
        }
        if has_fifth(K) {
            let bit = _mm512_set1_epi8(0x10);
            for (g, wg) in w.iter_mut().enumerate() {
                let m = std::ptr::read_unaligned(fifth.add(8 * g) as *const u64);
                *wg = _mm512_or_si512(*wg, _mm512_maskz_mov_epi8(_cvtu64_mask64(m), bit));
            }
        }
        w
    }
}

/// Each token's 16 row sums as floats (the K-quant tiles).
///
/// # Safety
/// AVX-512 F (inlined into the tiles, which enable it).
#[inline(always)]
unsafe fn lanes<const T: usize>(v: [__m512; T]) -> [[f32; ROWS]; T] {
    let mut res = [[0f32; ROWS]; T];
    for t in 0..T {
        // SAFETY: `res[t]` holds 16 floats; the caller's target features.
        unsafe { _mm512_storeu_ps(res[t].as_mut_ptr(), v[t]) };
    }
    res
}

/// The K-quant tiles' end of a super-block: `out[t] += da * acc[t]`, `da` token `t`'s scale of
/// activation block `b`.
///
/// # Safety
/// AVX-512 F (inlined into the tiles); each `a[t]` addresses more than `b` blocks.
#[inline(always)]
unsafe fn add_block<const T: usize>(
    out: &mut [__m512; T],
    acc: &[__m512; T],
    a: &[*const Act256; T],
    b: usize,
) {
    for t in 0..T {
        // SAFETY: the caller's contract.
        out[t] = unsafe { _mm512_fmadd_ps(_mm512_set1_ps((*a[t].add(b)).d), acc[t], out[t]) };
    }
}

/// `init + Σ w a` for the 16 rows of one 32-value block: 8 `vpdpbusd`, each adding 4 products
/// per row (`wv` the block's value registers, `q` its 32 activation bytes), in two chains so
/// consecutive instructions do not wait on each other.
///
/// # Safety
/// AVX-512 F/VNNI (inlined into the tiles, which enable them); 32 readable bytes at `q`.
#[inline(always)]
unsafe fn block_dot(wv: &[__m512i; 8], q: *const i8, init: __m512i) -> __m512i {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let mut s0 = init;
        let mut s1 = _mm512_setzero_si512();
        for g in (0..8).step_by(2) {
            let a0 = _mm512_set1_epi32(std::ptr::read_unaligned(q.add(4 * g) as *const i32));
            let a1 = _mm512_set1_epi32(std::ptr::read_unaligned(q.add(4 * g + 4) as *const i32));
            s0 = _mm512_dpbusd_epi32(s0, wv[g], a0);
            s1 = _mm512_dpbusd_epi32(s1, wv[g + 1], a1);
        }
        _mm512_add_epi32(s0, s1)
    }
}

/// One panel (16 rows, `nb` blocks from `w`) times `T` tokens: `out[t][i]` for row `i`.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C; `w` addresses `nb` panel blocks and each `a[t]` `nb`
/// activation blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile<const K: u8, const T: usize>(
    w: *const u8,
    a: [*const Act32; T],
    nb: usize,
) -> [[f32; ROWS]; T] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let bb = block_bytes(K);
        let mut acc = [_mm512_setzero_ps(); T];
        let mut mins = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let p = w.add(b * bb);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let mut at = 32;
            let m = if has_min(K) {
                at = 64;
                _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i))
            } else {
                _mm512_setzero_ps()
            };
            let fifth = p.add(at);
            if has_fifth(K) {
                at += 64;
            }
            let wv = load_values::<K>(p.add(at), fifth);
            for t in 0..T {
                let blk = &*a[t].add(b);
                let init = _mm512_set1_epi32(-offset(K) * blk.sum);
                let s = _mm512_cvtepi32_ps(block_dot(&wv, blk.qs.as_ptr(), init));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(blk.d)), s, acc[t]);
                if has_min(K) {
                    mins[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(blk.s), mins[t]);
                }
            }
        }
        let mut out = [[0f32; ROWS]; T];
        for t in 0..T {
            let v = if has_min(K) {
                _mm512_add_ps(acc[t], mins[t])
            } else {
                acc[t]
            };
            _mm512_storeu_ps(out[t].as_mut_ptr(), v);
        }
        out
    }
}

/// Bytes of one Q4_K super-block of one panel: the 16 rows' `d` and `dmin` (f16), their 6-bit
/// scales and minimums unpacked to a byte each (`[sub-block][row]`), then each 32-value
/// sub-block's values as in the 4-bit legacy panels. 2,368 bytes where the file has 2,304: the
/// scales take a byte instead of six bits.
pub(super) const Q4K_BYTES: usize = 32 + 32 + 128 + 128 + 8 * 256;

/// Packs `rows` rows of `nb` Q4_K super-blocks into panels.
pub(super) fn pack_q4k<'a>(rows: usize, nb: usize, row: impl Fn(usize) -> &'a [u8]) -> Vec<u8> {
    let panels = rows.div_ceil(ROWS);
    let mut out = vec![0u8; panels * nb * Q4K_BYTES];
    let zero = [0u8; 144];
    for (p, panel) in out.chunks_exact_mut(nb * Q4K_BYTES).enumerate() {
        for (b, dst) in panel.chunks_exact_mut(Q4K_BYTES).enumerate() {
            let blocks = panel_blocks(p, b, 144, rows, &zero, &row);
            for (i, blk) in blocks.iter().enumerate() {
                dst[2 * i..2 * i + 2].copy_from_slice(&blk[0..2]);
                dst[32 + 2 * i..32 + 2 * i + 2].copy_from_slice(&blk[2..4]);
                for j in 0..8 {
                    let (sc, mn) = scale_min_k4(j, &blk[4..16]);
                    dst[64 + 16 * j + i] = sc;
                    dst[192 + 16 * j + i] = mn;
                }
            }
            for j in 0..8 {
                let (c, high) = (j / 2, j % 2 == 1);
                let base = 320 + 256 * j;
                for h in 0..4 {
                    for (i, blk) in blocks.iter().enumerate() {
                        for l in 0..4 {
                            let nib = |v: usize| {
                                let byte = blk[16 + 32 * c + v];
                                if high {
                                    byte >> 4
                                } else {
                                    byte & 0x0F
                                }
                            };
                            dst[base + 64 * h + 4 * i + l] =
                                nib(4 * h + l) | (nib(4 * (h + 4) + l) << 4);
                        }
                    }
                }
            }
        }
    }
    out
}

/// One Q4_K panel (16 rows, `nb` super-blocks from `w`) times `T` tokens. Per super-block and
/// token: `da * Σ_j (d sc_j Σ q a - dmin m_j Σ a)` over the 8 sub-blocks, each `Σ q a` an exact
/// integer.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C; `w` addresses `nb` panel super-blocks and each
/// `a[t]` `nb` activation blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile_q4k<const T: usize>(
    w: *const u8,
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; ROWS]; T] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let mut out = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let p = w.add(b * Q4K_BYTES);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i));
            let mut acc = [_mm512_setzero_ps(); T];
            for j in 0..8 {
                let byte_ps = |q: *const u8| {
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(q as *const __m128i)))
                };
                let dsc = _mm512_mul_ps(d, byte_ps(p.add(64 + 16 * j)));
                let dmn = _mm512_mul_ps(dmin, byte_ps(p.add(192 + 16 * j)));
                let wv = load_values::<Q4_0>(p.add(320 + 256 * j), std::ptr::null());
                for t in 0..T {
                    let blk = &*a[t].add(b);
                    let q = blk.qs.as_ptr().add(32 * j);
                    let s = _mm512_cvtepi32_ps(block_dot(&wv, q, _mm512_setzero_si512()));
                    acc[t] = _mm512_fmadd_ps(dsc, s, acc[t]);
                    acc[t] = _mm512_fnmadd_ps(dmn, _mm512_set1_ps(blk.bsum32[j]), acc[t]);
                }
            }
            add_block(&mut out, &acc, &a, b);
        }
        lanes(out)
    }
}

/// Bytes of one IQ4_XS super-block of one panel: the 16 rows' `d` (f16), their scales less 32
/// (`[part][row]`, i8), then each 32-value part's codebook indices as in the 4-bit legacy
/// panels. 2,208 bytes where the file has 2,176.
pub(super) const IQ4XS_BYTES: usize = 32 + 128 + 8 * 256;

/// Packs `rows` rows of `nb` IQ4_XS super-blocks into panels.
pub(super) fn pack_iq4xs<'a>(rows: usize, nb: usize, row: impl Fn(usize) -> &'a [u8]) -> Vec<u8> {
    let panels = rows.div_ceil(ROWS);
    let mut out = vec![0u8; panels * nb * IQ4XS_BYTES];
    let zero = [0u8; 136];
    for (p, panel) in out.chunks_exact_mut(nb * IQ4XS_BYTES).enumerate() {
        for (b, dst) in panel.chunks_exact_mut(IQ4XS_BYTES).enumerate() {
            let blocks = panel_blocks(p, b, 136, rows, &zero, &row);
            for (i, blk) in blocks.iter().enumerate() {
                dst[2 * i..2 * i + 2].copy_from_slice(&blk[0..2]);
                for j in 0..8 {
                    dst[32 + 16 * j + i] = iq4xs_scale(blk, j) as i8 as u8;
                }
            }
            for j in 0..8 {
                let base = 160 + 256 * j;
                for (i, blk) in blocks.iter().enumerate() {
                    let v = iq4_indices(&blk[8 + 16 * j..8 + 16 * j + 16]);
                    for h in 0..4 {
                        for l in 0..4 {
                            dst[base + 64 * h + 4 * i + l] =
                                v[4 * h + l] | (v[4 * (h + 4) + l] << 4);
                        }
                    }
                }
            }
        }
    }
    out
}

/// One IQ4_XS panel (16 rows, `nb` super-blocks from `w`) times `T` tokens, in ggml's
/// arithmetic: per super-block and token `d * da * Σ_j (ls_j - 32) Σ v a`, the sum over the
/// super-block an exact integer (see `avx2::tile_iq4xs`, which this equals).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C; `w` addresses `nb` panel super-blocks and each
/// `a[t]` `nb` activation blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile_iq4xs<const T: usize>(
    w: *const u8,
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; ROWS]; T] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let mut out = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let p = w.add(b * IQ4XS_BYTES);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let mut sumi = [_mm512_setzero_si512(); T];
            for j in 0..8 {
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(32 + 16 * j) as *const _));
                let wv = load_values::<IQ4_NL>(p.add(160 + 256 * j), std::ptr::null());
                for t in 0..T {
                    let blk = &*a[t].add(b);
                    let q = blk.qs.as_ptr().add(32 * j);
                    // The values carry +128: each part's sum starts from -128 Σ a.
                    let sa = blk.bsums[2 * j] as i32 + blk.bsums[2 * j + 1] as i32;
                    let s = block_dot(&wv, q, _mm512_set1_epi32(-128 * sa));
                    sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(s, sc));
                }
            }
            for t in 0..T {
                let da = _mm512_set1_ps((*a[t].add(b)).d);
                out[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(sumi[t]), out[t]);
            }
        }
        lanes(out)
    }
}

/// Bytes of one Q6_K super-block of one panel (as many as the file's 16 rows): the 16 rows'
/// `d` (f16), their 16 scales (`[sub-block][row]`, i8), then per 32 values the low nibbles as in
/// the 4-bit legacy panels (256 bytes) and the two high bits of the same 8 groups of 4 values
/// (128 bytes: register `e`, byte lane `4 * row + i`, bits `2m..2m + 2` for group `4e + m`).
pub(super) const Q6K_BYTES: usize = 32 + 256 + 8 * (256 + 128);

/// The 256 unsigned 6-bit values (offset 32 kept) of one file super-block.
fn q6k_values(b: &[u8]) -> [u8; 256] {
    let (ql, qh) = (&b[0..128], &b[128..192]);
    let mut v = [0u8; 256];
    for n in 0..2 {
        for l in 0..32 {
            let h = qh[32 * n + l];
            let (x, y) = (ql[64 * n + l], ql[64 * n + 32 + l]);
            v[128 * n + l] = (x & 0x0F) | ((h & 3) << 4);
            v[128 * n + 32 + l] = (y & 0x0F) | (((h >> 2) & 3) << 4);
            v[128 * n + 64 + l] = (x >> 4) | (((h >> 4) & 3) << 4);
            v[128 * n + 96 + l] = (y >> 4) | (((h >> 6) & 3) << 4);
        }
    }
    v
}

/// Packs `rows` rows of `nb` Q6_K super-blocks into panels.
pub(super) fn pack_q6k<'a>(rows: usize, nb: usize, row: impl Fn(usize) -> &'a [u8]) -> Vec<u8> {
    let panels = rows.div_ceil(ROWS);
    let mut out = vec![0u8; panels * nb * Q6K_BYTES];
    let zero = [0u8; 210];
    for (p, panel) in out.chunks_exact_mut(nb * Q6K_BYTES).enumerate() {
        for (b, dst) in panel.chunks_exact_mut(Q6K_BYTES).enumerate() {
            let blocks = panel_blocks(p, b, 210, rows, &zero, &row);
            let vals: Vec<[u8; 256]> = blocks.iter().map(|blk| q6k_values(blk)).collect();
            for (i, blk) in blocks.iter().enumerate() {
                dst[2 * i..2 * i + 2].copy_from_slice(&blk[208..210]);
                for j in 0..16 {
                    dst[32 + 16 * j + i] = blk[192 + j];
                }
            }
            for k in 0..8 {
                let base = 288 + 384 * k;
                for (i, v) in vals.iter().enumerate() {
                    let v = &v[32 * k..32 * k + 32];
                    for h in 0..4 {
                        for l in 0..4 {
                            dst[base + 64 * h + 4 * i + l] =
                                (v[4 * h + l] & 0x0F) | ((v[4 * (h + 4) + l] & 0x0F) << 4);
                        }
                    }
                    for e in 0..2 {
                        for l in 0..4 {
                            let mut byte = 0u8;
                            for m in 0..4 {
                                byte |= (v[4 * (4 * e + m) + l] >> 4) << (2 * m);
                            }
                            dst[base + 256 + 64 * e + 4 * i + l] = byte;
                        }
                    }
                }
            }
        }
    }
    out
}

/// One Q6_K panel (16 rows, `nb` super-blocks from `w`) times `T` tokens. Per super-block and
/// token: `da * Σ_j d sc_j (Σ q a - 32 Σ a)` over the 16 sub-blocks of 16 values, each sum an
/// exact integer.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C; `w` addresses `nb` panel super-blocks and each
/// `a[t]` `nb` activation blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile_q6k<const T: usize>(
    w: *const u8,
    a: [*const Act256; T],
    nb: usize,
) -> [[f32; ROWS]; T] {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        let m3 = _mm512_set1_epi8(3);
        let mut out = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let p = w.add(b * Q6K_BYTES);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let mut acc = [_mm512_setzero_ps(); T];
            for k in 0..8 {
                let c = p.add(288 + 384 * k);
                let mut wv = load_values::<Q4_0>(c, std::ptr::null());
                for e in 0..2i32 {
                    let hb = _mm512_loadu_si512(c.add(256 + 64 * e as usize) as *const _);
                    for m in 0..4i32 {
                        let h =
                            _mm512_and_si512(_mm512_srl_epi16(hb, _mm_cvtsi32_si128(2 * m)), m3);
                        let g = (4 * e + m) as usize;
                        wv[g] = _mm512_or_si512(wv[g], _mm512_slli_epi16(h, 4));
                    }
                }
                for half in 0..2 {
                    let j = 2 * k + half;
                    let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                        p.add(32 + 16 * j) as *const __m128i,
                    )));
                    let dsc = _mm512_mul_ps(d, sc);
                    for t in 0..T {
                        let blk = &*a[t].add(b);
                        let q = blk.qs.as_ptr().add(16 * j);
                        let mut s = _mm512_set1_epi32(-32 * blk.bsums[j] as i32);
                        for g in 0..4 {
                            let av = _mm512_set1_epi32(std::ptr::read_unaligned(
                                q.add(4 * g) as *const i32
                            ));
                            s = _mm512_dpbusd_epi32(s, wv[4 * half + g], av);
                        }
                        acc[t] = _mm512_fmadd_ps(dsc, _mm512_cvtepi32_ps(s), acc[t]);
                    }
                }
            }
            add_block(&mut out, &acc, &a, b);
        }
        lanes(out)
    }
}
