//! `sinkchat-bench meaning` (#36): what finding by meaning costs. The meaning model's time per
//! message (alone and in the background task's batches of 16, on sentences of Emma), the size
//! of the vectors on disk per 1,000,000 messages, the first search by meaning over a
//! 1,000,000-message store (building the in-memory index) and the searches after it, and a
//! reply's speed while the background task embeds a backlog against without one.
//!
//! The 1,000,000 vectors of the search figures are random (SQLite's randomblob): what a search
//! costs does not depend on what the vectors say, and making real ones would take the hours
//! the first-run figure below states. The per-message time is measured on real sentences.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sinkchat_chat::{ChatService, ModelState, ReplyEvent, ReplyOptions};
use sinkchat_engine::embed::Embedder;
use sinkchat_store::Store;

use crate::store_bench::{fill, median, vocabulary};

pub struct Args {
    pub model: PathBuf,
    pub meaning: PathBuf,
    pub text: crate::perplexity::TextSource,
    pub messages: usize,
    pub conversations: usize,
    pub db_dir: PathBuf,
    pub out: Option<PathBuf>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn link_meaning(data: &Path, meaning: &Path) -> Result<()> {
    let link = data.join("models").join(sinkchat_engine::embed::FOLDER);
    if link.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(link.parent().expect("a parent"))?;
    std::os::unix::fs::symlink(std::path::absolute(meaning)?, &link)?;
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let meaning = std::path::absolute(&a.meaning)?;
    if !meaning.join("model.safetensors").exists() {
        bail!(
            "the meaning model is not at {} (scripts/setup.sh installs it; or pass --meaning DIR)",
            meaning.display()
        );
    }
    // 1. Time per message, on sentences of a novel: short (under 15 words), medium (15-40),
    //    long (over 40: a paragraph).
    let text = a.text.read()?;
    let sentences: Vec<String> = text
        .split(['.', '!', '?'])
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect();
    let by_len = |lo: usize, hi: usize| -> Vec<String> {
        sentences
            .iter()
            .filter(|s| (lo..hi).contains(&s.split(' ').count()))
            .take(160)
            .cloned()
            .collect()
    };
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| p.split(' ').count() > 40)
        .take(160)
        .collect();
    let e = Embedder::open(&meaning)?;
    e.embed(&["warm up"])?;
    let mut per_message = serde_json::Map::new();
    for (name, set) in [
        ("short", by_len(3, 15)),
        ("medium", by_len(15, 40)),
        ("long", paragraphs),
    ] {
        anyhow::ensure!(set.len() >= 32, "too few {name} texts in the text");
        let refs: Vec<&str> = set.iter().map(String::as_str).collect();
        let mut alone = Vec::new();
        for t in refs.iter().take(32) {
            let t0 = Instant::now();
            e.embed(&[t])?;
            alone.push(ms(t0));
        }
        let t0 = Instant::now();
        e.embed(&refs)?;
        let batched = ms(t0) / refs.len() as f64;
        let words: usize = refs.iter().map(|t| t.split(' ').count()).sum();
        per_message.insert(
            name.into(),
            json!({
                "texts": refs.len(),
                "mean_words": (words as f64 / refs.len() as f64).round(),
                "ms_alone_median": round2(median(alone)),
                "ms_in_batches_of_16": round2(batched),
            }),
        );
    }
    let rate = 1000.0
        / per_message["medium"]["ms_in_batches_of_16"]
            .as_f64()
            .unwrap_or(1.0);
    eprintln!("meaning: {rate:.0} medium messages/s in the background task's batches");

    let rt = tokio::runtime::Runtime::new()?;
    // 2. A 1,000,000-message store with a vector each: size, first search, later searches.
    std::fs::create_dir_all(&a.db_dir)?;
    let data = a
        .db_dir
        .join(format!("meaning-{}-{}", a.conversations, a.messages));
    let db = data.join("chats.db");
    let store_figures = rt.block_on(async {
        if !db.exists() {
            std::fs::create_dir_all(&data)?;
            let tmp = data.join("partial.db");
            for f in ["partial.db", "partial.db-wal", "partial.db-shm"] {
                let _ = std::fs::remove_file(data.join(f));
            }
            let store = Store::open(&tmp).await?;
            fill(&store, a.conversations, a.messages, &vocabulary(20_000)).await?;
            store.checkpoint().await?;
            store.close().await;
            std::fs::rename(&tmp, &db)?;
        }
        let store = Store::open(&db).await?;
        let pages = |s: &Store| {
            let pool = s.pool().clone();
            async move {
                let (count, size): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT page_count FROM pragma_page_count()), \
                            (SELECT page_size FROM pragma_page_size())",
                )
                .fetch_one(&pool)
                .await?;
                anyhow::Ok(count * size)
            }
        };
        let without: i64 = pages(&store).await?;
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM message_vectors")
            .fetch_one(store.pool())
            .await?;
        if have == 0 {
            eprintln!("meaning: writing {} vectors", a.messages);
            sqlx::query(
                "INSERT INTO message_vectors(message_id, vector) \
                 SELECT message_id, randomblob(384) FROM vectors_pending",
            )
            .execute(store.pool())
            .await?;
            sqlx::query("DELETE FROM vectors_pending")
                .execute(store.pool())
                .await?;
            store.checkpoint().await?;
        }
        let with: i64 = pages(&store).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM message_vectors")
            .fetch_one(store.pool())
            .await?;
        store.close().await;
        link_meaning(&data, &meaning)?;
        let svc = ChatService::open(&data, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let queries = [
            "when is my sister's wedding",
            "the recipe we talked about",
            "what did I say about the garden",
            "flight to Lisbon",
            "my doctor's appointment",
        ];
        let t0 = Instant::now();
        svc.search(queries[0])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let first_ms = ms(t0);
        let mut with_meaning = Vec::new();
        for _ in 0..4 {
            for q in queries {
                let t0 = Instant::now();
                svc.search(q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                with_meaning.push(ms(t0));
            }
        }
        let mut s = svc.settings().await;
        s.recall_meaning = false;
        svc.save_settings(s.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut words_only = Vec::new();
        for _ in 0..4 {
            for q in queries {
                let t0 = Instant::now();
                svc.search(q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                words_only.push(ms(t0));
            }
        }
        s.recall_meaning = true;
        svc.save_settings(s)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        svc.shutdown().await;
        let p95 = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[(v.len() * 95 / 100).min(v.len() - 1)]
        };
        anyhow::Ok(json!({
            "messages": n,
            "vector_bytes_on_disk": with - without,
            "vector_mb_per_million_messages": round2((with - without) as f64 / n as f64 * 1e6 / 1e6),
            "first_search_ms_building_the_index": round2(first_ms),
            "search_ms_median": round2(median(with_meaning.clone())),
            "search_ms_p95": round2(p95(with_meaning)),
            "search_ms_words_only_median": round2(median(words_only.clone())),
            "search_ms_words_only_p95": round2(p95(words_only)),
        }))
    })?;

    // 3. A reply while the background task embeds a backlog, and with none.
    let backlog = rt.block_on(async {
        let dir = tempfile::tempdir()?;
        link_meaning(dir.path(), &meaning)?;
        let svc = ChatService::open(dir.path(), Some(a.model.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut s = svc.settings().await;
        s.sampling.temperature = 0.0;
        s.sampling.max_tokens = 64;
        s.recall = false;
        svc.save_settings(s)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        svc.load_model();
        if let ModelState::Failed { error } = svc.wait_ready().await {
            bail!("the model did not load: {error}");
        }
        let reply = |svc: ChatService, conv: i64| async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let t0 = Instant::now();
            svc.send(
                conv,
                "Tell me about the sea.",
                ReplyOptions::default(),
                move |e| {
                    let _ = tx.send(e);
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut first = None;
            loop {
                let e = tokio::time::timeout(Duration::from_secs(300), rx.recv())
                    .await
                    .context("a reply took over five minutes")?
                    .context("the reply's events stopped")?;
                match e {
                    ReplyEvent::Token { .. } if first.is_none() => first = Some(ms(t0)),
                    ReplyEvent::Done { tokens, .. } => {
                        let total = t0.elapsed().as_secs_f64();
                        while svc.is_busy(conv) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        return anyhow::Ok((first.unwrap_or(0.0), tokens as f64 / total));
                    }
                    ReplyEvent::Error { message, .. } => bail!("reply failed: {message}"),
                    _ => {}
                }
            }
        };
        // A history of 3,000 messages saved before the meaning model came.
        let turns: Vec<(sinkchat_store::Role, String)> = sentences
            .iter()
            .take(3000)
            .enumerate()
            .map(|(i, t)| {
                let role = if i % 2 == 0 {
                    sinkchat_store::Role::User
                } else {
                    sinkchat_store::Role::Assistant
                };
                (role, t.clone())
            })
            .collect();
        // One reply first, untimed: the model's first steps pay for warming up.
        let warm = svc
            .create_conversation()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        reply(svc.clone(), warm.id).await?;
        let mut during = Vec::new();
        let mut after = Vec::new();
        let (old, _) = svc
            .create_with_turns("", &turns)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let t_backlog = Instant::now();
        for _ in 0..3 {
            let c = svc
                .create_conversation()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            during.push(reply(svc.clone(), c.id).await?);
        }
        let waiting = svc.store().vector_progress().await?.waiting;
        svc.meaning_caught_up().await;
        let backlog_s = t_backlog.elapsed().as_secs_f64();
        for _ in 0..3 {
            let c = svc
                .create_conversation()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            after.push(reply(svc.clone(), c.id).await?);
        }
        svc.delete(old.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        svc.shutdown().await;
        let mean = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
            v.iter().map(f).sum::<f64>() / v.len() as f64
        };
        anyhow::Ok(json!({
            "backlog_messages": turns.len(),
            "still_waiting_after_three_replies": waiting,
            "backlog_seconds_with_three_replies": round2(backlog_s),
            "first_token_ms_during_backlog": round2(mean(&during, |x| x.0)),
            "tokens_per_s_during_backlog": round2(mean(&during, |x| x.1)),
            "first_token_ms_after": round2(mean(&after, |x| x.0)),
            "tokens_per_s_after": round2(mean(&after, |x| x.1)),
        }))
    })?;
    let million_hours = 1e6 / rate / 3600.0;
    let doc = json!({
        "meaning_model": "all-MiniLM-L6-v2 (candle, CPU, f32)",
        "per_message": per_message,
        "first_run_hours_for_1000000_medium_messages": round2(million_hours),
        "store": store_figures,
        "reply_while_embedding": backlog,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    if let Some(out) = a.out {
        std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
