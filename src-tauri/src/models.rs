//! Commands of the Models screen: the catalog, installed models, downloads (progress over a
//! channel; pause, resume, cancel), import, delete, and switching the active model.

use serde::Serialize;
use sinkchat_hub::download::{self, Unfinished};
use sinkchat_hub::{models, CatalogEntry, Control, InstalledModel, ModelRef, Outcome, Progress};
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};

use crate::error::{UiError, UiResult};
use crate::settings::Settings;
use crate::state::AppState;

/// Runs file work (hashing, header reads, copies) off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> UiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UiError::new("io", e.to_string()))
}

#[derive(Serialize, ts_rs::TS)]
pub struct ModelsOverview {
    pub catalog: Vec<CatalogEntry>,
    pub installed: Vec<InstalledModel>,
    pub unfinished: Vec<Unfinished>,
    /// Keys of downloads running now.
    pub running: Vec<String>,
    /// File name of the model in use (or being loaded).
    pub active: String,
    pub models_dir: String,
    pub free_bytes: Option<u64>,
}

#[tauri::command]
pub async fn models_overview(state: State<'_, AppState>) -> UiResult<ModelsOverview> {
    let dir = state.models_dir();
    let d2 = dir.clone();
    let (installed, unfinished) =
        blocking(move || (models::installed(&d2), download::unfinished(&d2))).await?;
    let active = state
        .active_model_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ModelsOverview {
        catalog: sinkchat_hub::CATALOG.to_vec(),
        installed,
        unfinished,
        running: state
            .downloads
            .lock()
            .expect("downloads")
            .keys()
            .cloned()
            .collect(),
        active,
        models_dir: dir.display().to_string(),
        free_bytes: download::free_space(&dir),
    })
}

/// What a download's channel carries.
#[derive(Clone, Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DownloadEvent {
    Progress { progress: Progress },
    Finished { outcome: Outcome },
    Failed { error: UiError },
}

/// Starts (or resumes) downloading `file` from the hub repository `repo`. Returns the
/// download's key at once; progress and the end arrive on `on_event`.
#[tauri::command]
pub async fn start_download(
    state: State<'_, AppState>,
    repo: String,
    file: String,
    on_event: Channel<DownloadEvent>,
) -> UiResult<String> {
    let r = ModelRef::parse(&repo, &file)?;
    let key = r.key();
    let ctl = Control::default();
    {
        let mut running = state.downloads.lock().expect("downloads");
        if running.contains_key(&key) {
            return Err(UiError::new("busy", "This model is already downloading."));
        }
        running.insert(key.clone(), ctl.clone());
    }
    let api = download::api(None)?;
    let dir = state.models_dir();
    let running = state.downloads.clone();
    let k2 = key.clone();
    tauri::async_runtime::spawn(async move {
        let ch = on_event.clone();
        let mut on_progress = move |p: Progress| {
            let _ = ch.send(DownloadEvent::Progress { progress: p });
        };
        let result = download::download(
            &api,
            &dir,
            &r,
            &ctl,
            &download::Options::default(),
            &mut on_progress,
        )
        .await;
        running.lock().expect("downloads").remove(&k2);
        let _ = on_event.send(match result {
            Ok(outcome) => DownloadEvent::Finished { outcome },
            Err(e) => DownloadEvent::Failed { error: e.into() },
        });
    });
    Ok(key)
}

/// Pauses a running download (its bytes stay for a resume).
#[tauri::command]
pub async fn pause_download(state: State<'_, AppState>, key: String) -> UiResult<bool> {
    Ok(match state.downloads.lock().expect("downloads").get(&key) {
        Some(c) => {
            c.pause();
            true
        }
        None => false,
    })
}

/// Cancels a download, running or paused: nothing of it stays on disk.
#[tauri::command]
pub async fn cancel_download(state: State<'_, AppState>, key: String) -> UiResult<()> {
    if let Some(c) = state.downloads.lock().expect("downloads").get(&key) {
        c.cancel();
        return Ok(());
    }
    if key.contains(['/', '\\']) || key.starts_with('.') {
        return Err(UiError::new(
            "bad_reference",
            "That is not a download of this app.",
        ));
    }
    download::discard(&state.models_dir(), &key);
    Ok(())
}

/// Reads a GGUF file's header and says whether the engine can run it.
#[tauri::command]
pub async fn inspect_model_file(path: String) -> UiResult<sinkchat_engine::ModelSummary> {
    Ok(blocking(move || models::inspect(std::path::Path::new(&path))).await??)
}

/// Copies a GGUF file the engine can run into the models folder.
#[tauri::command]
pub async fn import_model(state: State<'_, AppState>, path: String) -> UiResult<InstalledModel> {
    let dir = state.models_dir();
    Ok(blocking(move || models::import(&dir, std::path::Path::new(&path))).await??)
}

/// Deletes an installed model (not the one in use); returns the bytes freed.
#[tauri::command]
pub async fn delete_model(state: State<'_, AppState>, file: String) -> UiResult<u64> {
    let active = state.active_model_path();
    if active.file_name().and_then(|n| n.to_str()) == Some(file.as_str()) {
        return Err(UiError::new(
            "model_in_use",
            "This model is in use. Switch to another model first, then delete it.",
        ));
    }
    Ok(models::delete(&state.models_dir(), &file)?)
}

/// Makes an installed model the active one: replies in flight stop, every chat's memory is
/// parked on disk, and the new model loads in the background (the status says when it's ready).
#[tauri::command]
pub async fn use_model<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    file: String,
) -> UiResult<()> {
    models::check_file_name(&file)?;
    let path = state.models_dir().join(&file);
    let d2 = path.clone();
    blocking(move || models::inspect(&d2)).await??;
    let mut settings = Settings::load(&state.store).await;
    settings.active_model = file;
    settings.save(&state.store).await?;
    for c in state.replies.lock().expect("replies").values() {
        c.cancel();
    }
    state.unload_engine(path.clone());
    crate::load_model(app.clone(), path);
    Ok(())
}
