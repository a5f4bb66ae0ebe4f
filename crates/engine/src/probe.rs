//! How fast this computer decodes, measured rather than assumed: the figures behind the Models
//! screen's "Best for this computer" and "Slow here" (see `sinkchat_hub::recommend`).
//!
//! A decode step costs about `file bytes / rate + layers x per-layer cost`: every weight is
//! read once per token (the output matrix included), and each layer adds work that does not
//! grow with its size (thread hand-offs, norms, attention over a short cache). The rate is
//! measured by the decode kernel itself on a matrix larger than any processor cache; the
//! per-layer cost by decoding with a real model (the smallest installed), whose step is split
//! into its bytes at that rate and the rest.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;

use crate::model::Logits;
use crate::qmatmul::{Format, QGroup, QMatrix};
use crate::sampling::argmax;
use crate::{CacheConfig, KvPrecision, LoadOptions, Model, Result, SinkCache};

/// Bytes of the matrix the rate is measured on: larger than the last-level cache of desktop
/// and server processors, so the kernel reads it from memory as it reads a model's weights.
const PROBE_BYTES: usize = 192 << 20;

/// Weight bytes the decode kernel reads per second on this computer, with the engine's
/// threads: the best of a few products of one vector with a Q4_K matrix of [`PROBE_BYTES`]
/// (Q4_K: the main weight type of most models people download).
pub fn weight_read_rate() -> Result<f64> {
    let (cols, block_bytes) = (2048usize, 144usize);
    let row_bytes = cols / 256 * block_bytes;
    let rows = PROBE_BYTES / row_bytes;
    let mut bytes = vec![0u8; rows * row_bytes];
    // Scales of 1/4096 (f16 0x0c00) and varied quants: ordinary finite values throughout.
    let mut x = 0x9e37_79b9u32;
    for block in bytes.chunks_exact_mut(block_bytes) {
        block[0..2].copy_from_slice(&0x0c00u16.to_le_bytes());
        block[2..4].copy_from_slice(&0x0c00u16.to_le_bytes());
        for b in &mut block[4..] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    let m = QMatrix::from_blocks(Format::Q4K, rows, cols, bytes)?.for_kernels();
    let group = QGroup::new(vec![Arc::new(m)])?;
    let v: Vec<f32> = (0..cols).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0f32;
    for _ in 0..6 {
        let t = Instant::now();
        let out = group.matmul(&v, 1);
        best = best.min(t.elapsed().as_secs_f64());
        sink += out[rows / 2];
    }
    std::hint::black_box(sink);
    Ok((rows * row_bytes) as f64 / best)
}

/// Seconds per decoded token of the model at `path` on the CPU, a cache of a few tokens: the
/// best of three rounds of `steps` tokens, after a round that is not timed (the first pass
/// over freshly loaded weights pays for bringing them into memory).
pub fn decode_seconds(path: &Path, steps: usize) -> Result<f64> {
    let dev = Device::Cpu;
    let model = Model::load(path, &dev, LoadOptions::default())?;
    let cfg = CacheConfig {
        sinks: 4,
        window: steps + 64,
        evict_step: 1,
        precision: KvPrecision::F16,
    };
    let mut best = f64::INFINITY;
    for round in 0..4 {
        let mut cache = SinkCache::new(model.spec(), cfg, &dev)?;
        let mut logits = model.forward(&[1], &mut cache, Logits::Last)?;
        let t = Instant::now();
        for _ in 0..steps {
            let next = argmax(&logits.to_vec1::<f32>()?);
            logits = model.forward(&[next], &mut cache, Logits::Last)?;
        }
        if round > 0 {
            best = best.min(t.elapsed().as_secs_f64() / steps as f64);
        }
    }
    Ok(best)
}
