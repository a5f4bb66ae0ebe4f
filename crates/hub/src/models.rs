//! The models folder: what is installed, importing a GGUF from anywhere on disk, deleting one.

use std::path::{Path, PathBuf};

use sinkchat_engine::ModelSummary;

use crate::{Error, Result};

/// One model file in the models folder.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct InstalledModel {
    pub file: String,
    /// What people call it: the catalog's title when the file is one of the catalog's, else
    /// the file name cleaned of its quantization tag and separators (see [`display_name`]).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// What the engine makes of it; `None` with `problem` set when it can't run it.
    pub summary: Option<ModelSummary>,
    pub problem: Option<String>,
}

/// A name for people: the catalog's title for a catalog file, else the file name without
/// `.gguf` and its quantization tag, words separated by spaces, lower-case words capitalised
/// ("Llama-3.2-3B-Instruct-Q6_K.gguf" reads "Llama 3.2 3B Instruct"). The GGUF's own
/// `general.name` is often a training run's name ("Smollm2 135M 8k Lc100K Mix1 Ep2").
pub fn display_name(file: &str) -> String {
    if let Some(c) = crate::catalog::CATALOG.iter().find(|c| c.file == file) {
        return c.title.to_string();
    }
    let stem = file
        .strip_suffix(".gguf")
        .or_else(|| file.strip_suffix(".GGUF"))
        .unwrap_or(file);
    let is_sep = |c: char| matches!(c, '.' | '-' | '_' | ' ');
    // The quantization tag: the first separator after which the rest is one (Q4_K_M, IQ3_XS,
    // Q8_0, F16, BF16...).
    let is_quant = |rest: &str| {
        let r = rest.to_ascii_lowercase();
        if matches!(r.as_str(), "f16" | "f32" | "bf16" | "fp16" | "fp32") {
            return true;
        }
        let body = r.strip_prefix("iq").or_else(|| r.strip_prefix('q'));
        body.is_some_and(|b| {
            b.starts_with(|c: char| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let cut = stem
        .char_indices()
        .filter(|&(i, c)| is_sep(c) && i > 0)
        .map(|(i, _)| i)
        .find(|&i| is_quant(&stem[i + 1..]))
        .unwrap_or(stem.len());
    let words: Vec<String> = stem[..cut]
        .split(['-', '_', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) if w.chars().all(|c| !c.is_uppercase()) => {
                    f.to_uppercase().chain(cs).collect()
                }
                _ => w.to_string(),
            }
        })
        .collect();
    if words.is_empty() {
        file.to_string()
    } else {
        words.join(" ")
    }
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
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(InstalledModel {
        name: display_name(&file),
        file,
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
    sinkchat_engine::inspect(path).map_err(Error::Model)
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
    let dl = crate::folder::downloads_dir(models_dir);
    std::fs::create_dir_all(&dl).map_err(|e| Error::Io(dl.clone(), e))?;
    if let Some(free) = crate::folder::free_space(&dl) {
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
            return Err(if crate::folder::is_disk_full(&e) {
                Error::DiskFull {
                    needed: Some(src_len),
                    free: crate::folder::free_space(&dl),
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

#[cfg(test)]
mod tests {
    use super::display_name;

    #[test]
    fn model_names_read_as_people_say_them() {
        let default = crate::catalog::CATALOG.iter().find(|c| c.default).unwrap();
        assert_eq!(display_name(default.file), default.title);
        for (file, want) in [
            ("Llama-3.2-3B-Instruct-Q6_K.gguf", "Llama 3.2 3B Instruct"),
            (
                "openhermes-2.5-mistral-7b.Q4_K_M.gguf",
                "Openhermes 2.5 Mistral 7b",
            ),
            (
                "Phi-3-mini-4k-instruct.Q5_K_S.gguf",
                "Phi 3 Mini 4k Instruct",
            ),
            ("mistral-7b-v0.1.IQ3_XS.gguf", "Mistral 7b V0.1"),
            ("tinyllama_f16.gguf", "Tinyllama"),
            ("SmolLM2-360M-Instruct.BF16.gguf", "SmolLM2 360M Instruct"),
            ("my-model.gguf", "My Model"),
            ("q4.gguf", "Q4"),
        ] {
            assert_eq!(display_name(file), want, "{file}");
        }
    }
}
