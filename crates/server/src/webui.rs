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
use sinkchat_chat::commands::StreamEvent;
use sinkchat_chat::{ChatService, ErrorCode, UiError, UiResult};
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

fn fail(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
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
            ErrorCode::Forbidden,
            "Only this computer may use SinkChat's page.",
        ));
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = origin.strip_prefix("http://").unwrap_or("");
        if !is_loopback(host) {
            return Err(fail(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "Other web pages may not use SinkChat.",
            ));
        }
    }
    if !get(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/json")) {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "Commands are sent as JSON.",
        ));
    }
    Ok(())
}

/// A command's arguments, by the names the window's `invoke` uses.
/// A command's arguments from its JSON object; a wrong one is named in the error
/// (`conversationId: invalid type ...`), as the page sent it.
fn args<T: DeserializeOwned>(args: Value) -> UiResult<T> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        UiError::new(
            ErrorCode::BadRequest,
            format!("The arguments are missing or wrong: {at}{}", e.inner()),
        )
    })
}

fn answer<T: Serialize>(r: UiResult<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            use ErrorCode as C;
            let status = match e.code {
                C::NotFound => StatusCode::NOT_FOUND,
                C::Busy => StatusCode::CONFLICT,
                C::BadRequest => StatusCode::BAD_REQUEST,
                C::StoreCorrupt | C::StoreError | C::StoreUnavailable | C::Io => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
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

/// A streaming command's answer: `result` (or `failure`), then its events until the last.
fn events<T: Serialize + StreamEvent + Send + 'static, R: Serialize>(
    started: UiResult<R>,
    rx: UnboundedReceiver<T>,
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
        let end = ev.is_last();
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
                    ErrorCode::BadRequest,
                    format!("The body is not JSON: {e}"),
                )
            }
        }
    };
    match dispatch(&svc, &command, args).await {
        Ok(r) => r,
        Err(e) => answer::<()>(Err(e)),
    }
}

/// One streaming or plain command's run, for [`browser_door!`].
macro_rules! run_command {
    ($svc:ident $ret:ty, $body:block) => {{
        let r: UiResult<$ret> = async { $body }.await;
        answer(r)
    }};
    ($svc:ident $ret:ty, $body:block, $cb:ident : $ev:ty) => {{
        let (tx, rx) = unbounded_channel::<$ev>();
        let $cb = move |e: $ev| {
            let _ = tx.send(e);
        };
        // The reply (or download) goes on, and is saved, if the page closes; it stops only
        // on request.
        let started: UiResult<$ret> = async { $body }.await;
        events(started, rx)
    }};
}

/// The browser's dispatch, generated from the command table
/// ([`sinkchat_chat::for_each_command!`]): the window's commands by the same names, with the
/// same arguments by the same camelCase names, the window-only ones left out.
macro_rules! browser_door {
    ($( $door:ident $name:ident |$svc:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty
        $(, $cb:ident : $ev:ty)? $body:block )*) => {
        async fn dispatch(svc: &ChatService, command: &str, a: Value) -> UiResult<Response> {
            $(
                if command == stringify!($name) && sinkchat_chat::__door!($door).browser() {
                    #[derive(serde::Deserialize)]
                    #[serde(rename_all = "camelCase")]
                    struct Args {
                        $($arg: $ty,)*
                    }
                    #[allow(unused_variables)]
                    let Args { $($arg),* } = args::<Args>(a)?;
                    let $svc = svc;
                    return Ok(run_command!($svc $ret, $body $(, $cb : $ev)?));
                }
            )*
            Err(UiError::new(
                ErrorCode::NotFound,
                format!("There is no command '{command}'."),
            ))
        }
    };
}

#[allow(unused_imports)]
use sinkchat_chat::commands::types::*;
sinkchat_chat::for_each_command!(browser_door);
