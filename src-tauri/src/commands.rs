//! Tauri commands: thin adapters from the UI to the store and the engine. Generic over the
//! runtime so `tauri::test` can drive them without a window.

use std::time::{Duration, Instant};

use sinkchat_engine::{
    EngineEvent, GenerateRequest, Role as EngineRole, SamplingParams, StopReason, Turn,
};
use sinkchat_store::{Conversation, Message, MessageStatus, MessageText, Role, SearchHit};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{UiError, UiResult};
use crate::settings::Settings;
use crate::state::{AppState, ModelState};

/// The persona a new conversation starts with.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful, friendly assistant.";

/// How often a streaming reply is written to disk.
const SAVE_EVERY: Duration = Duration::from_millis(200);

#[derive(serde::Serialize, ts_rs::TS)]
pub struct Status {
    pub model: ModelState,
    pub data_dir: String,
    pub database: String,
}

#[tauri::command]
pub async fn app_status(state: State<'_, AppState>) -> UiResult<Status> {
    Ok(Status {
        model: state.model_state(),
        data_dir: state.data_dir.display().to_string(),
        database: state.store.path().display().to_string(),
    })
}

#[tauri::command]
pub async fn list_conversations(
    state: State<'_, AppState>,
    before_updated: Option<i64>,
    before_id: Option<i64>,
) -> UiResult<Vec<Conversation>> {
    let before = before_updated.zip(before_id);
    Ok(state.store.list_conversations(before, 50).await?)
}

#[tauri::command]
pub async fn create_conversation(state: State<'_, AppState>) -> UiResult<Conversation> {
    let model = match state.model_state() {
        ModelState::Ready { info } => info.name,
        _ => String::new(),
    };
    let settings = Settings::load(&state.store).await;
    Ok(state
        .store
        .create_conversation("New chat", &model, &settings.system_prompt, "{}")
        .await?)
}

#[tauri::command]
pub async fn get_messages(
    state: State<'_, AppState>,
    conversation_id: i64,
) -> UiResult<Vec<Message>> {
    state.store.conversation(conversation_id).await?;
    Ok(state.store.messages(conversation_id, 0, 100_000).await?)
}

#[tauri::command]
pub async fn rename_conversation(
    state: State<'_, AppState>,
    conversation_id: i64,
    title: String,
) -> UiResult<()> {
    Ok(state
        .store
        .rename_conversation(conversation_id, &title)
        .await?)
}

#[tauri::command]
pub async fn delete_conversation(state: State<'_, AppState>, conversation_id: i64) -> UiResult<()> {
    if let Some(c) = state
        .replies
        .lock()
        .expect("replies")
        .remove(&conversation_id)
    {
        c.cancel();
    }
    if let Ok(e) = state.engine() {
        e.forget(conversation_id);
    }
    // Also when no model is loaded: a snapshot must never outlive its conversation.
    let _ = std::fs::remove_file(
        state
            .data_dir
            .join("snapshots")
            .join(format!("{conversation_id}.kv")),
    );
    Ok(state.store.delete_conversation(conversation_id).await?)
}

#[tauri::command]
pub async fn search(state: State<'_, AppState>, query: String) -> UiResult<Vec<SearchHit>> {
    Ok(state.store.search(&query, 50).await?)
}

#[derive(serde::Serialize, ts_rs::TS)]
pub struct Sent {
    pub user_message: Message,
    pub reply_id: i64,
}

fn ensure_idle(state: &AppState, conversation_id: i64) -> UiResult<()> {
    if state
        .replies
        .lock()
        .expect("replies")
        .contains_key(&conversation_id)
    {
        return Err(UiError::new(
            "busy",
            "A reply is still being written in this chat; stop it or wait.",
        ));
    }
    Ok(())
}

/// What every reply command starts with: the engine, a chat with no reply in flight, and its
/// transcript.
async fn begin(
    state: &AppState,
    conversation_id: i64,
) -> UiResult<(
    std::sync::Arc<sinkchat_engine::Engine>,
    Conversation,
    Vec<Message>,
)> {
    let engine = state.engine()?;
    ensure_idle(state, conversation_id)?;
    let conv = state.store.conversation(conversation_id).await?;
    let msgs = state.store.messages(conversation_id, 0, 100_000).await?;
    Ok((engine, conv, msgs))
}

/// Saves the user's message, starts the reply and streams it over `on_event`. Returns once
/// the reply has started; the text arrives on the channel and is saved as it streams.
#[tauri::command]
pub async fn send_message(
    state: State<'_, AppState>,
    conversation_id: i64,
    text: String,
    on_event: Channel<EngineEvent>,
) -> UiResult<Sent> {
    let text = MessageText::parse(&text)?;
    let (engine, conv, earlier) = begin(&state, conversation_id).await?;
    let user = state.store.add_user_message(conversation_id, &text).await?;
    if conv.title == "New chat" {
        let title: String = text
            .as_str()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let title: String = title.chars().take(48).collect();
        let _ = state
            .store
            .rename_conversation(conversation_id, &title)
            .await;
    }
    let reply_id = reply_to(&state, &engine, &conv, &earlier, &user, on_event, false).await?;
    Ok(Sent {
        user_message: user,
        reply_id,
    })
}

/// The transcript up to (not including) the last user message, and that message.
fn split_last_user(msgs: &[Message]) -> UiResult<(Vec<Message>, Message)> {
    let i = msgs
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or_else(|| {
            UiError::new(
                "nothing_to_redo",
                "This chat has no message to answer again.",
            )
        })?;
    Ok((msgs[..i].to_vec(), msgs[i].clone()))
}

/// Writes the last reply again: the old reply goes, a new one streams over `on_event`.
#[tauri::command]
pub async fn regenerate_reply(
    state: State<'_, AppState>,
    conversation_id: i64,
    on_event: Channel<EngineEvent>,
) -> UiResult<Sent> {
    let (engine, conv, msgs) = begin(&state, conversation_id).await?;
    let (earlier, user) = split_last_user(&msgs)?;
    if let Some(next) = msgs.iter().find(|m| m.id > user.id) {
        state.store.truncate_from(conversation_id, next.id).await?;
    }
    let reply_id = reply_to(&state, &engine, &conv, &earlier, &user, on_event, true).await?;
    Ok(Sent {
        user_message: user,
        reply_id,
    })
}

/// Replaces the last user message (and the reply to it) with `text` and answers it.
#[tauri::command]
pub async fn edit_and_resend(
    state: State<'_, AppState>,
    conversation_id: i64,
    text: String,
    on_event: Channel<EngineEvent>,
) -> UiResult<Sent> {
    let text = MessageText::parse(&text)?;
    let (engine, conv, msgs) = begin(&state, conversation_id).await?;
    let (earlier, old) = split_last_user(&msgs)?;
    state.store.truncate_from(conversation_id, old.id).await?;
    let user = state.store.add_user_message(conversation_id, &text).await?;
    let reply_id = reply_to(&state, &engine, &conv, &earlier, &user, on_event, false).await?;
    Ok(Sent {
        user_message: user,
        reply_id,
    })
}

#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> UiResult<Settings> {
    Ok(Settings::load(&state.store).await)
}

/// Saves the settings after checking them; new replies use them at once.
#[tauri::command]
pub async fn save_settings(state: State<'_, AppState>, settings: Settings) -> UiResult<Settings> {
    settings.save(&state.store).await?;
    Ok(settings)
}

/// Starts the reply to `user` (already saved) after the transcript `earlier`, saving it as it
/// streams and forwarding every engine event to `on_event`. A regenerated reply mixes the new
/// reply's id into the seed: the same seed on the same transcript would write the same text
/// again, and a user who asks for another answer wants another one.
#[allow(clippy::too_many_arguments)]
async fn reply_to(
    state: &AppState,
    engine: &sinkchat_engine::Engine,
    conv: &Conversation,
    earlier: &[Message],
    user: &Message,
    on_event: Channel<EngineEvent>,
    fresh_seed: bool,
) -> UiResult<i64> {
    let conversation_id = conv.id;
    let settings = Settings::load(&state.store).await;
    let reply = state.store.start_reply(conversation_id).await?;
    let history = earlier
        .iter()
        .filter(|m| !m.content.is_empty())
        .map(|m| Turn {
            role: match m.role {
                Role::User => EngineRole::User,
                Role::Assistant => EngineRole::Assistant,
                Role::System => EngineRole::System,
            },
            content: m.content.clone(),
            message_id: m.id,
        })
        .collect();
    let req = GenerateRequest {
        conversation: conversation_id,
        system_prompt: conv.system_prompt.clone(),
        history,
        user_text: user.content.clone(),
        user_message_id: user.id,
        reply_message_id: reply.id,
        sampling: SamplingParams {
            seed: if fresh_seed {
                settings.sampling.seed ^ (reply.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            } else {
                settings.sampling.seed
            },
            ..settings.sampling.clone()
        },
        cache: settings.cache,
        pin_system_prompt: settings.pin_system_prompt,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = match engine.generate(req, move |ev| {
        let _ = tx.send(ev);
    }) {
        Ok(c) => c,
        Err(e) => {
            let err = UiError::from(e);
            state
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
    };
    state
        .replies
        .lock()
        .expect("replies")
        .insert(conversation_id, cancel);

    let store = state.store.clone();
    let reply_id = reply.id;
    let replies = state.replies.clone();
    tauri::async_runtime::spawn(async move {
        let mut text = String::new();
        let mut last_save = Instant::now();
        while let Some(ev) = rx.recv().await {
            let finished = match &ev {
                EngineEvent::Token { text: t } => {
                    text.push_str(t);
                    if last_save.elapsed() >= SAVE_EVERY {
                        if let Err(e) = store.save_reply_text(reply_id, &text).await {
                            tracing::error!(error = %e, "saving the streaming reply failed");
                        }
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
                    if let Err(e) = store
                        .finish_reply(reply_id, &text, status, None, Some(*tokens as i64))
                        .await
                    {
                        tracing::error!(error = %e, "saving the finished reply failed");
                    }
                    true
                }
                EngineEvent::Error { message, .. } => {
                    if let Err(e) = store
                        .finish_reply(reply_id, &text, MessageStatus::Failed, Some(message), None)
                        .await
                    {
                        tracing::error!(error = %e, "saving the failed reply failed");
                    }
                    true
                }
                _ => false,
            };
            let _ = on_event.send(ev);
            if finished {
                break;
            }
        }
        replies.lock().expect("replies").remove(&conversation_id);
    });
    Ok(reply_id)
}

/// The user moved to another conversation: its cache goes to disk (a snapshot), so it comes
/// back at once later without holding memory now.
#[tauri::command]
pub async fn leave_conversation(state: State<'_, AppState>, conversation_id: i64) -> UiResult<()> {
    let busy = state
        .replies
        .lock()
        .expect("replies")
        .contains_key(&conversation_id);
    if !busy {
        if let Ok(e) = state.engine() {
            e.park(conversation_id);
        }
    }
    Ok(())
}

/// Writes conversations (`None`: all) to a file in the data folder's `exports` and returns its
/// path. `format`: `json` (complete, can be imported back) or `markdown`.
#[tauri::command]
pub async fn export_conversations(
    state: State<'_, AppState>,
    conversation_ids: Option<Vec<i64>>,
    format: String,
) -> UiResult<String> {
    let ids = conversation_ids.as_deref();
    let (body, ext) = match format.as_str() {
        "json" => (
            serde_json::to_string_pretty(&state.store.export(ids).await?)
                .map_err(|e| UiError::new("export_failed", e.to_string()))?,
            "json",
        ),
        "markdown" => (state.store.export_markdown(ids).await?, "md"),
        other => {
            return Err(UiError::new(
                "bad_format",
                format!("Export as {other:?} is not offered; choose JSON or Markdown."),
            ))
        }
    };
    let dir = state.data_dir.join("exports");
    let stamp = chrono_like_stamp();
    let path = dir.join(format!("sinkchat-{stamp}.{ext}"));
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, body))
        .map_err(|e| {
            UiError::new(
                "export_failed",
                format!("The export could not be written to {}: {e}", path.display()),
            )
        })?;
    Ok(path.display().to_string())
}

/// `YYYYMMDD-HHMMSS` in UTC, for export file names.
fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = sinkchat_engine::chat::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Adds the conversations of an export file's text (read by the UI from a file the user picked).
#[tauri::command]
pub async fn import_conversations(
    state: State<'_, AppState>,
    text: String,
) -> UiResult<sinkchat_store::ImportSummary> {
    Ok(state.store.import(&text).await?)
}

#[tauri::command]
pub async fn stop_reply(state: State<'_, AppState>, conversation_id: i64) -> UiResult<bool> {
    let c = state
        .replies
        .lock()
        .expect("replies")
        .get(&conversation_id)
        .cloned();
    Ok(match c {
        Some(c) => {
            c.cancel();
            true
        }
        None => false,
    })
}
