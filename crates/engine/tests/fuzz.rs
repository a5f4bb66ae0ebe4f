//! Bounded-time fuzzing on stable Rust: the GGUF reader (inspect and load) and the snapshot
//! reader get thousands of mutated real files each and must answer every one with a value or
//! an error, never a panic. cargo-fuzz needs a nightly compiler and a sanitizer build, which CI
//! does not have; this is the equivalent that runs in the ordinary test build.
//!
//! The mutations know the formats: a light walk of each seed records where GGUF's counts,
//! lengths, type tags, dimensions, offsets and numeric values sit, and most mutations set one
//! of those to an edge value (0, 1, 2^31, 2^32, u64::MAX, the value +-1 or doubled, or random);
//! the rest flip bytes or cut the file short. Snapshot mutations recompute the checksum most of
//! the time, or the reader would refuse every input at its first check.
//!
//! Budget: `SINKCHAT_FUZZ_SECS` per target (default 5; CI's test command sets 60). Seed:
//! `SINKCHAT_FUZZ_SEED` (printed, so a run can be repeated). An input that panics is kept
//! in `tests/fuzz-corpus/<target>/` (the repository's copy is replayed first on every run) and
//! the test fails naming it.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::*;
use sha2::{Digest, Sha256};
use sinkchat_engine::{Engine, EngineEvent, EngineOptions, GenerateRequest, LoadOptions, Model};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn budget() -> Duration {
    let secs = std::env::var("SINKCHAT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    let s = std::env::var("SINKCHAT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("fuzz seed {s} (SINKCHAT_FUZZ_SEED={s} replays this run)");
    s
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz-corpus")
        .join(target)
}

/// Replays the kept corpus, then mutates the seeds until the budget is spent. `run` returns
/// normally for any answer (value or error); a panic is a finding.
fn fuzz(
    target: &str,
    seeds: &[(Vec<u8>, Vec<Field>)],
    mutate_extra: impl Fn(&mut Vec<u8>, &mut Rng),
    run: impl Fn(&[u8]),
) {
    let prev = std::panic::take_hook();
    // Findings are reported below, once each, with the panic's message and place.
    static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap() = info.to_string();
    }));
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    inputs.sort();
    let replayed = inputs.len();
    let mut findings: Vec<String> = Vec::new();
    // The input under test is also written here first: an input that aborts the process (no
    // panic to catch: an allocation failure, a panic that cannot unwind) is left in this file.
    let last = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("fuzz-last-{target}"));
    let check = |findings: &mut Vec<String>, name: &str, bytes: &[u8]| {
        let _ = std::fs::write(&last, bytes);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes))).is_err() {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!(
                "crash-{}",
                &hex::encode(Sha256::digest(bytes))[..16]
            ));
            std::fs::write(&path, bytes).unwrap();
            findings.push(format!(
                "{name}: kept as {}: {}",
                path.display(),
                LAST_PANIC.lock().unwrap()
            ));
        }
    };
    for (name, bytes) in &inputs {
        check(&mut findings, name, bytes);
    }
    for (i, (s, _)) in seeds.iter().enumerate() {
        check(&mut findings, &format!("seed {i}"), s);
    }
    let mut rng = Rng(seed());
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < budget() && findings.len() < 5 {
        let (seed, fields) = &seeds[rng.below(seeds.len())];
        let mut b = seed.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut b, fields, &mut rng);
        }
        mutate_extra(&mut b, &mut rng);
        check(&mut findings, &format!("mutant {runs}"), &b);
        runs += 1;
    }
    std::panic::set_hook(prev);
    eprintln!(
        "{target}: {replayed} kept inputs replayed, {runs} mutants in {:.0} s, {} findings",
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "{target} panicked on:\n{}",
        findings.join("\n")
    );
    assert!(runs > 0, "no mutant ran");
}

/// Where a number sits in a seed, and how wide it is.
#[derive(Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
}

fn edge(rng: &mut Rng, old: u64, width: usize) -> u64 {
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let v = match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => 1 << 31,
        3 => 1 << 32,
        4 => u64::MAX,
        5 => old.wrapping_add(1),
        6 => old.wrapping_sub(1),
        7 => old.wrapping_mul(2),
        8 => rng.below(64) as u64,
        _ => rng.next(),
    };
    v & max
}

fn mutate(b: &mut Vec<u8>, fields: &[Field], rng: &mut Rng) {
    match rng.below(10) {
        0..=6 if !fields.is_empty() => {
            let f = fields[rng.below(fields.len())];
            if f.at + f.width > b.len() {
                return;
            }
            let mut old = [0u8; 8];
            old[..f.width].copy_from_slice(&b[f.at..f.at + f.width]);
            let v = edge(rng, u64::from_le_bytes(old), f.width);
            b[f.at..f.at + f.width].copy_from_slice(&v.to_le_bytes()[..f.width]);
        }
        7 => {
            let n = b.len();
            b.truncate(rng.below(n));
        }
        _ => {
            for _ in 0..1 + rng.below(8) {
                if b.is_empty() {
                    return;
                }
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
    }
}

/// The numeric fields of a GGUF file's header, metadata and tensor table.
fn gguf_fields(b: &[u8]) -> Vec<Field> {
    struct W<'a> {
        b: &'a [u8],
        at: usize,
        out: Vec<Field>,
    }
    impl W<'_> {
        fn num(&mut self, width: usize) -> Option<u64> {
            let s = self.b.get(self.at..self.at + width)?;
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(s);
            self.out.push(Field { at: self.at, width });
            self.at += width;
            Some(u64::from_le_bytes(v))
        }
        fn string(&mut self) -> Option<()> {
            let n = self.num(8)? as usize;
            self.at = self.at.checked_add(n)?;
            (self.at <= self.b.len()).then_some(())
        }
        fn value(&mut self, t: u64, depth: usize) -> Option<()> {
            match t {
                0 | 1 | 7 => self.num(1).map(drop),
                2 | 3 => self.num(2).map(drop),
                4..=6 => self.num(4).map(drop),
                10..=12 => self.num(8).map(drop),
                8 => self.string(),
                9 if depth == 0 => {
                    let et = self.num(4)?;
                    let n = self.num(8)?;
                    // Long arrays (a vocabulary): record the first elements, skip the rest
                    // quickly by walking them without recording.
                    for i in 0..n {
                        let keep = self.out.len();
                        self.value(et, 1)?;
                        if i > 16 {
                            self.out.truncate(keep);
                        }
                    }
                    Some(())
                }
                _ => None,
            }
        }
    }
    let mut w = W {
        b,
        at: 4,
        out: Vec::new(),
    };
    let walk = |w: &mut W| -> Option<()> {
        w.num(4)?; // version
        let tensors = w.num(8)?;
        let kvs = w.num(8)?;
        for _ in 0..kvs {
            w.string()?;
            let t = w.num(4)?;
            w.value(t, 0)?;
        }
        for _ in 0..tensors {
            w.string()?;
            let dims = w.num(4)?;
            for _ in 0..dims {
                w.num(8)?;
            }
            w.num(4)?; // type
            w.num(8)?; // offset
        }
        Some(())
    };
    let _ = walk(&mut w);
    w.out
}

fn tiny_seeds(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (name, t, vocab) in [
        (
            "llama-spm",
            Tiny::llama(1),
            Some("ggml-vocab-llama-spm.gguf"),
        ),
        ("qwen3", Tiny::qwen3(1), Some("ggml-vocab-qwen2.gguf")),
        ("phi3", Tiny::phi3(1), Some("ggml-vocab-phi-3.gguf")),
        ("llama", Tiny::llama(2), None),
    ] {
        let p = dir.join(format!("{name}.gguf"));
        match vocab {
            Some(v) => write_tiny_with_vocab(t, &p, &vocab_file(v)),
            None => write_tiny(&t, &p, candle_core::quantized::GgmlDType::Q8_0),
        }
        out.push(p);
    }
    out
}

#[test]
fn fuzz_gguf_reader() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<(Vec<u8>, Vec<Field>)> = tiny_seeds(dir.path())
        .iter()
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            let f = gguf_fields(&b);
            assert!(
                f.len() > 20,
                "the walker found the fields of {}",
                p.display()
            );
            (b, f)
        })
        .collect();
    let path = dir.path().join("input.gguf");
    fuzz(
        "gguf",
        &seeds,
        |_, _| {},
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let _ = sinkchat_engine::inspect(&path);
            let _ = sinkchat_engine::check_header_prefix(bytes);
            let _ = Model::load(&path, &Device::Cpu, LoadOptions::default());
        },
    );
}

const FUZZ_MODEL: &str = "fuzz-model";

#[test]
fn fuzz_snapshot_reader() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_seeds(dir.path()).remove(0);
    let snaps = dir.path().join("snaps");
    let engine = Engine::start_with(
        &model,
        Device::Cpu,
        EngineOptions {
            snapshot_dir: Some(snaps.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut req = GenerateRequest {
        conversation: 1,
        cache_key: "k".into(),
        system_prompt: "Be brief.".into(),
        history: Default::default(),
        user_text: "Hello there".into(),
        user_message_id: 1,
        reply_message_id: 2,
        sampling: Default::default(),
        cache: sinkchat_engine::CacheConfig {
            sinks: 4,
            window: 24,
            ..Default::default()
        },
        pin_system_prompt: true,
        spans: Default::default(),
    };
    req.sampling.max_tokens = 40;
    engine.generate(req, move |e| drop(tx.send(e))).unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            EngineEvent::Done { .. } => break,
            EngineEvent::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert_eq!(engine.park_all(), 1);
    drop(engine);
    // The seed names its model by identity (file name, size, hash of its start), and the tiny
    // model's bytes differ between runs (metadata order), so the identity is replaced by a
    // fixed one: a kept input then replays on any run.
    let seed = {
        let b = std::fs::read(snaps.join("1.kv")).unwrap();
        let hlen = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&b[16..16 + hlen]).unwrap();
        header["model"] = FUZZ_MODEL.into();
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = b[..8].to_vec();
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&b[16 + hlen..b.len() - 32]);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    };
    // The header's length, then the JSON header's numbers are fields too (by position).
    let hlen = u64::from_le_bytes(seed[8..16].try_into().unwrap()) as usize;
    let mut fields = vec![Field { at: 8, width: 8 }];
    let header = &seed[16..16 + hlen];
    for (i, c) in header.iter().enumerate() {
        if c.is_ascii_digit() && (i == 0 || !header[i - 1].is_ascii_digit()) {
            fields.push(Field {
                at: 16 + i,
                width: 1,
            });
        }
    }
    let spec = Model::load(&model, &Device::Cpu, LoadOptions::default())
        .unwrap()
        .spec()
        .clone();
    let id = FUZZ_MODEL;
    let path = dir.path().join("input.kv");
    let reseal = |b: &mut Vec<u8>, rng: &mut Rng| {
        // Most mutants get a fresh checksum, so the reader is tested past its first check.
        if rng.below(10) < 8 && b.len() >= 48 {
            let n = b.len() - 32;
            let d = Sha256::digest(&b[..n]);
            b[n..].copy_from_slice(&d);
        }
    };
    fuzz("snapshot", &[(seed, fields)], reseal, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = sinkchat_engine::snapshot::load(&path, id, &spec, &Device::Cpu);
    });
}
