//! Every format's kernel against candle's own quantized matmul, against dequantize-then-matmul
//! on the same 8-bit activations, and against the scalar reference; decode and prompt shapes,
//! odd row counts, and the tails of the 4x2 tiles.

use super::*;
use candle_core::quantized::QMatMul;
use candle_core::{Device, Module};

const ALL: [GgmlDType; 8] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

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

fn quantized(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QTensor {
    let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype).unwrap()
}

fn group(qt: &QTensor) -> QGroup {
    QGroup::new(vec![Arc::new(QMatrix::from_qtensor(qt).unwrap())]).unwrap()
}

/// The largest difference, and the output's scale (its largest magnitude).
fn worst(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    (worst, scale)
}

/// Shapes (rows, cols, tokens) for a format: decode (1 token), short and long prompts (past
/// the 64-token work item), row counts that leave 1-3 rows after the 4-row tiles.
fn shapes(dtype: GgmlDType) -> Vec<(usize, usize, usize)> {
    let k = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K);
    // (candle's Q5_0/Q5_1/Q4_1 references assert an even number of blocks per row.)
    let (c1, c2) = if k { (512, 1536) } else { (576, 128) };
    vec![
        (67, c1, 1),
        (67, c1, 5),
        (9, c2, 3),
        (33, c2, 130),
        (6, c1, 2),
    ]
}

/// Each kernel equals candle's own quantized matmul (`QMatMul`, which quantizes the input the
/// same way and runs ggml's dot products) to 1e-5 of the output's scale.
#[test]
fn every_format_matches_candles_quantized_matmul() {
    for dtype in ALL {
        for (rows, cols, n) in shapes(dtype) {
            let qt = quantized(dtype, rows, cols, rows as u64 * 31 + cols as u64);
            let ours = group(&qt);
            let x = Tensor::from_vec(random(n * cols, 7 + n as u64), (1, n, cols), &Device::Cpu)
                .unwrap();
            let got = ours.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, n, rows]);
            let want = QMatMul::from_qtensor(qt).unwrap().forward(&x).unwrap();
            let (got, want) = (
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let (w, s) = worst(&got, &want);
            assert!(
                w <= 1e-5 * s,
                "{dtype:?} {rows}x{cols}, {n} tokens: off by {w} (scale {s})"
            );
        }
    }
}

/// Each kernel equals dequantize-then-matmul (candle's dequantizer for the weights, products
/// summed in f64) on the 8-bit activations it multiplies, to 1e-5 of the output's scale: the
/// check that the blocks are decoded right, independent of candle's dot products and of its
/// tiled x86 paths (64 rows by 512 columns is a shape those take).
#[test]
fn every_format_matches_dequantize_then_matmul() {
    for dtype in ALL {
        let f = Format::of(dtype).unwrap();
        let mut cases = vec![(64, 512, 1), (64, 512, 3), (13, 256, 2)];
        if f.block_len() == 32 {
            cases.push((5, 96, 3)); // an odd number of blocks: the AVX-512 tiles' padding pair
        }
        for (rows, cols, n) in cases {
            let qt = quantized(dtype, rows, cols, 3 + rows as u64);
            let w = qt
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let x = random(n * cols, 5 + n as u64);
            let acts = Acts::new(&x, cols, &[f.act()]);
            // The activations exactly as the kernel sees them (and the Q8_1 sums).
            let (xq, sums): (Vec<f64>, Vec<f64>) = match f.act() {
                ActKind::Q8K => (
                    acts.q8k
                        .iter()
                        .flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64))
                        .collect(),
                    vec![],
                ),
                kind => {
                    let blocks = if kind == ActKind::Q8_0 {
                        &acts.q8_0
                    } else {
                        &acts.q8_1
                    };
                    (
                        blocks
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64))
                            .collect(),
                        blocks.iter().map(|b| b.s as f64).collect(),
                    )
                }
            };
            let got = group(&qt).matmul(&x, n);
            let mut want = vec![0f32; n * rows];
            for t in 0..n {
                for r in 0..rows {
                    let mut s = 0f64;
                    for c in 0..cols {
                        s += w[r * cols + c] as f64 * xq[t * cols + c];
                    }
                    if matches!(f, Format::Q4_1 | Format::Q5_1) {
                        // ggml uses the f16-rounded block sums `s` for the minimum's share:
                        // replace the exact share by that one.
                        let m = QMatrix::as_stored(&qt).unwrap();
                        for (bi, blk) in m.row(r).chunks_exact(f.block_bytes()).enumerate() {
                            let min = act::f16_at(blk, 2) as f64;
                            let exact: f64 =
                                xq[t * cols + bi * 32..t * cols + bi * 32 + 32].iter().sum();
                            s += min * (sums[t * cols / 32 + bi] - exact);
                        }
                    }
                    want[t * rows + r] = s as f32;
                }
            }
            let (w, s) = worst(&got, &want);
            assert!(
                w <= 1e-5 * s,
                "{dtype:?} {rows}x{cols}, {n} tokens: off by {w} (scale {s})"
            );
        }
    }
}

#[test]
fn simd_tiles_match_the_scalar_reference() {
    for dtype in ALL {
        let cols = 512;
        let (rows, n) = (11, 3);
        let qt = quantized(dtype, rows, cols, 5);
        let m = Arc::new(QMatrix::from_qtensor(&qt).unwrap());
        let stored = QMatrix::as_stored(&qt).unwrap();
        let x = random(n * cols, 11);
        let acts = Acts::new(&x, cols, &[m.format.act()]);
        let got = QGroup::new(vec![m.clone()]).unwrap().matmul(&x, n);
        let want: Vec<f32> = (0..n)
            .flat_map(|t| (0..rows).map(move |r| (t, r)))
            .map(|(t, r)| scalar_dot(&stored, r, &acts, t))
            .collect();
        let (w, s) = worst(&got, &want);
        assert!(w <= 1e-5 * s, "{dtype:?}: off by {w} (scale {s})");
    }
}

/// A group equals its matrices run one by one, side by side, also when their formats (and so
/// their activation blocks) differ, as in Q4_K_M files.
#[test]
fn a_group_concatenates_its_matrices() {
    let cols = 512;
    let mats: Vec<_> = [
        (GgmlDType::Q4K, 32, 1u64),
        (GgmlDType::Q6K, 12, 2),
        (GgmlDType::Q5_0, 40, 3),
        (GgmlDType::Q4_1, 8, 4),
    ]
    .iter()
    .map(|&(d, r, s)| Arc::new(QMatrix::from_qtensor(&quantized(d, r, cols, s)).unwrap()))
    .collect();
    let n = 3;
    let x = random(n * cols, 9);
    let all = QGroup::new(mats.clone()).unwrap().matmul(&x, n);
    let ld = 92;
    let mut col0 = 0;
    for m in &mats {
        let one = QGroup::new(vec![m.clone()]).unwrap().matmul(&x, n);
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
fn refuses_other_formats_and_partial_blocks() {
    let w = Tensor::zeros((4, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
    for dtype in [GgmlDType::F16, GgmlDType::Q2K, GgmlDType::Q3K] {
        let t = QTensor::quantize(&w, dtype).unwrap();
        assert!(QMatrix::from_qtensor(&t).is_err(), "{dtype:?}");
    }
    assert!(QGroup::new(vec![]).is_err());
    let a = Arc::new(QMatrix::from_qtensor(&quantized(GgmlDType::Q8_0, 4, 64, 1)).unwrap());
    let b = Arc::new(QMatrix::from_qtensor(&quantized(GgmlDType::Q8_0, 4, 96, 1)).unwrap());
    assert!(QGroup::new(vec![a, b]).is_err(), "different input widths");
}

/// The AVX2, AVX2+VNNI tiles and the AVX-512 panels of each legacy format give the same products on any
/// CPU that has them, whichever one `run_rows` picks here (CI's CPU takes only one).
#[cfg(target_arch = "x86_64")]
#[test]
fn every_instruction_set_variant_agrees() {
    use tiles::Legacy;
    if !available() {
        return;
    }
    let has_vnni = std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl");
    let has_512 = has_vnni && std::arch::is_x86_feature_detected!("avx512bw");
    for dtype in &ALL[..5] {
        for (rows, cols, n) in [(9, 96, 5), (8, 576, 1), (13, 128, 7)] {
            let qt = quantized(*dtype, rows, cols, 17);
            let stored = QMatrix::as_stored(&qt).unwrap();
            let f = stored.format;
            let x = random(n * cols, 3);
            let acts = Acts::new(&x, cols, &[f.act()]);
            let a = if f.act() == ActKind::Q8_1 {
                &acts.q8_1
            } else {
                &acts.q8_0
            };
            let run = |m: &QMatrix, which: u8| {
                let mut out = vec![0f32; n * rows];
                let dst = Dst {
                    out: out.as_mut_ptr(),
                    ld: rows,
                    col0: 0,
                };
                macro_rules! go {
                    ($k:expr) => {
                        // SAFETY: features checked above; one thread owns `out`.
                        unsafe {
                            match which {
                                0 => run_tiles::<Legacy<{ $k }, false>>(m, 0..rows, a, 0..n, dst),
                                1 => run_tiles::<Legacy<{ $k }, true>>(m, 0..rows, a, 0..n, dst),
                                _ => run_panels::<panels::LegacyPanel<{ $k }>>(
                                    m,
                                    0..rows,
                                    a,
                                    0..n,
                                    dst,
                                ),
                            }
                        }
                    };
                }
                match f {
                    Format::Q4_0 => go!(avx2::Q4_0),
                    Format::Q4_1 => go!(avx2::Q4_1),
                    Format::Q5_0 => go!(avx2::Q5_0),
                    Format::Q5_1 => go!(avx2::Q5_1),
                    _ => go!(avx2::Q8_0),
                }
                out
            };
            let plain = run(&stored, 0);
            let want: Vec<f32> = (0..n)
                .flat_map(|t| (0..rows).map(move |r| (t, r)))
                .map(|(t, r)| scalar_dot(&stored, r, &acts, t))
                .collect();
            let (w, s) = worst(&plain, &want);
            assert!(w <= 1e-5 * s, "{dtype:?} AVX2: off by {w} (scale {s})");
            if has_vnni {
                let (w, s) = worst(&run(&stored, 1), &want);
                assert!(w <= 1e-5 * s, "{dtype:?} VNNI: off by {w} (scale {s})");
            }
            if has_512 {
                let k = f.legacy().unwrap();
                let paneled = QMatrix {
                    panels: true,
                    bytes: panel::pack(k, rows, cols / 32, |r| stored.row(r)),
                    format: f,
                    rows,
                    cols,
                };
                let (w, s) = worst(&run(&paneled, 2), &want);
                assert!(
                    w <= 1e-5 * s,
                    "{dtype:?} AVX-512 panels: off by {w} (scale {s})"
                );
            }
        }
    }
}

/// Random blocks of an i-quant format (candle cannot quantize to them): scales of realistic
/// size, every index and every 6-bit scale value possible.
fn iq_matrix(f: Format, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let blocks = rows * cols / f.block_len();
    let mut bytes = Vec::with_capacity(blocks * f.block_bytes());
    for _ in 0..blocks {
        let d = half::f16::from_f32(0.002 + (next() % 1000) as f32 * 1e-5);
        bytes.extend(d.to_bits().to_le_bytes());
        bytes.extend((0..f.block_bytes() - 2).map(|_| next() as u8));
    }
    QMatrix::from_blocks(f, rows, cols, bytes).unwrap()
}

/// The reference dequantization against the format as ggml defines it, on hand-made blocks:
/// IQ4_NL's codebook (low nibbles first), and IQ4_XS's 6-bit scales (four low bits in
/// `scales_l`, two high bits in `scales_h`, less 32).
#[test]
fn iq4_reference_dequantization_follows_ggml() {
    // IQ4_NL: d = 0.5; byte j holds index j (low) and 15 - j (high).
    let mut b = half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let v = act::dequantize(Format::IQ4NL, &b);
    assert_eq!(v.len(), 32);
    for j in 0..16 {
        assert_eq!(v[j], 0.5 * act::KVALUES_IQ4NL[j] as f32);
        assert_eq!(v[16 + j], 0.5 * act::KVALUES_IQ4NL[15 - j] as f32);
    }
    // IQ4_XS: d = 2; part 0 has ls = 0b01_0011 = 19 (scale -13), part 7 ls = 0b11_1111 = 63
    // (scale 31), the others 32 (scale 0); all indices 8 (value 1).
    let mut b = half::f16::from_f32(2.0).to_bits().to_le_bytes().to_vec();
    let h: u16 = 0b01 | (0b11 << 14) | (0b10 << 2) | (0b10 << 4) | (0b10 << 6);
    let h = h | (0b10 << 8) | (0b10 << 10) | (0b10 << 12);
    b.extend(h.to_le_bytes());
    b.extend([0x03, 0x00, 0x00, 0xF0]);
    b.extend([0x88u8; 128]);
    let v = act::dequantize(Format::IQ4XS, &b);
    assert_eq!(v.len(), 256);
    assert!(v[..32].iter().all(|&x| x == 2.0 * -13.0), "{:?}", &v[..32]);
    assert!(v[32..224].iter().all(|&x| x == 0.0));
    assert!(v[224..].iter().all(|&x| x == 2.0 * 31.0));
}

/// IQ4_NL and IQ4_XS: the kernels (whichever this CPU runs) equal dequantize-then-matmul in
/// f64 on the 8-bit activations they multiply (Q8_0 for IQ4_NL, Q8_K for IQ4_XS, as ggml), to
/// 1e-5 of the output's scale, and the scalar reference; decode and prompt shapes, row counts
/// that leave 1-3 rows after the 4-row tiles, prompts past the 64-token work item.
#[test]
fn iq4_formats_match_dequantize_then_matmul() {
    for f in [Format::IQ4NL, Format::IQ4XS] {
        let shapes: &[(usize, usize, usize)] = if f == Format::IQ4NL {
            &[
                (67, 576, 1),
                (67, 576, 5),
                (9, 128, 3),
                (33, 896, 130),
                (6, 96, 2),
            ]
        } else {
            &[
                (67, 512, 1),
                (67, 512, 5),
                (9, 1536, 3),
                (33, 256, 130),
                (6, 768, 2),
            ]
        };
        for &(rows, cols, n) in shapes {
            let m = Arc::new(iq_matrix(f, rows, cols, (rows * cols + n) as u64));
            let x = random(n * cols, 5 + n as u64);
            let acts = Acts::new(&x, cols, &[f.act()]);
            let xq: Vec<f64> = match f.act() {
                ActKind::Q8K => acts
                    .q8k
                    .iter()
                    .flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64))
                    .collect(),
                _ => acts
                    .q8_0
                    .iter()
                    .flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64))
                    .collect(),
            };
            let got = QGroup::new(vec![m.clone()]).unwrap().matmul(&x, n);
            // As the loader runs it: in panels on an AVX-512 CPU.
            let arranged = iq_matrix(f, rows, cols, (rows * cols + n) as u64).for_kernels();
            let got_arranged = QGroup::new(vec![Arc::new(arranged)]).unwrap().matmul(&x, n);
            let mut want = vec![0f32; n * rows];
            let mut scalar = vec![0f32; n * rows];
            for r in 0..rows {
                let w = m.dequantize_row(r);
                for t in 0..n {
                    let s: f64 = (0..cols).map(|c| w[c] as f64 * xq[t * cols + c]).sum();
                    want[t * rows + r] = s as f32;
                    scalar[t * rows + r] = scalar_dot(&m, r, &acts, t);
                }
            }
            let (w, s) = worst(&got, &want);
            assert!(s > 0.0);
            assert!(
                w <= 1e-5 * s,
                "{} {rows}x{cols}, {n} tokens: off by {w} (scale {s})",
                f.name()
            );
            let (w, s) = worst(&scalar, &want);
            assert!(w <= 1e-5 * s, "{} scalar reference: off by {w}", f.name());
            let (w, s) = worst(&got_arranged, &want);
            assert!(
                w <= 1e-5 * s,
                "{} {rows}x{cols}, {n} tokens, arranged for this CPU: off by {w}",
                f.name()
            );
        }
    }
}

/// On a CPU with AVX512-VNNI, the VNNI and plain AVX2 tiles of the i-quants agree.
#[cfg(target_arch = "x86_64")]
#[test]
fn iq4_instruction_set_variants_agree() {
    if !available() || !vnni() {
        return;
    }
    for f in [Format::IQ4NL, Format::IQ4XS] {
        let (rows, cols, n) = (13, 512, 6);
        let m = iq_matrix(f, rows, cols, 3);
        let x = random(n * cols, 8);
        let acts = Acts::new(&x, cols, &[f.act()]);
        let run = |vnni: bool| {
            let mut out = vec![0f32; n * rows];
            let dst = Dst {
                out: out.as_mut_ptr(),
                ld: rows,
                col0: 0,
            };
            // SAFETY: features checked above; one thread owns `out`.
            unsafe {
                match (f, vnni) {
                    (Format::IQ4NL, false) => run_tiles::<tiles::Legacy<{ avx2::IQ4_NL }, false>>(
                        &m,
                        0..rows,
                        &acts.q8_0,
                        0..n,
                        dst,
                    ),
                    (Format::IQ4NL, true) => run_tiles::<tiles::Legacy<{ avx2::IQ4_NL }, true>>(
                        &m,
                        0..rows,
                        &acts.q8_0,
                        0..n,
                        dst,
                    ),
                    (_, false) => {
                        run_tiles::<tiles::IQ4XS<false>>(&m, 0..rows, &acts.q8k, 0..n, dst)
                    }
                    (_, true) => run_tiles::<tiles::IQ4XS<true>>(&m, 0..rows, &acts.q8k, 0..n, dst),
                }
            }
            out
        };
        let (w, s) = worst(&run(true), &run(false));
        assert!(w <= 1e-6 * s, "{}: VNNI and AVX2 differ by {w}", f.name());
        // The AVX-512 panels, on a CPU that has them.
        if avx512() {
            let p = iq_matrix(f, rows, cols, 3).for_kernels();
            assert!(p.panels);
            let mut out = vec![0f32; n * rows];
            let dst = Dst {
                out: out.as_mut_ptr(),
                ld: rows,
                col0: 0,
            };
            // SAFETY: features checked (`avx512()`); one thread owns `out`.
            unsafe { run_rows(&p, 0..rows, &acts, 0..n, dst) };
            let (w, s) = worst(&out, &run(false));
            assert!(w <= 1e-5 * s, "{}: panels and AVX2 differ by {w}", f.name());
        }
    }
}
