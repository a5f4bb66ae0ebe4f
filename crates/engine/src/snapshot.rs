//! Cache snapshots: a conversation's sink+window cache written to disk when it is left, when the
//! app closes or when the live-cache budget is reached, and read back so that the next reply
//! starts without prefilling anything old.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! "SINKKV02"            magic and format version
//! u64                   length of the header
//! header                JSON: model identity, model shape, cache bookkeeping, caller's meta,
//!                       the values' precision
//! f16|f32 * ...         per layer, K then V of the slots its ring has written,
//!                       (n_kv_head, slots, head_dim)
//! [u8; 32]              SHA-256 of everything above
//! ```
//!
//! An f16 cache is written in f16, so its snapshot is half the size and restores exactly. A
//! model whose layers differ (sliding and global attention) stores each ring's bookkeeping in
//! the header (`more`, beside the main ring's fields) and each layer's slots by its ring.
//! Version 1 files (f32 values, no precision in the header) are still read.
//!
//! A snapshot is written to a temporary file, synced and renamed into place, so a crash leaves
//! either the old snapshot or the new one. One that is missing, damaged (checksum), for another
//! model or of another shape is refused with [`Error::Snapshot`]; the engine then rebuilds the
//! cache from the transcript.

use std::io::{Read, Write};
use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::CacheState;
use crate::{Error, KvPrecision, ModelSpec, Result, SinkCache};

const MAGIC: &[u8; 8] = b"SINKKV02";
/// Version 1: the same layout with f32 values only.
const MAGIC_V1: &[u8; 8] = b"SINKKV01";

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    n_layer: usize,
    n_kv_head: usize,
    head_dim: usize,
    cache: CacheState,
    meta: serde_json::Value,
    /// How the values are written (absent in version 1: f32).
    #[serde(default)]
    values: KvPrecision,
}

/// A cheap identity of a model file: its name, size and the SHA-256 of its first MiB (the
/// GGUF header and the start of the weights), so a snapshot is never restored onto another
/// model, without hashing gigabytes at every start.
pub fn model_identity(path: &Path) -> Result<String> {
    let io = |e: std::io::Error| Error::ModelFileUnreadable {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(1 << 20);
    Read::by_ref(&mut f)
        .take(1 << 20)
        .read_to_end(&mut head)
        .map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!(
        "{name}:{size}:{}",
        hex::encode(Sha256::digest(&head))
    ))
}

// The values are written little-endian and read back as the machine's own (`from_parts`).
#[cfg(target_endian = "big")]
compile_error!("snapshots hold little-endian values; a big-endian build would misread them");

fn snap_err(e: impl std::fmt::Display) -> Error {
    Error::Snapshot(e.to_string())
}

/// Writes `cache` and the caller's `meta` to `path`. Returns the bytes written.
pub fn save(path: &Path, model: &str, cache: &SinkCache, meta: serde_json::Value) -> Result<u64> {
    let spec_shape = cache.shape();
    let values = cache.precision();
    let header = serde_json::to_vec(&Header {
        model: model.to_string(),
        n_layer: spec_shape.0,
        n_kv_head: spec_shape.1,
        head_dim: spec_shape.2,
        cache: cache.state(),
        meta,
        values,
    })
    .map_err(snap_err)?;
    let mut buf = Vec::with_capacity(16 + header.len() + cache.data_len(values) + 32);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
    buf.extend_from_slice(&header);
    cache.write_layers(&mut buf)?;
    let digest = Sha256::digest(&buf);
    buf.extend_from_slice(&digest);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(snap_err)?;
    }
    write_atomic(path, &buf).map_err(|e| snap_err(format!("writing {}: {e}", path.display())))?;
    Ok(buf.len() as u64)
}

/// Writes a file whole or not at all: a temporary file beside it, synced, then renamed into
/// place; the temporary file is removed if anything fails. (The models folder's download
/// manifests use it too.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A name of its own for each write (process and sequence number): two writers of one
    // path (two app instances, a park racing a shutdown) never write into each other's file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Reads only a snapshot's header (a few kilobytes, not the tensors nor the checksum): its
/// cache bookkeeping and the caller's meta, for showing a parked chat's memory. `None` when
/// the file is missing, not a snapshot, or for another model.
pub(crate) fn peek(path: &Path, model: &str) -> Option<(CacheState, serde_json::Value)> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC && &head[..8] != MAGIC_V1 {
        return None;
    }
    let hlen = u64::from_le_bytes(head[8..16].try_into().ok()?);
    if hlen > 64 << 20 {
        return None;
    }
    let mut header = vec![0u8; hlen as usize];
    f.read_exact(&mut header).ok()?;
    let header: Header = serde_json::from_slice(&header).ok()?;
    (header.model == model).then_some((header.cache, header.meta))
}

/// Reads a snapshot for `model` (see [`model_identity`]) of a model shaped like `spec`.
pub fn load(
    path: &Path,
    model: &str,
    spec: &ModelSpec,
    device: &Device,
) -> Result<(SinkCache, serde_json::Value)> {
    let buf = std::fs::read(path).map_err(|e| snap_err(format!("reading it: {e}")))?;
    if buf.len() < 48 || (&buf[..8] != MAGIC && &buf[..8] != MAGIC_V1) {
        return Err(snap_err("it is not a SinkChat snapshot"));
    }
    let (body, digest) = buf.split_at(buf.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(snap_err("its checksum does not match: the file is damaged"));
    }
    let hlen = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")) as usize;
    let hend = 16usize
        .checked_add(hlen)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| snap_err("its header is cut short"))?;
    let header: Header = serde_json::from_slice(&body[16..hend]).map_err(snap_err)?;
    if header.model != model {
        return Err(snap_err("it was made with another model"));
    }
    if (header.n_layer, header.n_kv_head, header.head_dim)
        != (spec.n_layer, spec.n_kv_head, spec.head_dim)
    {
        return Err(snap_err("its shape does not match the model"));
    }
    let data = &body[hend..];
    let values = if &buf[..8] == MAGIC_V1 {
        KvPrecision::F32
    } else {
        header.values
    };
    // No data at all where the bookkeeping says slots were written, or data of the wrong
    // length, is refused in `from_parts` (tests/fuzz.rs).
    let cache = SinkCache::from_parts(spec, &header.cache, data, values, device)?;
    Ok((cache, header.meta))
}

#[cfg(test)]
mod tests {
    /// Writers of one path at the same time each succeed, and the file is always one of their
    /// writes, whole (with one shared temporary name they renamed each other's half-written
    /// files, or failed).
    #[test]
    fn concurrent_writers_of_one_path_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7.kv");
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let bytes = vec![t; 256 * 1024];
                    for _ in 0..100 {
                        super::write_atomic(&path, &bytes).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a writer failed");
        }
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 256 * 1024);
        assert!(got.iter().all(|&b| b == got[0]), "two writes mixed");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files were left behind");
    }
}
