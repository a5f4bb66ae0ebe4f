//! `sinkchat-bench eval perplexity` and `eval report` end to end on SmolLM2 and the first tokens of
//! Emma: dense and streaming agree exactly while nothing is evicted, the NLL log is what the
//! tool's summary reports, and the report reads the logs back into the JSON and the plot.

use std::path::Path;
use std::process::Command;

fn sinkchat(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_sinkchat-bench"))
        .args(args)
        .env("SINKCHAT_DATA_DIR", root.join(".data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sinkchat {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn csv(path: &Path) -> Vec<(usize, u32, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn logs_add_up_and_dense_equals_streaming_before_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let common = [
        "eval",
        "perplexity",
        "--book",
        "emma",
        "--tokens",
        "300",
        "--chunk",
        "64",
        "--out-dir",
        d,
    ];
    let run = |extra: &[&str]| sinkchat(&[&common[..], extra].concat());
    run(&["--mode", "dense"]);
    run(&["--mode", "streaming", "--sinks", "4", "--window", "1024"]);
    run(&["--mode", "streaming", "--sinks", "4", "--window", "64"]);
    run(&["--mode", "window", "--window", "64"]);
    run(&["--mode", "recompute", "--window", "64", "--stride", "50"]);

    let p = dir.path();
    let dense = csv(&p.join("emma-dense-n300.csv"));
    let roomy = csv(&p.join("emma-streaming-s4-w1024-n300.csv"));
    let tight = csv(&p.join("emma-streaming-s4-w64-n300.csv"));
    assert_eq!(dense.len(), 299, "every token after the first is scored");
    assert_eq!(
        dense, roomy,
        "nothing evicted: streaming is dense, to the last digit"
    );
    assert_eq!(dense[..63], tight[..63], "the same until the window fills");
    assert_ne!(dense[100..], tight[100..], "and not after");
    assert!(dense.iter().all(|r| r.2.is_finite() && r.2 >= 0.0));

    for name in [
        "dense-n300",
        "streaming-s4-w64-n300",
        "window-w64-n300",
        "recompute-w64-r50-n300",
    ] {
        let s = summary(&p.join(format!("emma-{name}.json")));
        let log = csv(&p.join(format!("emma-{name}.csv")));
        assert_eq!(s["scored"].as_u64().unwrap() as usize, log.len(), "{name}");
        let mean = log.iter().map(|r| r.2).sum::<f64>() / log.len() as f64;
        let ppl = s["perplexity"].as_f64().unwrap();
        assert!(
            (mean.exp() - ppl).abs() / ppl < 1e-5,
            "{name}: log {} vs table {ppl}",
            mean.exp()
        );
        assert!(
            s["ms_per_token"].as_f64().unwrap() > 0.0 && s["peak_rss_mib"].as_f64().unwrap() > 50.0
        );
    }
    let rec = csv(&p.join("emma-recompute-w64-r50-n300.csv"));
    assert_eq!(
        rec.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![50, 100, 150, 200, 250]
    );

    let out = p.join("perplexity.json");
    let plot = p.join("perplexity.svg");
    sinkchat(&[
        "eval",
        "report",
        "--dir",
        d,
        "--tokens",
        "300",
        "--ablation-tokens",
        "300",
        "--sinks",
        "4",
        "--window",
        "64",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let j = summary(&out);
    let tight_ppl = summary(&p.join("emma-streaming-s4-w64-n300.json"))["perplexity"]
        .as_f64()
        .unwrap();
    assert!((j["modes"]["streaming"].as_f64().unwrap() - tight_ppl).abs() < 1e-3);
    for m in ["dense", "window", "recompute", "streaming"] {
        assert!(j["modes"][m].as_f64().unwrap() > 1.0, "{m}: {j}");
    }
    assert!(j["sinks_ablation"]["0"].is_number() && j["sinks_ablation"]["4"].is_number());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.matches("<polyline").count() == 4,
        "{svg}"
    );
}

/// `eval recall-perplexity` on a text with one question about a paragraph the window has let
/// go: recall acts on that question only (the running paragraphs share its words but ask
/// nothing), both runs score the same tokens, and the recalled paragraph is the fact.
#[test]
fn recall_perplexity_recalls_for_the_question_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("talk.txt");
    let mut body = String::from("My cat is called Quokkamuffin and she sleeps all day.\n\n");
    for k in 0..12 {
        body.push_str(&format!(
            "The river runs past the old mill, part {k}, and the cat from the farm watches it.\n\n"
        ));
    }
    body.push_str("What is my cat called?\n\n");
    std::fs::write(&text, body).unwrap();
    let out = dir.path().join("r.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = Command::new(env!("CARGO_BIN_EXE_sinkchat-bench"))
        .args(["eval", "recall-perplexity", "--text"])
        .arg(&text)
        .args([
            "--tokens",
            "100000",
            "--window",
            "96",
            "--chunk",
            "32",
            "--show-recalled",
            "--out",
        ])
        .arg(&out)
        .env("SINKCHAT_DATA_DIR", root.join(".data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let doc = summary(&out);
    let s = &doc["models"][0];
    assert_eq!(s["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(s["paragraphs"], 14);
    assert_eq!(s["paragraphs_with_recall"], 1, "{s}\n{stderr}");
    assert!(s["recalled_tokens_read"].as_u64().unwrap() > 10);
    // Each recalled line says how it came (by words alone, or near by meaning), then the text.
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("recalled ("))
        .unwrap_or_else(|| panic!("no recalled line: {stderr}"));
    assert!(
        line.contains("): \"My cat is called Quokkamuffin"),
        "{stderr}"
    );
    let (off, on) = (
        s["perplexity_recall_off"].as_f64().unwrap(),
        s["perplexity_recall_on"].as_f64().unwrap(),
    );
    assert!(off.is_finite() && on.is_finite() && off > 1.0 && on > 1.0);
    assert_ne!(off, on, "the question was read after the recalled line");
}
