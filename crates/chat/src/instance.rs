//! One SinkChat per data folder. Two processes on one folder would fight over it: the second
//! marks the first's streaming reply "interrupted" when it opens the store, both park caches
//! into one `snapshots/`, and both write settings. The first process holds an exclusive lock on
//! `sinkchat.lock` in the data folder for its whole life; a second launch finds the lock taken,
//! asks the first (over a Unix socket beside the lock) to bring its window to the front, and
//! leaves without having opened, created or written anything in the folder.
//!
//! Why not Tauri's single-instance plugin: it keys on the app identifier over D-Bus (one
//! instance per user, whatever the data folder; nothing on a machine without a session bus,
//! such as a CI runner under Xvfb), and it does not cover `sinkchat serve`, which shares the
//! folder with the app. A file lock is per folder, is released by the OS when a process dies
//! (a crash never leaves a stale lock), and works the same for the window and the server.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The lock file's name in the data folder.
pub const LOCK_FILE: &str = "sinkchat.lock";
/// The socket a second launch knocks on.
pub const SOCKET_FILE: &str = "sinkchat.sock";

/// The outcome of [`claim`].
pub enum Claim {
    /// This process is the first: it owns the folder while the `Instance` lives.
    First(Instance),
    /// Another process owns the folder. `answer` is what it said when asked to come to the
    /// front (`None`: it did not answer, e.g. `sinkchat serve`, which has no window).
    Running { answer: Option<String> },
}

/// Ownership of a data folder (see the module's text). Dropping it releases the folder.
pub struct Instance {
    _lock: File,
    #[cfg(unix)]
    socket: Option<PathBuf>,
}

/// Takes the data folder for this process, or reports the process that has it. Creates the
/// folder only when it is free (a second launch writes nothing anywhere).
pub fn claim(data_dir: &Path) -> io::Result<Claim> {
    // The lock, the socket and the log files made next are private from their first byte.
    crate::private::restrict_new_files();
    let lock_path = data_dir.join(LOCK_FILE);
    if lock_path.exists() {
        // Try the lock without creating or truncating anything.
        let f = OpenOptions::new().read(true).write(true).open(&lock_path)?;
        if let Some(claim) = try_lock(f, data_dir)? {
            return Ok(claim);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)?;
    Ok(try_lock(f, data_dir)?.expect("try_lock answers for an open file"))
}

fn try_lock(f: File, data_dir: &Path) -> io::Result<Option<Claim>> {
    match f.try_lock() {
        Ok(()) => Ok(Some(Claim::First(Instance {
            _lock: f,
            #[cfg(unix)]
            socket: None,
        }))),
        Err(TryLockError::WouldBlock) => Ok(Some(Claim::Running {
            answer: knock(data_dir),
        })),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Asks the owner of `data_dir` to come to the front; its one-line answer, if any.
#[cfg(unix)]
fn knock(data_dir: &Path) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    let mut s = UnixStream::connect(data_dir.join(SOCKET_FILE)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"front\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    let line = line.trim();
    (!line.is_empty()).then(|| line.to_string())
}

#[cfg(not(unix))]
fn knock(_data_dir: &Path) -> Option<String> {
    None
}

impl Instance {
    /// Answers later launches: each knock runs `bring_to_front` (on a thread of its own) and
    /// tells the newcomer what it returned. Call once; without it a second launch still
    /// refuses to start, it just cannot raise this window.
    #[cfg(unix)]
    pub fn answer_knocks<F>(&mut self, data_dir: &Path, bring_to_front: F) -> io::Result<()>
    where
        F: Fn() -> String + Send + 'static,
    {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::net::UnixListener;
        let path = data_dir.join(SOCKET_FILE);
        // We hold the lock: a socket file left there is a dead process's.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        self.socket = Some(path);
        std::thread::Builder::new()
            .name("instance".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut line = String::new();
                    let mut reader = BufReader::new(&conn);
                    if reader.read_line(&mut line).is_err() || line.trim() != "front" {
                        continue;
                    }
                    let answer = bring_to_front();
                    let _ = (&conn).write_all(format!("{answer}\n").as_bytes());
                }
            })?;
        Ok(())
    }

    #[cfg(not(unix))]
    pub fn answer_knocks<F>(&mut self, _data_dir: &Path, _bring_to_front: F) -> io::Result<()>
    where
        F: Fn() -> String + Send + 'static,
    {
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What to tell a person whose launch found the folder taken.
pub fn already_running_message(data_dir: &Path, answer: Option<&str>) -> String {
    match answer {
        Some(a) => format!(
            "SinkChat is already open on {} ({a}). One SinkChat at a time can use a data \
             folder; nothing was changed.",
            data_dir.display()
        ),
        None => format!(
            "SinkChat is already running on {} (a window or `sinkchat serve`). One SinkChat \
             at a time can use a data folder: close the other one first, or choose another \
             folder with SINKCHAT_DATA_DIR or --data-dir. Nothing was changed.",
            data_dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_second_claim_is_refused_and_knocks_and_the_folder_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let Claim::First(mut first) = claim(&data).unwrap() else {
            panic!("a fresh folder is free")
        };
        let knocks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let k = knocks.clone();
        first
            .answer_knocks(&data, move || {
                k.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "its window was brought to the front".into()
            })
            .unwrap();
        let before = listing(&data);
        match claim(&data).unwrap() {
            Claim::First(_) => panic!("two owners of one folder"),
            Claim::Running { answer } => {
                #[cfg(unix)]
                assert_eq!(
                    answer.as_deref(),
                    Some("its window was brought to the front")
                );
                #[cfg(not(unix))]
                assert_eq!(answer, None);
            }
        }
        #[cfg(unix)]
        assert_eq!(knocks.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            listing(&data),
            before,
            "the second launch changed the folder"
        );
        drop(first);
        assert!(!data.join(SOCKET_FILE).exists(), "socket left behind");
        assert!(matches!(claim(&data).unwrap(), Claim::First(_)));
    }

    #[test]
    fn a_dead_owners_socket_does_not_block_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SOCKET_FILE), b"stale").unwrap();
        let Claim::First(mut i) = claim(dir.path()).unwrap() else {
            panic!("nobody holds the lock")
        };
        i.answer_knocks(dir.path(), || "ok".into()).unwrap();
    }
}
