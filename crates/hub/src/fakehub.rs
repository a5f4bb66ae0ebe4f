//! A small Hugging Face hub on loopback, for tests and offline demos: the routes hf-hub uses,
//! over real files on disk, with faults that can be switched on.
//!
//! Routes (as on huggingface.co):
//! - `GET /api/models/{owner}/{name}/revision/{rev}` → `{id, sha, siblings: [{rfilename, size,
//!   lfs: {sha256, size}}]}` (hf-hub's `ApiRepo::info`).
//! - `GET|HEAD /{owner}/{name}/resolve/{rev}/{file}` with `Range: bytes=a-b` / `a-` → 206 and
//!   `Content-Range`, else 200; headers `ETag`, `X-Linked-Etag` (the SHA-256, as the hub sends
//!   for LFS files), `X-Linked-Size`, `X-Repo-Commit`, `Accept-Ranges` (hf-hub's
//!   `Api::metadata`); 404 with `X-Error-Code: RepositoryNotFound` / `EntryNotFound`.
//!
//! Files are served from `root/{owner}/{name}/{file}`. Hand-written HTTP/1.1 on tokio sockets
//! (one request per connection): a real server on a real port, and small enough that a test
//! can cut a transfer at an exact byte, fail a request, or throttle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, &s).await;
                });
            }
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
    let sha256 = crate::sha256_file(&path).ok()?;
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

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
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

async fn serve(mut sock: TcpStream, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut sock);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    drop(reader);
    let path = target.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let json = [("Content-Type", "application/json".to_string())];

    // /api/models/{owner}/{name}/revision/{rev}
    if segs.len() == 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision" {
        let repo = format!("{}/{}", segs[2], segs[3]);
        let Some(files) = list_repo(s, &repo) else {
            let h = [("X-Error-Code", "RepositoryNotFound".to_string())];
            return respond(
                &mut sock,
                "404 Not Found",
                &h,
                br#"{"error":"Repository not found"}"#,
            )
            .await;
        };
        let siblings: Vec<_> = files
            .iter()
            .map(|(n, size, sha)| {
                serde_json::json!({"rfilename": n, "size": size,
                    "lfs": {"sha256": sha, "size": size, "pointerSize": 134}})
            })
            .collect();
        let body = serde_json::json!({"id": repo, "modelId": repo, "sha": commit_of(&repo),
            "siblings": siblings});
        return respond(&mut sock, "200 OK", &json, body.to_string().as_bytes()).await;
    }

    // /{owner}/{name}/resolve/{rev}/{file...}
    if segs.len() >= 5 && segs[2] == "resolve" && (method == "GET" || method == "HEAD") {
        let repo = format!("{}/{}", segs[0], segs[1]);
        let file = segs[4..].join("/");
        if !s.root.join(&repo).is_dir() {
            let h = [("X-Error-Code", "RepositoryNotFound".to_string())];
            return respond(&mut sock, "404 Not Found", &h, b"Repository not found").await;
        }
        let Some((fpath, size, sha)) = entry(s, &repo, &file) else {
            let h = [("X-Error-Code", "EntryNotFound".to_string())];
            return respond(&mut sock, "404 Not Found", &h, b"Entry not found").await;
        };
        let range = headers.get("range").and_then(|r| parse_range(r, size));
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        let len = if size == 0 { 0 } else { end - start + 1 };
        // The metadata probe (`bytes=0-0`) and HEAD are never faulted.
        let is_transfer = method == "GET" && len > 1;
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
            return respond(
                &mut sock,
                "500 Internal Server Error",
                &[],
                b"temporary failure",
            )
            .await;
        }
        let mut head = format!(
            "HTTP/1.1 {}\r\nConnection: close\r\nAccept-Ranges: bytes\r\nContent-Length: {len}\r\n\
             ETag: \"{sha}\"\r\nX-Linked-Etag: \"{sha}\"\r\nX-Linked-Size: {size}\r\nX-Repo-Commit: {}\r\n\
             Content-Type: application/octet-stream\r\n",
            if range.is_some() { "206 Partial Content" } else { "200 OK" },
            commit_of(&repo)
        );
        if range.is_some() {
            head.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
        }
        head.push_str("\r\n");
        sock.write_all(head.as_bytes()).await?;
        if method == "HEAD" || len == 0 {
            return sock.shutdown().await;
        }
        let mut f = tokio::fs::File::open(&fpath).await?;
        f.seek(std::io::SeekFrom::Start(start)).await?;
        let mut left = len;
        let mut sent = 0u64;
        let mut pos = start;
        let mut buf = vec![0u8; 64 * 1024];
        let t0 = std::time::Instant::now();
        while left > 0 {
            let want = (buf.len() as u64).min(left) as usize;
            let want = match faults.cut_after {
                Some(c) if sent >= c => return Ok(()), // drop the socket mid-body
                Some(c) => want.min((c - sent) as usize),
                None => want,
            };
            let n = f.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            if let Some(at) = faults.corrupt_at {
                if at >= pos && at < pos + n as u64 {
                    buf[(at - pos) as usize] ^= 0xff;
                }
            }
            sock.write_all(&buf[..n]).await?;
            if is_transfer {
                s.body_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
            sent += n as u64;
            pos += n as u64;
            left -= n as u64;
            if let Some(bps) = faults.throttle_bytes_per_s {
                let due = std::time::Duration::from_secs_f64(sent as f64 / bps as f64);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        return sock.shutdown().await;
    }
    respond(&mut sock, "404 Not Found", &[], b"not found").await
}
