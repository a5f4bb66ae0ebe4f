//! What the service tells the doors about a reply and a chat's memory, in its own words: the
//! backend's events (a local engine's, or later a server's) are converted at the seam
//! ([`crate::backend`]), so the window, the browser and the OpenAI door never see an engine
//! type.

use serde::Serialize;
use sinkchat_store::Message;

use crate::error::ErrorCode;

pub use sinkchat_engine::StopReason;

/// Where a reply's conversation memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// The memory was alive: only the new message is read.
    Live,
    /// Restored from its snapshot on disk: nothing old is read again.
    Snapshot,
    /// Rebuilt by reading the transcript's tail.
    Rebuilt,
}

/// What the gauge shows of a chat's memory: the pinned start, the rolling window, what left
/// it, and the parts that are the user's pins and recalled messages. Figures in tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct Gauge {
    pub capacity: usize,
    pub pinned: usize,
    pub pinned_used: usize,
    pub window: usize,
    pub window_used: usize,
    pub tokens_seen: u64,
    pub evicted_total: u64,
    pub evicted_last_step: u64,
    /// Position of the oldest token still in the window (equal to `pinned` before any
    /// eviction).
    pub window_start: u64,
    pub bytes: usize,
    pub device: String,
    /// Tokens of the pinned part that are messages the user pinned (the rest is the system
    /// prompt and the first tokens).
    pub pins_used: usize,
    /// Room the pinned part has for pinned messages: half the window, less the system prompt.
    pub pins_room: usize,
    /// Tokens in the window that are earlier messages given back by recall; they scroll out
    /// with the turn that brought them.
    pub recalled_used: usize,
    /// Layers that look only at the most recent `sliding_window` tokens, as the model was
    /// trained (Gemma 3's local layers): they keep a small memory of their own beside the
    /// gauge's. 0: none.
    pub sliding_layers: usize,
    pub sliding_window: usize,
    /// A model on a server: the last prompt's tokens, and how many of them the server took
    /// from its prompt cache (llama.cpp's `timings.cache_n`, OpenAI's `cached_tokens`) rather
    /// than reading them again. `None` for a model here, or a server that does not say.
    pub server_prompt: Option<usize>,
    pub server_cached: Option<usize>,
}

/// Keeps a chat's gauge counters (tokens read, tokens let go) from going backwards: a memory
/// rebuilt from the transcript (after a pin or an edit, or a model switch) counts only the
/// tokens it re-read, so its raw counters start low again. Growth of the raw counters is added
/// to what was shown; a drop (a new memory) changes nothing until it grows again.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SteadyCounts {
    raw_seen: u64,
    raw_evicted: u64,
    seen: u64,
    evicted: u64,
}

impl SteadyCounts {
    pub(crate) fn apply(&mut self, g: &mut Gauge) {
        let (seen, evicted) = (g.tokens_seen, g.evicted_total);
        if seen >= self.raw_seen && evicted >= self.raw_evicted {
            self.seen += seen - self.raw_seen;
            self.evicted += evicted - self.raw_evicted;
        } else {
            self.seen = self.seen.max(seen);
            self.evicted = self.evicted.max(evicted);
        }
        (self.raw_seen, self.raw_evicted) = (seen, evicted);
        (g.tokens_seen, g.evicted_total) = (self.seen, self.evicted);
    }
}

/// What the model holds of a chat now: the gauge and the first message it still sees (whole
/// or in part); the messages before it are out of view.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct MemoryView {
    pub stats: Gauge,
    pub first_visible_message: Option<i64>,
    /// Where the messages in view begin: which of them recall may count as seen (#36).
    #[serde(skip)]
    #[ts(skip)]
    pub horizon: sinkchat_engine::Horizon,
}

/// What a reply streams to the door that started it, in order: `memory`, `prefill`s, then
/// `token`s and `cache` updates, and last `done` or `error`. `not_saved` comes the moment a
/// save fails (disk full, database locked); the service keeps the text and tries again at
/// every later save, and `saved` says when it got through. A reply that ends unsaved stays in
/// memory for [`crate::ChatService::retry_save`].
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyEvent {
    /// Where the memory came from; first event of every reply.
    Memory {
        source: MemorySource,
    },
    /// The new turn is being read (`done` of `total` tokens).
    Prefill {
        done: usize,
        total: usize,
    },
    /// A piece of reply text.
    Token {
        text: String,
    },
    /// The memory after a step.
    Cache {
        stats: Gauge,
        first_visible_message: Option<i64>,
    },
    Done {
        reason: StopReason,
        tokens: usize,
        tokens_per_s: f64,
        prompt_tokens: usize,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    NotSaved {
        reply_id: i64,
        message: String,
    },
    Saved {
        reply_id: i64,
    },
}

impl ReplyEvent {
    /// Whether this is a reply's last event (`done` or `error`).
    pub fn ends_reply(&self) -> bool {
        matches!(self, ReplyEvent::Done { .. } | ReplyEvent::Error { .. })
    }
}

/// A reply has started: the user's message as saved, and the id the reply is saved under.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Sent {
    pub user_message: Message,
    pub reply_id: i64,
    /// Earlier messages, gone from the model's window, given back to it for this reply.
    pub recalled: Vec<i64>,
}

/// How a reply differs from the app's settings (the local server passes a client's choices).
#[derive(Debug, Clone, Default)]
pub struct ReplyOptions {
    pub sampling: Option<sinkchat_engine::SamplingParams>,
}

/// What asked for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A new message.
    Send,
    /// The same message again, for another answer: the reply's id is mixed into the seed (the
    /// same seed on the same transcript would write the same text again).
    Regenerate,
    /// The last message, edited.
    Edit,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(seen: u64, evicted: u64) -> Gauge {
        Gauge {
            tokens_seen: seen,
            evicted_total: evicted,
            ..Default::default()
        }
    }

    /// #34, bug 5: after a pin the memory is rebuilt and its counters restart (884 read -> 162,
    /// 571 let go -> 0); what the gauge shows never goes back, and grows with the new memory.
    #[test]
    fn gauge_counts_never_go_backwards_across_a_rebuilt_memory() {
        let mut c = SteadyCounts::default();
        let mut shown = Vec::new();
        for (s, e) in [
            (100, 0),
            (884, 571),
            (884, 571),
            (162, 0),
            (200, 0),
            (2100, 40),
        ] {
            let mut g = raw(s, e);
            c.apply(&mut g);
            shown.push((g.tokens_seen, g.evicted_total));
        }
        assert_eq!(
            shown,
            [
                (100, 0),
                (884, 571),
                (884, 571),
                (884, 571),
                (922, 571),
                (2822, 611)
            ]
        );
        assert!(shown
            .windows(2)
            .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    }
}
