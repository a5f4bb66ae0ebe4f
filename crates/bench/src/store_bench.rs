//! `sinkchat-bench store`: the transcript store at scale (10,000 conversations, 1,000,000
//! messages: first page of the list, searches) and reopening a conversation after a restart
//! (restore its cache snapshot against re-prefilling its window).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use serde_json::json;
use sinkchat_engine::model::Logits;
use sinkchat_engine::{snapshot, CacheConfig, LoadOptions, Model, SinkCache};
use sinkchat_store::Store;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// A vocabulary of pronounceable words, used with a skewed (Zipf-like) frequency so the
/// full-text index holds a few very common words and a long tail, as real chats do.
pub(crate) fn vocabulary(n: usize) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ten", "ra", "su", "be", "dor", "an", "vel", "to", "ri", "pa", "es",
        "ul", "gen", "mo", "li", "sar", "ne", "qu", "ib", "fo", "tha",
    ];
    let mut r = Rng(99);
    (0..n)
        .map(|_| {
            let k = 1 + r.next() as usize % 3;
            (0..k).map(|_| SYL[r.next() as usize % SYL.len()]).collect()
        })
        .collect()
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Fills a fresh database; returns the seconds it took.
pub(crate) async fn fill(
    store: &Store,
    conversations: usize,
    messages: usize,
    vocab: &[String],
) -> Result<f64> {
    let started = Instant::now();
    let mut rng = Rng(7);
    let per = messages / conversations;
    let pool = store.pool();
    let t0: i64 = 1_700_000_000_000;
    let mut written = 0usize;
    let mut progress =
        crate::progress::Progress::new("store: writing", conversations as u64, "conversations");
    for c in 0..conversations {
        let mut tx = pool.begin().await?;
        let title: Vec<&str> = (0..4)
            .map(|_| vocab[rng.next() as usize % 500].as_str())
            .collect();
        let updated = t0 + (c as i64) * 60_000;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations(title, model, system_prompt, settings, created_at, updated_at) \
             VALUES (?, 'SmolLM2-135M-Instruct', 'You are a helpful assistant.', '{}', ?, ?) RETURNING id",
        )
        .bind(title.join(" "))
        .bind(updated - 3_600_000)
        .bind(updated)
        .fetch_one(&mut *tx)
        .await?;
        for m in 0..per {
            let words = 20 + rng.next() as usize % 60;
            let mut text: Vec<&str> = (0..words)
                .map(|_| {
                    let u = rng.unit();
                    vocab[((u * u * u) * vocab.len() as f64) as usize % vocab.len()].as_str()
                })
                .collect();
            written += 1;
            if written.is_multiple_of(10_000) {
                text.push("quokka");
            }
            sqlx::query(
                "INSERT INTO messages(conversation_id, role, content, status, created_at, updated_at) \
                 VALUES (?, ?, ?, 'complete', ?, ?)",
            )
            .bind(id)
            .bind(if m % 2 == 0 { "user" } else { "assistant" })
            .bind(text.join(" "))
            .bind(updated)
            .bind(updated)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        progress.set(c as u64 + 1);
    }
    progress.finish();
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(
    model_path: &Path,
    conversations: usize,
    messages: usize,
    db_dir: PathBuf,
    out: Option<PathBuf>,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    std::fs::create_dir_all(&db_dir)?;
    let db = db_dir.join(format!("bench-{conversations}-{messages}.db"));
    let vocab = vocabulary(20_000);
    let (fill_s, list_ms, list_cold_ms, searches, size_mib) = rt.block_on(async {
        let mut fill_s = None;
        if !db.exists() {
            let tmp = db.with_extension("partial");
            let _ = std::fs::remove_file(&tmp);
            let store = Store::open(&tmp).await?;
            fill_s = Some(fill(&store, conversations, messages, &vocab).await?);
            store.checkpoint().await?;
            store.close().await;
            std::fs::rename(&tmp, &db)?;
        }
        // A fresh open, as after a restart: the first query is the cold one.
        let store = Store::open(&db).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(store.pool())
            .await?;
        anyhow::ensure!(
            count as usize == messages,
            "the database holds {count} messages"
        );
        let t = Instant::now();
        let first = store.list_conversations(None, 50).await?;
        let list_cold_ms = ms(t);
        anyhow::ensure!(first.len() == 50);
        let mut list = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let page = store.list_conversations(None, 50).await?;
            list.push(ms(t));
            anyhow::ensure!(page[0].id == first[0].id);
        }
        let mut searches = Vec::new();
        // The most common word, a mid-frequency word, a rare word (100 messages), two words.
        let common = vocab[0].clone();
        let mid = vocab[2000].clone();
        for q in [
            common.as_str(),
            mid.as_str(),
            "quokka",
            &format!("{} quokka", vocab[1]),
        ] {
            let mut times = Vec::new();
            let mut hits = 0;
            for _ in 0..11 {
                let t = Instant::now();
                hits = store.search(q, 50).await?.len();
                times.push(ms(t));
            }
            searches.push(json!({"query": q, "hits": hits, "ms": median(times)}));
        }
        let size = std::fs::metadata(&db)?.len() as f64 / (1 << 20) as f64;
        anyhow::Ok((fill_s, median(list), list_cold_ms, searches, size))
    })?;
    let search_ms = searches
        .iter()
        .filter_map(|s| s["ms"].as_f64())
        .fold(0.0, f64::max);

    // Reopening a conversation: the app's default cache, full, then restored vs re-prefilled.
    let model = Model::load(model_path, &Device::Cpu, LoadOptions::default())?;
    let id = snapshot::model_identity(model_path)?;
    let cfg = CacheConfig::default();
    let text = crate::bench::tokens(cfg.capacity(), model.spec().vocab_size);
    let chunk = 256;
    let mut reprefill = Vec::new();
    let mut cache = SinkCache::new(model.spec(), cfg, &Device::Cpu)?;
    for _ in 0..2 {
        cache.clear();
        let t = Instant::now();
        model.prefill(&text, &mut cache, chunk, |_| {})?;
        reprefill.push(ms(t));
    }
    let snap = db_dir.join("bench.kv");
    let bytes = snapshot::save(&snap, &id, &cache, json!({}))?;
    let want = model
        .forward(&[1000], &mut cache.clone(), Logits::Last)?
        .to_vec1::<f32>()?;
    let mut restore = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (mut back, _) = snapshot::load(&snap, &id, model.spec(), &Device::Cpu)?;
        restore.push(ms(t));
        let got = model
            .forward(&[1000], &mut back, Logits::Last)?
            .to_vec1::<f32>()?;
        anyhow::ensure!(got == want, "the restored cache answers differently");
    }
    let _ = std::fs::remove_file(&snap);
    let (restore_ms, reprefill_ms) = (median(restore), median(reprefill));
    let v = json!({
        "conversations": conversations,
        "messages": messages,
        "database_mib": (size_mib * 10.0).round() / 10.0,
        "fill_seconds": fill_s.map(|s| (s * 10.0).round() / 10.0),
        "list_ms": (list_ms * 100.0).round() / 100.0,
        "list_cold_ms": (list_cold_ms * 100.0).round() / 100.0,
        "search_ms": (search_ms * 100.0).round() / 100.0,
        "searches": searches,
        "snapshot_tokens": cfg.capacity(),
        "snapshot_bytes": bytes,
        "snapshot_restore_ms": (restore_ms * 10.0).round() / 10.0,
        "reprefill_ms": (reprefill_ms * 10.0).round() / 10.0,
        "restore_speedup": (reprefill_ms / restore_ms * 10.0).round() / 10.0,
    });
    crate::bench::write_json(out, v)
}
