//! SinkChat's conversations as one service: what a chat does (send, regenerate, edit, stop,
//! delete, rename, title, how often a streaming reply is saved, what a stop means for the
//! message, switching models) as plain async functions over the store and the engine. The
//! window (`src-tauri`'s commands) and the local server (`sinkchat-server`) are thin doors
//! onto it, and its tests drive it without either.
//!
//! A reply's events arrive on a callback, from a task the service owns: the reply is saved as
//! it streams whether or not anyone still listens, so a closed window or a client that hangs
//! up loses nothing.

pub mod error;
pub mod instance;
pub mod logging;
pub mod models;
pub mod recall;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use sinkchat_engine::{
    engine::ModelInfo, Cancel, Engine, EngineEvent, GenerateRequest, History, Role as EngineRole,
    SamplingParams, StopReason, TextMarks, Turn,
};
use sinkchat_store::{Conversation, Message, MessageStatus, MessageText, Role, SearchHit, Store};

pub use error::{UiError, UiResult};
pub use settings::Settings;

/// The persona a new conversation starts with.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful, friendly assistant.";

/// How often a streaming reply is written to disk.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// Chats per page of the sidebar.
pub const CONVERSATION_PAGE: i64 = 50;

/// Messages per page of a chat's transcript as the window shows it.
pub const MESSAGE_PAGE: i64 = 200;

/// Where the model stands: a UI can show each.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    Loading,
    Ready { info: ModelInfo },
    Failed { error: UiError },
}

#[derive(Serialize, ts_rs::TS)]
pub struct Status {
    pub model: ModelState,
    pub data_dir: String,
    pub database: String,
}

/// Where the local OpenAI-compatible server stands, for Settings.
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
pub struct ServerState {
    pub running: bool,
    /// The base URL clients use (`http://127.0.0.1:PORT/v1`).
    pub url: Option<String>,
    /// Why it is not running although it should (the port is taken, …).
    pub error: Option<String>,
}

/// A reply has started: the user's message as saved, and the id the reply is saved under.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Sent {
    pub user_message: Message,
    pub reply_id: i64,
    /// Earlier messages, gone from the model's window, given back to it for this reply.
    pub recalled: Vec<i64>,
}

/// Whether the reply is on disk. `not_saved` comes the moment a save fails (disk full,
/// database locked); the service keeps the text and tries again at every later save, and
/// `saved` says when it got through. A reply that ends unsaved stays in memory for
/// [`ChatService::retry_save`].
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SaveEvent {
    NotSaved { reply_id: i64, message: String },
    Saved { reply_id: i64 },
}

/// What a reply streams: the engine's events, and whether the reply is saved.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(untagged)]
pub enum ReplyEvent {
    Engine(EngineEvent),
    Save(SaveEvent),
}

/// How a reply differs from the app's settings (the local server passes a client's choices).
#[derive(Debug, Clone, Default)]
pub struct ReplyOptions {
    pub sampling: Option<SamplingParams>,
}

/// A finished reply whose last save failed: everything needed to write it again.
#[derive(Debug, Clone)]
struct Unsaved {
    text: String,
    status: MessageStatus,
    error: Option<String>,
    tokens: Option<i64>,
}

/// The conversation service. Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct ChatService(Arc<Inner>);

struct Inner {
    store: Store,
    data_dir: PathBuf,
    engine: RwLock<Option<Arc<Engine>>>,
    model_state: RwLock<ModelState>,
    /// The reply in flight, by conversation.
    replies: Mutex<HashMap<i64, Cancel>>,
    /// Downloads running now, by key.
    downloads: Mutex<HashMap<String, sinkchat_hub::Control>>,
    /// The model file in use or being loaded.
    active_model: RwLock<PathBuf>,
    /// Finished replies not yet on disk, by message id.
    unsaved: Mutex<HashMap<i64, Unsaved>>,
    /// Pages of history the engine has asked for (it asks only to rebuild a cache).
    history_reads: AtomicU64,
    /// Deletes waiting out their undo window, by chat: the ticket that scheduled each.
    pending_deletes: Mutex<HashMap<i64, u64>>,
    next_ticket: AtomicU64,
    /// The snapshots' disk budget in bytes (Settings), for engines started later.
    snapshot_budget: AtomicU64,
}

impl ChatService {
    /// Opens the store under `data_dir` (`chats.db`); no model is loaded yet (see
    /// [`ChatService::load_model`]). `model`: the file to use, else the one chosen in the app,
    /// else the default model.
    pub async fn open(data_dir: &Path, model: Option<PathBuf>) -> UiResult<Self> {
        let store = Store::open(&data_dir.join("chats.db")).await?;
        let settings = Settings::load(&store).await;
        let path = match model {
            Some(p) => p,
            None if !settings.active_model.is_empty() => {
                sinkchat_hub::models_dir(data_dir).join(&settings.active_model)
            }
            None => sinkchat_hub::active_model_path(data_dir),
        };
        Ok(Self(Arc::new(Inner {
            store,
            data_dir: data_dir.to_path_buf(),
            engine: RwLock::new(None),
            model_state: RwLock::new(ModelState::Loading),
            replies: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            active_model: RwLock::new(path),
            unsaved: Mutex::new(HashMap::new()),
            history_reads: AtomicU64::new(0),
            pending_deletes: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(0),
            snapshot_budget: AtomicU64::new(settings.snapshot_budget_bytes()),
        })))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    pub fn models_dir(&self) -> PathBuf {
        sinkchat_hub::models_dir(&self.0.data_dir)
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.0.data_dir.join("snapshots")
    }

    pub fn active_model_path(&self) -> PathBuf {
        self.0.active_model.read().expect("active lock").clone()
    }

    /// How many pages of history the engine has read so far.
    pub fn history_reads(&self) -> u64 {
        self.0.history_reads.load(Ordering::Relaxed)
    }

    // ----- the model -------------------------------------------------------------------

    /// Loads the active model on its own thread; the state says `Loading` until it is ready
    /// or failed.
    pub fn load_model(&self) {
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
                            Engine::start_with(
                                &path,
                                sinkchat_engine::device::best_device(),
                                sinkchat_engine::EngineOptions {
                                    snapshot_dir: Some(svc.snapshot_dir()),
                                    snapshot_budget: Some(
                                        svc.0.snapshot_budget.load(Ordering::Relaxed),
                                    ),
                                },
                            )
                            .map_err(UiError::from)
                        })
                };
                // Whatever goes wrong inside, the state ends Ready or Failed, never stuck on
                // Loading.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                    .unwrap_or_else(|_| {
                        Err(UiError::new(
                            "model_corrupt",
                            "The model could not be loaded: reading it failed inside the \
                             engine. The file may be damaged or crafted; pick another model.",
                        ))
                    });
                if result.is_ok() {
                    tracing::info!(secs = started.elapsed().as_secs_f32(), "model ready");
                }
                // A newer choice may have replaced this one while it loaded.
                if svc.active_model_path() == path {
                    svc.set_engine(result);
                }
            });
        if let Err(e) = spawned {
            self.set_engine(Err(UiError::new(
                "model_loader",
                format!("The model loader could not start: {e}"),
            )));
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

    pub fn engine(&self) -> UiResult<Arc<Engine>> {
        if let Some(e) = self.0.engine.read().expect("engine lock").as_ref() {
            return Ok(e.clone());
        }
        Err(match &*self.0.model_state.read().expect("state lock") {
            ModelState::Failed { error } => error.clone(),
            _ => UiError::new(
                "model_loading",
                "The model is still loading; try again in a moment.",
            ),
        })
    }

    pub fn model_state(&self) -> ModelState {
        self.0.model_state.read().expect("state lock").clone()
    }

    fn set_engine(&self, result: Result<Engine, UiError>) {
        match result {
            Ok(e) => {
                let mut info = e.info().clone();
                // The name people know it by, not the GGUF's `general.name`.
                if let Some(file) = self.active_model_path().file_name() {
                    info.name = sinkchat_hub::models::display_name(&file.to_string_lossy());
                }
                *self.0.engine.write().expect("engine lock") = Some(Arc::new(e));
                *self.0.model_state.write().expect("state lock") = ModelState::Ready { info };
            }
            Err(error) => {
                tracing::error!(%error, "the model could not be loaded");
                *self.0.model_state.write().expect("state lock") = ModelState::Failed { error };
            }
        }
    }

    /// Stops every reply, parks every chat's memory and lets the engine go; the state turns
    /// to `Loading` with `next` as the model to come.
    fn unload_engine(&self, next: PathBuf) {
        self.stop_all();
        let old = self.0.engine.write().expect("engine lock").take();
        *self.0.model_state.write().expect("state lock") = ModelState::Loading;
        *self.0.active_model.write().expect("active lock") = next;
        if let Some(e) = old {
            e.park_all();
        }
    }

    /// Stops every reply in flight.
    pub fn stop_all(&self) {
        for c in self.0.replies.lock().expect("replies").values() {
            c.cancel();
        }
    }

    /// The app is closing: replies stop, every live cache is parked (so each chat comes back
    /// at once), the database is closed cleanly.
    pub async fn shutdown(&self) {
        self.stop_all();
        // Deletes still in their undo window happen now, before any cache is parked: a chat
        // the user deleted must not outlive the app, nor its memory be written to disk.
        self.flush_deletes().await;
        if let Ok(engine) = self.engine() {
            let e = engine.clone();
            let n = tokio::task::spawn_blocking(move || e.park_all())
                .await
                .unwrap_or(0);
            tracing::info!(conversations = n, "caches parked");
        }
        self.0.store.close().await;
    }

    pub fn status(&self) -> Status {
        Status {
            model: self.model_state(),
            data_dir: self.0.data_dir.display().to_string(),
            database: self.0.store.path().display().to_string(),
        }
    }

    // ----- conversations ---------------------------------------------------------------

    /// One page of chats, newest first, older than `before` (`(updated_at, id)` of the last
    /// one shown).
    pub async fn list_conversations(
        &self,
        before: Option<(i64, i64)>,
    ) -> UiResult<Vec<Conversation>> {
        let mut page = self
            .0
            .store
            .list_conversations(before, CONVERSATION_PAGE)
            .await?;
        let pending = self.0.pending_deletes.lock().expect("pending deletes");
        page.retain(|c| !pending.contains_key(&c.id));
        Ok(page)
    }

    /// Deletes the chat after `after` unless [`ChatService::undo_delete`] comes first; it
    /// leaves the list at once. A pending delete happens at [`ChatService::shutdown`] at the
    /// latest, so quitting within the undo window never keeps a deleted chat.
    pub fn delete_later(&self, conversation_id: i64, after: Duration) {
        let ticket = self.0.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .insert(conversation_id, ticket);
        self.stop(conversation_id);
        let svc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let due = {
                let mut p = svc.0.pending_deletes.lock().expect("pending deletes");
                let due = p.get(&conversation_id) == Some(&ticket);
                if due {
                    p.remove(&conversation_id);
                }
                due
            };
            if due {
                if let Err(e) = svc.delete(conversation_id).await {
                    tracing::warn!(conversation = conversation_id, error = %e, "delete failed");
                }
            }
        });
    }

    /// Takes back a pending delete; false if there was none (too late, or never asked).
    pub fn undo_delete(&self, conversation_id: i64) -> bool {
        self.0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .remove(&conversation_id)
            .is_some()
    }

    /// Carries out every pending delete now.
    pub async fn flush_deletes(&self) {
        let ids: Vec<i64> = self
            .0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            if let Err(e) = self.delete(id).await {
                tracing::warn!(conversation = id, error = %e, "delete failed");
            }
        }
    }

    /// A new chat, with the system prompt of the settings and the model in use.
    pub async fn create_conversation(&self) -> UiResult<Conversation> {
        let settings = Settings::load(&self.0.store).await;
        self.create_conversation_with("New chat", &settings.system_prompt)
            .await
    }

    pub async fn create_conversation_with(
        &self,
        title: &str,
        system_prompt: &str,
    ) -> UiResult<Conversation> {
        let model = match self.model_state() {
            ModelState::Ready { info } => info.name,
            _ => String::new(),
        };
        Ok(self
            .0
            .store
            .create_conversation(title, &model, system_prompt, "{}")
            .await?)
    }

    /// A new chat that already holds `turns` (an API client's earlier messages, oldest first),
    /// titled from its first user message. Returns it and the id of its last message.
    pub async fn create_with_turns(
        &self,
        system_prompt: &str,
        turns: &[(Role, String)],
    ) -> UiResult<(Conversation, Option<i64>)> {
        // Every text is checked before anything is written: a bad one leaves no half chat.
        let mut checked = Vec::with_capacity(turns.len());
        for (role, text) in turns {
            checked.push((*role, MessageText::parse(text)?));
        }
        let first = turns
            .iter()
            .find(|(r, _)| *r == Role::User)
            .map(|(_, t)| title_from(t))
            .unwrap_or_else(|| "New chat".into()); // named by its first message when sent
        let conv = self.create_conversation_with(&first, system_prompt).await?;
        let mut last = None;
        for (role, text) in checked {
            let m = match role {
                Role::Assistant => self.0.store.add_assistant_message(conv.id, &text).await?,
                _ => self.0.store.add_user_message(conv.id, &text).await?,
            };
            last = Some(m.id);
        }
        Ok((conv, last))
    }

    /// The id of the chat's last message, if any.
    pub async fn last_message_id(&self, conversation_id: i64) -> UiResult<Option<i64>> {
        let last = self
            .0
            .store
            .messages_before(conversation_id, None, 1)
            .await?;
        Ok(last.first().map(|m| m.id))
    }

    pub async fn conversation(&self, id: i64) -> UiResult<Conversation> {
        Ok(self.0.store.conversation(id).await?)
    }

    /// The newest page of a chat's messages before message `before` (`None`: the latest),
    /// oldest first, as the window shows them.
    pub async fn messages(
        &self,
        conversation_id: i64,
        before: Option<i64>,
    ) -> UiResult<Vec<Message>> {
        self.0.store.conversation(conversation_id).await?;
        let mut page = self
            .0
            .store
            .messages_before(conversation_id, before, MESSAGE_PAGE)
            .await?;
        page.reverse();
        Ok(page)
    }

    pub async fn rename(&self, conversation_id: i64, title: &str) -> UiResult<()> {
        Ok(self
            .0
            .store
            .rename_conversation(conversation_id, title)
            .await?)
    }

    /// Deletes a chat: its reply stops, its memory and snapshot go, then its transcript.
    pub async fn delete(&self, conversation_id: i64) -> UiResult<()> {
        if let Some(c) = self
            .0
            .replies
            .lock()
            .expect("replies")
            .get(&conversation_id)
        {
            c.cancel();
        }
        if let Ok(e) = self.engine() {
            e.forget(conversation_id);
        }
        // Also when no model is loaded: a snapshot must never outlive its conversation.
        let _ = std::fs::remove_file(self.snapshot_dir().join(format!("{conversation_id}.kv")));
        Ok(self.0.store.delete_conversation(conversation_id).await?)
    }

    pub async fn search(&self, query: &str) -> UiResult<Vec<SearchHit>> {
        Ok(self.0.store.search(query, 50).await?)
    }

    /// The user moved to another chat: its cache goes to disk (a snapshot), so it comes back at
    /// once later without holding memory now.
    pub fn leave(&self, conversation_id: i64) {
        if !self.is_busy(conversation_id) {
            if let Ok(e) = self.engine() {
                e.park(conversation_id);
            }
        }
    }

    /// What the model holds of the chat now, for the gauge (`None`: nothing live).
    pub async fn memory(&self, conversation_id: i64) -> Option<sinkchat_engine::MemoryView> {
        let engine = self.engine().ok()?;
        if let Some(v) = engine.memory(conversation_id) {
            return Some(v);
        }
        // Parked on disk (after a restart, say): its snapshot's header knows where the window
        // begins, so the gauge and the memory line show before the next reply.
        let key = self
            .0
            .store
            .conversation(conversation_id)
            .await
            .ok()?
            .cache_key;
        tokio::task::spawn_blocking(move || engine.parked_memory(conversation_id, &key))
            .await
            .ok()
            .flatten()
    }

    /// Whether a reply is being written in the chat now.
    pub fn is_busy(&self, conversation_id: i64) -> bool {
        self.0
            .replies
            .lock()
            .expect("replies")
            .contains_key(&conversation_id)
    }

    /// Stops the chat's reply; false if none was running.
    pub fn stop(&self, conversation_id: i64) -> bool {
        match self
            .0
            .replies
            .lock()
            .expect("replies")
            .get(&conversation_id)
        {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    pub async fn settings(&self) -> Settings {
        Settings::load(&self.0.store).await
    }

    /// Saves the settings after checking them; new replies use them at once. A cache that
    /// would not fit in the memory free now (for the chats the engine keeps ready) is refused
    /// with the figures.
    pub async fn save_settings(&self, settings: Settings) -> UiResult<Settings> {
        settings.validate()?;
        if let Ok(engine) = self.engine() {
            engine
                .check_cache_memory(&settings.cache, sinkchat_engine::engine::LIVE_CONVERSATIONS)
                .map_err(|m| {
                    let mut m = m;
                    m[..1].make_ascii_uppercase();
                    UiError::new("invalid_settings", m + ".")
                })?;
        }
        settings.save(&self.0.store).await?;
        let budget = settings.snapshot_budget_bytes();
        self.0.snapshot_budget.store(budget, Ordering::Relaxed);
        if let Ok(engine) = self.engine() {
            engine.set_snapshot_budget(Some(budget));
        }
        // A smaller budget takes effect now, not at the next park.
        let dir = self.snapshot_dir();
        tokio::task::spawn_blocking(move || {
            sinkchat_engine::engine::enforce_snapshot_budget(&dir, budget)
        })
        .await
        .ok();
        Ok(settings)
    }

    // ----- pins ------------------------------------------------------------------------

    /// Pins a message (keeps it in the model's memory with the system prompt, however far
    /// the window moves on) or unpins it. The pinned part of a chat may take at most half of
    /// the memory window, as the system prompt may; a pin past that is refused in words. The
    /// chat's memory is rebuilt with the new pinned start at its next reply.
    pub async fn pin_message(
        &self,
        conversation_id: i64,
        message_id: i64,
        pinned: bool,
    ) -> UiResult<Message> {
        let conv = self.0.store.conversation(conversation_id).await?;
        let msg = self.0.store.message(message_id).await?;
        if msg.conversation_id != conversation_id {
            return Err(sinkchat_store::Error::NoSuchMessage(message_id).into());
        }
        if pinned && !msg.pinned {
            if msg.status == MessageStatus::Streaming {
                return Err(UiError::new(
                    "pin_refused",
                    "This reply is still being written; pin it when it is finished.",
                ));
            }
            if msg.content.trim().is_empty() {
                return Err(UiError::new(
                    "pin_refused",
                    "An empty message cannot be pinned.",
                ));
            }
            let mut pins = self.0.store.pinned_messages(conversation_id).await?;
            pins.push(msg.clone());
            pins.sort_by_key(|m| m.id);
            let budget = Settings::load(&self.0.store).await.cache.window / 2;
            if let Ok(engine) = self.engine() {
                let need = engine.opening_tokens(&with_pins(&conv.system_prompt, &pins))?;
                if need > budget {
                    return Err(UiError::new(
                        "pin_budget",
                        format!(
                            "There is no room to pin this message: the pinned start of the chat \
                             would take {need} tokens, and at most {budget} (half of the memory \
                             window set in Settings) can be pinned. Unpin another message, pin a \
                             shorter one, or make the window larger."
                        ),
                    ));
                }
            }
        }
        Ok(self
            .0
            .store
            .set_pinned(conversation_id, message_id, pinned)
            .await?)
    }

    /// What the parked memories of chats take on disk now (shown in Settings).
    pub async fn snapshot_usage(&self) -> sinkchat_engine::engine::SnapshotUsage {
        let dir = self.snapshot_dir();
        tokio::task::spawn_blocking(move || sinkchat_engine::engine::snapshot_usage(&dir))
            .await
            .unwrap_or_default()
    }

    // ----- replies ---------------------------------------------------------------------

    /// Reserves the chat for one reply, before anything else is read or written: a second
    /// send, regenerate or edit to the same chat is refused until the reservation goes (when
    /// the reply has ended and is saved, or at once if it never starts). The check and the
    /// reservation are one step under one lock, so two requests can never both pass.
    fn reserve(&self, conversation_id: i64) -> UiResult<Reservation> {
        let mut replies = self.0.replies.lock().expect("replies");
        if replies.contains_key(&conversation_id) {
            return Err(busy());
        }
        let cancel = Cancel::new();
        replies.insert(conversation_id, cancel.clone());
        Ok(Reservation {
            svc: self.clone(),
            conversation_id,
            cancel,
        })
    }

    /// Saves the user's message and starts the reply; returns once it has started. The reply's
    /// events arrive on `on_event` and it is saved as it streams.
    pub async fn send(
        &self,
        conversation_id: i64,
        text: &str,
        opts: ReplyOptions,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let text = MessageText::parse(text)?;
        let engine = self.engine()?;
        let slot = self.reserve(conversation_id)?;
        let conv = self.0.store.conversation(conversation_id).await?;
        let user = self
            .0
            .store
            .add_user_message(conversation_id, &text)
            .await?;
        if conv.title == "New chat" {
            let _ = self
                .0
                .store
                .rename_conversation(conversation_id, &title_from(text.as_str()))
                .await;
        }
        self.reply_to(slot, &engine, &conv, user, opts, false, on_event)
            .await
    }

    /// What a regenerate and an edit start with: the engine, the chat reserved, and its last
    /// user message, found from the end (whatever the transcript's length, only what follows
    /// it is replaced).
    async fn begin_redo(
        &self,
        conversation_id: i64,
    ) -> UiResult<(Arc<Engine>, Reservation, Conversation, Message)> {
        let engine = self.engine()?;
        let slot = self.reserve(conversation_id)?;
        let conv = self.0.store.conversation(conversation_id).await?;
        let last_user = self
            .0
            .store
            .last_user_message(conversation_id)
            .await?
            .ok_or_else(nothing_to_redo)?;
        Ok((engine, slot, conv, last_user))
    }

    /// Writes the last reply again: the old reply goes, a new one streams.
    pub async fn regenerate(
        &self,
        conversation_id: i64,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let (engine, slot, conv, user) = self.begin_redo(conversation_id).await?;
        self.0
            .store
            .truncate_from(conversation_id, user.id + 1)
            .await?;
        let opts = ReplyOptions::default();
        self.reply_to(slot, &engine, &conv, user, opts, true, on_event)
            .await
    }

    /// Replaces the last user message (and the reply to it) with `text` and answers it.
    pub async fn edit_and_resend(
        &self,
        conversation_id: i64,
        text: &str,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let text = MessageText::parse(text)?;
        let (engine, slot, conv, old) = self.begin_redo(conversation_id).await?;
        self.0.store.truncate_from(conversation_id, old.id).await?;
        let user = self
            .0
            .store
            .add_user_message(conversation_id, &text)
            .await?;
        let opts = ReplyOptions::default();
        self.reply_to(slot, &engine, &conv, user, opts, false, on_event)
            .await
    }

    /// The transcript before message `user`, as the engine reads it: the id of the message
    /// just before, and a reader of the tail, newest first, that the engine calls only when it
    /// has no live cache for the chat.
    async fn history_before(&self, conversation_id: i64, user: i64) -> UiResult<History> {
        let last = self
            .0
            .store
            .messages_before(conversation_id, Some(user), 1)
            .await?;
        let svc = self.clone();
        let rt = tokio::runtime::Handle::current();
        let read = move |before: Option<i64>, limit: usize| {
            svc.0.history_reads.fetch_add(1, Ordering::Relaxed);
            let before = before.unwrap_or(user).min(user);
            rt.block_on(
                svc.0
                    .store
                    .messages_before(conversation_id, Some(before), limit as i64),
            )
            .map(|page| page.iter().map(to_turn).collect())
            .map_err(|e| sinkchat_engine::Error::History(e.to_string()))
        };
        Ok(History::Reader {
            last_message: last.first().map(|m| m.id),
            read: Arc::new(read),
        })
    }

    /// Starts the reply to `user` (already saved), saving it as it streams. A regenerated
    /// reply mixes the new reply's id into the seed: the same seed on the same transcript
    /// would write the same text again, and a user who asks for another answer wants another
    /// one.
    #[allow(clippy::too_many_arguments)]
    async fn reply_to(
        &self,
        slot: Reservation,
        engine: &Engine,
        conv: &Conversation,
        user: Message,
        opts: ReplyOptions,
        fresh_seed: bool,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let conversation_id = conv.id;
        let settings = Settings::load(&self.0.store).await;
        let pins = self.0.store.pinned_messages(conversation_id).await?;
        let history = self.history_before(conversation_id, user.id).await?;
        let recalled = if settings.recall {
            self.recall_for(engine, conv, &user, &settings).await
        } else {
            Vec::new()
        };
        let recalled_ids: Vec<i64> = recalled.iter().map(|m| m.id).collect();
        let lines: Vec<String> = recalled
            .iter()
            .map(|m| recall::line(m.role, &m.content))
            .collect();
        let reply = self.0.store.start_reply(conversation_id).await?;
        if !recalled_ids.is_empty() {
            self.0.store.set_recalled(reply.id, &recalled_ids).await?;
        }
        let sampling = opts.sampling.unwrap_or_else(|| settings.sampling.clone());
        let system_prompt = with_pins(&conv.system_prompt, &pins);
        let user_text = recall::with_recall(&lines, &user.content);
        // The pins follow the (trimmed) system prompt; the recalled lines precede the user's
        // words. The engine shows both apart on the gauge.
        let marks = TextMarks {
            pins_len: if pins.is_empty() {
                0
            } else {
                system_prompt.len() - conv.system_prompt.trim_end().len()
            },
            recalled_len: user_text.len() - user.content.len(),
        };
        let req = GenerateRequest {
            conversation: conversation_id,
            cache_key: conv.cache_key.clone(),
            // Pinned messages join the system prompt in the chat's opening; a pin or an unpin
            // changes the opening, so the engine rebuilds the memory (and a snapshot made with
            // other pins is not restored).
            system_prompt,
            history,
            user_text,
            user_message_id: user.id,
            reply_message_id: reply.id,
            sampling: SamplingParams {
                seed: if fresh_seed {
                    sampling.seed ^ (reply.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                } else {
                    sampling.seed
                },
                ..sampling
            },
            cache: settings.cache,
            // Pins are pinned even when the system prompt alone would scroll.
            pin_system_prompt: settings.pin_system_prompt || !pins.is_empty(),
            marks,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Err(e) = engine.generate_with(req, slot.cancel.clone(), move |ev| {
            let _ = tx.send(ev);
        }) {
            let err = UiError::from(e);
            self.0
                .store
                .finish_reply(
                    reply.id,
                    "",
                    MessageStatus::Failed,
                    Some(&err.message),
                    None,
                )
                .await?;
            return Err(err);
        }
        tokio::spawn(
            self.clone()
                .save_as_it_streams(slot, reply.id, rx, on_event),
        );
        Ok(Sent {
            user_message: user,
            reply_id: reply.id,
            recalled: recalled_ids,
        })
    }

    /// The messages to give back for `user` ([`recall::find`]): finished, unpinned messages of
    /// this chat that have left the model's window and cover the question's words, best
    /// first, within the recall share of the window (Settings; at most three), then in
    /// transcript order. Nothing when the message asks nothing, nothing has left the window or
    /// nothing matches. A chat with no memory yet counts back what its rebuild will hold.
    async fn recall_for(
        &self,
        engine: &Engine,
        conv: &Conversation,
        user: &Message,
        settings: &Settings,
    ) -> Vec<Message> {
        if recall::query(&user.content).is_empty() {
            return Vec::new();
        }
        let first_visible = match self.memory(conv.id).await {
            Some(view) => view.first_visible_message,
            // No memory yet (a chat made with earlier turns, or one whose snapshot is gone):
            // the engine will rebuild it from the newest turns that fit in three quarters of
            // the window; what is older than those is out of view.
            None => self.rebuild_start(engine, conv.id, user.id, settings).await,
        };
        let Some(first_visible) = first_visible else {
            return Vec::new();
        };
        recall::find(
            &self.0.store,
            conv.id,
            first_visible.min(user.id),
            &user.content,
            recall::budget(settings.cache.window, settings.recall_share),
            |line| engine.count_tokens(line).ok(),
        )
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "recall lookup failed; answering without it");
            Vec::new()
        })
    }

    /// The oldest message a rebuild of the chat's memory would hold (the engine keeps the
    /// newest turns that fit in three quarters of the window), counting each message with the
    /// model's tokenizer and a few tokens of template around it.
    async fn rebuild_start(
        &self,
        engine: &Engine,
        conversation_id: i64,
        before: i64,
        settings: &Settings,
    ) -> Option<i64> {
        let budget = settings.cache.window * 3 / 4;
        let page = self
            .0
            .store
            .messages_before(conversation_id, Some(before), 200)
            .await
            .ok()?;
        let mut used = 0;
        let mut first = None;
        for m in &page {
            // newest first
            used += engine.count_tokens(&m.content).ok()? + 6;
            if used > budget {
                break;
            }
            first = Some(m.id);
        }
        first.or(Some(before))
    }

    /// Forwards a reply's events and saves its text every [`SAVE_EVERY`] and at its end. A
    /// failed save is told at once (`not_saved`), tried again at each later save, and at the
    /// end the text is kept for [`ChatService::retry_save`]. The chat stays reserved until the
    /// last save has been tried, so the next reply never races this one's writes.
    async fn save_as_it_streams(
        self,
        slot: Reservation,
        reply_id: i64,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
        mut on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) {
        let store = &self.0.store;
        let mut text = String::new();
        let mut last_save = Instant::now();
        let mut failing = false;
        let mut note = |result: sinkchat_store::Result<()>,
                        on_event: &mut dyn FnMut(ReplyEvent)| match result {
            Ok(()) if failing => {
                failing = false;
                on_event(ReplyEvent::Save(SaveEvent::Saved { reply_id }));
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, reply_id, "saving the reply failed");
                if !failing {
                    failing = true;
                    on_event(ReplyEvent::Save(SaveEvent::NotSaved {
                        reply_id,
                        message: e.to_string(),
                    }));
                }
            }
        };
        // The engine always ends a reply with `done` or `error`; a closed channel without one
        // (the engine went away) ends it as failed.
        let mut end = (
            MessageStatus::Failed,
            Some("the engine stopped".to_string()),
            None,
        );
        while let Some(ev) = rx.recv().await {
            let finished = match &ev {
                EngineEvent::Token { text: t } => {
                    text.push_str(t);
                    if last_save.elapsed() >= SAVE_EVERY {
                        note(store.save_reply_text(reply_id, &text).await, &mut on_event);
                        last_save = Instant::now();
                    }
                    false
                }
                EngineEvent::Done { reason, tokens, .. } => {
                    let status = if *reason == StopReason::Cancelled {
                        MessageStatus::Stopped
                    } else {
                        MessageStatus::Complete
                    };
                    end = (status, None, Some(*tokens as i64));
                    true
                }
                EngineEvent::Error { message, .. } => {
                    end = (MessageStatus::Failed, Some(message.clone()), None);
                    true
                }
                _ => false,
            };
            if finished {
                // Saved before the end is told, so whoever hears `done` finds it on disk.
                let (status, error, tokens) = end.clone();
                let r = store
                    .finish_reply(reply_id, &text, status, error.as_deref(), tokens)
                    .await;
                if r.is_err() {
                    self.0.unsaved.lock().expect("unsaved").insert(
                        reply_id,
                        Unsaved {
                            text: text.clone(),
                            status,
                            error,
                            tokens,
                        },
                    );
                }
                note(r, &mut on_event);
                on_event(ReplyEvent::Engine(ev));
                drop(slot);
                return;
            }
            on_event(ReplyEvent::Engine(ev));
        }
        let (status, error, tokens) = end;
        if let Err(e) = store
            .finish_reply(reply_id, &text, status, error.as_deref(), tokens)
            .await
        {
            tracing::error!(error = %e, reply_id, "saving the ended reply failed");
        }
        drop(slot);
    }

    /// Writes a finished reply whose save failed. Ok(false): nothing was waiting.
    pub async fn retry_save(&self, reply_id: i64) -> UiResult<bool> {
        let Some(u) = self
            .0
            .unsaved
            .lock()
            .expect("unsaved")
            .get(&reply_id)
            .cloned()
        else {
            return Ok(false);
        };
        let r = self
            .0
            .store
            .finish_reply(reply_id, &u.text, u.status, u.error.as_deref(), u.tokens)
            .await;
        // Saved, or its chat was deleted meanwhile: either way nothing is left to keep.
        if matches!(r, Ok(()) | Err(sinkchat_store::Error::NoSuchMessage(_))) {
            self.0.unsaved.lock().expect("unsaved").remove(&reply_id);
        }
        r?;
        Ok(true)
    }
}

/// A chat reserved for one reply; dropping it frees the chat.
struct Reservation {
    svc: ChatService,
    conversation_id: i64,
    cancel: Cancel,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut replies = self.svc.0.replies.lock().expect("replies");
        // Only this reservation's own entry: never one made after it.
        if replies
            .get(&self.conversation_id)
            .is_some_and(|c| c.same_as(&self.cancel))
        {
            replies.remove(&self.conversation_id);
        }
    }
}

fn busy() -> UiError {
    UiError::new(
        "busy",
        "A reply is still being written in this chat; stop it or wait.",
    )
}

/// A new chat's title: its first message's words, at most 48 characters.
fn title_from(text: &str) -> String {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    words.chars().take(48).collect()
}

fn to_turn(m: &Message) -> Turn {
    Turn {
        role: match m.role {
            Role::User => EngineRole::User,
            Role::Assistant => EngineRole::Assistant,
            Role::System => EngineRole::System,
        },
        content: m.content.clone(),
        message_id: m.id,
    }
}

/// The system prompt with the chat's pinned messages after it, marked for the model.
pub fn with_pins(system_prompt: &str, pins: &[Message]) -> String {
    if pins.is_empty() {
        return system_prompt.to_string();
    }
    let mut s = system_prompt.trim_end().to_string();
    if !s.is_empty() {
        s.push_str("\n\n");
    }
    s.push_str(
        "The user pinned these messages from earlier in this conversation; keep them in mind:",
    );
    for m in pins {
        let who = if m.role == Role::User {
            "The user"
        } else {
            "You"
        };
        s.push_str(&format!("\n- {who} said: {}", m.content.trim()));
    }
    s
}

fn nothing_to_redo() -> UiError {
    UiError::new(
        "nothing_to_redo",
        "This chat has no message to answer again.",
    )
}
