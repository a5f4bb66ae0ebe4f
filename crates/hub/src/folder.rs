//! The data folder's layout and the disk facts both sides of the models folder use (downloads
//! and installed models): where things live, free space, a full disk, a durable rename, a
//! file's SHA-256. Nothing here knows about downloads or models, so neither imports the other
//! for these.

use std::path::{Path, PathBuf};

use crate::{Error, Result, DEFAULT_MODEL_FILE};

/// The app's data folder: `$SINKCHAT_DATA_DIR`, else the platform's data directory.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SINKCHAT_DATA_DIR") {
        return PathBuf::from(d);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("SinkChat")
}

pub fn models_dir(data: &Path) -> PathBuf {
    data.join("models")
}

/// The model to load: `$SINKCHAT_MODEL`, else the default model in the models folder.
pub fn active_model_path(data: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("SINKCHAT_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    models_dir(data).join(DEFAULT_MODEL_FILE)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::Io(path.to_path_buf(), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Makes a rename in `dir` durable (best effort; not available everywhere).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

pub fn downloads_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(".downloads")
}

/// Free bytes on the file system holding `dir`.
#[cfg(unix)]
pub fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type; statvfs fills it on success (return 0) and we read it only then.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(not(unix))]
pub fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// Whether an I/O error means the disk (or the quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
