//! A Hugging Face hub on loopback, for SinkChat's tests and offline demos: the routes hf-hub
//! uses, over real files on disk, with faults that can be switched on. A crate of its own, used
//! only as a dev-dependency and by the `sinkchat-fakehub` binary the end-to-end tests start:
//! nothing of it is in the app or its package (#18: it used to live in the shipped hub crate).
//!
//! Routes (as on huggingface.co):
//! - `GET /api/models/{owner}/{name}/revision/{rev}` → `{id, sha, siblings: [{rfilename, size,
//!   lfs: {sha256, size}}]}` (hf-hub's `ApiRepo::info`).
//! - `GET|HEAD /{owner}/{name}/resolve/{rev}/{file}` with `Range: bytes=a-b` / `a-` → 206 and
//!   `Content-Range`, else 200; headers `ETag`, `X-Linked-Etag` (the SHA-256, as the hub sends
//!   for LFS files), `X-Linked-Size`, `X-Repo-Commit`, `Accept-Ranges` (hf-hub's
//!   `Api::metadata`); 404 with `X-Error-Code: RepositoryNotFound` / `EntryNotFound`.
//!
//! Files are served from `root/{owner}/{name}/{file}`, on axum. The file body is a stream of
//! our own rather than tower-http's `ServeFile`: each fault acts on exact bytes of the body (cut
//! the connection after byte n, flip byte n, hold the rate), and every byte sent is counted.

pub mod typed_gguf;

use std::collections::HashMap;
use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

/// Faults a test can switch on; each applies to `resolve` GETs that carry file bytes (not to
/// the one-byte metadata probe), and counts down as it fires.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer this many transfers with HTTP 500.
    pub fail_next: u32,
    /// Close the connection after sending this many body bytes, once.
    pub cut_after: Option<u64>,
    /// Flip the byte at this file offset in every transfer.
    pub corrupt_at: Option<u64>,
    /// Limit each transfer to this many bytes per second.
    pub throttle_bytes_per_s: Option<u64>,
}

#[derive(Debug)]
struct FileEntry {
    path: PathBuf,
    size: u64,
    sha256: String,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    files: Mutex<HashMap<(String, String), FileEntry>>,
    faults: Mutex<Faults>,
    body_bytes: AtomicU64,
    transfers: AtomicU64,
    starts: Mutex<Vec<u64>>,
}

/// A running fake hub; stops when dropped.
#[derive(Debug)]
pub struct FakeHub {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The commit every repo is "at": 40 hex digits derived from the repo name.
fn commit_of(repo: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(repo.as_bytes())[..20])
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

impl FakeHub {
    /// Serves `root` on `127.0.0.1:port` (0 picks a free port).
    pub async fn start(root: &Path, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            files: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            body_bytes: AtomicU64::new(0),
            transfers: AtomicU64::new(0),
            starts: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/models/{owner}/{name}/revision/{rev}", get(info))
            .route("/{owner}/{name}/resolve/{rev}/{*file}", get(resolve))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:port`, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, f: Faults) {
        *self.shared.faults.lock().expect("faults") = f;
    }

    /// File bytes sent by transfers so far (not counting the one-byte metadata probes). Bytes
    /// still in flight when a client hangs up count as sent.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// The first byte asked for by each transfer so far, in order.
    pub fn transfer_starts(&self) -> Vec<u64> {
        self.shared.starts.lock().expect("starts").clone()
    }

    /// Transfers (GETs of file bytes) answered so far, failed ones included.
    pub fn transfers(&self) -> u64 {
        self.shared.transfers.load(Ordering::SeqCst)
    }
}

fn entry(s: &Shared, repo: &str, file: &str) -> Option<(PathBuf, u64, String)> {
    if file
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    let key = (repo.to_string(), file.to_string());
    if let Some(e) = s.files.lock().expect("files").get(&key) {
        return Some((e.path.clone(), e.size, e.sha256.clone()));
    }
    let path = s.root.join(repo).join(file);
    let size = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
    let sha256 = sha256_file(&path).ok()?;
    s.files.lock().expect("files").insert(
        key,
        FileEntry {
            path: path.clone(),
            size,
            sha256: sha256.clone(),
        },
    );
    Some((path, size, sha256))
}

fn list_repo(s: &Shared, repo: &str) -> Option<Vec<(String, u64, String)>> {
    let dir = s.root.join(repo);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).ok()? {
        let e = e.ok()?;
        if std::fs::metadata(e.path())
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((_, size, sha)) = entry(s, repo, &name) {
                out.push((name, size, sha));
            }
        }
    }
    out.sort();
    Some(out)
}

fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let r = h.trim().strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = if b.trim().is_empty() {
        size.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

fn not_found(code: &'static str, body: &'static str) -> Response {
    (StatusCode::NOT_FOUND, [("X-Error-Code", code)], body).into_response()
}

/// `GET /api/models/{owner}/{name}/revision/{rev}`
async fn info(
    State(s): State<Arc<Shared>>,
    UrlPath((owner, name, _rev)): UrlPath<(String, String, String)>,
) -> Response {
    let repo = format!("{owner}/{name}");
    let Some(files) = list_repo(&s, &repo) else {
        return not_found("RepositoryNotFound", r#"{"error":"Repository not found"}"#);
    };
    let siblings: Vec<_> = files
        .iter()
        .map(|(n, size, sha)| {
            serde_json::json!({"rfilename": n, "size": size,
                "lfs": {"sha256": sha, "size": size, "pointerSize": 134}})
        })
        .collect();
    axum::Json(
        serde_json::json!({"id": repo, "modelId": repo, "sha": commit_of(&repo),
        "siblings": siblings}),
    )
    .into_response()
}

/// `GET|HEAD /{owner}/{name}/resolve/{rev}/{file...}`
async fn resolve(
    State(s): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((owner, name, _rev, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    let repo = format!("{owner}/{name}");
    if !s.root.join(&repo).is_dir() {
        return not_found("RepositoryNotFound", "Repository not found");
    }
    let Some((fpath, size, sha)) = entry(&s, &repo, &file) else {
        return not_found("EntryNotFound", "Entry not found");
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| parse_range(r, size));
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    // The metadata probe (`bytes=0-0`) and HEAD are never faulted.
    let is_transfer = method == Method::GET && len > 1;
    let faults = if is_transfer {
        s.transfers.fetch_add(1, Ordering::SeqCst);
        s.starts.lock().expect("starts").push(start);
        let mut f = s.faults.lock().expect("faults");
        let now = f.clone();
        if f.fail_next > 0 {
            f.fail_next -= 1;
        }
        f.cut_after = None;
        now
    } else {
        Faults::default()
    };
    if faults.fail_next > 0 {
        return (StatusCode::INTERNAL_SERVER_ERROR, "temporary failure").into_response();
    }
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let etag = format!("\"{sha}\"");
    let mut resp = Response::builder()
        .status(status)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, &etag)
        .header("X-Linked-Etag", &etag)
        .header("X-Linked-Size", size)
        .header("X-Repo-Commit", commit_of(&repo))
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if range.is_some() {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        Body::from_stream(file_body(s.clone(), fpath, start, len, faults, is_transfer))
    };
    resp.body(body).unwrap_or_else(|e| {
        let mut r = (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    })
}

/// Bytes `start..start+len` of the file, in 64 KiB pieces, with the faults applied. A cut ends
/// the stream with an error, which makes the server drop the connection mid-body.
fn file_body(
    s: Arc<Shared>,
    path: PathBuf,
    start: u64,
    len: u64,
    faults: Faults,
    counted: bool,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    struct St {
        file: Option<tokio::fs::File>,
        sent: u64,
        t0: Instant,
    }
    let st = St {
        file: None,
        sent: 0,
        t0: Instant::now(),
    };
    futures_util::stream::unfold(Some(st), move |st| {
        let (s, path, faults) = (s.clone(), path.clone(), faults.clone());
        async move {
            let mut st = st?;
            if st.sent >= len {
                return None;
            }
            if let Some(c) = faults.cut_after {
                if st.sent >= c {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut");
                    return Some((Err(cut), None));
                }
            }
            if st.file.is_none() {
                let opened = async {
                    let mut f = tokio::fs::File::open(&path).await?;
                    f.seek(SeekFrom::Start(start)).await?;
                    Ok::<_, std::io::Error>(f)
                };
                match opened.await {
                    Ok(f) => st.file = Some(f),
                    Err(e) => return Some((Err(e), None)),
                }
            }
            let mut want = (64 * 1024u64).min(len - st.sent) as usize;
            if let Some(c) = faults.cut_after {
                want = want.min((c - st.sent) as usize);
            }
            let mut buf = vec![0u8; want];
            let n = match st.file.as_mut()?.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some((Err(e), None)),
            };
            buf.truncate(n);
            let pos = start + st.sent;
            if let Some(at) = faults.corrupt_at {
                if at >= pos && at < pos + n as u64 {
                    buf[(at - pos) as usize] ^= 0xff;
                }
            }
            if counted {
                s.body_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
            st.sent += n as u64;
            if let Some(bps) = faults.throttle_bytes_per_s {
                let due = Duration::from_secs_f64(st.sent as f64 / bps as f64);
                if let Some(wait) = due.checked_sub(st.t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            Some((Ok(Bytes::from(buf)), Some(st)))
        }
    })
}
