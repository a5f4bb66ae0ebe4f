//! llama.cpp's server started here as a child process: alone, or with the model's layers split
//! over `ggml-rpc-server` processes (the distributed configuration, on one machine). The tests
//! and `sinkchat-bench remote` use it; the binaries are those `scripts/llamacpp.sh` builds into
//! `.cache/llama.cpp/build/bin` (or the folder in `SINKCHAT_LLAMACPP_BIN`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder holding `llama-server` and `ggml-rpc-server`.
pub fn bin_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SINKCHAT_LLAMACPP_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/llama.cpp/build/bin")
}

/// A running llama-server (and its RPC servers); all are stopped when it is dropped.
#[derive(Debug)]
pub struct LocalServer {
    server: Child,
    rpc: Vec<Child>,
    port: u16,
    log: PathBuf,
    /// The logs' folder, removed with the server.
    _dir: tempfile::TempDir,
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn binary(name: &str) -> io::Result<PathBuf> {
    let p = bin_dir().join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not built: run `scripts/llamacpp.sh llama-server ggml-rpc-server`",
                p.display()
            ),
        ))
    }
}

impl LocalServer {
    /// llama-server on 127.0.0.1 with `model`, one conversation slot of `context` tokens, two
    /// threads, and `extra` arguments; returns once it answers `/health`.
    pub fn start(model: &Path, context: usize, extra: &[&str]) -> io::Result<Self> {
        Self::launch(model, context, extra, 0)
    }

    /// The same with the model's layers split over `workers` RPC servers on 127.0.0.1.
    pub fn start_over_rpc(
        model: &Path,
        context: usize,
        workers: usize,
        extra: &[&str],
    ) -> io::Result<Self> {
        Self::launch(model, context, extra, workers)
    }

    fn launch(model: &Path, context: usize, extra: &[&str], workers: usize) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sinkchat-llama-server-")
            .tempdir()?;
        let mut rpc = Vec::new();
        let mut endpoints = Vec::new();
        for i in 0..workers {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join(format!("rpc-{i}.log")))?;
            let child = Command::new(binary("ggml-rpc-server")?)
                .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            rpc.push(child);
            endpoints.push(format!("127.0.0.1:{port}"));
            wait_for_port(port, Duration::from_secs(30))?;
        }
        let port = free_port()?;
        let log = dir.path().join("server.log");
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(binary("llama-server")?);
        cmd.arg("-m")
            .arg(model)
            .args(["-c", &context.to_string(), "-np", "1", "-t", "2"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if !endpoints.is_empty() {
            cmd.args(["--rpc", &endpoints.join(","), "-ngl", "99"]);
        }
        let server = cmd.spawn()?;
        let mut s = Self {
            server,
            rpc,
            port,
            log,
            _dir: dir,
        };
        s.wait_healthy(Duration::from_secs(180))?;
        Ok(s)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server at once (a crash, as far as a client can tell).
    pub fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    fn wait_healthy(&mut self, limit: Duration) -> io::Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.server.try_wait()? {
                return Err(io::Error::other(format!(
                    "llama-server exited ({status}): {}",
                    self.log()
                )));
            }
            if health_ok(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("llama-server did not become ready: {}", self.log()),
        ))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
        for c in &mut self.rpc {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_port(port: u16, limit: Duration) -> io::Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("an RPC server did not listen on port {port}"),
    ))
}

/// Whether `GET /health` answers 200 (a plain HTTP/1.0 request: no client needed here).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok()
        && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}
