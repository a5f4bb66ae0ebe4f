//! Reading a GGUF file's header safely: every tensor of its index checked to have sane
//! dimensions and to lie inside the file before anything is sized from it, and a reader panic
//! (a crafted file) turned into a plain error.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::qmatmul::Format;
use crate::{Error, Result};

/// A GGUF header: candle's reading of it, and the tensors of the formats candle does not read
/// (IQ4_NL, IQ4_XS), whose entries in `ct` carry Q4_0 as a stand-in type (true shape and
/// offset); their real format is here, and nothing reads them through candle.
#[derive(Debug)]
pub struct Header {
    pub ct: gguf_file::Content,
    pub foreign: HashMap<String, Format>,
}

impl Header {
    /// The format of tensor `name` when candle does not read it.
    pub fn foreign(&self, name: &str) -> Option<Format> {
        self.foreign.get(name).copied()
    }

    /// ggml's name of a tensor's type.
    pub fn type_name(&self, name: &str, info: &gguf_file::TensorInfo) -> String {
        match self.foreign(name) {
            Some(f) => f.name().to_string(),
            None => format!("{:?}", info.ggml_dtype),
        }
    }
}

/// Opens a GGUF file and reads its header; the reader is left at the tensor data.
pub(crate) fn open_gguf(path: &Path) -> Result<(Header, BufReader<File>)> {
    let file = File::open(path).map_err(|source| Error::ModelFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let unreadable = |source| Error::ModelFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 4];
    {
        let mut f = &file;
        if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(Error::NotGguf(path.display().to_string()));
        }
        f.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    }
    // Our own walk first: it names what the engine cannot run (candle's reader would stop
    // at an i-quant with "unknown dtype"), and finds the tensors candle cannot read.
    let index = super::weight_types::index(BufReader::new(&file))?;
    (&file).seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let mut reader = BufReader::new(file);
    let invalid = |reason: String| Error::InvalidGguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut foreign = HashMap::new();
    // candle's reader divides by the file's `general.alignment`: a crafted 0 panics inside
    // it. Any panic of the reader is a malformed file, not a crash.
    let read = |r: &mut dyn FnMut() -> candle_core::Result<gguf_file::Content>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(r))
            .map_err(|_| invalid("its header is malformed (the GGUF reader failed on it)".into()))
            .and_then(|r| r.map_err(|e| invalid(e.to_string())))
    };
    let ct = match index {
        Some(ix) if !ix.foreign.is_empty() => {
            // candle reads a copy of the header in which each such tensor's type is Q4_0's;
            // where its data lies is computed from the header's end, the same in the copy.
            let mut head = vec![0u8; ix.end as usize];
            reader.read_exact(&mut head).map_err(unreadable)?;
            for f in &ix.foreign {
                let at = f.type_at as usize;
                head[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
                foreign.insert(f.name.clone(), f.format);
            }
            read(&mut || gguf_file::Content::read(&mut std::io::Cursor::new(&head)))?
        }
        _ => read(&mut || gguf_file::Content::read(&mut reader))?,
    };
    let header = Header { ct, foreign };
    check_tensor_index(&header, file_len).map_err(invalid)?;
    Ok((header, reader))
}

/// Largest size one tensor dimension may have (the widest real vocabularies are ~262K).
const MAX_DIM: u64 = 1 << 24;

/// Bytes tensor `info` takes in the file (in `foreign`'s format when candle does not read it),
/// with every product checked.
pub(crate) fn tensor_bytes(info: &gguf_file::TensorInfo, foreign: Option<Format>) -> Option<u64> {
    let mut elems: u64 = 1;
    for &d in info.shape.dims() {
        if d as u64 > MAX_DIM {
            return None;
        }
        elems = elems.checked_mul(d as u64)?;
    }
    let (bs, ts) = match foreign {
        Some(f) => (f.block_len() as u64, f.block_bytes() as u64),
        None => (
            info.ggml_dtype.block_size() as u64,
            info.ggml_dtype.type_size() as u64,
        ),
    };
    (elems / bs).checked_mul(ts)
}

/// Every tensor of the index has sane dimensions and lies inside the file: checked before
/// anything is sized from it, so a crafted or truncated file fails here, in plain words.
fn check_tensor_index(h: &Header, file_len: u64) -> std::result::Result<(), String> {
    let ct = &h.ct;
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
        let Some(bytes) = tensor_bytes(info, h.foreign(name)) else {
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
    Ok(open_gguf(path)?.0.ct)
}

/// Reads only the header of a GGUF file, with the formats of the tensors candle does not read.
pub fn read_header(path: &Path) -> Result<Header> {
    Ok(open_gguf(path)?.0)
}
