//! Activation blocks and the plain-Rust reference dot product of each weight format.
//!
//! Activations are quantized exactly as ggml (and candle, which follows it) quantize them for
//! each weight type's dot product: `Q8_0` blocks of 32 for Q4_0, Q5_0 and Q8_0 weights, `Q8_1`
//! blocks of 32 (with the scaled sum) for Q4_1 and Q5_1, and `Q8_K` blocks of 256 (with sums
//! per 16) for the K-quants. The integer sums are then exact, so a kernel and the reference
//! differ only in the order of float additions.

use half::f16;

use super::Format;

/// One 32-value activation block: `d` (rounded to f16, kept as f32), `s` (for Q8_1: the f16
/// rounding of `d * Σ qs`; unused for Q8_0), the exact integer `sum = Σ qs` (for the weight
/// offsets of the panel kernels) and the values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Act32 {
    pub d: f32,
    pub s: f32,
    pub sum: i32,
    pub qs: [i8; 32],
}

/// One 256-value activation block (ggml's `block_q8_K`): `d` in f32, the values, and the sum
/// of each run of 16 values (and of each run of 32, as f32, for the Q4_K panels).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct Act256 {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
    pub bsum32: [f32; 8],
}

impl Default for Act256 {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16],
            bsum32: [0.0; 8],
        }
    }
}

/// `quantize_row_q8_0`: `d = amax / 127` rounded to f16; values from the unrounded scale.
pub(super) fn quantize_q8_0(xs: &[f32], out: &mut [Act32]) {
    for (x, y) in xs.chunks_exact(32).zip(out.iter_mut()) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in y.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        y.d = f16::from_f32(d).to_f32();
        y.s = 0.0;
        y.sum = sum;
    }
}

/// `quantize_row_q8_1`: as Q8_0, plus `s = d * Σ qs`, both rounded to f16 as ggml does.
pub(super) fn quantize_q8_1(xs: &[f32], out: &mut [Act32]) {
    quantize_q8_0(xs, out);
    for y in out.iter_mut() {
        y.s = f16::from_f32(f16::from_f32(y.sum as f32).to_f32() * y.d).to_f32();
    }
}

/// `quantize_row_q8_K`: the scale from the value of largest magnitude (its sign kept), `d` in
/// f32, and the sums per 16.
pub(super) fn quantize_q8_k(xs: &[f32], out: &mut [Act256]) {
    for (x, y) in xs.chunks_exact(256).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = Act256::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in y.qs.iter_mut().zip(x) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (j, s) in y.bsums.iter_mut().enumerate() {
            *s = y.qs[j * 16..(j + 1) * 16]
                .iter()
                .map(|&q| q as i32)
                .sum::<i32>() as i16;
        }
        for (j, s) in y.bsum32.iter_mut().enumerate() {
            *s = (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32) as f32;
        }
        y.d = 1.0 / iscale;
    }
}

pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K
/// super-block.
pub(super) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// IQ4_NL's and IQ4_XS's codebook (ggml's `kvalues_iq4nl`): what each 4-bit index means.
pub(super) const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The 6-bit scale of part `ib` (of 8) of an IQ4_XS super-block, less its offset of 32.
pub(super) fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let h = u16::from_le_bytes([b[2], b[3]]) as i32;
    let l = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F) as i32;
    (l | (((h >> (2 * ib)) & 3) << 4)) - 32
}

/// The 32 codebook values of 16 bytes of IQ4 indices: low nibbles, then high.
fn iq4_values(qs: &[u8]) -> [i32; 32] {
    let mut v = [0i32; 32];
    for j in 0..16 {
        v[j] = KVALUES_IQ4NL[(qs[j] & 0x0F) as usize] as i32;
        v[j + 16] = KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
    }
    v
}

/// One weight row (raw blocks) in f32, as ggml's `dequantize_row_*` gives it: the reference
/// every kernel is tested against, and the way rows of an embedding table in a format candle
/// does not read are looked up.
pub(super) fn dequantize(f: Format, row: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(row.len() / f.block_bytes() * f.block_len());
    for b in row.chunks_exact(f.block_bytes()) {
        match f {
            Format::IQ4XS => {
                let d = f16_at(b, 0);
                for ib in 0..8 {
                    let dl = d * iq4xs_scale(b, ib) as f32;
                    let v = iq4_values(&b[8 + 16 * ib..8 + 16 * ib + 16]);
                    out.extend(v.iter().map(|&q| dl * q as f32));
                }
            }
            Format::Q4K | Format::Q5K | Format::Q6K => {
                let (q, sc, mn) = values256(f, b);
                for i in 0..256 {
                    out.push(match f {
                        Format::Q6K => f16_at(b, 208) * (sc[i] * q[i]) as f32,
                        _ => f16_at(b, 0) * (sc[i] * q[i]) as f32 - f16_at(b, 2) * mn[i] as f32,
                    });
                }
            }
            _ => {
                let (d, m) = match f {
                    Format::Q4_1 | Format::Q5_1 => (f16_at(b, 0), f16_at(b, 2)),
                    _ => (f16_at(b, 0), 0.0),
                };
                out.extend(values32(f, b).iter().map(|&q| d * q as f32 + m));
            }
        }
    }
    out
}

/// The 32 integer values of one 32-element block of a legacy format, offsets removed (signed
/// for Q4_0, Q5_0 and Q8_0; IQ4_NL's codebook values).
pub(super) fn values32(f: Format, b: &[u8]) -> [i32; 32] {
    let mut v = [0i32; 32];
    let (qs, qh, off) = match f {
        Format::Q4_0 => (&b[2..18], None, 8),
        Format::Q4_1 => (&b[4..20], None, 0),
        Format::Q5_0 => (&b[6..22], Some(&b[2..6]), 16),
        Format::Q5_1 => (&b[8..24], Some(&b[4..8]), 0),
        Format::Q8_0 => {
            for (o, &q) in v.iter_mut().zip(&b[2..34]) {
                *o = q as i8 as i32;
            }
            return v;
        }
        Format::IQ4NL => return iq4_values(&b[2..18]),
        _ => unreachable!("not a 32-element format"),
    };
    let h = qh.map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    for j in 0..16 {
        let lo = (qs[j] & 0x0F) as i32 | ((((h >> j) & 1) << 4) as i32);
        let hi = (qs[j] >> 4) as i32 | ((((h >> (j + 16)) & 1) << 4) as i32);
        v[j] = lo - off;
        v[j + 16] = hi - off;
    }
    v
}

/// The reference dot product of one weight row (`row`, raw blocks) with one activation row,
/// in ggml's arithmetic. What the SIMD tiles are tested against.
pub(super) fn dot_32(f: Format, row: &[u8], acts: &[Act32]) -> f32 {
    let mut sum = 0f32;

    for (b, a) in row.chunks_exact(f.block_bytes()).zip(acts) {
        let v = values32(f, b);
        let si: i32 = v.iter().zip(&a.qs).map(|(&w, &q)| w * q as i32).sum();
        sum += match f {
            Format::Q4_1 | Format::Q5_1 => si as f32 * f16_at(b, 0) * a.d + f16_at(b, 2) * a.s,
            _ => si as f32 * f16_at(b, 0) * a.d,
        };
    }
    sum
}

/// The 256 values of one K-quant super-block with their sub-block scales (`scale[i]` for
/// value `i`) and minimums, as integers: the weight is `d * scale * q - dmin * min`.
fn values256(f: Format, b: &[u8]) -> ([i32; 256], [i32; 256], [i32; 256]) {
    let (mut q, mut sc, mut mn) = ([0i32; 256], [0i32; 256], [0i32; 256]);
    match f {
        Format::Q4K | Format::Q5K => {
            let scales = &b[4..16];
            let (qh, qs) = if f == Format::Q5K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for c in 0..4 {
                for l in 0..32 {
                    let byte = qs[c * 32 + l];
                    let (mut lo, mut hi) = ((byte & 0x0F) as i32, (byte >> 4) as i32);
                    if let Some(qh) = qh {
                        lo |= (((qh[l] >> (2 * c)) & 1) as i32) << 4;
                        hi |= (((qh[l] >> (2 * c + 1)) & 1) as i32) << 4;
                    }
                    q[c * 64 + l] = lo;
                    q[c * 64 + 32 + l] = hi;
                }
            }
            for i in 0..256 {
                let (s, m) = scale_min_k4(i / 32, scales);
                sc[i] = s as i32;
                mn[i] = m as i32;
            }
        }
        Format::Q6K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            for n in 0..2 {
                for l in 0..32 {
                    let h = qh[32 * n + l];
                    let (a, c) = (ql[64 * n + l], ql[64 * n + 32 + l]);
                    q[128 * n + l] = ((a & 0x0F) | ((h & 3) << 4)) as i32 - 32;
                    q[128 * n + 32 + l] = ((c & 0x0F) | (((h >> 2) & 3) << 4)) as i32 - 32;
                    q[128 * n + 64 + l] = ((a >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                    q[128 * n + 96 + l] = ((c >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                }
            }
            for i in 0..256 {
                sc[i] = scales[i / 16] as i8 as i32;
            }
        }
        _ => unreachable!("not a K-quant"),
    }
    (q, sc, mn)
}

pub(super) fn dot_256(f: Format, row: &[u8], acts: &[Act256]) -> f32 {
    let mut sum = 0f32;
    if f == Format::IQ4XS {
        // ggml's `ggml_vec_dot_iq4_xs_q8_K`: an integer sum over the super-block, each part's
        // sum times its scale less 32, then `d * da`.
        for (b, a) in row.chunks_exact(136).zip(acts) {
            let mut si = 0i32;
            for ib in 0..8 {
                let v = iq4_values(&b[8 + 16 * ib..8 + 16 * ib + 16]);
                let s: i32 = v
                    .iter()
                    .zip(&a.qs[32 * ib..32 * ib + 32])
                    .map(|(&w, &q)| w * q as i32)
                    .sum();
                si += iq4xs_scale(b, ib) * s;
            }
            sum += f16_at(b, 0) * a.d * si as f32;
        }
        return sum;
    }
    for (b, a) in row.chunks_exact(f.block_bytes()).zip(acts) {
        let (q, sc, mn) = values256(f, b);
        let mut si = 0i32;
        let mut sm = 0i32;
        for i in 0..256 {
            si += sc[i] * q[i] * a.qs[i] as i32;
            sm += mn[i] * a.qs[i] as i32;
        }
        sum += match f {
            Format::Q6K => f16_at(b, 208) * a.d * si as f32,
            _ => f16_at(b, 0) * a.d * si as f32 - f16_at(b, 2) * a.d * sm as f32,
        };
    }
    sum
}
