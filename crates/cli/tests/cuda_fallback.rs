//! The CUDA build, tested where it is built.
//!
//! - On a machine without a GPU: `sinkchat serve` built with `--features cuda` starts against
//!   the stub driver of `scripts/cuda-toolkit.sh` (which answers "no device", as a machine with
//!   a driver and no usable GPU does), says in one sentence, in the status the page shows and in
//!   the log, that it runs on the CPU, and answers.
//! - The GPU's decode attention (`attend.cu`, the cache in f32 and in f16) against the CPU
//!   reference, on the GPU when one answers; here it says it found none.
//!
//! Runs in CI (`scripts/setup.sh test`:
//! `cargo test -p sinkchat-cli --features cuda --test cuda_fallback`), with the stubs' folder in
//! SINKCHAT_CUDA_STUBS; the same binary runs on a GPU machine unchanged.
#![cfg(feature = "cuda")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn post(base: &str, command: &str) -> String {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/{command} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_cuda_build_without_a_gpu_runs_on_the_cpu_and_says_so() {
    let stubs = std::env::var("SINKCHAT_CUDA_STUBS")
        .expect("SINKCHAT_CUDA_STUBS: run `eval \"$(scripts/cuda-toolkit.sh)\"` first");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = root.join(".data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let data = tempfile::tempdir().unwrap();
    let lib_path = format!(
        "{stubs}:{}",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinkchat"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data.path())
        .arg("--model")
        .arg(&model)
        .env("LD_LIBRARY_PATH", lib_path)
        .env("CUDA_PATH", Path::new(&stubs).join("../.."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // Wait for the model: the status turns ready, on the CPU, with the sentence.
    let started = Instant::now();
    let status = loop {
        let s = post(&url, "app_status");
        if s.contains("\"ready\"") {
            break s;
        }
        assert!(!s.contains("\"failed\""), "{s}");
        assert!(started.elapsed() < Duration::from_secs(120), "{s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let body = &status[status.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let info = &v["model"]["info"];
    assert_eq!(info["device"], "CPU", "{v}");
    let note = info["device_note"]
        .as_str()
        .expect("a sentence for the status bar");
    assert!(
        note.contains("GPU build") && note.contains("runs on the CPU"),
        "{note}"
    );
    assert!(
        !note.trim_end_matches('.').contains(". "),
        "one sentence: {note}"
    );
    let logs: String = std::fs::read_dir(data.path().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("no usable NVIDIA GPU; running on the CPU")
            && logs.contains("CUDA_ERROR_NO_DEVICE"),
        "{logs}"
    );
}

#[test]
fn the_gpu_attention_equals_the_cpu_reference_where_a_gpu_answers() {
    let (device, note) = sinkchat_engine::device::choose_device();
    if device.is_cpu() {
        assert!(note.is_some(), "a GPU build on the CPU says so");
        eprintln!("no GPU answered: the GPU attention was compiled, not run");
        return;
    }
    let err = sinkchat_engine::attend::max_error_against_reference(&device).unwrap();
    assert!(err < 1e-5, "the GPU attention is off by {err}");
}
