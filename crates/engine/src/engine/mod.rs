//! `Engine`: owns one loaded model and serves many conversations, each with its own
//! [`SinkCache`](crate::SinkCache) kept alive between turns, one step at a time on a dedicated
//! thread ([`worker`]).
//!
//! Requests arrive over a channel and carry their own event callback ([`protocol`]). A reply is
//! cancelled by flipping its flag; the loop checks it between steps, so the engine is free at
//! once. What a reply feeds the model is decided by pure functions ([`feed`]); parked memories
//! are snapshot files with a disk budget ([`parking`]).

pub mod feed;
pub mod parking;
pub mod protocol;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use candle_core::Device;

use crate::cache::CacheConfig;
use crate::chat::ChatTemplate;
use crate::model::LoadOptions;
use crate::model::Model;
use crate::tokenizer::GgufTokenizer;
use crate::{Error, Result};

pub use parking::{enforce_snapshot_budget, snapshot_path, snapshot_usage, SnapshotUsage};
pub use protocol::{
    Cancel, EngineEvent, GenerateRequest, History, HistoryReader, Horizon, MemorySource,
    MemoryView, ModelInfo, Spans, StopReason,
};

use parking::ConversationMeta;
use worker::{Command, Segments, Views, Worker};

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

/// How many conversations keep a live cache; the least recently used beyond it is dropped and
/// rebuilt from its transcript when it comes back.
pub const LIVE_CONVERSATIONS: usize = 4;

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
    /// The model's shape, for the figures of a parked memory.
    spec: crate::ModelSpec,
    device: Device,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

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
            weights: model.weight_type().to_string(),
            trained_context: spec.trained_context,
            kv_bytes_per_token: spec.kv_bytes_per_token(),
            sliding_kv_bytes: spec.sliding_kv_bytes(),
            kv_f16: crate::KvPrecision::F16.on(&device) == crate::KvPrecision::F16,
            device_note: None,
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
                    prefill_pace: None,
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
            spec,
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
        Ok(feed::encode_opening(&self.opening.0, &self.opening.1, system_prompt)?.len())
    }

    /// How many tokens `text` takes as plain text (what recall spends of its budget).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.opening.0.encode(text, false)?.len())
    }

    /// The oldest message of `history` that a memory rebuilt with `config` would read back
    /// ([`feed::kept_turns`] within [`CacheConfig::rebuild_budget`], what the engine thread
    /// does on a cache miss); `None` when no earlier turn would fit.
    pub fn rebuild_start(&self, history: &History, config: &CacheConfig) -> Result<Option<i64>> {
        let kept = feed::kept_turns(
            &self.opening.0,
            &self.opening.1,
            history,
            config.rebuild_budget(),
        )?;
        Ok(kept.last().map(|(t, _)| t.message_id))
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
            crate::SinkCache::bytes_for(&self.spec, *config, &self.device) as u64,
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
            crate::snapshot::peek(&snapshot_path(dir, conversation), &self.model_id)?;
        let meta: ConversationMeta = serde_json::from_value(meta).ok()?;
        if meta.key != key {
            return None;
        }
        let mut stats = state.stats(&self.spec, &self.device);
        let mut marks = meta.marks;
        marks.apply(&mut stats);
        let segments = Segments(meta.segments);
        let first_visible_message = segments.first_visible(stats.window_start, stats.pinned);
        let horizon = segments.horizon(&stats, stats.pinned);
        Some(MemoryView {
            stats,
            first_visible_message,
            horizon,
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
