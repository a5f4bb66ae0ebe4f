//! What goes in and out of the engine: a reply's request, the history it continues, the events
//! it streams, the handle that stops it, and what the model holds of a conversation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cache::{CacheConfig, CacheStats};
use crate::chat::Turn;
use crate::sampling::SamplingParams;
use crate::Result;

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    StopString,
    MaxTokens,
    Cancelled,
}

/// Where a reply's conversation memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// The cache was alive in memory.
    Live,
    /// Restored from its snapshot on disk: nothing old is read again.
    Snapshot,
    /// Rebuilt by reading the transcript's tail (no usable snapshot).
    Rebuilt,
}

/// What a reply streams to its caller.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EngineEvent {
    /// Where the conversation's memory came from; first event of every reply.
    Memory {
        source: MemorySource,
    },
    /// The new turn's tokens are being read (`done` of `total`).
    Prefill {
        done: usize,
        total: usize,
    },
    /// A piece of reply text.
    Token {
        text: String,
    },
    /// Cache state after a step, with the first message the model still sees (whole or in
    /// part); the messages before it are forgotten.
    Cache {
        stats: CacheStats,
        first_visible_message: Option<i64>,
    },
    Done {
        reason: StopReason,
        tokens: usize,
        tokens_per_s: f64,
        prompt_tokens: usize,
    },
    Error {
        code: String,
        message: String,
    },
}

/// Reads earlier turns of a conversation: up to `limit` turns before message `before`
/// (`None`: the latest), newest first. Runs on the engine's thread.
pub type HistoryReader = dyn Fn(Option<i64>, usize) -> Result<Vec<Turn>> + Send + Sync;

/// A conversation's earlier turns, as a reply needs them: the id of the last one (checked
/// against the live cache and the snapshot) and, only on a cache miss, their text, read
/// newest first until the rebuild's budget is spent. A conversation of a million messages
/// costs a rebuild what one of fifty does, and a live cache costs no read at all.
#[derive(Clone)]
pub enum History {
    /// All of them, oldest first (tests, short callers).
    Turns(Vec<Turn>),
    /// Read on demand.
    Reader {
        last_message: Option<i64>,
        read: Arc<HistoryReader>,
    },
}

impl History {
    /// The id of the last earlier turn (`None`: the conversation starts here).
    pub fn last_message(&self) -> Option<i64> {
        match self {
            History::Turns(t) => t.last().map(|t| t.message_id),
            History::Reader { last_message, .. } => *last_message,
        }
    }

    /// Up to `limit` turns before message `before` (`None`: the latest), newest first.
    pub fn newest_first(&self, before: Option<i64>, limit: usize) -> Result<Vec<Turn>> {
        match self {
            History::Turns(t) => Ok(t
                .iter()
                .rev()
                .filter(|t| before.is_none_or(|b| t.message_id < b))
                .take(limit)
                .cloned()
                .collect()),
            History::Reader { read, .. } => read(before, limit),
        }
    }
}

impl From<Vec<Turn>> for History {
    fn from(t: Vec<Turn>) -> Self {
        History::Turns(t)
    }
}

impl Default for History {
    fn default() -> Self {
        History::Turns(Vec::new())
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            History::Turns(t) => f.debug_tuple("Turns").field(&t.len()).finish(),
            History::Reader { last_message, .. } => f
                .debug_struct("Reader")
                .field("last_message", last_message)
                .finish_non_exhaustive(),
        }
    }
}

/// What the model holds of a conversation now: its cache's figures and the first message it
/// still sees (what the gauge and the memory line show when a chat is opened).
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct MemoryView {
    pub stats: CacheStats,
    pub first_visible_message: Option<i64>,
    /// Where the messages in view begin, to tell which stay whole after the next turn.
    #[serde(skip)]
    #[ts(skip)]
    pub horizon: Horizon,
}

/// Where each message the window holds (whole or in part) begins in the conversation's token
/// stream, with the window's figures: what recall needs to tell which messages the model still
/// sees whole, now and after a turn of a given length is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Horizon {
    /// `(text position of the message's first token, message id)`, oldest first, from the
    /// message the window begins in.
    pub starts: Vec<(u64, i64)>,
    /// Text position of the oldest token in the window.
    pub window_start: u64,
    /// Tokens before `window_start` that stay for good (the sinks and the pinned opening).
    pub pinned: u64,
    pub window: usize,
    pub window_used: usize,
}

impl Horizon {
    /// The oldest message the model will still see whole, from its first token on, once
    /// `incoming` more tokens are read (the new turn and the reply's room): the window evicts
    /// a token for each one past its size. `None` when no message it holds now stays whole
    /// (every one is gone or about to be), or when it holds none.
    pub fn first_whole_after(&self, incoming: usize) -> Option<i64> {
        let overflow = (self.window_used + incoming).saturating_sub(self.window) as u64;
        let start = self.window_start + overflow;
        if start <= self.pinned {
            // Nothing has left, nor will: every message is whole.
            return self.starts.first().map(|s| s.1);
        }
        self.starts.iter().find(|(s, _)| *s >= start).map(|s| s.1)
    }
}

/// One reply to produce.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub conversation: i64,
    /// The conversation's random key (the store makes one per chat): a snapshot is restored
    /// only into the chat whose key it carries, never into a later chat with a reused id.
    pub cache_key: String,
    pub system_prompt: String,
    /// Earlier turns, read only when this conversation has no live cache.
    pub history: History,
    pub user_text: String,
    pub user_message_id: i64,
    pub reply_message_id: i64,
    pub sampling: SamplingParams,
    pub cache: CacheConfig,
    /// Pin the opening and system prompt with the sinks (on by default).
    pub pin_system_prompt: bool,
    /// Parts of the text the gauge shows apart (the caller's pins and recalled messages, say).
    /// They change nothing the model reads.
    pub spans: Spans,
}

/// Parts of a request's text that the gauge counts apart, in bytes (0: none): the tail of the
/// system prompt, kept with the opening, and the head of the user's turn, which scrolls out
/// with it. The engine reads them as any text and reports their tokens in [`CacheStats`]
/// (`opening_tail_used`, `turn_head_used`); what they are is the caller's business.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spans {
    pub opening_tail: usize,
    pub turn_head: usize,
}

/// Handle to a running reply.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<AtomicBool>);

impl Default for Cancel {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }
}

impl Cancel {
    /// A handle made before the reply is queued, so it can be stopped from the first moment.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether `other` is a clone of this very handle.
    pub fn same_as(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The flag itself, for a backend that is not this engine (a model on a server) to watch.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// What the UI shows about the loaded model.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub device: String,
    pub weights: String,
    pub trained_context: usize,
    /// Bytes of K and V per cached token in f32 (half that for an f16 cache where `kv_f16`).
    pub kv_bytes_per_token: usize,
    /// Bytes in f32 of the sliding layers' memory, whatever the window (0: none).
    pub sliding_kv_bytes: usize,
    /// Whether an f16 cache is stored in f16 on this device (the CPU and CUDA; Metal keeps f32).
    pub kv_f16: bool,
    /// Set when a GPU build found no GPU it could use and runs on the CPU: one sentence for
    /// the status bar ([`crate::device::NO_GPU`]).
    pub device_note: Option<String>,
}
