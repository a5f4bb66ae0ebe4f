//! SinkChat's conversations as one service: what a chat does (send, regenerate, edit, stop,
//! delete, rename, title, how often a streaming reply is saved, what a stop means for the
//! message, switching models) as plain async functions over the store and a [`Backend`]. The
//! window (`src-tauri`) and the browser door and OpenAI door (`sinkchat-server`) are thin
//! doors onto it, each generated from one command table ([`commands`]), and its tests drive it
//! without either.
//!
//! A reply's events arrive on a callback, from a task the service owns: the reply is saved as
//! it streams whether or not anyone still listens, so a closed window or a client that hangs
//! up loses nothing.
//!
//! By concern: [`backend`] (the model slot and the seam to what runs the model),
//! [`conversations`] (the list, opening, renaming, deleting with undo, search, settings),
//! [`replies`] (send, regenerate, edit, save as it streams), [`pins`], [`recall`],
//! [`transfer`] (export and import), [`models`] (catalog, downloads, switching).

pub mod backend;
pub mod commands;
pub mod conversations;
pub mod error;
pub mod events;
pub mod instance;
pub mod logging;
pub mod meaning;
pub mod models;
pub mod pins;
pub mod private;
pub mod recall;
pub mod remote;
pub mod replies;
pub mod settings;
pub mod transfer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use sinkchat_engine::Cancel;
use sinkchat_store::Store;

pub use backend::{Backend, ModelState, Prompt};
pub use error::{ErrorCode, UiError, UiResult};
pub use events::{
    Gauge, MemorySource, MemoryView, ReplyEvent, ReplyKind, ReplyOptions, Sent, StopReason,
};
pub use pins::with_pins;
pub use settings::Settings;

use backend::ModelSlot;
use replies::Unsaved;

/// The persona a new conversation starts with.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful, friendly assistant.";

/// Chats per page of the sidebar.
pub const CONVERSATION_PAGE: i64 = 50;

/// Messages per page of a chat's transcript as the window shows it.
pub const MESSAGE_PAGE: i64 = 200;

/// How long a deleted chat can be brought back.
pub const UNDO_WINDOW: Duration = Duration::from_secs(6);

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
    /// It runs whatever the setting says: SinkChat runs with no window (`sinkchat serve`) and
    /// this very page comes through it.
    pub always_on: bool,
}

/// What a door does when the settings are saved (the window starts, stops or moves its local
/// server to match them); set once by the door that has one.
pub type SettingsHook = Arc<
    dyn Fn(Settings) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The conversation service. Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct ChatService(Arc<Inner>);

struct Inner {
    store: Store,
    data_dir: PathBuf,
    model: RwLock<ModelSlot>,
    /// The reply in flight, by conversation.
    replies: Mutex<HashMap<i64, Cancel>>,
    /// Downloads running now, by key.
    downloads: Mutex<HashMap<String, models::RunningDownload>>,
    /// What each chat's gauge has shown, so its counters never go backwards.
    gauge_counts: Mutex<HashMap<i64, events::SteadyCounts>>,
    /// Finished replies not yet on disk, by message id.
    unsaved: Mutex<HashMap<i64, Unsaved>>,
    /// Deletes waiting out their undo window, by chat: the ticket that scheduled each.
    pending_deletes: Mutex<HashMap<i64, u64>>,
    /// Tickets of delayed deletes, and pages of history the engine asked for (it asks only to
    /// rebuild a memory).
    counters: Counters,
    /// The snapshots' disk budget in bytes (Settings), for backends started later.
    snapshot_budget: AtomicU64,
    /// Where the door's local server stands, and what saving the settings does to it.
    server: RwLock<(ServerState, Option<SettingsHook>)>,
    /// This computer's measured decode speed, for the Models screen's recommendation.
    measured: Mutex<Option<models::Measured>>,
    meaning: Arc<meaning::Meaning>,
}

#[derive(Default)]
struct Counters {
    history_reads: AtomicU64,
    next_ticket: AtomicU64,
}

impl ChatService {
    /// Opens the store under `data_dir` (`chats.db`); no model is loaded yet (see
    /// [`ChatService::load_model`]). `model`: the file to use, else the one chosen in the app,
    /// else the default model.
    pub async fn open(data_dir: &Path, model: Option<PathBuf>) -> UiResult<Self> {
        // Private before the first byte is written (see `private`).
        private::secure_data_dir(data_dir).map_err(|e| {
            UiError::new(
                ErrorCode::Internal,
                format!(
                    "SinkChat could not make its data folder {} private: {e}",
                    data_dir.display()
                ),
            )
        })?;
        let store = Store::open(&data_dir.join("chats.db")).await?;
        let settings = Settings::load(&store).await;
        let model_given = model.is_some();
        let path = match model {
            Some(p) => p,
            None if !settings.active_model.is_empty() => {
                sinkchat_hub::models_dir(data_dir).join(&settings.active_model)
            }
            None => sinkchat_hub::active_model_path(data_dir),
        };
        // A model on a server chosen in the app, unless the caller named a file.
        let server = match model_given {
            false => remote::saved_choice(&store).await,
            true => None,
        };
        let svc = Self(Arc::new(Inner {
            store,
            data_dir: data_dir.to_path_buf(),
            model: RwLock::new(ModelSlot {
                backend: None,
                state: ModelState::Loading,
                path,
                server,
            }),
            replies: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            gauge_counts: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            pending_deletes: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            snapshot_budget: AtomicU64::new(settings.snapshot_budget_bytes()),
            server: RwLock::new((ServerState::default(), None)),
            measured: Mutex::new(None),
            meaning: Arc::new(meaning::Meaning::new(
                sinkchat_hub::models_dir(data_dir).join(sinkchat_engine::embed::FOLDER),
            )),
        }));
        svc.start_meaning();
        Ok(svc)
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

    fn snapshot_budget(&self) -> u64 {
        self.0.snapshot_budget.load(Ordering::Relaxed)
    }

    /// How many pages of history the engine has read so far.
    pub fn history_reads(&self) -> u64 {
        self.0.counters.history_reads.load(Ordering::Relaxed)
    }

    /// The app is closing: replies stop, every live memory is parked (so each chat comes back
    /// at once), the database is closed cleanly.
    pub async fn shutdown(&self) {
        self.stop_all();
        // Deletes still in their undo window happen now, before any memory is parked: a chat
        // the user deleted must not outlive the app, nor its memory be written to disk.
        self.flush_deletes().await;
        if let Ok(backend) = self.backend() {
            let n = tokio::task::spawn_blocking(move || backend.park_all())
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

    /// Where the local OpenAI-compatible server stands (as the door that runs it said).
    pub fn server_state(&self) -> ServerState {
        self.0.server.read().expect("server").0.clone()
    }

    /// The door that runs the local server says where it stands.
    pub fn set_server_state(&self, state: ServerState) {
        self.0.server.write().expect("server").0 = state;
    }

    /// What saving the settings does to the door's local server (the window's switch).
    pub fn on_settings_saved(&self, hook: SettingsHook) {
        self.0.server.write().expect("server").1 = Some(hook);
    }
}
