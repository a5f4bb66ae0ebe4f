//! The seam between the conversation service and what runs the model: a [`Backend`] offers what
//! the service needs (write a reply, count tokens, show and park a chat's memory) and speaks
//! the service's own types; the model slot (which backend, its state, which file) sits behind
//! one lock. A backend is a model loaded here ([`Backend::Local`]) or one that a server runs
//! ([`Backend::Remote`], see [`crate::remote`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sinkchat_engine::engine::{ModelInfo, SnapshotUsage};
use sinkchat_engine::{
    CacheConfig, CacheStats, Cancel, Engine, EngineEvent, GenerateRequest, History, SamplingParams,
    Spans,
};

use crate::error::{ErrorCode, UiError, UiResult};
use crate::events::{Gauge, MemorySource, MemoryView, ReplyEvent};
use crate::remote::RemoteModel;
use crate::ChatService;

/// Where the model stands: a UI can show each.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    Loading,
    Ready { info: ModelInfo },
    Failed { error: UiError },
}

/// What runs the model.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A GGUF file loaded by SinkChat's own engine, on this computer.
    Local(Arc<Engine>),
    /// A model that a server runs (llama.cpp's server, its RPC cluster, vLLM), with
    /// SinkChat's window over messages.
    Remote(Arc<RemoteModel>),
}

/// One reply, as the service asks it of any backend: the chat's opening (its system prompt with
/// the pinned messages at its end), the history it continues, and the user's turn (recalled
/// messages at its start).
#[derive(Debug, Clone)]
pub struct Prompt {
    pub conversation: i64,
    /// The chat's random key: a parked memory is restored only into its own chat.
    pub cache_key: String,
    pub system_prompt: String,
    /// Bytes at the end of `system_prompt` that are the user's pinned messages.
    pub pins_len: usize,
    pub history: History,
    pub user_text: String,
    /// Bytes at the start of `user_text` that are recalled earlier messages.
    pub recalled_len: usize,
    pub user_message_id: i64,
    pub reply_message_id: i64,
    pub sampling: SamplingParams,
    pub cache: CacheConfig,
    /// Keep the opening with the sinks (pinned), as long as it fits the pin budget.
    pub pin_system_prompt: bool,
    /// The chat's first user message and the reply to it, where the backend pins them (a
    /// server's window); empty for a model here.
    pub first_exchange: Vec<sinkchat_engine::Turn>,
}

impl Backend {
    pub fn info(&self) -> &ModelInfo {
        match self {
            Backend::Local(e) => e.info(),
            Backend::Remote(r) => r.info(),
        }
    }

    /// Tokens `text` takes as plain text.
    pub fn count_tokens(&self, text: &str) -> UiResult<usize> {
        match self {
            Backend::Local(e) => Ok(e.count_tokens(text)?),
            Backend::Remote(r) => Ok(r.estimate(text)),
        }
    }

    /// Tokens a chat's opening takes with this system prompt.
    pub fn opening_tokens(&self, system_prompt: &str) -> UiResult<usize> {
        match self {
            Backend::Local(e) => Ok(e.opening_tokens(system_prompt)?),
            Backend::Remote(r) => Ok(r.estimate(system_prompt)),
        }
    }

    /// The oldest message of `history` that a memory rebuilt with `config` would hold.
    pub fn rebuild_start(&self, history: &History, config: &CacheConfig) -> UiResult<Option<i64>> {
        match self {
            Backend::Local(e) => Ok(e.rebuild_start(history, config)?),
            // The server's window is known only once a request has been planned.
            Backend::Remote(_) => Ok(None),
        }
    }

    /// What the model holds of the chat now (`None`: nothing live).
    pub fn memory(&self, conversation: i64) -> Option<MemoryView> {
        match self {
            Backend::Local(e) => e.memory(conversation).map(view),
            Backend::Remote(r) => r.memory(conversation),
        }
    }

    /// What a chat's parked memory holds (read from its snapshot's header; blocking I/O).
    pub fn parked_memory(&self, conversation: i64, key: &str) -> Option<MemoryView> {
        match self {
            Backend::Local(e) => e.parked_memory(conversation, key).map(view),
            Backend::Remote(_) => None,
        }
    }

    /// Puts the chat's memory aside (to disk), freeing it.
    pub fn park(&self, conversation: i64) {
        match self {
            Backend::Local(e) => e.park(conversation),
            // The server holds its own cache; nothing here to put aside.
            Backend::Remote(_) => {}
        }
    }

    /// Parks every live memory and waits until they are written (blocking). Returns how many.
    pub fn park_all(&self) -> usize {
        match self {
            Backend::Local(e) => e.park_all(),
            Backend::Remote(_) => 0,
        }
    }

    /// Drops the chat's memory, live and parked.
    pub fn forget(&self, conversation: i64) {
        match self {
            Backend::Local(e) => e.forget(conversation),
            Backend::Remote(r) => r.forget(conversation),
        }
    }

    /// Whether `caches` memories shaped by `config` fit in the memory free now; `Err` says
    /// why not, with the figures.
    pub fn check_cache_memory(&self, config: &CacheConfig, caches: usize) -> Result<(), String> {
        match self {
            Backend::Local(e) => e.check_cache_memory(config, caches),
            // The server's memory is the server's.
            Backend::Remote(_) => Ok(()),
        }
    }

    pub fn set_snapshot_budget(&self, bytes: u64) {
        match self {
            Backend::Local(e) => e.set_snapshot_budget(Some(bytes)),
            Backend::Remote(_) => {}
        }
    }

    /// Starts a reply; its events arrive on `on_event`, the last one `done` or `error`.
    pub fn generate(
        &self,
        p: Prompt,
        cancel: Cancel,
        mut on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<()> {
        match self {
            Backend::Local(e) => {
                let req = GenerateRequest {
                    conversation: p.conversation,
                    cache_key: p.cache_key,
                    system_prompt: p.system_prompt,
                    history: p.history,
                    user_text: p.user_text,
                    user_message_id: p.user_message_id,
                    reply_message_id: p.reply_message_id,
                    sampling: p.sampling,
                    cache: p.cache,
                    pin_system_prompt: p.pin_system_prompt,
                    spans: Spans {
                        opening_tail: p.pins_len,
                        turn_head: p.recalled_len,
                    },
                };
                Ok(e.generate_with(req, cancel, move |ev| on_event(event(ev)))?)
            }
            Backend::Remote(r) => {
                r.generate(p, cancel, on_event);
                Ok(())
            }
        }
    }

    /// Whether the model runs on a server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Tokens of the window (what scrolls), for shares of it such as recall's.
    pub fn window(&self, config: &CacheConfig) -> usize {
        match self {
            Backend::Local(_) => config.window,
            Backend::Remote(r) => r.window(),
        }
    }

    /// Messages of the chat the model sees for good although the user did not pin them (a
    /// server's window keeps the first exchange): recall leaves them out.
    pub fn held_for_good(&self, conversation: i64) -> Vec<i64> {
        match self {
            Backend::Local(_) => Vec::new(),
            Backend::Remote(r) => r.held_for_good(conversation),
        }
    }

    /// Tokens the pinned part may take (the system prompt and pinned messages).
    pub fn pin_budget(&self, config: &CacheConfig) -> usize {
        match self {
            Backend::Local(_) => config.pin_budget(),
            Backend::Remote(r) => r.pin_budget(),
        }
    }
}

/// The gauge of a local engine's cache: the tail of the opening is the user's pins, the head
/// of a turn its recalled messages (see [`Prompt`]).
fn gauge(s: CacheStats) -> Gauge {
    Gauge {
        capacity: s.capacity,
        pinned: s.pinned,
        pinned_used: s.pinned_used,
        window: s.window,
        window_used: s.window_used,
        tokens_seen: s.tokens_seen,
        evicted_total: s.evicted_total,
        evicted_last_step: s.evicted_last_step,
        window_start: s.window_start,
        bytes: s.bytes,
        device: s.device,
        pins_used: s.opening_tail_used,
        pins_room: s.opening_tail_room,
        recalled_used: s.turn_head_used,
        sliding_layers: s.sliding_layers,
        sliding_window: s.sliding_window,
        server_prompt: None,
        server_cached: None,
    }
}

fn view(v: sinkchat_engine::MemoryView) -> MemoryView {
    MemoryView {
        stats: gauge(v.stats),
        first_visible_message: v.first_visible_message,
        horizon: v.horizon,
    }
}

fn event(e: EngineEvent) -> ReplyEvent {
    match e {
        EngineEvent::Memory { source } => ReplyEvent::Memory {
            source: match source {
                sinkchat_engine::MemorySource::Live => MemorySource::Live,
                sinkchat_engine::MemorySource::Snapshot => MemorySource::Snapshot,
                sinkchat_engine::MemorySource::Rebuilt => MemorySource::Rebuilt,
            },
        },
        EngineEvent::Prefill { done, total } => ReplyEvent::Prefill { done, total },
        EngineEvent::Token { text } => ReplyEvent::Token { text },
        EngineEvent::Cache {
            stats,
            first_visible_message,
        } => ReplyEvent::Cache {
            stats: gauge(stats),
            first_visible_message,
        },
        EngineEvent::Done {
            reason,
            tokens,
            tokens_per_s,
            prompt_tokens,
        } => ReplyEvent::Done {
            reason,
            tokens,
            tokens_per_s,
            prompt_tokens,
        },
        EngineEvent::Error { code, message } => ReplyEvent::Error {
            code: ErrorCode::of(&code),
            message,
        },
    }
}

/// Which backend the service uses, where it stands, and the model file it is for: one lock,
/// because the three always change together.
pub(crate) struct ModelSlot {
    pub backend: Option<Backend>,
    pub state: ModelState,
    /// The model file in use or being loaded (empty for a model on a server).
    pub path: PathBuf,
    /// A server model saved as the one in use, to start at the next [`ChatService::load_model`].
    pub server: Option<crate::remote::ServerChoice>,
}

impl ChatService {
    pub fn active_model_path(&self) -> PathBuf {
        self.0.model.read().expect("model slot").path.clone()
    }

    /// Loads the active model on its own thread; the state says `Loading` until it is ready
    /// or failed.
    pub fn load_model(&self) {
        let saved = self.0.model.write().expect("model slot").server.take();
        if let Some(choice) = saved {
            match self.remote_for(choice) {
                Ok(r) => return self.set_remote(Arc::new(r)),
                Err(error) => {
                    let mut slot = self.0.model.write().expect("model slot");
                    slot.path = PathBuf::new();
                    slot.state = ModelState::Failed { error };
                    return;
                }
            }
        }
        let svc = self.clone();
        let path = self.active_model_path();
        let spawned = std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || {
                tracing::info!(model = %path.display(), "loading model");
                let started = Instant::now();
                let load = || {
                    sinkchat_hub::check_model(&path)
                        .map_err(UiError::from)
                        .and_then(|_| {
                            // A GPU build without a usable GPU says so, and runs on the CPU.
                            let (device, note) = sinkchat_engine::device::choose_device();
                            Engine::start_with(
                                &path,
                                device,
                                sinkchat_engine::EngineOptions {
                                    snapshot_dir: Some(svc.snapshot_dir()),
                                    snapshot_budget: Some(svc.snapshot_budget()),
                                },
                            )
                            .map(|e| (e, note))
                            .map_err(UiError::from)
                        })
                };
                // Whatever goes wrong inside, the state ends Ready or Failed, never stuck on
                // Loading.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                    .unwrap_or_else(|_| {
                        Err(UiError::new(
                            ErrorCode::ModelCorrupt,
                            "The model could not be loaded: reading it failed inside the \
                             engine. The file may be damaged or crafted; pick another model.",
                        ))
                    });
                if result.is_ok() {
                    tracing::info!(secs = started.elapsed().as_secs_f32(), "model ready");
                }
                svc.set_backend(
                    &path,
                    result.map(|(e, note)| (Backend::Local(Arc::new(e)), note)),
                );
            });
        if let Err(e) = spawned {
            let path = self.active_model_path();
            self.set_backend(
                &path,
                Err(UiError::new(
                    ErrorCode::ModelLoader,
                    format!("The model loader could not start: {e}"),
                )),
            );
        }
    }

    /// Waits until the model is ready (or failed to load); returns its state.
    pub async fn wait_ready(&self) -> ModelState {
        loop {
            match self.model_state() {
                ModelState::Loading => tokio::time::sleep(Duration::from_millis(50)).await,
                s => return s,
            }
        }
    }

    /// The backend in use, or why there is none.
    pub fn backend(&self) -> UiResult<Backend> {
        let slot = self.0.model.read().expect("model slot");
        if let Some(b) = &slot.backend {
            return Ok(b.clone());
        }
        Err(match &slot.state {
            ModelState::Failed { error } => error.clone(),
            _ => UiError::new(
                ErrorCode::ModelLoading,
                "The model is still loading; try again in a moment.",
            ),
        })
    }

    pub fn model_state(&self) -> ModelState {
        self.0.model.read().expect("model slot").state.clone()
    }

    /// Puts a loaded backend (or why it failed) in the slot, unless a newer choice than `path`
    /// replaced it while it loaded.
    fn set_backend(&self, path: &PathBuf, result: UiResult<(Backend, Option<String>)>) {
        let mut slot = self.0.model.write().expect("model slot");
        if &slot.path != path {
            return;
        }
        match result {
            Ok((b, device_note)) => {
                let mut info = b.info().clone();
                info.device_note = device_note;
                // The name people know it by, not the GGUF's `general.name`.
                if let Some(file) = path.file_name() {
                    info.name = sinkchat_hub::models::display_name(&file.to_string_lossy());
                }
                slot.backend = Some(b);
                slot.state = ModelState::Ready { info };
            }
            Err(error) => {
                // The file's whole path here, for diagnostics; the window shows the sentence.
                tracing::error!(%error, path = %path.display(), "the model could not be loaded");
                slot.state = ModelState::Failed { error };
            }
        }
    }

    /// Stops every reply, parks every chat's memory and lets the backend go; the state turns
    /// to `Loading` with `next` as the model to come. Blocking: the memories are written.
    pub(crate) fn unload_backend(&self, next: PathBuf) {
        self.stop_all();
        let old = {
            let mut slot = self.0.model.write().expect("model slot");
            slot.state = ModelState::Loading;
            slot.path = next;
            slot.backend.take()
        };
        if let Some(b) = old {
            b.park_all();
        }
    }

    /// What the parked memories of chats take on disk now (shown in Settings).
    pub async fn snapshot_usage(&self) -> SnapshotUsage {
        let dir = self.snapshot_dir();
        tokio::task::spawn_blocking(move || sinkchat_engine::engine::snapshot_usage(&dir))
            .await
            .unwrap_or_default()
    }
}
