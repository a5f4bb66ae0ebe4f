//! Bounded-time fuzzing of the import reader on a real SQLite file: mutated exports (values
//! swapped for edge values of other types, keys dropped, long and NUL-carrying strings, the
//! JSON text itself cut or flipped) must each be imported whole or refused with nothing added,
//! never panic, and leave the file sound. Budget: `SINKCHAT_FUZZ_SECS` (default 5; CI sets
//! 60); seed: `SINKCHAT_FUZZ_SEED` (printed).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sinkchat_store::Store;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn edge_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(0),
        3 => json!(i64::MAX),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(1e300),
        7 => json!(""),
        8 => json!("\0"),
        9 => json!("x".repeat(rng.below(200_000))),
        10 => json!("user"),
        11 => json!("streaming"),
        12 => json!([]),
        13 => json!({}),
        14 => json!(true),
        _ => json!("sinkchat-export"),
    }
}

/// Replaces, drops or adds one value somewhere in `v`.
fn mutate_value(v: &mut Value, rng: &mut Rng, depth: usize) {
    let here = depth > 4 || rng.below(4) == 0;
    match v {
        Value::Object(m) if !m.is_empty() && !here => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            match rng.below(6) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(format!("{k}_extra"), edge_value(rng));
                }
                _ => mutate_value(m.get_mut(k).unwrap(), rng, depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && !here => match rng.below(6) {
            0 => {
                a.remove(rng.below(a.len()));
            }
            1 => {
                let x = a[rng.below(a.len())].clone();
                for _ in 0..rng.below(50) {
                    a.push(x.clone());
                }
            }
            _ => {
                let i = rng.below(a.len());
                mutate_value(&mut a[i], rng, depth + 1)
            }
        },
        _ => *v = edge_value(rng),
    }
}

fn seed_export() -> Value {
    let messages: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("message {i}: **bold**, ünïcödé 🚉"),
                "status": if i == 5 { "stopped" } else { "complete" },
                "error": null, "tokens": 12, "created_at": 1_700_000_000_000i64 + i,
            })
        })
        .collect();
    json!({
        "format": "sinkchat-export", "version": 1, "exported_at": 1_700_000_000_000i64,
        "conversations": [
            { "title": "Trip", "model": "smollm2", "system_prompt": "Be brief.",
              "settings": { "sampling": { "temperature": 0.7 } },
              "created_at": 1, "updated_at": 2, "messages": messages },
            { "title": "", "model": "", "system_prompt": "", "settings": {},
              "created_at": 3, "updated_at": 4, "messages": [] },
        ],
    })
}

#[tokio::test]
async fn fuzz_import_reader() {
    let budget = Duration::from_secs(
        std::env::var("SINKCHAT_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let seed = std::env::var("SINKCHAT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("import fuzz seed {seed} (SINKCHAT_FUZZ_SEED={seed} repeats this run)");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("chats.db")).await.unwrap();
    let count = || async {
        let n: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        n
    };
    let mut rng = Rng(seed);
    let base = seed_export();
    let started = Instant::now();
    let (mut runs, mut accepted) = (0u64, 0u64);
    while started.elapsed() < budget {
        let mut v = base.clone();
        for _ in 0..1 + rng.below(3) {
            mutate_value(&mut v, &mut rng, 0);
        }
        let mut text = v.to_string();
        if rng.below(5) == 0 {
            // The JSON text itself damaged: cut short or a byte flipped.
            let mut b = text.into_bytes();
            if rng.below(2) == 0 {
                b.truncate(rng.below(b.len()));
            } else {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(7);
            }
            text = String::from_utf8_lossy(&b).into_owned();
        }
        let before = count().await;
        let input = text.clone();
        let s = store.clone();
        // On its own task: a panic there is caught and reported with the input.
        let got = tokio::spawn(async move { s.import(&input).await }).await;
        let after = count().await;
        match got {
            Err(p) => panic!(
                "import panicked ({p}) on: {}",
                &text[..text.len().min(2000)]
            ),
            Ok(Ok(summary)) => {
                accepted += 1;
                assert_eq!(
                    (after.0 - before.0, after.1 - before.1),
                    (summary.conversations as i64, summary.messages as i64),
                    "the summary does not match what was added"
                );
            }
            Ok(Err(e)) => {
                assert_eq!(before, after, "a refused import ({e}) added rows");
                assert!(!e.to_string().is_empty());
            }
        }
        runs += 1;
    }
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    eprintln!(
        "import: {runs} mutated exports in {:.0} s, {accepted} imported whole, the rest refused with nothing added",
        started.elapsed().as_secs_f64()
    );
    assert!(
        runs > 0 && accepted > 0 && accepted < runs,
        "{accepted} of {runs}"
    );
}
