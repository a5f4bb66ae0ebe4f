//! The app's state: the store, the engine (loaded in the background), and the replies in
//! flight, each behind the narrowest lock that serves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use sinkchat_engine::engine::{Cancel, ModelInfo};
use sinkchat_engine::Engine;
use sinkchat_store::Store;

use crate::error::UiError;

/// Where the model stands: a UI can show each.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    Loading,
    Ready { info: ModelInfo },
    Failed { error: UiError },
}

pub struct AppState {
    pub store: Store,
    pub data_dir: PathBuf,
    engine: RwLock<Option<Arc<Engine>>>,
    model_state: RwLock<ModelState>,
    /// Replies streaming now, by conversation.
    pub replies: Arc<Mutex<HashMap<i64, Cancel>>>,
    /// Downloads running now, by key.
    pub downloads: Arc<Mutex<HashMap<String, sinkchat_hub::Control>>>,
    /// The model file in use or being loaded.
    active_model: RwLock<PathBuf>,
}

impl AppState {
    pub fn new(store: Store, data_dir: PathBuf, active_model: PathBuf) -> Self {
        Self {
            store,
            data_dir,
            engine: RwLock::new(None),
            model_state: RwLock::new(ModelState::Loading),
            replies: Arc::new(Mutex::new(HashMap::new())),
            downloads: Arc::new(Mutex::new(HashMap::new())),
            active_model: RwLock::new(active_model),
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        sinkchat_hub::models_dir(&self.data_dir)
    }

    pub fn active_model_path(&self) -> PathBuf {
        self.active_model.read().expect("active lock").clone()
    }

    /// Parks every chat's memory and lets the engine go; the state turns to `Loading` with
    /// `next` as the model to come.
    pub fn unload_engine(&self, next: PathBuf) {
        let old = self.engine.write().expect("engine lock").take();
        *self.model_state.write().expect("state lock") = ModelState::Loading;
        *self.active_model.write().expect("active lock") = next;
        if let Some(e) = old {
            e.park_all();
        }
    }

    pub fn engine(&self) -> Result<Arc<Engine>, UiError> {
        if let Some(e) = self.engine.read().expect("engine lock").as_ref() {
            return Ok(e.clone());
        }
        Err(match &*self.model_state.read().expect("state lock") {
            ModelState::Failed { error } => error.clone(),
            _ => UiError::new(
                "model_loading",
                "The model is still loading; try again in a moment.",
            ),
        })
    }

    pub fn model_state(&self) -> ModelState {
        self.model_state.read().expect("state lock").clone()
    }

    pub fn set_engine(&self, result: Result<Engine, UiError>) {
        match result {
            Ok(e) => {
                let info = e.info().clone();
                *self.engine.write().expect("engine lock") = Some(Arc::new(e));
                *self.model_state.write().expect("state lock") = ModelState::Ready { info };
            }
            Err(error) => {
                tracing::error!(%error, "the model could not be loaded");
                *self.model_state.write().expect("state lock") = ModelState::Failed { error };
            }
        }
    }
}
