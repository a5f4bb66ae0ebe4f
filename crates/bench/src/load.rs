//! `sinkchat-bench load`: does one client's maximal prompt hold up the others? A real
//! `sinkchat serve` on loopback (its own data folder), four clients chatting at once, each
//! sending `rounds` short questions one after another (a new chat each, `max_tokens` tokens of
//! answer); first alone, then while a fifth client sends the largest request the server takes
//! (every limit of the OpenAI door filled: a system prompt and messages of 99,000 characters
//! each, about 400,000 in all, Jane Austen's text). The figures: each short request's latency
//! (the whole answer) without and with the long prompt, median, p90 and worst, and their ratio.
//! The goal (issue #32): at most 2x.
//!
//! Bounded: `rounds` requests per client, and the long request is dropped (its client hangs
//! up, its reply stops) once the four clients are done.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub struct Args {
    pub sinkchat: Option<PathBuf>,
    pub model: PathBuf,
    pub clients: usize,
    pub rounds: usize,
    pub max_tokens: usize,
    pub out: Option<PathBuf>,
}

/// A running `sinkchat serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, model: &Path) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(bin)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("SINKCHAT_MODEL", model)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = lines.next().context("the server's address")??;
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("a port in the address")?;
    let _ = lines.next();
    let key = lines
        .next()
        .context("the access key line")??
        .split("access key: ")
        .nth(1)
        .context("the access key")?
        .trim_end_matches(')')
        .to_string();
    let server = Server {
        child,
        port,
        key,
        _dir: dir,
    };
    let t = Instant::now();
    loop {
        let (_, body) = http(server.port, "GET", "/v1/models", &server.key, "")?;
        if body.contains("\"state\":\"ready\"") {
            return Ok(server);
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the model did not load: {body}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

/// A completion request for `model` (the id the server lists).
fn completion(model: &str, messages: Value, max_tokens: usize) -> String {
    json!({
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
    })
    .to_string()
}

/// `clients` clients at once, `rounds` questions each; every request's latency in seconds.
fn chat_clients(
    server: &Server,
    model: &str,
    clients: usize,
    rounds: usize,
    max_tokens: usize,
) -> Result<Vec<f64>> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for c in 0..clients {
            let (latencies, failures) = (latencies.clone(), failures.clone());
            s.spawn(move || {
                for r in 0..rounds {
                    let q = format!(
                        "Client {c}, question {r}: name a colour and say why people like it."
                    );
                    let body =
                        completion(model, json!([{"role": "user", "content": q}]), max_tokens);
                    let t = Instant::now();
                    match http(
                        server.port,
                        "POST",
                        "/v1/chat/completions",
                        &server.key,
                        &body,
                    ) {
                        Ok((200, _)) => latencies.lock().unwrap().push(t.elapsed().as_secs_f64()),
                        Ok((status, b)) => failures.lock().unwrap().push(format!("{status}: {b}")),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
    });
    let failures = failures.lock().unwrap();
    if !failures.is_empty() {
        bail!("{} requests failed, first: {}", failures.len(), failures[0]);
    }
    let v = latencies.lock().unwrap().clone();
    Ok(v)
}

/// The largest request the OpenAI door takes: a system prompt, two earlier messages and the
/// question, 99,000 characters each (within the store's 100,000 per message and the request's
/// 400,000), from Austen's novels (or plain sentences when they are not installed).
fn maximal_messages() -> Value {
    let text =
        crate::rdata::read_text(&crate::corpus::janeaustenr_base(), "emma").unwrap_or_else(|_| {
            "The lighthouse keeper wrote the weather in his book every morning, and the sea \
             answered him in its own words. "
                .repeat(4000)
        });
    let chars: Vec<char> = text.chars().collect();
    let part = |i: usize| -> String {
        let start = (i * 99_000) % chars.len().saturating_sub(99_000).max(1);
        chars[start..(start + 99_000).min(chars.len())]
            .iter()
            .collect()
    };
    json!([
        {"role": "system", "content": part(0)},
        {"role": "user", "content": part(1)},
        {"role": "assistant", "content": part(2)},
        {"role": "user", "content": part(3)},
    ])
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn summary(v: &[f64]) -> Value {
    json!({
        "requests": v.len(),
        "median_s": (quantile(v, 0.5) * 1000.0).round() / 1000.0,
        "p90_s": (quantile(v, 0.9) * 1000.0).round() / 1000.0,
        "worst_s": (quantile(v, 1.0) * 1000.0).round() / 1000.0,
    })
}

pub fn run(args: Args) -> Result<()> {
    let bin = match args.sinkchat {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("the bench's folder")?
            .join("sinkchat"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p sinkchat-cli` (or pass --sinkchat)",
        bin.display()
    );
    let server = start(&bin, &args.model)?;
    let (_, models) = http(server.port, "GET", "/v1/models", &server.key, "")?;
    let models: Value = serde_json::from_str(&models)?;
    let model = models["data"][0]["id"]
        .as_str()
        .context("the server's model")?
        .to_string();
    // Warm up: the first requests pay for page faults and allocations.
    chat_clients(&server, &model, args.clients, 1, args.max_tokens)?;
    eprintln!(
        "{} clients x {} questions, alone ...",
        args.clients, args.rounds
    );
    let idle = chat_clients(&server, &model, args.clients, args.rounds, args.max_tokens)?;

    let big = completion(&model, maximal_messages(), 1);
    let big_chars = big.len();
    eprintln!("the same, while a fifth client sends {big_chars} bytes ...");
    let big_started = Instant::now();
    let big_done: Arc<Mutex<Option<(u16, f64, Value)>>> = Arc::default();
    let port = server.port;
    let key = server.key.clone();
    let done = big_done.clone();
    std::thread::spawn(move || {
        if let Ok((status, body)) = http(port, "POST", "/v1/chat/completions", &key, &big) {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            *done.lock().unwrap() = Some((status, big_started.elapsed().as_secs_f64(), v));
        }
    });
    // The long request is in: its text stored and its prompt being read.
    std::thread::sleep(Duration::from_secs(3));
    let loaded = chat_clients(&server, &model, args.clients, args.rounds, args.max_tokens)?;
    let loaded_span = big_started.elapsed().as_secs_f64();
    let big_result = big_done.lock().unwrap().clone();
    let big_still_reading = big_result.is_none();
    if let Some((status, _, body)) = &big_result {
        anyhow::ensure!(*status == 200, "the long request failed: {status} {body}");
    }
    drop(server);

    let ratio = |q: f64| ((quantile(&loaded, q) / quantile(&idle, q)) * 100.0).round() / 100.0;
    let report = json!({
        "bench": "load",
        "model": args.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "clients": args.clients,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "alone": summary(&idle),
        "with_long_prompt": summary(&loaded),
        "ratio_median": ratio(0.5),
        "ratio_p90": ratio(0.9),
        "long_prompt": {
            "request_bytes": big_chars,
            "still_reading_when_the_others_ended": big_still_reading,
            "seconds_until_the_others_ended": (loaded_span * 10.0).round() / 10.0,
            "finished_after_s": big_result.as_ref().map(|(_, s, _)| (s * 10.0).round() / 10.0),
            "prompt_tokens_fed": big_result.as_ref().map(|(_, _, v)| v["sinkchat"]["prompt_tokens_fed"].clone()),
        },
    });
    println!(
        "latency of a short request (s)    median    p90   worst\n\
         alone                           {:>7.2} {:>6.2} {:>7.2}\n\
         with a maximal prompt           {:>7.2} {:>6.2} {:>7.2}\n\
         ratio                           {:>7.2} {:>6.2}   (goal: at most 2)\n\
         the long prompt: {} bytes, {}",
        quantile(&idle, 0.5),
        quantile(&idle, 0.9),
        quantile(&idle, 1.0),
        quantile(&loaded, 0.5),
        quantile(&loaded, 0.9),
        quantile(&loaded, 1.0),
        ratio(0.5),
        ratio(0.9),
        big_chars,
        if big_still_reading {
            format!("still being read when the others ended ({loaded_span:.0} s after it was sent)")
        } else {
            format!(
                "answered after {:.0} s",
                big_result.as_ref().map(|r| r.1).unwrap_or(0.0)
            )
        }
    );
    if let Some(out) = args.out {
        std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
