//! Tauri commands: each a thin adapter from the window to the conversation service
//! (`sinkchat-chat`), where every rule of a chat lives and is tested. Generic over nothing but
//! the managed service, so `tauri::test` can drive them without a window.

use sinkchat_chat::{
    ChatService, ReplyEvent, ReplyOptions, Sent, ServerState, Settings, Status, UiResult,
};
use sinkchat_store::{Conversation, Message, SearchHit};
use tauri::ipc::Channel;
use tauri::State;

use crate::api_server::ApiServer;

type Svc<'a> = State<'a, ChatService>;

/// How long a deleted chat can be brought back.
const UNDO_WINDOW: std::time::Duration = std::time::Duration::from_secs(6);

/// A channel as the service's event callback.
fn forward(ch: Channel<ReplyEvent>) -> impl FnMut(ReplyEvent) + Send + 'static {
    move |e| {
        let _ = ch.send(e);
    }
}

#[tauri::command]
pub async fn app_status(svc: Svc<'_>) -> UiResult<Status> {
    Ok(svc.status())
}

#[tauri::command]
pub async fn list_conversations(
    svc: Svc<'_>,
    before_updated: Option<i64>,
    before_id: Option<i64>,
) -> UiResult<Vec<Conversation>> {
    svc.list_conversations(before_updated.zip(before_id)).await
}

#[tauri::command]
pub async fn create_conversation(svc: Svc<'_>) -> UiResult<Conversation> {
    svc.create_conversation().await
}

/// The newest page of a chat's messages before `before_id` (none: the latest), oldest first.
#[tauri::command]
pub async fn get_messages(
    svc: Svc<'_>,
    conversation_id: i64,
    before_id: Option<i64>,
) -> UiResult<Vec<Message>> {
    svc.messages(conversation_id, before_id).await
}

#[tauri::command]
pub async fn rename_conversation(
    svc: Svc<'_>,
    conversation_id: i64,
    title: String,
) -> UiResult<()> {
    svc.rename(conversation_id, &title).await
}

/// Keeps a message in the model's memory with the system prompt (or lets it go again).
#[tauri::command]
pub async fn pin_message(
    svc: Svc<'_>,
    conversation_id: i64,
    message_id: i64,
    pinned: bool,
) -> UiResult<Message> {
    svc.pin_message(conversation_id, message_id, pinned).await
}

#[tauri::command]
pub async fn delete_conversation(svc: Svc<'_>, conversation_id: i64) -> UiResult<()> {
    svc.delete(conversation_id).await
}

/// Deletes a chat after the undo window (6 s), or at exit, whichever comes first.
#[tauri::command]
pub async fn delete_conversation_later(svc: Svc<'_>, conversation_id: i64) -> UiResult<()> {
    svc.delete_later(conversation_id, UNDO_WINDOW);
    Ok(())
}

/// Takes back a pending delete; false when it was too late.
#[tauri::command]
pub async fn undo_delete(svc: Svc<'_>, conversation_id: i64) -> UiResult<bool> {
    Ok(svc.undo_delete(conversation_id))
}

#[tauri::command]
pub async fn search(svc: Svc<'_>, query: String) -> UiResult<Vec<SearchHit>> {
    svc.search(&query).await
}

#[tauri::command]
pub async fn send_message(
    svc: Svc<'_>,
    conversation_id: i64,
    text: String,
    on_event: Channel<ReplyEvent>,
) -> UiResult<Sent> {
    svc.send(
        conversation_id,
        &text,
        ReplyOptions::default(),
        forward(on_event),
    )
    .await
}

#[tauri::command]
pub async fn regenerate_reply(
    svc: Svc<'_>,
    conversation_id: i64,
    on_event: Channel<ReplyEvent>,
) -> UiResult<Sent> {
    svc.regenerate(conversation_id, forward(on_event)).await
}

#[tauri::command]
pub async fn edit_and_resend(
    svc: Svc<'_>,
    conversation_id: i64,
    text: String,
    on_event: Channel<ReplyEvent>,
) -> UiResult<Sent> {
    svc.edit_and_resend(conversation_id, &text, forward(on_event))
        .await
}

/// Writes a reply whose save failed again; false if nothing was waiting.
#[tauri::command]
pub async fn retry_save(svc: Svc<'_>, reply_id: i64) -> UiResult<bool> {
    svc.retry_save(reply_id).await
}

/// What the model holds of a chat now (the gauge when a chat is opened); null: nothing live.
#[tauri::command]
pub async fn conversation_memory(
    svc: Svc<'_>,
    conversation_id: i64,
) -> UiResult<Option<sinkchat_engine::MemoryView>> {
    Ok(svc.memory(conversation_id).await)
}

#[tauri::command]
pub async fn stop_reply(svc: Svc<'_>, conversation_id: i64) -> UiResult<bool> {
    Ok(svc.stop(conversation_id))
}

#[tauri::command]
pub async fn leave_conversation(svc: Svc<'_>, conversation_id: i64) -> UiResult<()> {
    svc.leave(conversation_id);
    Ok(())
}

#[tauri::command]
pub async fn get_settings(svc: Svc<'_>) -> UiResult<Settings> {
    Ok(svc.settings().await)
}

/// Saves the settings; the local server starts, stops or moves to match them.
#[tauri::command]
pub async fn save_settings(
    svc: Svc<'_>,
    server: State<'_, ApiServer>,
    settings: Settings,
) -> UiResult<Settings> {
    let saved = svc.save_settings(settings).await?;
    server.apply(&svc, &saved).await;
    Ok(saved)
}

#[tauri::command]
pub async fn api_server_state(server: State<'_, ApiServer>) -> UiResult<ServerState> {
    Ok(server.state().await)
}

#[tauri::command]
pub async fn export_conversations(
    svc: Svc<'_>,
    conversation_ids: Option<Vec<i64>>,
    format: String,
) -> UiResult<String> {
    svc.export_conversations(conversation_ids.as_deref(), &format)
        .await
}

#[tauri::command]
pub async fn import_conversations(
    svc: Svc<'_>,
    text: String,
) -> UiResult<sinkchat_store::ImportSummary> {
    svc.import_conversations(&text).await
}

/// Imports an export file the backend reads itself (the path comes from the system's file
/// picker), so a large file never crosses the IPC as one string.
#[tauri::command]
pub async fn import_conversations_file(
    svc: Svc<'_>,
    path: String,
) -> UiResult<sinkchat_store::ImportSummary> {
    svc.import_conversations_file(&path).await
}

#[tauri::command]
pub async fn delete_exports(svc: Svc<'_>) -> UiResult<usize> {
    svc.delete_exports().await
}

/// What the parked memories of chats take on disk (Settings shows it beside the budget).
#[tauri::command]
pub async fn snapshot_usage(svc: Svc<'_>) -> UiResult<sinkchat_engine::engine::SnapshotUsage> {
    Ok(svc.snapshot_usage().await)
}

/// A plain-text report for a bug report (Settings, *Copy diagnostics*): never chat text.
#[tauri::command]
pub async fn diagnostics(svc: Svc<'_>) -> UiResult<String> {
    Ok(svc.diagnostics().await)
}
