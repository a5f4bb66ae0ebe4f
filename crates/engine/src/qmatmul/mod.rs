//! Quantized matrix products on the CPU with AVX2, as a candle custom op: every weight format
//! that the GGUF files people download carry (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
//! and the non-linear IQ4_NL and IQ4_XS, which candle does not have at all).
//!
//! Why: candle's CPU kernels are a dot product per (row, token) pair: a prompt re-reads and
//! re-unpacks every weight block once per token, and some formats have no SIMD kernel at all
//! (Q4_1 and Q5_0, the fallback type of Q4_K_M files for rows that are not a multiple of 256,
//! are scalar). These kernels run the weights exactly as the file stores them (the blocks are
//! copied, not converted, so nothing about the model changes) in tiles of 4 rows by 2 tokens:
//! each weight block is unpacked once per tile and used for both tokens.
//!
//! The arithmetic is ggml's (`ggml_vec_dot_*`), which candle's reference follows too: each
//! activation row is quantized to 8 bits the way ggml quantizes it for that weight type (see
//! [`act`]), and a block's product is an exact integer sum times the two scales. Several
//! matrices that read the same input (Q, K, V; gate, up) run as one op, even when their
//! formats differ (Q4_K_M files mix Q4_K and Q6_K): the input is quantized once per kind of
//! activation block, and the threads split all their rows in one parallel region on candle's
//! own persistent thread pool, so there is one wake-up per group, not per matrix.

mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod panel;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::{Error, Result};
use act::{Act256, Act32};

fn internal(msg: String) -> Error {
    Error::Compute(candle_core::Error::Msg(msg))
}

/// A weight format these kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    /// ggml's non-linear 4-bit format: blocks of 32, an f16 scale and 16 bytes of indices
    /// into a 16-value codebook (`kvalues_iq4nl`). Q4_0's layout, other values.
    IQ4NL,
    /// IQ4_NL's codebook in super-blocks of 256: an f16 scale, and a 6-bit scale per 32
    /// values (136 bytes, 4.25 bits a weight).
    IQ4XS,
}

/// Which activation blocks a format's dot product reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActKind {
    Q8_0,
    Q8_1,
    Q8K,
}

impl Format {
    /// The format of a GGUF tensor type, if these kernels run it.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// Values per block.
    pub(crate) fn block_len(self) -> usize {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K | Self::IQ4XS => 256,
            _ => 32,
        }
    }

    /// ggml's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::IQ4NL => "IQ4_NL",
            Self::IQ4XS => "IQ4_XS",
        }
    }

    /// Bytes per block, as GGUF stores them.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::IQ4NL => 18,
            Self::IQ4XS => 136,
        }
    }

    /// The const parameter of the legacy tiles, for the 32-element formats.
    #[cfg(target_arch = "x86_64")]
    fn legacy(self) -> Option<u8> {
        Some(match self {
            Self::Q4_0 => avx2::Q4_0,
            Self::Q4_1 => avx2::Q4_1,
            Self::Q5_0 => avx2::Q5_0,
            Self::Q5_1 => avx2::Q5_1,
            Self::Q8_0 => avx2::Q8_0,
            Self::IQ4NL => avx2::IQ4_NL,
            _ => return None,
        })
    }

    fn act(self) -> ActKind {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 | Self::IQ4NL => ActKind::Q8_0,
            Self::Q4_1 | Self::Q5_1 => ActKind::Q8_1,
            Self::Q4K | Self::Q5K | Self::Q6K | Self::IQ4XS => ActKind::Q8K,
        }
    }
}

/// A quantized weight matrix of `rows` outputs by `cols` inputs: the file's blocks, row-major
/// as stored, or (legacy formats, Q4_K and Q6_K on AVX-512 CPUs) in panels of 16 rows, see
/// [`panel`].
#[derive(Debug)]
pub struct QMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// Legacy formats, Q4_K and Q6_K on AVX-512 CPUs: panels of 16 rows, see [`panel`].
    panels: bool,
    bytes: Vec<u8>,
}

impl QMatrix {
    /// Copies the blocks of a tensor of shape `(rows, cols)` in one of the [`Format`]s, in the
    /// order the fastest kernel of this CPU reads them.
    pub fn from_qtensor(t: &QTensor) -> Result<Self> {
        Ok(Self::as_stored(t)?.for_kernels())
    }

    /// The same matrix in the order the fastest kernel of this CPU reads it (panels on
    /// AVX-512 CPUs; as stored otherwise).
    pub fn for_kernels(self) -> Self {
        let m = self;
        if m.panels {
            return m;
        }
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            let bytes = match (m.format, m.format.legacy()) {
                (_, Some(k)) => Some(panel::pack(k, m.rows, m.cols / 32, |r| m.row(r))),
                (Format::Q4K, _) => Some(panel::pack_q4k(m.rows, m.cols / 256, |r| m.row(r))),
                (Format::Q6K, _) => Some(panel::pack_q6k(m.rows, m.cols / 256, |r| m.row(r))),
                (Format::IQ4XS, _) => Some(panel::pack_iq4xs(m.rows, m.cols / 256, |r| m.row(r))),
                _ => None,
            };
            if let Some(bytes) = bytes {
                return Self {
                    panels: true,
                    bytes,
                    ..m
                };
            }
        }
        m
    }

    /// The blocks in the file's order (what the AVX2 tiles and the scalar reference read).
    fn as_stored(t: &QTensor) -> Result<Self> {
        let Some(format) = Format::of(t.dtype()) else {
            return Err(internal(format!(
                "the quantized kernels do not run {:?} tensors",
                t.dtype()
            )));
        };
        let (rows, cols) = t.shape().dims2()?;
        if cols % format.block_len() != 0 {
            return Err(internal(format!(
                "a {format:?} matrix of {cols} columns is not whole blocks"
            )));
        }
        let bytes = t.data()?.into_owned();
        let want = rows
            .checked_mul(cols / format.block_len())
            .and_then(|b| b.checked_mul(format.block_bytes()));
        if want != Some(bytes.len()) {
            return Err(internal(format!(
                "a {format:?} matrix of {rows}x{cols} holds {} bytes",
                bytes.len()
            )));
        }
        Ok(Self {
            format,
            rows,
            cols,
            panels: false,
            bytes,
        })
    }

    /// A matrix of `rows` by `cols` from its blocks as the file stores them (the formats candle
    /// does not read: IQ4_NL, IQ4_XS).
    pub fn from_blocks(format: Format, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self> {
        if !cols.is_multiple_of(format.block_len()) {
            return Err(internal(format!(
                "a {} matrix of {cols} columns is not whole blocks",
                format.name()
            )));
        }
        if Some(bytes.len()) != (cols / format.block_len() * format.block_bytes()).checked_mul(rows)
        {
            return Err(internal(format!(
                "a {} matrix of {rows}x{cols} holds {} bytes",
                format.name(),
                bytes.len()
            )));
        }
        Ok(Self {
            format,
            rows,
            cols,
            panels: false,
            bytes,
        })
    }

    /// Row `r` in f32, by the format's reference dequantization (blocks as stored only, not
    /// after [`QMatrix::for_kernels`]).
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        assert!(!self.panels, "dequantize_row reads blocks as stored");
        act::dequantize(self.format, self.row(r))
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per row, as stored (not for panel matrices).
    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_len() * self.format.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes[r * n..(r + 1) * n]
    }
}

/// Whether this CPU has AVX512-VNNI with VL (the `vpdpbusd` variants; checked once).
/// `SINKCHAT_NO_VNNI=1` turns them off, to measure or test the AVX2 path on such a CPU.
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            std::env::var("SINKCHAT_NO_VNNI").as_deref() != Ok("1")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the AVX-512 panels (F, BW, VL and VNNI; checked once; off with
/// `SINKCHAT_NO_VNNI=1` too).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            vnni()
                && available()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs the kernels (AVX2, FMA and F16C; checked once).
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

/// The input rows quantized once for each kind of block a group's formats read.
#[derive(Default)]
struct Acts {
    q8_0: Vec<Act32>,
    q8_1: Vec<Act32>,
    q8k: Vec<Act256>,
}

impl Acts {
    /// `kinds`: the blocks the group's matrices read.
    fn new(x: &[f32], cols: usize, kinds: &[ActKind]) -> Self {
        /// Each row of `x` quantized into `cols / len` blocks by `quantize`; a prompt chunk's
        /// rows in parallel (on one thread this was a twentieth of a prompt, the other thread
        /// waiting).
        fn rows<B: Clone + Default + Send>(
            x: &[f32],
            cols: usize,
            len: usize,
            quantize: fn(&[f32], &mut [B]),
        ) -> Vec<B> {
            let mut out = vec![B::default(); x.len() / len];
            let per = cols / len;
            crate::par::rows_mut(&mut out, per, 8, |t, br| {
                quantize(&x[t * cols..(t + 1) * cols], br)
            });
            out
        }
        let mut acts = Acts::default();
        if kinds.contains(&ActKind::Q8_0) {
            acts.q8_0 = rows(x, cols, 32, act::quantize_q8_0);
        }
        if kinds.contains(&ActKind::Q8_1) {
            acts.q8_1 = rows(x, cols, 32, act::quantize_q8_1);
        }
        if kinds.contains(&ActKind::Q8K) {
            acts.q8k = rows(x, cols, 256, act::quantize_q8_k);
        }
        acts
    }
}

/// Where one work item writes: `out[t * ld + col0 + r]`.
#[derive(Clone, Copy)]
struct Dst {
    out: *mut f32,
    ld: usize,
    col0: usize,
}

impl Dst {
    /// # Safety
    /// The element must be inside the output and owned by the calling work item.
    unsafe fn put(self, t: usize, r: usize, v: f32) {
        // SAFETY: as the caller guarantees.
        unsafe { *self.out.add(t * self.ld + self.col0 + r) = v }
    }
}

/// A tile kernel for one activation block type, so one scheduler serves every format.
trait Tiles {
    type A;
    /// # Safety
    /// The CPU has AVX2/FMA/F16C; every pointer addresses `nb` blocks.
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const Self::A; T],
        nb: usize,
    ) -> [[f32; T]; R];
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::avx2;
    use super::{Act256, Act32, Tiles};

    pub(super) struct Legacy<const K: u8, const VNNI: bool>;
    pub(super) struct K45<const Q5: bool>;
    pub(super) struct K6;
    pub(super) struct IQ4XS<const VNNI: bool>;

    impl<const VNNI: bool> Tiles for IQ4XS<VNNI> {
        type A = Act256;
        unsafe fn tile<const R: usize, const T: usize>(
            w: [*const u8; R],
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; T]; R] {
            // SAFETY: forwarded from the caller (VNNI only where `vnni()` said so).
            unsafe {
                if VNNI {
                    avx2::tile_iq4xs_vnni::<R, T>(w, a, nb)
                } else {
                    avx2::tile_iq4xs::<R, T>(w, a, nb)
                }
            }
        }
    }

    impl<const K: u8, const VNNI: bool> Tiles for Legacy<K, VNNI> {
        type A = Act32;
        unsafe fn tile<const R: usize, const T: usize>(
            w: [*const u8; R],
            a: [*const Act32; T],
            nb: usize,
        ) -> [[f32; T]; R] {
            // SAFETY: forwarded from the caller (VNNI only where `vnni()` said so).
            unsafe {
                if VNNI {
                    avx2::tile32_vnni::<K, R, T>(w, a, nb)
                } else {
                    avx2::tile32::<K, R, T>(w, a, nb)
                }
            }
        }
    }

    impl<const Q5: bool> Tiles for K45<Q5> {
        type A = Act256;
        unsafe fn tile<const R: usize, const T: usize>(
            w: [*const u8; R],
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; T]; R] {
            // SAFETY: forwarded from the caller.
            unsafe { avx2::tile_k45::<Q5, R, T>(w, a, nb) }
        }
    }

    impl Tiles for K6 {
        type A = Act256;
        unsafe fn tile<const R: usize, const T: usize>(
            w: [*const u8; R],
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; T]; R] {
            // SAFETY: forwarded from the caller.
            unsafe { avx2::tile_q6k::<R, T>(w, a, nb) }
        }
    }
}

/// Rows `rows` of `m` for tokens `tokens`: one row at a time for fewer than 4 tokens, else in
/// tiles of 4 rows by 4 tokens (and their tails).
///
/// # Safety
/// AVX2/FMA/F16C; `acts` holds `nb` blocks per token; `dst` as in [`Dst::put`].
unsafe fn run_tiles<K: Tiles>(
    m: &QMatrix,
    rows: std::ops::Range<usize>,
    acts: &[K::A],
    tokens: std::ops::Range<usize>,
    dst: Dst,
) {
    const RM: usize = 4;
    const TN: usize = 4;
    let nb = m.cols / m.format.block_len();
    let act = |t: usize| acts[t * nb..].as_ptr();
    let w = |r: usize| m.row(r).as_ptr();
    // SAFETY (every call and write below): as the caller guarantees.
    if tokens.len() < 4 {
        // A decode step (or a short chunk) reads each weight once: stream the rows one at a
        // time. Four interleaved row streams measured 1.5-2x slower on large matrices here
        // (the hardware prefetcher follows one sequential stream per thread far better).
        for r in rows {
            let mut t = tokens.start;
            while t + 2 <= tokens.end {
                let v = unsafe { K::tile::<1, 2>([w(r)], [act(t), act(t + 1)], nb) };
                unsafe {
                    dst.put(t, r, v[0][0]);
                    dst.put(t + 1, r, v[0][1]);
                }
                t += 2;
            }
            if t < tokens.end {
                let v = unsafe { K::tile::<1, 1>([w(r)], [act(t)], nb) };
                unsafe { dst.put(t, r, v[0][0]) };
            }
        }
        return;
    }
    let put = |t: usize, r: usize, v: &[f32]| {
        for (j, &x) in v.iter().enumerate() {
            unsafe { dst.put(t + j, r, x) };
        }
    };
    let mut r = rows.start;
    while r + RM <= rows.end {
        let ws: [*const u8; RM] = std::array::from_fn(|i| w(r + i));
        let mut t = tokens.start;
        while t + TN <= tokens.end {
            let a: [*const K::A; TN] = std::array::from_fn(|j| act(t + j));
            let v = unsafe { K::tile::<RM, TN>(ws, a, nb) };
            for (i, row) in v.iter().enumerate() {
                put(t, r + i, row);
            }
            t += TN;
        }
        if t + 2 <= tokens.end {
            let v = unsafe { K::tile::<RM, 2>(ws, [act(t), act(t + 1)], nb) };
            for (i, row) in v.iter().enumerate() {
                put(t, r + i, row);
            }
            t += 2;
        }
        if t < tokens.end {
            let v = unsafe { K::tile::<RM, 1>(ws, [act(t)], nb) };
            for (i, row) in v.iter().enumerate() {
                put(t, r + i, row);
            }
        }
        r += RM;
    }
    for r in r..rows.end {
        for t in tokens.clone() {
            let v = unsafe { K::tile::<1, 1>([w(r)], [act(t)], nb) };
            unsafe { dst.put(t, r, v[0][0]) };
        }
    }
}

/// A panel kernel for one activation block type, so one scheduler serves every panel format.
#[cfg(target_arch = "x86_64")]
trait Panel {
    type A;
    /// Bytes of one block (super-block) of one panel.
    const BLOCK_BYTES: usize;
    /// # Safety
    /// As [`panel::tile`].
    unsafe fn tile<const T: usize>(
        w: *const u8,
        a: [*const Self::A; T],
        nb: usize,
    ) -> [[f32; panel::ROWS]; T];
}

#[cfg(target_arch = "x86_64")]
mod panels {
    use super::{panel, Act256, Act32, Panel};

    pub(super) struct LegacyPanel<const K: u8>;
    pub(super) struct Q4KPanel;
    pub(super) struct Q6KPanel;
    pub(super) struct IQ4XSPanel;

    impl Panel for IQ4XSPanel {
        type A = Act256;
        const BLOCK_BYTES: usize = panel::IQ4XS_BYTES;
        unsafe fn tile<const T: usize>(
            w: *const u8,
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; panel::ROWS]; T] {
            // SAFETY: forwarded from the caller.
            unsafe { panel::tile_iq4xs::<T>(w, a, nb) }
        }
    }

    impl<const K: u8> Panel for LegacyPanel<K> {
        type A = Act32;
        const BLOCK_BYTES: usize = panel::block_bytes(K);
        unsafe fn tile<const T: usize>(
            w: *const u8,
            a: [*const Act32; T],
            nb: usize,
        ) -> [[f32; panel::ROWS]; T] {
            // SAFETY: forwarded from the caller.
            unsafe { panel::tile::<K, T>(w, a, nb) }
        }
    }

    impl Panel for Q4KPanel {
        type A = Act256;
        const BLOCK_BYTES: usize = panel::Q4K_BYTES;
        unsafe fn tile<const T: usize>(
            w: *const u8,
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; panel::ROWS]; T] {
            // SAFETY: forwarded from the caller.
            unsafe { panel::tile_q4k::<T>(w, a, nb) }
        }
    }

    impl Panel for Q6KPanel {
        type A = Act256;
        const BLOCK_BYTES: usize = panel::Q6K_BYTES;
        unsafe fn tile<const T: usize>(
            w: *const u8,
            a: [*const Act256; T],
            nb: usize,
        ) -> [[f32; panel::ROWS]; T] {
            // SAFETY: forwarded from the caller.
            unsafe { panel::tile_q6k::<T>(w, a, nb) }
        }
    }
}

/// Rows `rows` (starting at a multiple of 16) of a panel matrix for `tokens`, 8 tokens at a
/// time (then 4, 2, 1).
///
/// # Safety
/// AVX-512 as for [`panel::tile`]; `acts` holds the matrix's blocks per token; `dst` as in
/// [`Dst::put`].
#[cfg(target_arch = "x86_64")]
unsafe fn run_panels<P: Panel>(
    m: &QMatrix,
    rows: std::ops::Range<usize>,
    acts: &[P::A],
    tokens: std::ops::Range<usize>,
    dst: Dst,
) {
    let nb = m.cols / m.format.block_len();
    let panel_bytes = nb * P::BLOCK_BYTES;
    let act = |t: usize| acts[t * nb..].as_ptr();
    debug_assert_eq!(rows.start % panel::ROWS, 0);
    for p0 in rows.clone().step_by(panel::ROWS) {
        let w = m.bytes[p0 / panel::ROWS * panel_bytes..].as_ptr();
        let valid = (rows.end - p0).min(panel::ROWS);
        let put = |t: usize, v: &[[f32; panel::ROWS]]| {
            for (j, out) in v.iter().enumerate() {
                for (i, &x) in out[..valid].iter().enumerate() {
                    // SAFETY: as the caller guarantees.
                    unsafe { dst.put(t + j, p0 + i, x) };
                }
            }
        };
        let mut t = tokens.start;
        // SAFETY (each tile): as the caller guarantees.
        while t + 8 <= tokens.end {
            put(t, &unsafe {
                P::tile::<8>(w, std::array::from_fn(|j| act(t + j)), nb)
            });
            t += 8;
        }
        if t + 4 <= tokens.end {
            put(t, &unsafe {
                P::tile::<4>(w, std::array::from_fn(|j| act(t + j)), nb)
            });
            t += 4;
        }
        if t + 2 <= tokens.end {
            put(t, &unsafe { P::tile::<2>(w, [act(t), act(t + 1)], nb) });
            t += 2;
        }
        if t < tokens.end {
            put(t, &unsafe { P::tile::<1>(w, [act(t)], nb) });
        }
    }
}

/// [`run_tiles`] for a legacy format, with `vpdpbusd` where the CPU has AVX512-VNNI.
///
/// # Safety
/// As [`run_tiles`].
#[cfg(target_arch = "x86_64")]
unsafe fn run_legacy<const K: u8>(
    m: &QMatrix,
    rows: std::ops::Range<usize>,
    acts: &[Act32],
    tokens: std::ops::Range<usize>,
    dst: Dst,
) {
    use tiles::Legacy;
    // SAFETY: forwarded; VNNI only where `vnni()` found it.
    unsafe {
        if vnni() {
            run_tiles::<Legacy<K, true>>(m, rows, acts, tokens, dst)
        } else {
            run_tiles::<Legacy<K, false>>(m, rows, acts, tokens, dst)
        }
    }
}

/// One work item: rows of one matrix for a range of tokens.
///
/// # Safety
/// `dst` as in [`Dst::put`]; `acts` quantized for this matrix's format.
unsafe fn run_rows(
    m: &QMatrix,
    rows: std::ops::Range<usize>,
    acts: &Acts,
    tokens: std::ops::Range<usize>,
    dst: Dst,
) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        use tiles::{K45, K6};
        use Format as F;
        // SAFETY: AVX2/FMA/F16C checked (and VNNI where chosen); the rest as the caller
        // guarantees.
        unsafe {
            let (q8_0, q8_1, q8k) = (&acts.q8_0, &acts.q8_1, &acts.q8k);
            if m.panels {
                use panels::{LegacyPanel as L, Q4KPanel, Q6KPanel};
                match m.format {
                    F::Q4_0 => run_panels::<L<{ avx2::Q4_0 }>>(m, rows, q8_0, tokens, dst),
                    F::Q4_1 => run_panels::<L<{ avx2::Q4_1 }>>(m, rows, q8_1, tokens, dst),
                    F::Q5_0 => run_panels::<L<{ avx2::Q5_0 }>>(m, rows, q8_0, tokens, dst),
                    F::Q5_1 => run_panels::<L<{ avx2::Q5_1 }>>(m, rows, q8_1, tokens, dst),
                    F::Q8_0 => run_panels::<L<{ avx2::Q8_0 }>>(m, rows, q8_0, tokens, dst),
                    F::Q4K => run_panels::<Q4KPanel>(m, rows, q8k, tokens, dst),
                    F::IQ4NL => run_panels::<L<{ avx2::IQ4_NL }>>(m, rows, q8_0, tokens, dst),
                    F::IQ4XS => run_panels::<panels::IQ4XSPanel>(m, rows, q8k, tokens, dst),
                    _ => run_panels::<Q6KPanel>(m, rows, q8k, tokens, dst),
                }
                return;
            }
            match m.format {
                F::Q4_0 => run_legacy::<{ avx2::Q4_0 }>(m, rows, q8_0, tokens, dst),
                F::Q4_1 => run_legacy::<{ avx2::Q4_1 }>(m, rows, q8_1, tokens, dst),
                F::Q5_0 => run_legacy::<{ avx2::Q5_0 }>(m, rows, q8_0, tokens, dst),
                F::Q5_1 => run_legacy::<{ avx2::Q5_1 }>(m, rows, q8_1, tokens, dst),
                F::Q8_0 => run_legacy::<{ avx2::Q8_0 }>(m, rows, q8_0, tokens, dst),
                F::Q4K => run_tiles::<K45<false>>(m, rows, q8k, tokens, dst),
                F::Q5K => run_tiles::<K45<true>>(m, rows, q8k, tokens, dst),
                F::Q6K => run_tiles::<K6>(m, rows, q8k, tokens, dst),
                F::IQ4NL => run_legacy::<{ avx2::IQ4_NL }>(m, rows, q8_0, tokens, dst),
                F::IQ4XS => {
                    if vnni() {
                        run_tiles::<tiles::IQ4XS<true>>(m, rows, q8k, tokens, dst)
                    } else {
                        run_tiles::<tiles::IQ4XS<false>>(m, rows, q8k, tokens, dst)
                    }
                }
            }
        }
        return;
    }
    for r in rows {
        for t in tokens.clone() {
            let v = scalar_dot(m, r, acts, t);
            // SAFETY: as the caller guarantees.
            unsafe { dst.put(t, r, v) };
        }
    }
}

/// The reference product of row `r` and token `t` (no SIMD).
fn scalar_dot(m: &QMatrix, r: usize, acts: &Acts, t: usize) -> f32 {
    let nb = m.cols / m.format.block_len();
    match m.format.act() {
        ActKind::Q8_0 => act::dot_32(m.format, m.row(r), &acts.q8_0[t * nb..(t + 1) * nb]),
        ActKind::Q8_1 => act::dot_32(m.format, m.row(r), &acts.q8_1[t * nb..(t + 1) * nb]),
        ActKind::Q8K => act::dot_256(m.format, m.row(r), &acts.q8k[t * nb..(t + 1) * nb]),
    }
}

/// Tokens handled together inside one work item, so a thread's weight rows and the
/// activations they meet both stay in cache during a prompt.
const TOKEN_BLOCK: usize = 64;
/// Rows per work item (a multiple of the 4-row tile).
const ROW_BLOCK: usize = 16;

/// `x @ W^T` for every matrix of a group that reads the same input, outputs side by side.
#[derive(Debug, Clone)]
pub struct QGroup {
    mats: Vec<Arc<QMatrix>>,
}

impl QGroup {
    pub fn new(mats: Vec<Arc<QMatrix>>) -> Result<Self> {
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
        let kinds: Vec<ActKind> = self.mats.iter().map(|m| m.format.act()).collect();
        let acts = Acts::new(&x[..n * cols], cols, &kinds);
        let ld: usize = self.widths().sum();
        let mut out = vec![0f32; n * ld];
        // Work items: (matrix, first output column, row block, token block).
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
        let out_ptr = crate::par::SendPtr(out.as_mut_ptr());
        let (acts, items) = (&acts, &items);
        let run = |range: std::ops::Range<usize>| {
            let p = out_ptr;
            for (m, col0, rows, toks) in &items[range] {
                let dst = Dst {
                    out: p.0,
                    ld,
                    col0: *col0,
                };
                // SAFETY: `out` outlives the parallel region, and the items cover disjoint
                // (token, column) elements, each item run by exactly one thread.
                unsafe { run_rows(m, rows.clone(), acts, toks.clone(), dst) };
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

impl CustomOp1 for QGroup {
    fn name(&self) -> &'static str {
        "sinkchat-qmatmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("the quantized matmul takes f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the quantized matmul takes contiguous input");
        };
        let dims = layout.shape().dims();
        let cols = self.mats[0].cols;
        if dims.last() != Some(&cols) {
            candle_core::bail!("the quantized matmul expects {cols} inputs, got shape {dims:?}");
        }
        let x = &data[start..end];
        let n = x.len() / cols;
        let out = self.matmul(x, n);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty") = self.widths().sum();
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}
