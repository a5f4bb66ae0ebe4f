//! The web UI for a browser (`sinkchat serve`): the built files of `ui/`, and
//! `POST /api/{command}` with the window's commands and argument names. A command that
//! streams (a reply, a download) answers with server-sent events: first `result` (what the
//! window's `invoke` returns) or `failure`, then one `message` per event, until the end.
//!
//! Only this machine can reach it (127.0.0.1), and a web page elsewhere cannot drive it: a
//! command needs `Content-Type: application/json` (which a page may only send to another
//! origin after a CORS preflight this server never grants), a loopback `Host` (no DNS
//! rebinding), and, when the browser names one, a loopback `Origin`.

use std::convert::Infallible;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sinkchat_chat::models::DownloadEvent;
use sinkchat_chat::{ChatService, ReplyEvent, ReplyOptions, UiError, UiResult};
use sinkchat_engine::EngineEvent;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tower_http::services::ServeDir;

/// What the page may do, as in the window (`tauri.conf.json`): its own scripts and styles,
/// its own server, nothing embedded, no forms elsewhere, never framed by another page.
pub const CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn routes(svc: ChatService, ui_dir: PathBuf) -> Router {
    Router::new()
        .route("/api/{command}", post(command))
        .with_state(svc)
        .fallback_service(ServeDir::new(ui_dir))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r
}

fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(UiError::new(code, message))).into_response()
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// Refuses a request a web page elsewhere could have made.
fn same_machine(headers: &HeaderMap) -> Result<(), Response> {
    let get = |h| headers.get(h).and_then(|v| v.to_str().ok());
    if !get(header::HOST).is_some_and(is_loopback) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only this computer may use SinkChat's page.",
        ));
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = origin.strip_prefix("http://").unwrap_or("");
        if !is_loopback(host) {
            return Err(fail(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Other web pages may not use SinkChat.",
            ));
        }
    }
    if !get(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json")) {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "Commands are sent as JSON.",
        ));
    }
    Ok(())
}

/// One argument of a command, by the name the window's `invoke` uses.
fn arg<T: DeserializeOwned>(args: &Value, name: &str) -> UiResult<T> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(Value::Null)).map_err(|e| {
        UiError::new(
            "bad_request",
            format!("The argument '{name}' is missing or wrong: {e}"),
        )
    })
}

fn answer<T: Serialize>(r: UiResult<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = match e.code.as_str() {
                "not_found" => StatusCode::NOT_FOUND,
                "busy" => StatusCode::CONFLICT,
                "bad_request" => StatusCode::BAD_REQUEST,
                c if c.starts_with("store_") || c == "io" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, Json(e)).into_response()
        }
    }
}

fn json_event<T: Serialize>(name: &str, v: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).expect("plain data"))
}

/// A streaming command's answer: `result` (or `failure`), then its events until `last` says
/// one is the end.
fn events<T: Serialize + Send + 'static, R: Serialize>(
    started: UiResult<R>,
    rx: UnboundedReceiver<T>,
    last: fn(&T) -> bool,
) -> Response {
    let head = match &started {
        Ok(r) => json_event("result", r),
        Err(e) => json_event("failure", e),
    };
    let failed = started.is_err();
    let rest = futures_util::stream::unfold((rx, failed), move |(mut rx, done)| async move {
        if done {
            return None;
        }
        let ev = rx.recv().await?;
        let end = last(&ev);
        Some((Ok::<_, Infallible>(json_event("message", &ev)), (rx, end)))
    });
    let all = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, Infallible>(head) }),
        rest,
    );
    Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn reply_ends(e: &ReplyEvent) -> bool {
    matches!(
        e,
        ReplyEvent::Engine(EngineEvent::Done { .. } | EngineEvent::Error { .. })
    )
}

fn download_ends(e: &DownloadEvent) -> bool {
    !matches!(e, DownloadEvent::Progress { .. })
}

async fn command(
    State(svc): State<ChatService>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = same_machine(&headers) {
        return r;
    }
    let args: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("The body is not JSON: {e}"),
                )
            }
        }
    };
    // The page is served by the API's own server: it runs, at the address the page came from.
    if command == "api_server_state" {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return answer(Ok(sinkchat_chat::ServerState {
            running: true,
            url: Some(format!("http://{host}/v1")),
            error: None,
        }));
    }
    match dispatch(&svc, &command, &args).await {
        Ok(r) => r,
        Err(e) => answer::<()>(Err(e)),
    }
}

/// The window's commands (`src-tauri/src/commands.rs`, `models.rs`), by the same names.
async fn dispatch(svc: &ChatService, command: &str, a: &Value) -> UiResult<Response> {
    let conv = || arg::<i64>(a, "conversationId");
    Ok(match command {
        "app_status" => answer(Ok(svc.status())),
        "list_conversations" => {
            let before =
                arg::<Option<i64>>(a, "beforeUpdated")?.zip(arg::<Option<i64>>(a, "beforeId")?);
            answer(svc.list_conversations(before).await)
        }
        "create_conversation" => answer(svc.create_conversation().await),
        "get_messages" => answer(svc.messages(conv()?, arg(a, "beforeId")?).await),
        "rename_conversation" => answer(svc.rename(conv()?, &arg::<String>(a, "title")?).await),
        "pin_message" => answer(
            svc.pin_message(conv()?, arg(a, "messageId")?, arg(a, "pinned")?)
                .await,
        ),
        "delete_conversation" => answer(svc.delete(conv()?).await),
        "delete_conversation_later" => {
            svc.delete_later(conv()?, std::time::Duration::from_secs(6));
            answer(Ok(()))
        }
        "undo_delete" => answer(Ok(svc.undo_delete(conv()?))),
        "search" => answer(svc.search(&arg::<String>(a, "query")?).await),
        "send_message" | "regenerate_reply" | "edit_and_resend" => {
            let (tx, rx) = unbounded_channel();
            let on = move |e: ReplyEvent| {
                let _ = tx.send(e);
            };
            let id = conv()?;
            let started = match command {
                "send_message" => {
                    svc.send(id, &arg::<String>(a, "text")?, ReplyOptions::default(), on)
                        .await
                }
                "regenerate_reply" => svc.regenerate(id, on).await,
                _ => {
                    svc.edit_and_resend(id, &arg::<String>(a, "text")?, on)
                        .await
                }
            };
            // The reply goes on (and is saved) if the page closes; it stops only on request.
            events(started, rx, reply_ends)
        }
        "retry_save" => answer(svc.retry_save(arg(a, "replyId")?).await),
        "conversation_memory" => answer(Ok(svc.memory(conv()?).await)),
        "stop_reply" => answer(Ok(svc.stop(conv()?))),
        "leave_conversation" => {
            svc.leave(conv()?);
            answer(Ok(()))
        }
        "get_settings" => answer(Ok(svc.settings().await)),
        "snapshot_usage" => answer(Ok(svc.snapshot_usage().await)),
        "diagnostics" => answer(Ok(svc.diagnostics().await)),
        "delete_exports" => answer(svc.delete_exports().await),
        "save_settings" => answer(svc.save_settings(arg(a, "settings")?).await),
        "export_conversations" => {
            let ids: Option<Vec<i64>> = arg(a, "conversationIds")?;
            answer(
                svc.export_conversations(ids.as_deref(), &arg::<String>(a, "format")?)
                    .await,
            )
        }
        "import_conversations" => {
            answer(svc.import_conversations(&arg::<String>(a, "text")?).await)
        }
        "models_overview" => answer(svc.models_overview().await),
        "start_download" => {
            let (tx, rx) = unbounded_channel();
            let started = svc
                .start_download(
                    &arg::<String>(a, "repo")?,
                    &arg::<String>(a, "file")?,
                    move |e| {
                        let _ = tx.send(e);
                    },
                )
                .await;
            events(started, rx, download_ends)
        }
        "pause_download" => answer(Ok(svc.pause_download(&arg::<String>(a, "key")?))),
        "cancel_download" => answer(svc.cancel_download(&arg::<String>(a, "key")?)),
        "inspect_model_file" => answer(svc.inspect_model_file(&arg::<String>(a, "path")?).await),
        "import_model" => answer(svc.import_model(&arg::<String>(a, "path")?).await),
        "delete_model" => answer(svc.delete_model(&arg::<String>(a, "file")?)),
        "use_model" => answer(svc.use_model(&arg::<String>(a, "file")?).await),
        other => {
            return Err(UiError::new(
                "not_found",
                format!("There is no command '{other}'."),
            ))
        }
    })
}
