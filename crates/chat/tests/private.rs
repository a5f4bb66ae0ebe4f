//! The data folder is its owner's alone (issue #32): made under umask 0000 (the most open),
//! every folder in it is 0700 and every file 0600 (the database, WAL and shared memory, the
//! lock and socket, logs, a snapshot, an export), another account (`nobody`) reads none of it,
//! and a folder an older version left open is tightened at start. One test in its own binary:
//! the umask is the process's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sinkchat_chat::{ChatService, ModelState, ReplyEvent, ReplyOptions};

fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("SINKCHAT_MODEL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run `scripts/setup.sh test-deps` first");
    p
}

/// Every entry under `root` (symbolic links left out), with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = vec![(root.to_path_buf(), true, mode(root))];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let kind = e.file_type().unwrap();
            if kind.is_symlink() {
                continue;
            }
            out.push((e.path(), kind.is_dir(), mode(&e.path())));
            if kind.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Whether the `nobody` account can read `path` (`None`: this test is not root and cannot
/// act as another account).
fn nobody_reads(path: &Path) -> Option<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("setpriv (util-linux)");
    Some(out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_is_private_whatever_the_umask() {
    // SAFETY: umask only swaps the process's mask.
    unsafe { libc::umask(0) };
    let parent = tempfile::tempdir().unwrap();
    // The parent open to all, so only the data folder's own modes keep others out.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let control = parent.path().join("control.txt");
    std::fs::write(&control, "readable").unwrap();
    assert_eq!(mode(&control), 0o666, "umask 0000 is in force");
    let can_check_others = nobody_reads(&control);
    if let Some(read) = can_check_others {
        assert!(read, "nobody reads an open file (the check itself works)");
    } else {
        eprintln!("not root: the check as `nobody` is left out");
    }

    let data = parent.path().join("data");
    let sinkchat_chat::instance::Claim::First(_instance) =
        sinkchat_chat::instance::claim(&data).unwrap()
    else {
        panic!("the fresh folder is free")
    };
    sinkchat_chat::logging::init(Some(&data), "warn");
    let svc = ChatService::open(&data, Some(model_path())).await.unwrap();
    let mut s = svc.settings().await;
    s.sampling.max_tokens = 4;
    svc.save_settings(s).await.unwrap();
    svc.load_model();
    assert!(matches!(svc.wait_ready().await, ModelState::Ready { .. }));
    let conv = svc.create_conversation().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    svc.send(
        conv.id,
        "My locker code is 4711. Say ok.",
        ReplyOptions::default(),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .await
    .unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(e, ReplyEvent::Done { .. } | ReplyEvent::Error { .. }) {
            break;
        }
    }
    while svc.is_busy(conv.id) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let export = svc.export_conversations(None, "json").await.unwrap();
    assert!(Path::new(&export).starts_with(&data), "{export}");
    tracing::warn!("a line for the log file");
    svc.shutdown().await;

    let all = modes(&data);
    let names: Vec<String> = all
        .iter()
        .map(|(p, _, _)| p.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    for want in ["chats.db", "snapshots", "logs", "exports"] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} was written (the check covers it): {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.ends_with(".kv")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("logs/sinkchat")),
        "{names:?}"
    );
    for (path, dir, m) in &all {
        if *dir {
            assert_eq!(*m, 0o700, "{} is {m:o}", path.display());
        } else {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
            if path.is_file() {
                assert_eq!(*m, 0o600, "{} is {m:o}", path.display());
            }
        }
    }
    if can_check_others.is_some() {
        for (path, dir, _) in &all {
            if !dir && path.is_file() {
                assert_eq!(
                    nobody_reads(path),
                    Some(false),
                    "nobody reads {}",
                    path.display()
                );
            }
        }
    }

    // A folder an older version left open (0755, files 0644) is tightened at start.
    drop(svc);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("chats.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    if can_check_others.is_some() {
        assert_eq!(nobody_reads(&db), Some(true), "the old folder is open");
    }
    let svc = ChatService::open(&data, None).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    if can_check_others.is_some() {
        assert_eq!(nobody_reads(&db), Some(false));
    }
    let log = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("made private"),
        "the tightening is in the log: {log}"
    );
    svc.shutdown().await;
}
