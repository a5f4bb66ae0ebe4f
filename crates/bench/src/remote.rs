//! `sinkchat-bench remote`: what SinkChat's policy costs a real server (issue #35). One
//! conversation of `turns` turns (text several times the server's context) against llama.cpp's
//! own server, started here on 127.0.0.1 with the model, three ways: (a) evicting one message
//! at a time, as a client that trims to fit does; (b) evicting in blocks of a quarter of the
//! window, so that between evictions each request extends the last and the server's prefix
//! cache serves it (what any server with prefix caching gives, vLLM's included); (c) blocks
//! with llama.cpp's cache reuse (`--cache-reuse`), which shifts the kept messages' cache into
//! place after an eviction instead of reading them again. Per turn: the prompt tokens the
//! server computed and took from its cache (its own `timings`), and the latency.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use serde_json::json;
use sinkchat_remote::local::LocalServer;
use sinkchat_remote::{Client, Eviction, Session};

pub struct Args {
    pub model: PathBuf,
    pub turns: usize,
    pub context: usize,
    pub max_tokens: usize,
    pub out: Option<PathBuf>,
}

/// What the user says at turn `i`: varied, a dozen tokens or so.
fn user_text(i: usize) -> String {
    const TOPICS: [&str; 10] = [
        "rivers", "bread", "owls", "trains", "tea", "maps", "clocks", "gardens", "bees", "snow",
    ];
    format!(
        "Turn {i}: tell me one short thing about {}.",
        TOPICS[i % TOPICS.len()]
    )
}

#[derive(Clone, Copy)]
enum Way {
    OneByOne,
    Blocks,
    BlocksCacheReuse,
}

async fn conversation(
    args: &Args,
    way: Way,
) -> Result<(Vec<serde_json::Value>, serde_json::Value)> {
    let reuse: &[&str] = match way {
        Way::BlocksCacheReuse => &["--cache-reuse", "64"],
        _ => &[],
    };
    let server = LocalServer::start(&args.model, args.context, reuse)
        .context("starting llama-server (scripts/llamacpp.sh llama-server)")?;
    let client = Client::new(&server.address(), None)?;
    let mut s = Session::start(
        client,
        "model",
        "You are a helpful assistant. Answer in one short sentence.",
        args.max_tokens,
        Some(args.context),
    )
    .await?;
    s.extra.insert("cache_prompt".into(), true.into());
    match way {
        Way::OneByOne => s.evict(Eviction::OneByOne),
        Way::Blocks => {}
        Way::BlocksCacheReuse => {
            s.extra.insert("n_cache_reuse".into(), 64.into());
        }
    }
    let never = AtomicBool::new(false);
    let mut rows = Vec::new();
    let mut new_text = Vec::new();
    let mut prev_reply = 0usize;
    for i in 0..args.turns {
        let t = s
            .turn(&user_text(i), &never, |_| {})
            .await
            .with_context(|| format!("turn {i}: {}", server.log()))?;
        rows.push(json!({
            "turn": i + 1,
            "prompt_computed": t.computed,
            "prompt_cached": t.cached,
            "ms": (t.ms * 10.0).round() / 10.0,
        }));
        // The turn's new text: the user's message and the previous reply (what a perfect
        // cache would still have to read).
        new_text.push(t.user_tokens + prev_reply);
        prev_reply = t.reply_tokens;
        if (i + 1) % 20 == 0 {
            eprintln!(
                "  {} turns, last computed {} cached {}",
                i + 1,
                t.computed,
                t.cached
            );
        }
    }
    let from = 20.min(rows.len());
    let tail = &rows[from..];
    let mean = |k: &str| {
        tail.iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / tail.len().max(1) as f64
    };
    let new_mean = new_text[from..].iter().sum::<usize>() as f64 / tail.len().max(1) as f64;
    let last = s.last_stats().expect("a turn");
    let summary = json!({
        "mean_prompt_computed_from_turn_20": (mean("prompt_computed") * 10.0).round() / 10.0,
        "mean_ms_from_turn_20": (mean("ms") * 10.0).round() / 10.0,
        "mean_new_text_tokens": (new_mean * 10.0).round() / 10.0,
        "text_tokens": last.evicted_tokens_total + last.window_tokens,
        "pinned_tokens": last.pinned_tokens,
    });
    Ok((rows, summary))
}

pub async fn run(args: Args) -> Result<()> {
    let mut report = json!({
        "what": "one conversation against llama.cpp's server on 127.0.0.1, per turn: prompt tokens computed and taken from the cache (the server's timings), latency",
        "model": args.model.file_name().map(|f| f.to_string_lossy().to_string()),
        "turns": args.turns,
        "server_context": args.context,
        "max_tokens": args.max_tokens,
        "command": format!(
            "sinkchat-bench remote --turns {} --context {} --max-tokens {}",
            args.turns, args.context, args.max_tokens
        ),
    });
    let window = args.context.saturating_sub(args.max_tokens);
    report["block_tokens_about"] = json!(window / 4);
    for (key, way) in [
        ("one_by_one", Way::OneByOne),
        ("blocks", Way::Blocks),
        ("blocks_cache_reuse", Way::BlocksCacheReuse),
    ] {
        eprintln!("{key}:");
        let (rows, summary) = conversation(&args, way).await?;
        eprintln!("  {summary}");
        report[key] = json!(rows);
        report[format!("{key}_summary")] = summary;
    }
    let text = serde_json::to_string_pretty(&report)? + "\n";
    match &args.out {
        Some(out) => write(out, &text)?,
        None => print!("{text}"),
    }
    Ok(())
}

fn write(out: &Path, text: &str) -> Result<()> {
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}
