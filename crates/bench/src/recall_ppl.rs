//! `sinkchat-bench eval recall-perplexity` (#19): is recall silent on running text? A long text is
//! put into a chat paragraph by paragraph, each a message in a real SQLite transcript, and
//! scored through the StreamingLLM cache twice: with recall off, and with recall on exactly as
//! the chat does it (the paragraph's words looked up among the paragraphs that have left the
//! model's view, and by meaning where the meaning model is installed (#36): each paragraph gets
//! its vector as a saved message does; the best within the budget put before the paragraph,
//! marked). Recalled text
//! is read, not scored; both runs score the same tokens, so their perplexities compare.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use serde_json::json;
use sinkchat_chat::{recall, settings::DEFAULT_RECALL_SHARE};
use sinkchat_engine::embed::Embedder;
use sinkchat_engine::eval::{perplexity_of, Stream};
use sinkchat_engine::{GgufTokenizer, LoadOptions, Model};
use sinkchat_store::{MessageText, Store};

use crate::perplexity::TextSource;

pub struct Args {
    pub model: PathBuf,
    pub text: TextSource,
    pub tokens: usize,
    pub sinks: usize,
    pub window: usize,
    pub chunk: usize,
    pub out: Option<PathBuf>,
    /// Print each paragraph that recalled something, with what it recalled.
    pub show: bool,
    /// The meaning model's folder: each paragraph gets its vector as the chat's saved
    /// messages do, and recall looks up by meaning too (#36). `None`: by words only.
    pub meaning: Option<PathBuf>,
}

/// The text's paragraphs (split at blank lines), each with the blank line after it.
fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}\n\n"))
        .collect()
}

struct Outcome {
    perplexity: f64,
    scored: usize,
    paragraphs: usize,
    with_recall: usize,
    context_tokens: usize,
}

fn score(
    a: &Args,
    model: &Model,
    tk: &GgufTokenizer,
    paras: &[(String, Vec<u32>)],
    recall_on: bool,
    embedder: Option<&Embedder>,
) -> Result<Outcome> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let store = rt.block_on(Store::open(&dir.path().join("chats.db")))?;
    let conv = rt.block_on(store.create_conversation("text", "model", "", "{}"))?;
    let mut stream = Stream::new(model, a.sinks, a.window, a.chunk)?;
    // (message id, end in the stream) of each paragraph.
    let mut placed: Vec<(i64, u64)> = Vec::new();
    let mut nll = Vec::new();
    let (mut with_recall, mut context_tokens) = (0, 0);
    let label = if recall_on { "recall on" } else { "recall off" };
    let mut progress = crate::progress::Progress::new(label, a.tokens as u64, "tokens");
    for (text, ids) in paras {
        if nll.len() >= a.tokens {
            break;
        }
        let msg =
            rt.block_on(store.add_user_message(conv.id, &MessageText::parse(text.trim())?))?;
        // Its vector, as the chat's background task makes one for each saved message.
        let vector = match (recall_on, embedder) {
            (true, Some(e)) => {
                let v = e.embed(&[msg.content.as_str()])?.remove(0);
                rt.block_on(store.save_vectors(&[(msg.id, msg.content.clone(), v.clone())]))?;
                Some(v)
            }
            _ => None,
        };
        let mut context = Vec::new();
        if recall_on {
            // The chat's rule: the message the view begins in, and everything after it, is
            // still seen; what is older may come back.
            let from = stream.visible_from();
            let first_visible = placed.iter().find(|p| p.1 > from).map(|p| p.0);
            if let Some(first_visible) = first_visible {
                let chosen = rt.block_on(recall::find(
                    &store,
                    conv.id,
                    first_visible,
                    text,
                    vector.as_deref(),
                    recall::budget(a.window - a.sinks, DEFAULT_RECALL_SHARE),
                    |l| tk.encode(l, false).ok().map(|ids| ids.len()),
                ))?;
                if a.show && !chosen.is_empty() {
                    // How each came: by meaning (its cosine, the bar it cleared) or by words.
                    let near = match &vector {
                        Some(q) => rt.block_on(store.nearest_in_conversation(
                            conv.id,
                            first_visible,
                            q,
                            8,
                        ))?,
                        None => Default::default(),
                    };
                    eprintln!("paragraph: {text:?}");
                    for m in &chosen {
                        let how = match near.0.iter().find(|(n, _)| n.id == m.id) {
                            Some((_, cos)) if recall::near_enough(*cos, near.1) => format!(
                                "near by meaning: cosine {cos:.3}, bar {:.3} ({} others gone)",
                                recall::meaning_bar(*cos, near.1),
                                near.1.n.saturating_sub(1)
                            ),
                            _ => "by words alone".into(),
                        };
                        eprintln!("  recalled ({how}): {:?}", m.content);
                    }
                }
                if !chosen.is_empty() {
                    let lines: Vec<String> = chosen
                        .iter()
                        .map(|m| recall::line(m.role, &m.content))
                        .collect();
                    context = tk.encode(&recall::with_recall(&lines, ""), false)?;
                    with_recall += 1;
                    context_tokens += context.len();
                }
            }
        }
        nll.extend(stream.feed(&context, ids)?);
        placed.push((msg.id, stream.fed()));
        progress.set(nll.len().min(a.tokens) as u64);
    }
    progress.finish();
    nll.truncate(a.tokens);
    let indexed: Vec<(usize, f64)> = nll.iter().copied().enumerate().collect();
    rt.block_on(store.close());
    Ok(Outcome {
        perplexity: perplexity_of(&indexed),
        scored: nll.len(),
        paragraphs: placed.len(),
        with_recall,
        context_tokens,
    })
}

pub fn run(a: Args) -> Result<()> {
    let text = a.text.read()?;
    let tk = GgufTokenizer::from_gguf(&sinkchat_engine::model::read_gguf_header(&a.model)?)?;
    let paras: Vec<(String, Vec<u32>)> = paragraphs(&text)
        .into_iter()
        .map(|p| {
            let ids = tk.encode(&p, false)?;
            Ok((p, ids))
        })
        .collect::<Result<_>>()?;
    let model = Model::load(&a.model, &Device::Cpu, LoadOptions::default())
        .with_context(|| format!("loading {}", a.model.display()))?;
    let embedder = match &a.meaning {
        Some(dir) => Some(Embedder::open(dir)?),
        None => None,
    };
    let off = score(&a, &model, &tk, &paras, false, None)?;
    let on = score(&a, &model, &tk, &paras, true, embedder.as_ref())?;
    let doc = json!({
        "model": a.model.file_name().map(|s| s.to_string_lossy().into_owned()),
        "text": a.text.label(),
        "tokens_scored": off.scored.min(on.scored),
        "sinks": a.sinks,
        "window": a.window,
        "by_meaning": a.meaning.is_some(),
        "paragraphs": on.paragraphs,
        "perplexity_recall_off": round4(off.perplexity),
        "perplexity_recall_on": round4(on.perplexity),
        "change_percent": round4((on.perplexity / off.perplexity - 1.0) * 100.0),
        "paragraphs_with_recall": on.with_recall,
        "recalled_tokens_read": on.context_tokens,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    if let Some(out) = a.out {
        // One entry per model, as in `bench recall`.
        crate::recall_bench::write_entry(&out, doc)?;
    }
    Ok(())
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::paragraphs;

    #[test]
    fn paragraphs_split_at_blank_lines_and_keep_one_after_each() {
        assert_eq!(
            paragraphs("CHAPTER I\n\n\nEmma Woodhouse,\nhandsome.\n\n  \n\nThe end"),
            [
                "CHAPTER I\n\n",
                "Emma Woodhouse,\nhandsome.\n\n",
                "The end\n\n"
            ]
        );
    }
}
