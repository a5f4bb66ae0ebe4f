//! Commands of the Models screen, each a thin adapter over the conversation service.

use sinkchat_chat::models::{DownloadEvent, ModelsOverview};
use sinkchat_chat::{ChatService, UiResult};
use sinkchat_hub::InstalledModel;
use tauri::ipc::Channel;
use tauri::State;

type Svc<'a> = State<'a, ChatService>;

#[tauri::command]
pub async fn models_overview(svc: Svc<'_>) -> UiResult<ModelsOverview> {
    svc.models_overview().await
}

/// Starts (or resumes) a download; returns its key at once, progress arrives on `on_event`.
#[tauri::command]
pub async fn start_download(
    svc: Svc<'_>,
    repo: String,
    file: String,
    on_event: Channel<DownloadEvent>,
) -> UiResult<String> {
    svc.start_download(&repo, &file, move |e| {
        let _ = on_event.send(e);
    })
    .await
}

#[tauri::command]
pub async fn pause_download(svc: Svc<'_>, key: String) -> UiResult<bool> {
    Ok(svc.pause_download(&key))
}

#[tauri::command]
pub async fn cancel_download(svc: Svc<'_>, key: String) -> UiResult<()> {
    svc.cancel_download(&key)
}

#[tauri::command]
pub async fn inspect_model_file(
    svc: Svc<'_>,
    path: String,
) -> UiResult<sinkchat_engine::ModelSummary> {
    svc.inspect_model_file(&path).await
}

#[tauri::command]
pub async fn import_model(svc: Svc<'_>, path: String) -> UiResult<InstalledModel> {
    svc.import_model(&path).await
}

#[tauri::command]
pub async fn delete_model(svc: Svc<'_>, file: String) -> UiResult<u64> {
    svc.delete_model(&file)
}

#[tauri::command]
pub async fn use_model(svc: Svc<'_>, file: String) -> UiResult<()> {
    svc.use_model(&file).await
}
