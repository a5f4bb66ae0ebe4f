//! GGUF files of any ggml weight type, written byte by byte as llama.cpp lays them out (candle's
//! writer knows only the types candle reads): the files the tests of refusals are served and
//! fed. The weights are zeros; every size and offset is what a real file of that type has.

use std::io::Write;
use std::path::Path;

/// (elements per block, bytes per block) of ggml type `id`, for the types tests write.
fn block(id: u32) -> (u64, u64) {
    match id {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        17 => (256, 74),  // IQ2_XS
        19 => (256, 50),  // IQ1_S
        21 => (256, 110), // IQ3_S
        20 => (32, 18),   // IQ4_NL
        23 => (256, 136), // IQ4_XS
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        other => panic!("typed_gguf: no block size written down for ggml type {other}"),
    }
}

/// One tensor: name, ggml type number, dimensions (innermost first, as GGUF stores them).
pub struct Tensor<'a> {
    pub name: &'a str,
    pub ggml_type: u32,
    pub dims: &'a [u64],
}

/// Writes a GGUF v3 file with `general.architecture` = `arch`, `general.file_type` = `file_type`
/// when given (llama.cpp's `llama_ftype` number), and `tensors`, 32-byte aligned.
pub fn write(
    path: &Path,
    arch: &str,
    file_type: Option<u32>,
    tensors: &[Tensor],
) -> std::io::Result<()> {
    let mut h: Vec<u8> = b"GGUF".to_vec();
    h.extend(3u32.to_le_bytes());
    h.extend((tensors.len() as u64).to_le_bytes());
    h.extend((1 + file_type.is_some() as u64).to_le_bytes());
    let string = |h: &mut Vec<u8>, s: &str| {
        h.extend((s.len() as u64).to_le_bytes());
        h.extend(s.as_bytes());
    };
    string(&mut h, "general.architecture");
    h.extend(8u32.to_le_bytes());
    string(&mut h, arch);
    if let Some(ft) = file_type {
        string(&mut h, "general.file_type");
        h.extend(4u32.to_le_bytes());
        h.extend(ft.to_le_bytes());
    }
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for t in tensors {
        string(&mut h, t.name);
        h.extend((t.dims.len() as u32).to_le_bytes());
        for d in t.dims {
            h.extend(d.to_le_bytes());
        }
        h.extend(t.ggml_type.to_le_bytes());
        h.extend(offset.to_le_bytes());
        let (per, bytes) = block(t.ggml_type);
        let size = t.dims.iter().product::<u64>() / per * bytes;
        sizes.push(size);
        offset += size.div_ceil(32) * 32;
    }
    h.resize(h.len().div_ceil(32) * 32, 0);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&h)?;
    for size in sizes {
        f.write_all(&vec![0u8; (size.div_ceil(32) * 32) as usize])?;
    }
    f.flush()
}
