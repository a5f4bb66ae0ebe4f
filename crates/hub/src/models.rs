//! The models folder: what is installed, importing a GGUF from anywhere on disk, deleting one.

use std::path::{Path, PathBuf};

use sinkchat_engine::ModelSummary;

use crate::{Error, Result};

/// One model file in the models folder.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct InstalledModel {
    pub file: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// What the engine makes of it; `None` with `problem` set when it can't run it.
    pub summary: Option<ModelSummary>,
    pub problem: Option<String>,
}

/// A model file name: a plain `.gguf` name, no folders, nothing hidden.
pub fn check_file_name(file: &str) -> Result<()> {
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && !file.contains(['/', '\\', '\0'])
        && Path::new(file).file_name().and_then(|n| n.to_str()) == Some(file);
    if !plain {
        return Err(Error::OutsideModels(file.to_string()));
    }
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        return Err(Error::BadReference(format!(
            "“{file}” is not a GGUF file; SinkChat runs models in the GGUF format (names ending in .gguf)"
        )));
    }
    Ok(())
}

/// Describes one installed file.
pub fn describe(path: &Path) -> Result<InstalledModel> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::Io(path.to_path_buf(), e))?
        .len();
    let (summary, problem) = match sinkchat_engine::inspect(path) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(InstalledModel {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        bytes,
        summary,
        problem,
    })
}

/// The `.gguf` files in the models folder, by name. Unfinished downloads live in `.downloads`
/// and never show here.
pub fn installed(models_dir: &Path) -> Vec<InstalledModel> {
    let Ok(rd) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut out: Vec<InstalledModel> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_ascii_lowercase();
            n.ends_with(".gguf") && !n.starts_with('.')
        })
        .filter_map(|e| describe(&e.path()).ok())
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Deletes an installed model; returns the bytes freed. Only plain names inside the models
/// folder are accepted.
pub fn delete(models_dir: &Path, file: &str) -> Result<u64> {
    check_file_name(file)?;
    let path = models_dir.join(file);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| Error::ModelMissing(path.clone()))?;
    std::fs::remove_file(&path).map_err(|e| Error::Io(path.clone(), e))?;
    crate::sync_dir(models_dir);
    Ok(if meta.is_file() { meta.len() } else { 0 })
}

/// What the engine makes of a GGUF file anywhere on disk, before importing it.
pub fn inspect(path: &Path) -> Result<ModelSummary> {
    // A folder, a device or a pipe is refused before it is opened: opening a FIFO blocks until
    // someone writes to it, which would hold a worker thread forever.
    let meta = std::fs::metadata(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    if !meta.is_file() {
        return Err(Error::NotAFile(path.to_path_buf()));
    }
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    use std::io::Read;
    if f.read_exact(&mut head).is_err() || &head != b"GGUF" {
        return Err(Error::NotGguf(path.to_path_buf()));
    }
    sinkchat_engine::inspect(path).map_err(|e| Error::Unsupported(e.to_string()))
}

/// Copies a GGUF file the engine can run into the models folder (through a `.part` file, so a
/// full disk or a crash never leaves half a model in the list).
pub fn import(models_dir: &Path, src: &Path) -> Result<InstalledModel> {
    inspect(src)?;
    let file = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_file_name(&file)?;
    let dest = models_dir.join(&file);
    let src_len = std::fs::metadata(src)
        .map_err(|e| Error::Io(src.to_path_buf(), e))?
        .len();
    if dest.exists() {
        if std::fs::metadata(&dest).map(|m| m.len()).ok() == Some(src_len)
            && crate::sha256_file(&dest)? == crate::sha256_file(src)?
        {
            return describe(&dest);
        }
        return Err(Error::NameTaken(file));
    }
    let dl = crate::download::downloads_dir(models_dir);
    std::fs::create_dir_all(&dl).map_err(|e| Error::Io(dl.clone(), e))?;
    if let Some(free) = crate::download::free_space(&dl) {
        if free < src_len {
            return Err(Error::DiskFull {
                needed: Some(src_len),
                free: Some(free),
            });
        }
    }
    let part = dl.join(format!("import--{file}.part"));
    let copied = std::fs::copy(src, &part).and_then(|n| {
        std::fs::File::open(&part)?.sync_all()?;
        Ok(n)
    });
    match copied {
        Ok(n) if n == src_len => {}
        Ok(n) => {
            let _ = std::fs::remove_file(&part);
            return Err(Error::WrongSize {
                path: src.to_path_buf(),
                actual: n,
                expected: src_len,
            });
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(if crate::download::is_disk_full(&e) {
                Error::DiskFull {
                    needed: Some(src_len),
                    free: crate::download::free_space(&dl),
                }
            } else {
                Error::Io(src.to_path_buf(), e)
            });
        }
    }
    std::fs::rename(&part, &dest).map_err(|e| Error::Io(dest.clone(), e))?;
    crate::sync_dir(models_dir);
    describe(&dest)
}
