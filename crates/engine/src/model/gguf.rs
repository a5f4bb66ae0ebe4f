//! Reading a GGUF file's header safely: every tensor of its index checked to have sane
//! dimensions and to lie inside the file before anything is sized from it, and a reader panic
//! (a crafted file) turned into a plain error.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::{Error, Result};

/// Opens a GGUF file and reads its header; the reader is left at the tensor data.
pub(crate) fn open_gguf(path: &Path) -> Result<(gguf_file::Content, BufReader<File>)> {
    let file = File::open(path).map_err(|source| Error::ModelFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = &file;
        if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(Error::NotGguf(path.display().to_string()));
        }
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|source| Error::ModelFileUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
    }
    let mut reader = BufReader::new(file);
    let invalid = |reason: String| Error::InvalidGguf {
        path: path.to_path_buf(),
        reason,
    };
    // candle's reader divides by the file's `general.alignment`: a crafted 0 panics inside
    // it. Any panic of the reader is a malformed file, not a crash.
    let ct = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gguf_file::Content::read(&mut reader)
    }))
    .map_err(|_| invalid("its header is malformed (the GGUF reader failed on it)".into()))?
    .map_err(|e| invalid(e.to_string()))?;
    check_tensor_index(&ct, file_len).map_err(invalid)?;
    Ok((ct, reader))
}

/// Largest size one tensor dimension may have (the widest real vocabularies are ~262K).
const MAX_DIM: u64 = 1 << 24;

/// Bytes tensor `info` takes in the file, with every product checked.
pub(crate) fn tensor_bytes(info: &gguf_file::TensorInfo) -> Option<u64> {
    let mut elems: u64 = 1;
    for &d in info.shape.dims() {
        if d as u64 > MAX_DIM {
            return None;
        }
        elems = elems.checked_mul(d as u64)?;
    }
    let bs = info.ggml_dtype.block_size() as u64;
    (elems / bs).checked_mul(info.ggml_dtype.type_size() as u64)
}

/// Every tensor of the index has sane dimensions and lies inside the file: checked before
/// anything is sized from it, so a crafted or truncated file fails here, in plain words.
fn check_tensor_index(ct: &gguf_file::Content, file_len: u64) -> std::result::Result<(), String> {
    // (A file with no tensors, a vocabulary-only GGUF, may end before its aligned data start:
    // only tensors are checked against the file's end.)
    for (name, info) in &ct.tensor_infos {
        // An empty tensor is no weight; candle would also view its empty buffer (whose
        // pointer is only byte-aligned) as f32 or quant blocks, which is undefined behaviour
        // (found by tests/fuzz.rs: the process aborted).
        if info.shape.dims().contains(&0) {
            return Err(format!(
                "tensor {name} has an empty dimension {:?}",
                info.shape.dims()
            ));
        }
        let Some(bytes) = tensor_bytes(info) else {
            return Err(format!(
                "tensor {name} declares impossible dimensions {:?}",
                info.shape.dims()
            ));
        };
        let end = ct
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|o| o.checked_add(bytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(format!(
                "tensor {name} runs past the end of the file (truncated?)"
            ));
        }
    }
    Ok(())
}

/// Reads only the header of a GGUF file: metadata and tensor index.
pub fn read_gguf_header(path: &Path) -> Result<gguf_file::Content> {
    Ok(open_gguf(path)?.0)
}
