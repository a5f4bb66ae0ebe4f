//! Recall (#19), first step: when a message arrives, the words of it that carry meaning are
//! looked up (SQLite FTS5, BM25) among this chat's messages that have left the model's window,
//! and the best matches, within a token budget, are given back to the model with the message,
//! marked as recalled. A message with nothing relevant adds nothing.
//!
//! Why FTS5 first: the transcript is already indexed, a lookup costs a millisecond or two (the
//! rowid range keeps it to this chat's span), and a fact stated once is often asked about
//! with its own words (a name, a number, a place). Often, not always: "what's my sister
//! called?" after "Anna, my younger sibling, ..." shares no word with it. So recall also
//! ranks the evicted messages by meaning (#36): the cosine of their vectors (all-MiniLM-L6-v2,
//! [`crate::meaning`]) with the question's, a scan of the chat's span of ids; the two
//! rankings are fused by reciprocal rank, and a message found by meaning alone must be near
//! the question ([`MEANING_MIN`]). What may be given back is unchanged: at most three, within
//! the recall share of the window, never for a message that asks nothing.
//!
//! The recalled lines enter the window as part of the user's turn and scroll out with it, so
//! the sinks and the window stay as they are and positions stay by place in the cache.
//!
//! A message counts as gone as soon as any of its tokens has left the window, or will once the
//! new message and the reply's room are read (#36: a fact whose opening words had gone still
//! counted as seen, and the question then pushed the rest out). Words are matched as the
//! full-text index reads them: case, accents and word forms folded (FTS5's porter stemmer), so
//! "weddings" finds "wedding".

use sinkchat_store::{Message, Store};

/// Words of talk about talk ("please tell me what I said earlier"), which say nothing of what
/// a message is about; the store's common words ([`sinkchat_store::is_common`]) are left out
/// too.
const TALK: &[&str] = &[
    "know", "like", "please", "say", "tell", "thank", "thanks", "thing", "things", "way", "yes",
    "remember", "recall", "earlier", "said", "told", "still", "think", "want",
];

/// The words of `text` worth looking up: letters and digits, three characters or more (two
/// for numbers), lowercased, without the common ones, each once, at most 16.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let w = w.to_lowercase();
        let numeric = w.chars().all(|c| c.is_ascii_digit());
        if w.chars().count() < if numeric { 2 } else { 3 }
            || sinkchat_store::is_common(&w)
            || TALK.contains(&w.as_str())
        {
            continue;
        }
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// The words to look up for a message, or nothing when it does not ask for anything: recall
/// is for a question or a request (what the model let go may be needed to answer it), and is
/// silent on running text (a story, a pasted page, a statement), which it would only
/// interrupt. Measured on Emma put into a chat paragraph by paragraph (`sinkchat eval
/// recall-perplexity`, docs/BENCHMARKS.md): recalling for every paragraph that shared words
/// with an earlier one made perplexity 3.2% worse.
pub fn query(text: &str) -> Vec<String> {
    if asks(text) {
        terms(text)
    } else {
        Vec::new()
    }
}

/// Whether `text` asks something: it has a question mark, or opens with a question word or a
/// request ("Remind me ...", "Write ...", "Please ...").
pub fn asks(text: &str) -> bool {
    const OPENERS: &[&str] = &[
        "who",
        "whom",
        "whose",
        "what",
        "whats",
        "which",
        "when",
        "where",
        "why",
        "how",
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "can",
        "could",
        "would",
        "will",
        "should",
        "shall",
        "may",
        "have",
        "has",
        "tell",
        "remind",
        "remember",
        "recall",
        "give",
        "list",
        "name",
        "say",
        "write",
        "describe",
        "explain",
        "summarize",
        "summarise",
        "repeat",
        "please",
        "help",
        "find",
        "show",
        "suggest",
        "recommend",
    ];
    if text.contains('?') || text.contains('？') {
        return true;
    }
    let first: String = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    OPENERS.contains(&first.as_str())
}

/// A recalled message as the model is shown it.
pub fn line(role: sinkchat_store::Role, content: &str) -> String {
    const MAX_CHARS: usize = 600;
    let who = if role == sinkchat_store::Role::User {
        "The user"
    } else {
        "You"
    };
    let mut text: String = content.trim().chars().take(MAX_CHARS).collect();
    if content.trim().chars().count() > MAX_CHARS {
        text.push('…');
    }
    format!("- {who} said: {text}")
}

/// The least cosine between a question and an evicted message for the message to be given
/// back on meaning alone (no shared words). all-MiniLM-L6-v2 puts a question and the message
/// that answers it in other words mostly between 0.3 and 0.7, and a question and unrelated
/// chat mostly under 0.25 (`sinkchat-bench recall`'s paraphrase set, docs/BENCHMARKS.md).
pub const MEANING_MIN: f32 = 0.3;

/// A message found by meaning alone must also stand out from the rest of what the model let
/// go, by more than chance would: its cosine at least [`outlier_sd`] standard deviations above
/// the mean of the others' cosines. In a chat that wanders over many things the message a
/// question is about stands out; in running text on one subject (a novel, a long paste) every paragraph is near every
/// other, and none does, so recall stays silent there as it is by words (`sinkchat eval
/// recall-perplexity`). Never fewer than three, the usual mark of an outlier.
pub const MEANING_OUTLIER_SD: f32 = 3.0;

/// How far beyond chance's best a match by meaning alone must stand, in standard deviations.
pub const MEANING_MARGIN_SD: f32 = 1.0;

/// Below this many evicted messages, their spread says too little to judge an outlier by.
const SPREAD_MIN_MESSAGES: usize = 8;

/// How many standard deviations above the mean a question's cosine with one of `n` evicted
/// messages must be to stand out. The best of `n` cosines with unrelated messages (roughly
/// normal) lies about sqrt(2 ln n) deviations above their mean: 3.0 for 100 messages, 3.7 for
/// 1,000, 4.8 for 100,000. A fixed three let chance through once a few hundred messages had
/// gone: in three Austen novels (their questions asked of everything earlier) it passed the best
/// match of 47% of the paragraphs that ask something. So the bar is chance's best plus
/// [`MEANING_MARGIN_SD`], and it rises, slowly, as a chat grows (docs/BENCHMARKS.md).
pub fn outlier_sd(n: usize) -> f32 {
    let chance = (2.0 * (n.max(1) as f32).ln()).sqrt();
    (chance + MEANING_MARGIN_SD).max(MEANING_OUTLIER_SD)
}

/// Whether a message at cosine `cos` with the question is near enough to be given back on
/// meaning alone, given how the question's cosines with all evicted messages spread.
pub fn near_enough(cos: f32, spread: sinkchat_store::Spread) -> bool {
    cos >= meaning_bar(cos, spread)
}

/// The least cosine a message at `cos` had to reach to be given back on meaning alone:
/// [`MEANING_MIN`], and, once enough messages have gone to judge by, [`outlier_sd`] deviations
/// above the others. Against the rest: with a dozen messages gone, one counted among them could
/// never stand more than about three deviations out of a spread it widens itself.
pub fn meaning_bar(cos: f32, spread: sinkchat_store::Spread) -> f32 {
    if spread.n < SPREAD_MIN_MESSAGES {
        return MEANING_MIN;
    }
    let rest = spread.without(cos);
    (rest.mean + outlier_sd(rest.n) * rest.sd).max(MEANING_MIN)
}

/// Reciprocal rank fusion's constant (Cormack et al. 2009): a message's score is the sum over
/// the two rankings (words, meaning) of 1 / (K + its rank), so one found by both comes first.
const RRF_K: f32 = 60.0;

/// What to give back for `text` from `conversation`'s messages older than `before` (those the
/// model has let go): nothing unless the text asks for something ([`asks`]); else the
/// messages found by words ([`Store::recall_candidates`], BM25) that cover at least half of
/// the words those messages know of the question ([`covers`]), and, given the question's
/// vector (`meaning`), those near enough to it ([`near_enough`]: a cosine of at least
/// [`MEANING_MIN`] that stands out from the rest, [`Store::nearest_in_conversation`]), ranked
/// by both ([`fuse`]), as many as fit in
/// `budget` tokens, at most three, in transcript order. `count` measures a recalled line in
/// the model's tokens (`None`: it cannot, and the message is skipped).
pub async fn find(
    store: &Store,
    conversation: i64,
    before: i64,
    text: &str,
    meaning: Option<&[f32]>,
    budget: usize,
    count: impl FnMut(&str) -> Option<usize>,
) -> sinkchat_store::Result<Vec<Message>> {
    if !asks(text) {
        return Ok(Vec::new());
    }
    let terms = terms(text);
    let mut by_words = Vec::new();
    if !terms.is_empty() {
        let found = store
            .recall_candidates(conversation, before, &terms, 8)
            .await?;
        if !found.is_empty() {
            let known = store.terms_present(conversation, before, &terms).await?;
            let ids: Vec<i64> = found.iter().map(|m| m.id).collect();
            let held = store.terms_held(&ids, &known).await?;
            by_words = found
                .into_iter()
                .filter(|m| {
                    covers(
                        held.get(&m.id).copied().unwrap_or(0),
                        known.len(),
                        terms.len(),
                    )
                })
                .collect();
        }
    }
    let by_meaning = match meaning {
        Some(q) => {
            let (near, spread) = store
                .nearest_in_conversation(conversation, before, q, 8)
                .await?;
            near.into_iter()
                .filter(|(_, cos)| near_enough(*cos, spread))
                .map(|(m, _)| m)
                .collect()
        }
        None => Vec::new(),
    };
    Ok(choose(fuse(by_words, by_meaning), budget, count))
}

/// One ranking from two (each best first): reciprocal rank fusion, ties to the newer message.
pub fn fuse(by_words: Vec<Message>, by_meaning: Vec<Message>) -> Vec<Message> {
    let mut scored: Vec<(Message, f32)> = Vec::new();
    for list in [by_words, by_meaning] {
        for (rank, m) in list.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            match scored.iter_mut().find(|(s, _)| s.id == m.id) {
                Some((_, score)) => *score += add,
                None => scored.push((m, add)),
            }
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.id.cmp(&a.0.id)));
    scored.into_iter().map(|(m, _)| m).collect()
}

/// Whether a match that holds `have` of `known` words (the question's words that occur in
/// what the model let go) is about the question: at least half of them, and two when the
/// question has more than three words (`asked`): in running talk most messages share a common
/// word or two with something earlier, and one shared word is evidence enough only for a short
/// question. Words are counted as the full-text index reads them ([`Store::terms_held`]: case,
/// accents and word forms folded), so a message found for "Zoë's weddings" that says "Zoe's
/// wedding" holds both words.
pub fn covers(have: usize, known: usize, asked: usize) -> bool {
    have >= if asked > 3 { 2 } else { 1 } && have * 2 >= known
}

/// [`find`]'s choice among `found` (best first, each about the question): as many as fit in
/// `budget` tokens, at most three, in transcript order.
pub fn choose(
    found: Vec<Message>,
    budget: usize,
    mut count: impl FnMut(&str) -> Option<usize>,
) -> Vec<Message> {
    let mut used = 0usize;
    let mut chosen = Vec::new();
    for m in found {
        let Some(n) = count(&line(m.role, &m.content)) else {
            continue;
        };
        if used.saturating_add(n) > budget {
            continue;
        }
        used += n;
        chosen.push(m);
        if chosen.len() == 3 {
            break;
        }
    }
    chosen.sort_by_key(|m| m.id);
    chosen
}

/// The recall budget for a window of `window` tokens: `share` percent of it (Settings), at
/// least 32 tokens so that a small window still has room for one line, and never more than
/// half the window.
pub fn budget(window: usize, share: u8) -> usize {
    (window.saturating_mul(share as usize) / 100)
        .max(32)
        .min(window / 2)
}

/// The user's message with the recalled lines before it, marked for the model.
pub fn with_recall(lines: &[String], user_text: &str) -> String {
    if lines.is_empty() {
        return user_text.to_string();
    }
    format!(
        "(Recalled from earlier in this conversation, which you can no longer see:\n{})\n\n{user_text}",
        lines.join("\n")
    )
}

/// The service's side of recall: which messages to give back for a new message.
impl crate::ChatService {
    /// The messages to give back for `user` ([`find`]): finished, unpinned messages of this
    /// chat that have left the model's window and cover the question's words, best first,
    /// within the recall share of the window (Settings; at most three), then in transcript
    /// order. Nothing when the message asks nothing, nothing has left the window or nothing
    /// matches. A chat with no memory yet counts back what its rebuild will hold.
    ///
    /// A message has left the window when any of its tokens has, or will once the new message
    /// and the reply's room ([`sinkchat_engine::CacheConfig::reply_room`]) are read (#36): a
    /// fact whose opening words are gone, or are about to be, is no longer seen whole.
    pub(crate) async fn recall_for(
        &self,
        backend: &crate::Backend,
        conv: &sinkchat_store::Conversation,
        user: &Message,
        settings: &crate::Settings,
    ) -> Vec<Message> {
        if !asks(&user.content) {
            return Vec::new();
        }
        let first_visible = match self.memory(conv.id).await {
            Some(view) if view.horizon.starts.is_empty() => view.first_visible_message,
            Some(view) => {
                let incoming = backend.count_tokens(&user.content).unwrap_or(0)
                    + settings.cache.reply_room(settings.sampling.max_tokens);
                // None: no message in view stays whole, so all before the new one are gone.
                Some(view.horizon.first_whole_after(incoming).unwrap_or(user.id))
            }
            // No memory yet (a chat made with earlier turns, or one whose snapshot is gone):
            // the backend will rebuild it from the newest turns that fit; what is older than
            // those is out of view.
            // A chat on a server whose window no request has planned yet: nothing is known
            // to have left it.
            None if backend.is_remote() => None,
            None => {
                self.rebuild_start(backend, conv.id, user.id, settings)
                    .await
            }
        };
        let Some(first_visible) = first_visible else {
            return Vec::new();
        };
        let meaning = match settings.recall_meaning {
            true => self.meaning_of(&user.content).await,
            false => None,
        };
        find(
            self.store(),
            conv.id,
            first_visible.min(user.id),
            &user.content,
            meaning.as_deref(),
            budget(backend.window(&settings.cache), settings.recall_share),
            |line| backend.count_tokens(line).ok(),
        )
        .await
        .map(|mut found| {
            let held = backend.held_for_good(conv.id);
            found.retain(|m| !held.contains(&m.id));
            found
        })
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "recall lookup failed; answering without it");
            Vec::new()
        })
    }

    /// The oldest message a rebuild of the chat's memory would hold, as the backend decides it
    /// (the newest turns that fit its rebuild budget, counted as it counts them), read from the
    /// newest page of the transcript; the new message itself when no earlier turn fits.
    async fn rebuild_start(
        &self,
        backend: &crate::Backend,
        conversation_id: i64,
        before: i64,
        settings: &crate::Settings,
    ) -> Option<i64> {
        let page = self
            .store()
            .messages_before(conversation_id, Some(before), 200)
            .await
            .ok()?;
        let turns: Vec<_> = page.iter().rev().map(crate::replies::to_turn).collect();
        let history = sinkchat_engine::History::Turns(turns);
        let start = backend.rebuild_start(&history, &settings.cache).ok()?;
        start.or(Some(before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_keep_the_words_that_say_what_a_message_is_about() {
        assert_eq!(
            terms("What is my sister's name? Do you remember, the one in Lisbon since 1990?"),
            ["sister", "name", "one", "lisbon", "since", "1990"]
        );
        assert_eq!(terms("Thanks! What about it?"), Vec::<String>::new());
        assert_eq!(terms("Zürich zürich ZÜRICH 42"), ["zürich", "42"]);
        assert_eq!(terms(&"word ".repeat(100)).len(), 1);
        let many: String = (0..40).map(|i| format!("term{i} ")).collect();
        assert_eq!(terms(&many).len(), 16);
    }

    #[test]
    fn only_a_message_that_asks_for_something_looks_anything_up() {
        for asking in [
            "What is my sister's name?",
            "my cat's name was what again?",
            "Remind me where I live.",
            "What's the plan for Tuesday",
            "Please write a poem for my sister",
            "  tell me about Lisbon",
        ] {
            assert!(asks(asking), "{asking}");
            assert!(!query(asking).is_empty(), "{asking}");
        }
        for telling in [
            "My sister's name is Ada.",
            "Emma Woodhouse, handsome, clever, and rich, with a comfortable home.",
            "I went to Lisbon last summer and loved it.",
            "Thanks, that was helpful.",
        ] {
            assert!(!asks(telling), "{telling}");
            assert!(query(telling).is_empty(), "{telling}");
        }
    }

    #[test]
    fn a_match_must_cover_half_of_what_the_past_knows_of_the_question() {
        // Three words known of a three-word question: two are half.
        assert!(covers(2, 3, 3));
        assert!(!covers(1, 3, 3));
        assert!(covers(3, 3, 3));
        assert!(!covers(0, 0, 3), "nothing known, nothing covered");
        // One known word: enough for a short question, not for a long one.
        assert!(covers(1, 1, 2));
        assert!(!covers(1, 1, 9));
        assert!(covers(2, 2, 9));
    }

    #[test]
    fn a_match_by_meaning_must_be_near_and_stand_out() {
        use sinkchat_store::Spread;
        let chat = Spread {
            n: 40,
            mean: 0.1,
            sd: 0.06,
        };
        assert!(near_enough(0.45, chat));
        assert!(!near_enough(0.25, chat), "under the floor");
        let novel = Spread {
            n: 300,
            mean: 0.35,
            sd: 0.1,
        };
        assert!(!near_enough(0.55, novel), "near, but so is everything");
        // 299 others: chance's best is 3.4 deviations up, so the bar is 4.4 (about 0.77).
        assert!(!near_enough(0.75, novel), "no further out than chance goes");
        assert!(near_enough(0.8, novel));
        // The bar rises with the chat: what stands out among 40 need not among 100,000.
        let long = Spread { n: 100_000, ..chat };
        assert!(near_enough(0.4, chat));
        assert!(
            !near_enough(0.4, long),
            "chance's best among 100,000 is near 0.39"
        );
        assert!(near_enough(0.5, long));
        let few = Spread {
            n: 3,
            mean: 0.3,
            sd: 0.01,
        };
        assert!(near_enough(0.31, few), "too few to judge a spread by");
        // Two windows on, a dozen messages gone: the fact stands out from the other eleven.
        // Counted in the spread it widens itself, it could stand at most 3.2 deviations out.
        let others = [
            0.05, 0.12, 0.08, 0.15, 0.1, 0.02, 0.11, 0.09, 0.14, 0.06, 0.13,
        ];
        let gone = Spread::of(others.iter().copied().chain([0.5]));
        assert!(near_enough(0.5, gone));
        assert!(!near_enough(
            0.2,
            Spread::of(others.iter().copied().chain([0.2]))
        ));
    }

    #[test]
    fn the_budget_is_the_share_of_the_window_within_bounds() {
        assert_eq!(budget(2044, 12), 245);
        assert_eq!(budget(2044, 50), 1022);
        assert_eq!(budget(256, 12), 32, "at least one line's room");
        assert_eq!(budget(40, 12), 20, "never past half the window");
        assert_eq!(budget(usize::MAX, 50), usize::MAX / 100);
    }

    #[test]
    fn recalled_lines_are_marked_and_bounded() {
        let l = line(sinkchat_store::Role::User, &"x".repeat(1000));
        assert!(l.starts_with("- The user said: "));
        assert!(l.ends_with('…'));
        assert_eq!(with_recall(&[], "hi"), "hi");
        let t = with_recall(
            &[line(sinkchat_store::Role::Assistant, "It is blue.")],
            "And now?",
        );
        assert!(t.starts_with("(Recalled from earlier"));
        assert!(t.ends_with("- You said: It is blue.)\n\nAnd now?"));
    }
}
