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

pub struct Fact {
    pub statement: String,
    pub question: String,
    pub answer: String,
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

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    /// StreamingLLM alone.
    Off,
    /// Recall by words (FTS5, BM25), as before #36.
    Words,
    /// Recall by words and meaning, fused.
    Meaning,
    /// The fact pinned (kept in view for good).
    Pinned,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(Mode::Off),
            "words" => Ok(Mode::Words),
            "meaning" => Ok(Mode::Meaning),
            other => Err(format!(
                "no recall mode called {other:?}: off, words, meaning"
            )),
        }
    }
}

pub struct Args {
    pub model: PathBuf,
    /// Conversations of the word-matched set (one fact each).
    pub conversations: usize,
    pub window: usize,
    pub distances: Vec<usize>,
    /// The meaning model's folder.
    pub meaning: PathBuf,
    /// `words`, `paraphrase`.
    pub sets: Vec<String>,
    /// Ask the word-matched set with the fact pinned too.
    pub pinned: bool,
    /// Which of off, words, meaning to ask each question with.
    pub modes: Vec<Mode>,
    /// Ask each question with the fact still in the window too.
    pub in_window: bool,
    pub out: Option<PathBuf>,
}

/// The paraphrase set (#36): facts asked in words that share no content word with them,
/// written by hand (crates/bench/data/paraphrase.json).
pub fn paraphrases() -> Vec<Fact> {
    #[derive(serde::Deserialize)]
    struct Item {
        fact: String,
        question: String,
        answer: String,
    }
    let items: Vec<Item> = serde_json::from_str(include_str!("../data/paraphrase.json"))
        .expect("the paraphrase set is valid JSON");
    items
        .into_iter()
        .map(|i| Fact {
            statement: i.fact,
            question: i.question,
            answer: i.answer,
        })
        .collect()
}

/// Right answers per distance and mode, and what each mode adds to a turn.
#[derive(Default)]
struct Tally {
    in_window: usize,
    /// [distance][mode]
    right: Vec<[usize; 4]>,
    ms: [f64; 4],
    tokens: [usize; 4],
    recalled_turns: [usize; 4],
    facts: usize,
}

pub fn run(a: Args) -> Result<()> {
    let (model, window, distances) = (&a.model, a.window, &a.distances);
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    // The meaning model where the app keeps it, in this run's data folder.
    let meaning = std::path::absolute(&a.meaning)?;
    if !meaning.join("model.safetensors").exists() {
        bail!(
            "the meaning model is not at {} (scripts/setup.sh installs it; or pass --meaning DIR)",
            meaning.display()
        );
    }
    let link = dir
        .path()
        .join("models")
        .join(sinkchat_engine::embed::FOLDER);
    std::fs::create_dir_all(link.parent().expect("a parent"))?;
    std::os::unix::fs::symlink(&meaning, &link)?;
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
        let set_mode = |mode: Mode| {
            let mut s = settings.clone();
            s.recall = matches!(mode, Mode::Words | Mode::Meaning);
            s.recall_meaning = mode == Mode::Meaning;
            let svc = svc.clone();
            async move {
                svc.save_settings(s)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        };
        let mut sets: Vec<(&str, Vec<Fact>, Vec<Mode>)> = Vec::new();
        for set in &a.sets {
            match set.as_str() {
                "words" => {
                    let mut modes = a.modes.clone();
                    if a.pinned {
                        modes.push(Mode::Pinned);
                    }
                    sets.push(("words", facts(a.conversations), modes))
                }
                "paraphrase" => sets.push((
                    "paraphrase",
                    paraphrases().into_iter().take(a.conversations).collect(),
                    a.modes.clone(),
                )),
                other => bail!("no question set called {other:?}: words, paraphrase"),
            }
        }
        let total: usize = sets
            .iter()
            .map(|(_, f, m)| f.len() * (a.in_window as usize + m.len() * distances.len()))
            .sum();
        let mut progress = crate::progress::Progress::new("recall", total as u64, "questions");
        let mut tallies = Vec::new();
        for (name, facts, modes) in &sets {
            let mut t = Tally {
                right: vec![[0; 4]; distances.len()],
                facts: facts.len(),
                ..Tally::default()
            };
            for fact in facts {
                // The fact still in the window: the best the model can do.
                if a.in_window {
                    set_mode(Mode::Off).await?;
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
                    t.in_window += ask(&svc, conv.id, &fact.question, &fact.answer)
                        .await?
                        .right as usize;
                    svc.delete(conv.id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    progress.inc();
                }
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
                    for &mode in modes {
                        set_mode(mode).await?;
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
                        // The chat's messages have their vectors, as a real chat's earlier
                        // messages have long since (not timed: the background task's cost
                        // is measured on its own, docs/BENCHMARKS.md).
                        svc.meaning_caught_up().await;
                        let o = ask(&svc, conv.id, &fact.question, &fact.answer).await?;
                        let mi = mode as usize;
                        t.right[di][mi] += o.right as usize;
                        t.ms[mi] += o.ms;
                        t.tokens[mi] += o.prompt_tokens;
                        t.recalled_turns[mi] += (o.recalled > 0) as usize;
                        svc.delete(conv.id)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        progress.inc();
                    }
                }
            }
            tallies.push((*name, t, modes.clone()));
        }
        progress.finish();
        let mut entry = json!({
            "model": model.file_name().map(|s| s.to_string_lossy().into_owned()),
            "window": window,
            "sinks": 4,
        });
        for (name, t, modes) in &tallies {
            let n = t.facts as f64;
            let turns = (t.facts * distances.len()) as f64;
            let share = |mi: usize| -> serde_json::Value {
                distances
                    .iter()
                    .enumerate()
                    .map(|(di, d)| (d.to_string(), json!(round3(t.right[di][mi] as f64 / n))))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            let off = Mode::Off as usize;
            let ran = |m: Mode| modes.contains(&m);
            let mut e = json!({ "conversations": t.facts });
            if a.in_window {
                e["in_window"] = json!(round3(t.in_window as f64 / n));
            }
            if ran(Mode::Off) {
                e["recall_off"] = share(off);
                e["turn_ms_recall_off"] = json!(round1(t.ms[off] / turns));
            }
            for (m, suffix) in [(Mode::Words, ""), (Mode::Meaning, "_meaning")] {
                if !ran(m) {
                    continue;
                }
                let mi = m as usize;
                let key = if m == Mode::Words {
                    "recall_on"
                } else {
                    "recall_meaning"
                };
                e[key] = share(mi);
                e[format!("recalled_share_of_turns{suffix}")] =
                    json!(round3(t.recalled_turns[mi] as f64 / turns));
                if ran(Mode::Off) {
                    e[format!("added_ms_per_turn{suffix}")] =
                        json!(round1((t.ms[mi] - t.ms[off]) / turns));
                    e[format!("added_tokens_per_turn{suffix}")] =
                        json!(round1((t.tokens[mi] as f64 - t.tokens[off] as f64) / turns));
                }
            }
            if modes.contains(&Mode::Pinned) {
                e["pinned"] = share(Mode::Pinned as usize);
            }
            if *name == "words" {
                // The word-matched set's figures at the top level, where earlier runs kept them.
                for (k, v) in e.as_object().expect("an object") {
                    entry[k] = v.clone();
                }
            } else {
                entry[*name] = e;
            }
        }
        println!("{}", serde_json::to_string_pretty(&entry)?);
        if let Some(out) = &a.out {
            write_entry(out, entry)?;
        }
        svc.shutdown().await;
        Ok(())
    })
}

/// One entry per model: a run replaces the keys it measured in its model's entry (in its
/// place) and keeps the rest and the other models, so the default model and a larger one, or
/// one question set and another, can be measured in separate sittings.
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
        // What this run measured replaces the same keys; what it did not measure stays.
        Some(m) => merge_into(m, entry),
        None => models.push(entry),
    }
    Ok(json!({ "models": models }))
}

/// `new`'s keys into `old`, object by object (a question set's figures are an object: a run of
/// one mode keeps the other modes' figures in it); any other value is replaced.
fn merge_into(old: &mut serde_json::Value, new: serde_json::Value) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            for (k, v) in n {
                match o.get_mut(&k) {
                    Some(slot) => merge_into(slot, v),
                    None => {
                        o.insert(k, v);
                    }
                }
            }
        }
        (old, new) => *old = new,
    }
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

    /// The paraphrase set is what it claims: at least 50 facts, each asked in words that share
    /// no content word with it (nor a word form: the first five letters are compared, so
    /// "wedding" and "weddings", "married" and "marriage" count as one), with an answer the
    /// fact holds and the question does not.
    #[test]
    fn paraphrased_questions_share_no_content_word_with_their_fact() {
        let set = paraphrases();
        assert!(set.len() >= 50, "{} facts", set.len());
        let stem = |w: &str| w.chars().take(5).collect::<String>();
        for f in &set {
            let fact: Vec<String> = sinkchat_chat::recall::terms(&f.statement)
                .iter()
                .map(|w| stem(w))
                .collect();
            for w in sinkchat_chat::recall::terms(&f.question) {
                assert!(
                    !fact.contains(&stem(&w)),
                    "{:?} shares {w:?} with {:?}",
                    f.question,
                    f.statement
                );
            }
            let answer = f.answer.to_lowercase();
            assert!(
                f.statement.to_lowercase().contains(&answer),
                "{:?}",
                f.statement
            );
            assert!(
                !f.question.to_lowercase().contains(&answer),
                "{:?}",
                f.question
            );
            assert!(sinkchat_chat::recall::asks(&f.question), "{:?}", f.question);
        }
    }

    #[test]
    fn a_run_replaces_its_own_models_entry_and_keeps_the_others() {
        let a = json!({"model": "a.gguf", "in_window": 0.5});
        let b = json!({"model": "b.gguf", "in_window": 0.9});
        let doc = merge_entry(None, a.clone()).unwrap();
        let doc = merge_entry(Some(&doc.to_string()), b.clone()).unwrap();
        let a2 = json!({"model": "a.gguf", "in_window": 0.6, "recall_meaning": 0.9});
        let doc = merge_entry(Some(&doc.to_string()), a2.clone()).unwrap();
        assert_eq!(doc["models"], json!([a2, b]));
        // A later run of one part keeps the rest.
        let a3 = json!({"model": "a.gguf", "recall_meaning": 0.95});
        let doc = merge_entry(Some(&doc.to_string()), a3).unwrap();
        assert_eq!(
            doc["models"][0],
            json!({"model": "a.gguf", "in_window": 0.6, "recall_meaning": 0.95})
        );
        // Within a question set's figures too: a run of one mode keeps the others'.
        let p1 = json!({"model": "a.gguf", "paraphrase": {"in_window": 0.7, "recall_meaning": {"2": 0.5}}});
        let doc = merge_entry(Some(&doc.to_string()), p1).unwrap();
        let p2 = json!({"model": "a.gguf", "paraphrase": {"recall_meaning": {"2": 0.6}}});
        let doc = merge_entry(Some(&doc.to_string()), p2).unwrap();
        assert_eq!(
            doc["models"][0]["paraphrase"],
            json!({"in_window": 0.7, "recall_meaning": {"2": 0.6}})
        );
        assert_eq!(doc["models"][0]["in_window"], json!(0.6));
        assert!(merge_entry(Some("not json"), a).is_err());
    }
}
