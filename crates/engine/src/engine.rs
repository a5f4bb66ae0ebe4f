//! `Engine`: owns one loaded model and serves many conversations, each with its own
//! [`SinkCache`] kept alive between turns, one step at a time on a dedicated thread.
//!
//! Requests arrive over a channel and carry their own event callback. A reply is cancelled by
//! flipping its flag; the loop checks it between steps, so the engine is free at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use candle_core::Device;

use crate::cache::{CacheConfig, CacheStats, SinkCache};
use crate::chat::{encode_pieces, ChatTemplate, Role, Turn};
use crate::model::{Logits, Model};
use crate::sampling::{Sampler, SamplingParams};
use crate::text::TokenOutputStream;
use crate::tokenizer::GgufTokenizer;
use crate::{Error, LoadOptions, Result};

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
}

/// The live conversations' views, kept by the engine thread as it works, read by anyone at
/// once (the thread may be busy writing a reply).
type Views = Arc<std::sync::Mutex<HashMap<i64, MemoryView>>>;

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
    /// Bytes at the end of `system_prompt` that are the user's pinned messages, and bytes at
    /// the start of `user_text` that are recalled earlier messages (0: none). They change
    /// nothing the model reads; the gauge shows them as parts of their own.
    pub marks: TextMarks,
}

/// Where the user's pins and recalled text sit in a request's text, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextMarks {
    pub pins_len: usize,
    pub recalled_len: usize,
}

/// What the gauge shows beyond the cache's own figures: how much of the pinned part is the
/// user's pins (and the room for them), and where recalled text sits in the token stream.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Marks {
    pins_used: usize,
    pins_room: usize,
    /// Token ranges `[start, end)` of recalled text, oldest first.
    recalled: Vec<(u64, u64)>,
}

impl Marks {
    /// Adds the marks to `stats`, and forgets recalled ranges the window has let go.
    fn apply(&mut self, stats: &mut CacheStats) {
        let (lo, hi) = (stats.window_start, stats.tokens_seen);
        self.recalled.retain(|&(_, end)| end > lo);
        stats.pins_used = self.pins_used;
        stats.pins_room = self.pins_room;
        stats.recalled_used = self
            .recalled
            .iter()
            .map(|&(s, e)| e.min(hi).saturating_sub(s.max(lo)) as usize)
            .sum();
    }
}

/// The tokens two encodings share at their start.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
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
    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

type Callback = Box<dyn FnMut(EngineEvent) + Send>;

/// Turns read per page when a cache is rebuilt from the transcript.
const HISTORY_PAGE: usize = 64;

/// Tokens still to feed, and the message they belong to (`None`: the opening, template text).
type PendingTokens = (Vec<u32>, Option<i64>);

enum Command {
    Generate(Box<GenerateRequest>, Cancel, Callback),
    Forget(i64),
    Park(i64),
    ParkAll(mpsc::Sender<usize>),
    Shutdown,
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
    /// Whether an f16 cache is stored in f16 on this device (the CPU); a GPU keeps f32.
    pub kv_f16: bool,
}

/// The inference engine.
pub struct Engine {
    tx: mpsc::Sender<Command>,
    info: ModelInfo,
    /// The tokenizer and template, to measure an opening without asking the engine thread.
    opening: (GgufTokenizer, ChatTemplate),
    views: Views,
    snapshot_budget: Arc<AtomicU64>,
    snapshot_dir: Option<PathBuf>,
    model_id: String,
    device: Device,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

/// Where each message starts in a conversation's token stream.
#[derive(Debug, Default)]
struct Segments(Vec<(u64, i64)>);

impl Segments {
    fn push(&mut self, start: u64, message: i64) {
        self.0.push((start, message));
    }
    /// The first message the model still sees, whole or in part: the one the window begins
    /// in. Every message before it is forgotten (only the pinned opening stays).
    fn first_visible(&self, window_start: u64, pinned: usize) -> Option<i64> {
        if window_start <= pinned as u64 {
            return self.0.first().map(|s| s.1);
        }
        self.0
            .iter()
            .rev()
            .find(|(s, _)| *s <= window_start)
            .or(self.0.first())
            .map(|s| s.1)
    }
}

#[cfg(test)]
mod segment_tests {
    use super::Segments;

    #[test]
    fn the_first_visible_message_is_the_one_the_window_begins_in() {
        let s = Segments(vec![(20, 1), (40, 2), (100, 3), (300, 4)]);
        assert_eq!(s.first_visible(4, 20), Some(1), "nothing evicted yet");
        assert_eq!(s.first_visible(30, 20), Some(1), "message 1 partly evicted");
        assert_eq!(s.first_visible(40, 20), Some(2), "message 1 gone, 2 whole");
        assert_eq!(s.first_visible(250, 20), Some(3), "inside a long message");
        assert_eq!(s.first_visible(1000, 20), Some(4));
        assert_eq!(Segments::default().first_visible(1000, 20), None);
    }
}

struct Conversation {
    cache: SinkCache,
    key: String,
    system_prompt: String,
    pin: bool,
    /// The cache settings the caller asked for (the cache may pin more for the opening).
    requested: CacheConfig,
    /// An assistant turn is open: its closing markup goes before the next user turn.
    close_pending: bool,
    segments: Segments,
    marks: Marks,
    /// The last message the cache has read (the last reply), to match a snapshot to its
    /// transcript.
    last_message: Option<i64>,
    last_used: Instant,
    /// The last token the cache read (`None`: unknown, e.g. after a restore), which decides
    /// whether SentencePiece puts a space before the next text.
    last_token: Option<u32>,
}

/// What a snapshot keeps of a conversation besides its cache.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConversationMeta {
    /// The conversation's key ([`GenerateRequest::cache_key`]); absent in older snapshots,
    /// which are then refused once and rebuilt.
    #[serde(default)]
    key: String,
    system_prompt: String,
    pin: bool,
    requested: CacheConfig,
    close_pending: bool,
    segments: Vec<(u64, i64)>,
    last_message: Option<i64>,
    /// Absent in older snapshots: no pins or recalled text shown until the next rebuild.
    #[serde(default)]
    marks: Marks,
}

/// Engine settings beyond the model.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Where caches are parked; `None` drops them instead.
    pub snapshot_dir: Option<PathBuf>,
    /// Most bytes the snapshots may take together (`None`: no limit). After each park the
    /// least recently parked go first; their chats rebuild from the transcript when opened.
    /// Changed later with [`Engine::set_snapshot_budget`].
    pub snapshot_budget: Option<u64>,
}

/// What the snapshots folder holds: files and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct SnapshotUsage {
    pub files: u64,
    pub bytes: u64,
}

/// The snapshots in `dir` (`*.kv`), oldest parked first, with their sizes.
fn snapshot_files(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    e.path(),
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                )
            })
        })
        .collect();
    out.sort_by_key(|(p, _, t)| (*t, p.clone()));
    out
}

/// What the snapshots in `dir` take.
pub fn snapshot_usage(dir: &Path) -> SnapshotUsage {
    let files = snapshot_files(dir);
    SnapshotUsage {
        files: files.len() as u64,
        bytes: files.iter().map(|(_, b, _)| b).sum(),
    }
}

/// Removes the least recently parked snapshots in `dir` until they take at most `budget`
/// bytes. Returns how many went.
pub fn enforce_snapshot_budget(dir: &Path, budget: u64) -> usize {
    let files = snapshot_files(dir);
    let mut total: u64 = files.iter().map(|(_, b, _)| b).sum();
    let mut removed = 0;
    for (path, bytes, _) in files {
        if total <= budget {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= bytes;
            removed += 1;
            tracing::info!(snapshot = %path.display(), bytes, "snapshot removed: over the disk budget");
        }
    }
    removed
}

/// The tokens a chat's cache opens with: the template's opening around the system prompt, BOS
/// first where the file asks for it and the template did not put it there.
fn encode_opening(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    system_prompt: &str,
) -> Result<Vec<u32>> {
    let mut opening = encode_pieces(tk, &template.opening(system_prompt), None)?;
    if let (true, Some(bos)) = (tk.add_bos, tk.bos) {
        if opening.first() != Some(&bos) {
            opening.insert(0, bos);
        }
    }
    Ok(opening)
}

/// How many conversations keep a live cache; the least recently used beyond it is dropped and
/// rebuilt from its transcript when it comes back.
pub const LIVE_CONVERSATIONS: usize = 4;

impl Engine {
    /// Loads `model_path` on `device` and starts the engine thread, with no snapshots.
    pub fn start(model_path: &Path, device: Device) -> Result<Self> {
        Self::start_with(model_path, device, EngineOptions::default())
    }

    /// Loads `model_path` on `device` and starts the engine thread.
    pub fn start_with(model_path: &Path, device: Device, options: EngineOptions) -> Result<Self> {
        let model = Model::load(model_path, &device, LoadOptions::default())?;
        let model_id = crate::snapshot::model_identity(model_path)?;
        let header = crate::model::read_gguf_header(model_path)?;
        let mut tokenizer = GgufTokenizer::from_gguf(&header)?;
        let template = ChatTemplate::for_tokenizer(&tokenizer)?;
        // The reply also ends at the token the template closes an assistant turn with.
        let closers = template.end_of_turn_tokens(&tokenizer);
        tokenizer.end_of_turn.extend(closers);
        let spec = model.spec().clone();
        let info = ModelInfo {
            name: spec.name.clone(),
            architecture: spec.architecture.gguf_name().into(),
            device: crate::device::device_label(&device).into(),
            weights: format!("{:?}", model.weight_dtype()),
            trained_context: spec.trained_context,
            kv_bytes_per_token: spec.kv_bytes_per_token(),
            kv_f16: crate::KvPrecision::F16.on(&device) == crate::KvPrecision::F16,
        };
        let (tx, rx) = mpsc::channel();
        let opening = (tokenizer.clone(), template.clone());
        let engine_device = device.clone();
        let views = Views::default();
        let worker_views = views.clone();
        let snapshot_budget = Arc::new(AtomicU64::new(options.snapshot_budget.unwrap_or(u64::MAX)));
        let worker_budget = snapshot_budget.clone();
        let engine_snapshot_dir = options.snapshot_dir.clone();
        let engine_model_id = model_id.clone();
        let thread = std::thread::Builder::new()
            .name("sinkchat-engine".into())
            .spawn(move || {
                let mut w = Worker {
                    model,
                    tokenizer,
                    template,
                    conversations: HashMap::new(),
                    views: worker_views,
                    model_id,
                    snapshot_dir: options.snapshot_dir,
                    snapshot_budget: worker_budget,
                };
                w.run(rx)
            })
            .map_err(|_| Error::EngineStopped)?;
        Ok(Self {
            tx,
            info,
            opening,
            views,
            snapshot_budget,
            snapshot_dir: engine_snapshot_dir,
            model_id: engine_model_id,
            device: engine_device,
            thread: Some(thread),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// How many tokens a chat's opening takes with this system prompt: what is pinned with
    /// the sinks when the prompt is pinned, and pinned only while it is at most half the
    /// window (the service holds pinned messages to that before it accepts a pin).
    pub fn opening_tokens(&self, system_prompt: &str) -> Result<usize> {
        Ok(encode_opening(&self.opening.0, &self.opening.1, system_prompt)?.len())
    }

    /// How many tokens `text` takes as plain text (what recall spends of its budget).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.opening.0.encode(text, false)?.len())
    }

    /// Queues a reply; events arrive on `on_event` from the engine thread.
    pub fn generate(
        &self,
        req: GenerateRequest,
        on_event: impl FnMut(EngineEvent) + Send + 'static,
    ) -> Result<Cancel> {
        let cancel = Cancel::new();
        self.generate_with(req, cancel.clone(), on_event)?;
        Ok(cancel)
    }

    /// Queues a reply stopped by `cancel`, a handle the caller made (and may have flipped)
    /// before the reply was queued.
    pub fn generate_with(
        &self,
        req: GenerateRequest,
        cancel: Cancel,
        on_event: impl FnMut(EngineEvent) + Send + 'static,
    ) -> Result<()> {
        if req.user_text.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        req.sampling.validate()?;
        req.cache.validate()?;
        self.tx
            .send(Command::Generate(
                Box::new(req),
                cancel.clone(),
                Box::new(on_event),
            ))
            .map_err(|_| Error::EngineStopped)
    }

    /// Whether `caches` caches shaped by `config` fit in the memory free now; `Err` says why
    /// not, with the figures.
    pub fn check_cache_memory(
        &self,
        config: &CacheConfig,
        caches: usize,
    ) -> std::result::Result<(), String> {
        crate::device::check_cache_memory(
            config.kv_bytes_per_token(self.info.kv_bytes_per_token, &self.device),
            config.capacity(),
            caches as u64,
            &self.device,
        )
    }

    /// Sets the snapshots' disk budget (`None`: no limit); applied at the next park.
    pub fn set_snapshot_budget(&self, bytes: Option<u64>) {
        self.snapshot_budget
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// What the model holds of a conversation whose memory is parked on disk, read from its
    /// snapshot's header (the chat `key` must match): the gauge and the memory line can show
    /// it when the chat is opened after a restart, before any reply. `None` with no usable
    /// snapshot.
    pub fn parked_memory(&self, conversation: i64, key: &str) -> Option<MemoryView> {
        let dir = self.snapshot_dir.as_ref()?;
        let (state, meta) =
            crate::snapshot::peek(&dir.join(format!("{conversation}.kv")), &self.model_id)?;
        let meta: ConversationMeta = serde_json::from_value(meta).ok()?;
        if meta.key != key {
            return None;
        }
        let per_token = state
            .config
            .kv_bytes_per_token(self.info.kv_bytes_per_token, &self.device);
        let mut stats = state.stats(per_token, &self.info.device);
        let mut marks = meta.marks;
        marks.apply(&mut stats);
        let first_visible_message =
            Segments(meta.segments).first_visible(stats.window_start, stats.pinned);
        Some(MemoryView {
            stats,
            first_visible_message,
        })
    }

    /// What the model holds of `conversation` now (`None`: nothing live; parked on disk or
    /// never read). Answers at once, also while a reply is being written.
    pub fn memory(&self, conversation: i64) -> Option<MemoryView> {
        self.views
            .lock()
            .expect("views")
            .get(&conversation)
            .cloned()
    }

    /// Drops a conversation's cache and its snapshot (deleted conversation, edited history).
    pub fn forget(&self, conversation: i64) {
        let _ = self.tx.send(Command::Forget(conversation));
    }

    /// Writes a conversation's cache to its snapshot and frees it (the conversation was left).
    pub fn park(&self, conversation: i64) {
        let _ = self.tx.send(Command::Park(conversation));
    }

    /// Parks every live conversation and waits until they are written (the app is closing).
    /// Returns how many were written.
    pub fn park_all(&self) -> usize {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Command::ParkAll(tx)).is_err() {
            return 0;
        }
        rx.recv().unwrap_or(0)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    views: Views,
    model: Model,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    conversations: HashMap<i64, Conversation>,
    model_id: String,
    snapshot_dir: Option<PathBuf>,
    snapshot_budget: Arc<AtomicU64>,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Generate(req, cancel, mut cb) => {
                    let _span =
                        tracing::info_span!("reply", conversation = req.conversation).entered();
                    // A panic in a step ends that reply with an error, not the engine: the
                    // thread lives on for every other chat.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.generate(&req, &cancel, &mut cb)
                    }))
                    .unwrap_or_else(|p| {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(Error::Internal(what))
                    });
                    if let Err(e) = result {
                        tracing::error!(error = %e, "reply failed");
                        // A failed step may have left the cache half-written: rebuild next time.
                        self.drop_live(req.conversation);
                        cb(EngineEvent::Error {
                            code: e.code().into(),
                            message: e.to_string(),
                        });
                    }
                }
                Command::Forget(id) => {
                    self.drop_live(id);
                    if let Some(p) = self.snapshot_path(id) {
                        let _ = std::fs::remove_file(p);
                    }
                }
                Command::Park(id) => {
                    self.park(id);
                }
                Command::ParkAll(done) => {
                    let _ = done.send(self.park_all());
                }
                Command::Shutdown => {
                    self.park_all();
                    break;
                }
            }
        }
    }

    /// Frees a conversation's live cache (its view goes with it).
    fn drop_live(&mut self, id: i64) {
        self.conversations.remove(&id);
        self.views.lock().expect("views").remove(&id);
    }

    fn snapshot_path(&self, conversation: i64) -> Option<PathBuf> {
        self.snapshot_dir
            .as_ref()
            .map(|d| d.join(format!("{conversation}.kv")))
    }

    /// Writes a conversation's cache to disk and frees it. Returns whether it was written.
    fn park(&mut self, id: i64) -> bool {
        // A parked chat keeps its view: its memory is on disk, whole, and comes back as it was.
        let (Some(c), Some(path)) = (self.conversations.remove(&id), self.snapshot_path(id)) else {
            self.views.lock().expect("views").remove(&id);
            return false;
        };
        let meta = ConversationMeta {
            key: c.key,
            system_prompt: c.system_prompt,
            pin: c.pin,
            requested: c.requested,
            close_pending: c.close_pending,
            segments: c.segments.0,
            last_message: c.last_message,
            marks: c.marks,
        };
        let started = Instant::now();
        let meta = serde_json::to_value(meta).expect("plain data");
        match crate::snapshot::save(&path, &self.model_id, &c.cache, meta) {
            Ok(bytes) => {
                tracing::info!(
                    conversation = id,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "cache parked"
                );
                let budget = self.snapshot_budget.load(Ordering::Relaxed);
                if let Some(dir) = &self.snapshot_dir {
                    enforce_snapshot_budget(dir, budget);
                }
                if !path.exists() {
                    // Over the budget on its own: the chat rebuilds from its transcript.
                    self.views.lock().expect("views").remove(&id);
                    return false;
                }
                true
            }
            Err(e) => {
                tracing::warn!(conversation = id, error = %e, "cache not parked");
                self.views.lock().expect("views").remove(&id);
                false
            }
        }
    }

    fn park_all(&mut self) -> usize {
        let ids: Vec<i64> = self.conversations.keys().copied().collect();
        ids.into_iter().filter(|&id| self.park(id)).count()
    }

    /// The conversation's snapshot, if there is one that matches the request and the
    /// transcript. A snapshot is used once: the live cache supersedes it.
    fn restore(&self, req: &GenerateRequest) -> Option<Conversation> {
        let path = self.snapshot_path(req.conversation)?;
        if !path.exists() {
            return None;
        }
        let loaded = crate::snapshot::load(
            &path,
            &self.model_id,
            self.model.spec(),
            self.model.device(),
        );
        let _ = std::fs::remove_file(&path);
        let (cache, meta) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(conversation = req.conversation, error = %e, "snapshot refused");
                return None;
            }
        };
        let meta: ConversationMeta = serde_json::from_value(meta).ok()?;
        let last_in_transcript = req.history.last_message();
        if meta.key != req.cache_key {
            tracing::warn!(
                conversation = req.conversation,
                "snapshot of another chat refused"
            );
            return None;
        }
        if meta.system_prompt != req.system_prompt
            || meta.pin != req.pin_system_prompt
            || meta.requested != req.cache
            || meta.last_message != last_in_transcript
        {
            tracing::info!(conversation = req.conversation, "snapshot out of date");
            return None;
        }
        Some(Conversation {
            cache,
            key: meta.key,
            system_prompt: meta.system_prompt,
            pin: meta.pin,
            requested: meta.requested,
            close_pending: meta.close_pending,
            segments: Segments(meta.segments),
            marks: meta.marks,
            last_message: meta.last_message,
            last_used: Instant::now(),
            last_token: None,
        })
    }

    /// Makes sure the conversation has a live cache matching the request, rebuilding it from
    /// the transcript's tail if needed. Returns the tokens still to feed before the user turn.
    fn prepare(&mut self, req: &GenerateRequest) -> Result<(MemorySource, Vec<PendingTokens>)> {
        // A live cache is only reused when it saw exactly the transcript the request continues:
        // after a regenerate or an edit the transcript's tail differs and the cache is rebuilt.
        let last_in_transcript = req.history.last_message();
        let keep = self.conversations.get(&req.conversation).is_some_and(|c| {
            c.key == req.cache_key
                && c.system_prompt == req.system_prompt
                && c.pin == req.pin_system_prompt
                && c.requested == req.cache
                && c.last_message == last_in_transcript
        });
        let mut source = MemorySource::Live;
        if !keep {
            self.drop_live(req.conversation);
            if self.conversations.len() >= LIVE_CONVERSATIONS {
                let oldest = self.conversations.iter().min_by_key(|(_, c)| c.last_used);
                if let Some((&oldest, _)) = oldest {
                    self.park(oldest); // frees it whether or not it is written
                }
            }
            source = MemorySource::Rebuilt;
            if let Some(c) = self.restore(req) {
                self.conversations.insert(req.conversation, c);
                source = MemorySource::Snapshot;
            }
        }
        let mut feeds = Vec::new();
        if source != MemorySource::Rebuilt {
            let c = self
                .conversations
                .get_mut(&req.conversation)
                .expect("checked");
            if c.close_pending {
                feeds.push((
                    encode_pieces(
                        &self.tokenizer,
                        &self.template.assistant_close(),
                        c.last_token,
                    )?,
                    None,
                ));
                c.close_pending = false;
            }
            return Ok((source, feeds));
        }
        let opening = encode_opening(&self.tokenizer, &self.template, &req.system_prompt)?;
        // The opening (system prompt) is pinned with the sinks when it takes at most half the
        // window; a longer one is read like any text and scrolls away in time, so a huge prompt
        // can never make the pinned part outgrow the memory chosen in Settings.
        let pin = req.pin_system_prompt && opening.len() <= req.cache.window / 2;
        if req.pin_system_prompt && !pin {
            tracing::warn!(
                tokens = opening.len(),
                window = req.cache.window,
                "system prompt too long to pin; it will scroll like other text"
            );
        }
        // The user's pins are the end of the system prompt: the opening without them says how
        // much of the pinned part they take, and how much room is left for more.
        let base_len = match req.system_prompt.len().checked_sub(req.marks.pins_len) {
            Some(cut) if req.marks.pins_len > 0 && req.system_prompt.is_char_boundary(cut) => {
                encode_opening(&self.tokenizer, &self.template, &req.system_prompt[..cut])?.len()
            }
            _ => opening.len(),
        };
        let marks = Marks {
            pins_used: if pin {
                opening.len().saturating_sub(base_len)
            } else {
                0
            },
            pins_room: (req.cache.window / 2).saturating_sub(base_len),
            recalled: Vec::new(),
        };
        let sinks = if pin {
            req.cache.sinks.max(opening.len())
        } else {
            req.cache.sinks
        };
        let config = CacheConfig {
            sinks,
            window: req.cache.window.max(sinks),
            evict_step: req.cache.evict_step,
            precision: req.cache.precision,
        };
        // Held against the memory free now, before anything is allocated: an allocation that
        // fails would end the process.
        crate::device::check_cache_memory(
            config.kv_bytes_per_token(self.model.spec().kv_bytes_per_token(), self.model.device()),
            config.capacity(),
            1,
            self.model.device(),
        )
        .map_err(Error::InvalidCacheConfig)?;
        let cache = SinkCache::new(self.model.spec(), config, self.model.device())?;
        // Rebuild from the transcript's tail: the turns that fit in three quarters of the
        // window, so the new turn and the reply still have room. They are read newest first,
        // a page at a time, sized as if each followed a special token, and then tokenized
        // oldest first, each after the token before it.
        let budget = config.window * 3 / 4;
        let mut used = 0;
        let mut kept: Vec<(Turn, bool)> = Vec::new(); // newest first, with "close it"
                                                      // The role of the turn after the one being looked at (the new user turn, at first).
        let mut newer_role = Role::User;
        let mut before = None;
        'read: loop {
            let page = req.history.newest_first(before, HISTORY_PAGE)?;
            let Some(last) = page.last() else { break };
            before = Some(last.message_id);
            let short = page.len() < HISTORY_PAGE;
            for t in page {
                if t.role == Role::System || t.content.is_empty() {
                    continue;
                }
                // Every assistant turn is closed, and so is a user turn left without a reply
                // (a failed one), so the template never nests two turns.
                let close = t.role == Role::Assistant || newer_role != Role::Assistant;
                let n = encode_pieces(&self.tokenizer, &self.pieces_of(&t, close), None)?.len();
                if used + n > budget {
                    break 'read;
                }
                used += n;
                newer_role = t.role;
                kept.push((t, close));
            }
            if short {
                break;
            }
        }
        let mut prev = opening.last().copied();
        feeds.push((opening, None));
        for (t, close) in kept.iter().rev() {
            let ids = encode_pieces(&self.tokenizer, &self.pieces_of(t, *close), prev)?;
            prev = ids.last().copied().or(prev);
            feeds.push((ids, Some(t.message_id)));
        }
        self.conversations.insert(
            req.conversation,
            Conversation {
                cache,
                key: req.cache_key.clone(),
                system_prompt: req.system_prompt.clone(),
                pin: req.pin_system_prompt,
                requested: req.cache,
                close_pending: false,
                segments: Segments::default(),
                marks,
                last_message: None,
                last_used: Instant::now(),
                last_token: None,
            },
        );
        Ok((source, feeds))
    }

    /// A turn of the transcript as template pieces, closed or not.
    fn pieces_of(&self, t: &Turn, close: bool) -> Vec<crate::chat::Piece> {
        let mut pieces = match t.role {
            Role::User => self.template.user_turn(&t.content),
            _ => self.template.assistant_text(&t.content),
        };
        if close {
            pieces.extend(self.template.assistant_close());
        }
        pieces
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        cancel: &Cancel,
        cb: &mut Callback,
    ) -> Result<()> {
        let (source, mut feeds) = self.prepare(req)?;
        cb(EngineEvent::Memory { source });
        let prev = feeds
            .iter()
            .rev()
            .find_map(|f| f.0.last().copied())
            .or_else(|| {
                self.conversations
                    .get(&req.conversation)
                    .and_then(|c| c.last_token)
            });
        let user = encode_pieces(
            &self.tokenizer,
            &self.template.user_turn(&req.user_text),
            prev,
        )?;
        // Recalled text opens the user's turn: its tokens are those the turn has beyond the
        // same turn without it, after the template's start the two share.
        let recalled = match req.user_text.get(req.marks.recalled_len..) {
            Some(own) if req.marks.recalled_len > 0 => {
                let without = encode_pieces(&self.tokenizer, &self.template.user_turn(own), prev)?;
                let n = user.len().saturating_sub(without.len());
                Some((common_prefix(&user, &without), n))
            }
            _ => None,
        };
        feeds.push((user, Some(req.user_message_id)));
        let total: usize = feeds.iter().map(|f| f.0.len()).sum();
        let conv = self
            .conversations
            .get_mut(&req.conversation)
            .expect("prepared");
        conv.last_used = Instant::now();
        let chunk = (conv.cache.config().window / 4).clamp(1, 256);
        let mut done = 0;
        let mut logits = None;
        for (ids, msg) in &feeds {
            if ids.is_empty() {
                continue;
            }
            if let Some(m) = msg {
                let at = conv.cache.tokens_seen();
                conv.segments.push(at, *m);
                if let (Some((skip, n)), true) = (recalled, *m == req.user_message_id) {
                    let start = at + skip as u64;
                    conv.marks.recalled.push((start, start + n as u64));
                }
            }
            for c in ids.chunks(chunk) {
                if cancel.is_cancelled() {
                    // The turn is half-read: drop the cache rather than keep a torn turn.
                    self.drop_live(req.conversation);
                    cb(EngineEvent::Done {
                        reason: StopReason::Cancelled,
                        tokens: 0,
                        tokens_per_s: 0.0,
                        prompt_tokens: done,
                    });
                    return Ok(());
                }
                logits = Some(self.model.forward(c, &mut conv.cache, Logits::Last)?);
                conv.last_token = c.last().copied();
                done += c.len();
                cb(EngineEvent::Prefill { done, total });
            }
        }
        conv.segments
            .push(conv.cache.tokens_seen(), req.reply_message_id);
        let mut logits = logits.ok_or(Error::EmptyInput)?;
        let mut sampler = Sampler::new(req.sampling.clone())?;
        let mut out = TokenOutputStream::new(self.tokenizer.clone());
        let mut recent: Vec<u32> = Vec::new();
        let started = Instant::now();
        let mut reason = StopReason::MaxTokens;
        let pinned = conv.cache.config().sinks;
        let views = self.views.clone();
        let emit_cache = |conv: &mut Conversation, cb: &mut Callback| {
            let mut stats = conv.cache.stats();
            conv.marks.apply(&mut stats);
            let first = conv.segments.first_visible(stats.window_start, pinned);
            views.lock().expect("views").insert(
                req.conversation,
                MemoryView {
                    stats: stats.clone(),
                    first_visible_message: first,
                },
            );
            cb(EngineEvent::Cache {
                stats,
                first_visible_message: first,
            });
        };
        emit_cache(conv, cb);
        let mut produced = 0;
        while produced < req.sampling.max_tokens {
            if cancel.is_cancelled() {
                reason = StopReason::Cancelled;
                break;
            }
            let v: Vec<f32> = logits.to_vec1()?;
            let tok = sampler.sample(&v, &recent);
            if self.tokenizer.end_of_turn.contains(&tok) {
                reason = StopReason::EndOfTurn;
                break;
            }
            produced += 1;
            recent.push(tok);
            if let Some(piece) = out.next(tok)? {
                cb(EngineEvent::Token { text: piece });
            }
            // The token is fed in every case, so the cache holds the whole reply.
            logits = self.model.forward(&[tok], &mut conv.cache, Logits::Last)?;
            conv.last_token = Some(tok);
            if req
                .sampling
                .stop
                .iter()
                .any(|s| out.text().ends_with(s.as_str()))
            {
                reason = StopReason::StopString;
                break;
            }
            emit_cache(conv, cb);
        }
        if let Some(piece) = out.finish()? {
            cb(EngineEvent::Token { text: piece });
        }
        conv.close_pending = true;
        conv.last_message = Some(req.reply_message_id);
        let secs = started.elapsed().as_secs_f64();
        emit_cache(conv, cb);
        cb(EngineEvent::Done {
            reason,
            tokens: produced,
            tokens_per_s: if secs > 0.0 {
                produced as f64 / secs
            } else {
                0.0
            },
            prompt_tokens: total,
        });
        Ok(())
    }
}
