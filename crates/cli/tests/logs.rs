//! No log line carries chat text, at any level (issue #32): `sinkchat serve` run with
//! `RUST_LOG=trace` answers a chat whose system prompt and message hold secrets, and neither
//! its standard error nor its log file holds them, whole or spelled out one character per line
//! (as the tokenizer's normalizer wrote them), nor the access key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn model_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run `scripts/setup.sh test-deps` first");
    p
}

fn request(port: u16, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Repeats of a character run together as one (`"aab"` → `"ab"`): a trace that names each
/// character twice (as the normalizer did: `### 'Q' ...`, then `Replacing char 'Q'`) still
/// spells the word.
fn squeeze(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

/// The characters logged one per quoted item (`'Q'`), in order: how a per-character trace
/// spells a text out.
fn spelled(log: &str) -> String {
    let mut out = String::new();
    for line in log.lines() {
        let chars: Vec<char> = line.chars().collect();
        for w in chars.windows(3) {
            if w[0] == '\'' && w[2] == '\'' {
                out.push(w[1]);
            }
        }
    }
    out
}

#[test]
fn trace_logging_carries_no_chat_text() {
    const SYSTEM_SECRET: &str = "Zorblax-system-9931";
    const USER_SECRET: &str = "Quixotic-user-4417";
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr.txt");
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinkchat"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .env("SINKCHAT_MODEL", model_path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap();
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _ = lines.next();
    let third = lines.next().unwrap().unwrap();
    let key = third
        .split("access key: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    let started = Instant::now();
    loop {
        let (_, body) = request(port, "GET", "/v1/models", &key, "");
        if body.contains("\"state\":\"ready\"") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = serde_json::json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "max_tokens": 4,
        "messages": [
            {"role": "system", "content": format!("The password is {SYSTEM_SECRET}.")},
            {"role": "user", "content": format!("My name is {USER_SECRET}, hello")},
        ],
    })
    .to_string();
    let (status, out) = request(port, "POST", "/v1/chat/completions", &key, &body);
    assert_eq!(status, 200, "{out}");
    // SAFETY: kill with a valid pid of our own child.
    unsafe { libc_kill(child.id() as i32, 15) };
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");

    let mut log = std::fs::read_to_string(&err_path).unwrap();
    for e in std::fs::read_dir(data.join("logs")).unwrap().flatten() {
        log.push_str(&std::fs::read_to_string(e.path()).unwrap());
    }
    assert!(log.lines().count() > 20, "trace logging is on: {log}");
    assert!(log.contains("DEBUG"), "detailed lines were written");
    let spelled = squeeze(&spelled(&log));
    for secret in [SYSTEM_SECRET, USER_SECRET, key.as_str()] {
        assert!(!log.contains(secret), "the log holds {secret}");
        assert!(
            !spelled.contains(&squeeze(secret)),
            "the log spells {secret} out character by character"
        );
    }
    // The secrets' distinctive part, in case a logger splits on '-'.
    for part in ["Zorblax", "Quixotic"] {
        assert!(!spelled.contains(part) && !log.contains(part), "{part}");
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
