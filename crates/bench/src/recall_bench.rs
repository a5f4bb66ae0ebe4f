//! `sinkchat-bench recall` (#19): does the model answer about a fact said once, early, after
//! the window has let it go? Scripted conversations through the app's own service (a real
//! SQLite file, the real engine): a fact (a name, a number, a date, a preference), then
//! unrelated turns worth 2x, 10x, 50x the window, then a question about it. Each is asked with
//! recall off (StreamingLLM alone), recall on, and the fact pinned; and once with the fact
//! still in the window (what the model can do at best). A reply is right when it contains the
//! answer. Figures: the share right per distance, and what recall adds to a turn.
//!
//! The filler is written into the transcript rather than generated, so a conversation's first
//! question rebuilds its memory from the transcript's tail: the window then holds the newest
//! turns only, as after a long chat, and the fact is among the evicted messages recall looks
//! through (more of them, the larger the distance).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sinkchat_chat::{ChatService, ModelState, ReplyEvent, ReplyOptions, Settings};
use sinkchat_store::Role;

struct Fact {
    statement: String,
    question: String,
    answer: String,
}

/// `n` facts of five kinds, with answers the model cannot guess.
fn facts(n: usize) -> Vec<Fact> {
    const NAMES: &[&str] = &[
        "Zanzibarina",
        "Quillontra",
        "Mervaldo",
        "Tovrinka",
        "Belquista",
        "Orvandel",
        "Kessamira",
        "Dravolin",
        "Ymbrella",
        "Pastoriel",
    ];
    const RELATIVES: &[&str] = &["sister", "brother", "cousin", "neighbour", "best friend"];
    const THINGS: &[&str] = &[
        "locker",
        "bike lock",
        "gym membership",
        "library card",
        "room",
    ];
    const MONTHS: &[&str] = &[
        "January",
        "March",
        "April",
        "June",
        "August",
        "September",
        "October",
        "November",
    ];
    const COLOURS: &[&str] = &[
        "turquoise",
        "maroon",
        "lavender",
        "ochre",
        "teal",
        "crimson",
    ];
    const CITIES: &[&str] = &[
        "Tromsø",
        "Valparaíso",
        "Ljubljana",
        "Hobart",
        "Tbilisi",
        "Cusco",
        "Windhoek",
    ];
    (0..n)
        .map(|i| {
            let pick = |xs: &[&str], k: usize| xs[(i * 7 + k) % xs.len()].to_string();
            match i % 5 {
                0 => {
                    let (who, name) = (pick(RELATIVES, 1), pick(NAMES, 3));
                    Fact {
                        statement: format!("My {who}'s name is {name}."),
                        question: format!("What is my {who}'s name?"),
                        answer: name,
                    }
                }
                1 => {
                    let (what, num) = (pick(THINGS, 2), format!("{}", 3000 + (i * 7919) % 6000));
                    Fact {
                        statement: format!("My {what} number is {num}."),
                        question: format!("What is my {what} number?"),
                        answer: num,
                    }
                }
                2 => {
                    let (month, day) = (pick(MONTHS, 5), 1 + (i * 13) % 28);
                    Fact {
                        statement: format!("My birthday is on {month} {day}."),
                        question: "In which month is my birthday?".into(),
                        answer: month,
                    }
                }
                3 => {
                    let colour = pick(COLOURS, 4);
                    Fact {
                        statement: format!("My favourite colour is {colour}."),
                        question: "What is my favourite colour?".into(),
                        answer: colour,
                    }
                }
                _ => {
                    let city = pick(CITIES, 6);
                    Fact {
                        statement: format!("I live in {city}."),
                        question: "Which city do I live in?".into(),
                        answer: city,
                    }
                }
            }
        })
        .collect()
}

/// Unrelated turns, as a long chat has them: questions and short answers on many topics.
fn filler(k: usize) -> (String, String) {
    const TOPICS: &[&str] = &[
        "rivers",
        "baking bread",
        "chess openings",
        "volcanoes",
        "jazz",
        "tides",
        "origami",
        "beekeeping",
        "glaciers",
        "typography",
        "sourdough",
        "lighthouses",
        "comets",
        "knitting",
        "bridges",
        "coral reefs",
        "sundials",
        "kites",
        "fossils",
        "windmills",
    ];
    const FACTS: &[&str] = &[
        "it has a long history and people still argue about the details",
        "the basics are simple but mastering it takes years of practice",
        "it depends a lot on the weather and the season",
        "there are many regional styles, each with its own traditions",
        "small changes in the method make a surprisingly large difference",
    ];
    let topic = TOPICS[k % TOPICS.len()];
    let fact = FACTS[(k / TOPICS.len() + k) % FACTS.len()];
    (
        format!("Tell me something interesting about {topic}, part {k}."),
        format!("About {topic}: {fact}. Part {k} of our talk, and there is always more to learn."),
    )
}

struct Outcome {
    right: bool,
    ms: f64,
    prompt_tokens: usize,
    recalled: usize,
}

/// Asks `question` in the chat and waits for the whole reply.
async fn ask(
    svc: &ChatService,
    conversation: i64,
    question: &str,
    answer: &str,
) -> Result<Outcome> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t0 = Instant::now();
    let sent = svc
        .send(conversation, question, ReplyOptions::default(), move |e| {
            let _ = tx.send(e);
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut text = String::new();
    let prompt_tokens = loop {
        let e = tokio::time::timeout(Duration::from_secs(300), rx.recv())
            .await
            .context("a reply took over five minutes")?
            .context("the reply's events stopped")?;
        match e {
            ReplyEvent::Token { text: t } => text.push_str(&t),
            ReplyEvent::Done {
                prompt_tokens: p, ..
            } => break p,
            ReplyEvent::Error { message, .. } => {
                bail!("reply failed: {message}")
            }
            _ => {}
        }
    };
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    while svc.is_busy(conversation) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Outcome {
        right: text.to_lowercase().contains(&answer.to_lowercase()),
        ms,
        prompt_tokens,
        recalled: sent.recalled.len(),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    On,
    Pinned,
}

pub fn run(
    model: &Path,
    conversations: usize,
    window: usize,
    distances: &[usize],
    out: Option<PathBuf>,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        let svc = ChatService::open(dir.path(), Some(model.to_path_buf()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut settings: Settings = svc.settings().await;
        settings.cache.sinks = 4;
        settings.cache.window = window;
        settings.sampling.temperature = 0.0;
        settings.sampling.max_tokens = 24;
        svc.save_settings(settings.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        svc.load_model();
        if let ModelState::Failed { error } = svc.wait_ready().await {
            bail!("the model did not load: {error}");
        }
        let engine = svc.backend().map_err(|e| anyhow::anyhow!("{e}"))?;
        let pair_tokens = {
            let (q, a) = filler(0);
            engine.count_tokens(&q)? + engine.count_tokens(&a)? + 12
        };
        let set_recall = |on: bool| {
            let mut s = settings.clone();
            s.recall = on;
            let svc = svc.clone();
            async move {
                svc.save_settings(s)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        };
        let facts = facts(conversations);
        let mut progress = crate::progress::Progress::new(
            "recall",
            (facts.len() * (1 + 3 * distances.len())) as u64,
            "questions",
        );
        let mut in_window = 0usize;
        // [distance][mode] -> (right, runs)
        let mut right = vec![[0usize; 3]; distances.len()];
        let (mut on_ms, mut off_ms, mut on_tokens, mut off_tokens) = (0.0, 0.0, 0usize, 0usize);
        let mut recalled_turns = 0usize;
        for fact in &facts {
            // The fact still in the window: the best the model can do.
            set_recall(false).await?;
            let (conv, _) = svc
                .create_with_turns(
                    &settings.system_prompt,
                    &[
                        (Role::User, fact.statement.clone()),
                        (Role::Assistant, "Noted.".into()),
                    ],
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            in_window += ask(&svc, conv.id, &fact.question, &fact.answer)
                .await?
                .right as usize;
            svc.delete(conv.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            progress.inc();
            for (di, &d) in distances.iter().enumerate() {
                let pairs = (d * window).div_ceil(pair_tokens);
                let mut turns = vec![
                    (Role::User, fact.statement.clone()),
                    (Role::Assistant, "Noted.".into()),
                ];
                for k in 0..pairs {
                    let (q, a) = filler(k);
                    turns.push((Role::User, q));
                    turns.push((Role::Assistant, a));
                }
                for (mi, mode) in [Mode::Off, Mode::On, Mode::Pinned].into_iter().enumerate() {
                    set_recall(mode == Mode::On).await?;
                    let (conv, _) = svc
                        .create_with_turns(&settings.system_prompt, &turns)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    if mode == Mode::Pinned {
                        // The fact is the chat's first message.
                        let fact_id = svc
                            .store()
                            .messages(conv.id, 0, 1)
                            .await?
                            .first()
                            .map(|m| m.id)
                            .context("the fact")?;
                        svc.pin_message(conv.id, fact_id, true)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    let o = ask(&svc, conv.id, &fact.question, &fact.answer).await?;
                    right[di][mi] += o.right as usize;
                    match mode {
                        Mode::On => {
                            on_ms += o.ms;
                            on_tokens += o.prompt_tokens;
                            recalled_turns += (o.recalled > 0) as usize;
                        }
                        Mode::Off => {
                            off_ms += o.ms;
                            off_tokens += o.prompt_tokens;
                        }
                        Mode::Pinned => {}
                    }
                    svc.delete(conv.id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    progress.inc();
                }
            }
        }
        progress.finish();
        let n = facts.len() as f64;
        let turns = (facts.len() * distances.len()) as f64;
        let share = |mi: usize| -> serde_json::Value {
            distances
                .iter()
                .enumerate()
                .map(|(di, d)| (d.to_string(), json!(round3(right[di][mi] as f64 / n))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let entry = json!({
            "model": model.file_name().map(|s| s.to_string_lossy().into_owned()),
            "conversations": facts.len(),
            "window": window,
            "sinks": 4,
            "in_window": round3(in_window as f64 / n),
            "recall_off": share(0),
            "recall_on": share(1),
            "pinned": share(2),
            "recalled_share_of_turns": round3(recalled_turns as f64 / turns),
            "added_ms_per_turn": round1((on_ms - off_ms) / turns),
            "added_tokens_per_turn": round1((on_tokens as f64 - off_tokens as f64) / turns),
            "turn_ms_recall_off": round1(off_ms / turns),
        });
        println!("{}", serde_json::to_string_pretty(&entry)?);
        if let Some(out) = out {
            write_entry(&out, entry)?;
        }
        svc.shutdown().await;
        Ok(())
    })
}

/// One entry per model: a run replaces its model's entry in the file (in its place) and keeps
/// the others, so the default model and a larger one can be measured in separate sittings.
/// Writes `entry` into the results file `out` as its model's entry ([`merge_entry`]).
pub(crate) fn write_entry(out: &Path, entry: serde_json::Value) -> Result<()> {
    let doc = merge_entry(std::fs::read_to_string(out).ok().as_deref(), entry)?;
    std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", out.display()))
}

fn merge_entry(existing: Option<&str>, entry: serde_json::Value) -> Result<serde_json::Value> {
    let mut models: Vec<serde_json::Value> = match existing {
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .context("the results file is not JSON; move it away or pick another --out")?
            .get("models")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    match models
        .iter_mut()
        .find(|m| m.get("model") == entry.get("model"))
    {
        Some(m) => *m = entry,
        None => models.push(entry),
    }
    Ok(json!({ "models": models }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_replaces_its_own_models_entry_and_keeps_the_others() {
        let a = json!({"model": "a.gguf", "in_window": 0.5});
        let b = json!({"model": "b.gguf", "in_window": 0.9});
        let doc = merge_entry(None, a.clone()).unwrap();
        let doc = merge_entry(Some(&doc.to_string()), b.clone()).unwrap();
        let a2 = json!({"model": "a.gguf", "in_window": 0.6});
        let doc = merge_entry(Some(&doc.to_string()), a2.clone()).unwrap();
        assert_eq!(doc["models"], json!([a2, b]));
        assert!(merge_entry(Some("not json"), a).is_err());
    }
}
