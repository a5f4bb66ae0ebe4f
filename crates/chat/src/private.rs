//! The data folder is its owner's alone: the folder and every folder in it 0700, every file
//! 0600 (the database and its WAL and shared memory, snapshots, logs, exports, downloads, the
//! lock), whatever the umask the app was started with. The process's umask is set to 077 before
//! anything is written there, so every file made later (SQLite's WAL, a log file of a new day, a
//! snapshot) is private from its first byte; a folder left readable by an older version is
//! tightened at start, with a line in the log. Nothing is done on systems without Unix modes.

use std::io;
use std::path::Path;

/// Makes files this process creates from now on readable by its owner only (umask 077).
/// Process-wide, and what SinkChat wants for every file it writes.
pub fn restrict_new_files() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `data_dir` 0700 if it is missing, and takes read and write from everyone but the
/// owner on it and on everything in it (symbolic links are not followed). Returns how many
/// entries had to be tightened.
pub fn secure_data_dir(data_dir: &Path) -> io::Result<usize> {
    restrict_new_files();
    std::fs::create_dir_all(data_dir)?;
    let changed = tighten(data_dir)?;
    if changed > 0 {
        tracing::warn!(
            folder = %data_dir.display(),
            entries = changed,
            "the data folder was readable by other accounts; made private (folders 0700, files 0600)"
        );
    }
    Ok(changed)
}

#[cfg(unix)]
fn tighten(root: &Path) -> io::Result<usize> {
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        changed += owner_only(&dir)? as usize;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if !kind.is_symlink() {
                // Files, and the instance's socket.
                changed += owner_only(&entry.path())? as usize;
            }
        }
    }
    Ok(changed)
}

/// Takes every permission from the group and others on `path` (the owner's stay: a file made
/// 0644 becomes 0600, a folder 0755 becomes 0700); whether anything had to go.
#[cfg(unix)]
fn owner_only(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let now = std::fs::symlink_metadata(path)?.permissions().mode() & 0o777;
    if now & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(now & 0o700))?;
    Ok(true)
}

#[cfg(not(unix))]
fn tighten(_root: &Path) -> io::Result<usize> {
    Ok(0)
}
