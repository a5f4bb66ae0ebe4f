//! SinkChat against llama.cpp on real weights, in CI: the files small enough (SmolLM2 135M
//! Q4_1, the default model; Gemma 3 270M Q4_K_M, whose layers are of two kinds; SmolLM2 as
//! IQ4_NL and IQ4_XS, the formats candle does not read, made here by llama.cpp's own
//! `llama-quantize`) score the first 2,048 tokens of Emma within 1% of llama.cpp's
//! `llama-perplexity` built from the same source package (`scripts/llamacpp.sh`;
//! `scripts/setup.sh test` builds both tools and fetches the files).
//! The other files (the K-quant files, Qwen2.5-Coder-0.5B) run in `scripts/parity-llamacpp.sh`
//! into `docs/bench/parity-llamacpp.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn need(p: PathBuf, how: &str) -> PathBuf {
    assert!(p.exists(), "{} is missing: {how}", p.display());
    p
}

#[test]
fn the_small_files_score_within_one_percent_of_llama_cpp() {
    let r = root();
    let perplexity = need(
        r.join(".cache/llama.cpp/build/bin/llama-perplexity"),
        "run scripts/llamacpp.sh llama-perplexity",
    );
    let quantize = need(
        r.join(".cache/llama.cpp/build/bin/llama-quantize"),
        "run scripts/llamacpp.sh llama-quantize",
    );
    let smol = need(
        r.join(".data/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "run scripts/setup.sh test-deps",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut models = vec![
        smol.clone(),
        need(
            r.join(".cache/gemma3/gemma-3-270m-q4_k_m.gguf"),
            "run scripts/setup.sh test-deps",
        ),
    ];
    // IQ4_NL files keep a few tensors in other types; IQ4_XS falls back to IQ4_NL where a
    // row is not whole super-blocks (SmolLM2's width, 576): both kernels run.
    for ty in ["IQ4_NL", "IQ4_XS"] {
        let out = dir.path().join(format!("SmolLM2-135M-Instruct.{ty}.gguf"));
        let made = Command::new(&quantize)
            .arg("--allow-requantize")
            .args([&smol, &out])
            .args([ty, "2"])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        models.push(out);
    }
    let out = dir.path().join("parity.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkchat-bench"));
    cmd.args(["eval", "parity", "--book", "emma", "--ctx", "2048"])
        .arg("--llamacpp")
        .arg(&perplexity)
        .arg("--out")
        .arg(&out);
    for m in &models {
        cmd.arg("--model").arg(m);
    }
    let run = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    eprintln!("{log}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = v["models"].as_array().unwrap();
    assert_eq!(rows.len(), models.len());
    for row in rows {
        let (ours, theirs) = (
            row["sinkchat_ppl"].as_f64().unwrap(),
            row["llamacpp_ppl"].as_f64().unwrap(),
        );
        assert_eq!(row["tokens"], 2048);
        assert!(theirs > 1.0 && ours > 1.0, "{row}");
        let diff = (ours / theirs - 1.0).abs();
        assert!(
            diff < 0.01,
            "{}: {:.3}% from llama.cpp",
            row["model"],
            diff * 100.0
        );
    }
}
