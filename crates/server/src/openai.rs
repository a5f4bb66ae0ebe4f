//! The OpenAI-compatible API: `GET /v1/models` and `POST /v1/chat/completions` (streamed as
//! server-sent events or not), with usage counts and errors in OpenAI's shape.
//!
//! A client sends the whole conversation every time. The server remembers, for each reply it
//! wrote, which chat holds that exact transcript (a hash of the system prompt and every
//! message, checked against the chat's last message in the store). A request whose earlier
//! messages are such a transcript continues that chat: its sink+window cache is still live,
//! so only the new message is read (`usage.prompt_tokens` and `sinkchat.prompt_tokens_fed`
//! say how many tokens were read). Anything else starts a new chat holding the messages,
//! read once. Either way the chat is in the app's history.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sinkchat_chat::{
    ChatService, ErrorCode, MemorySource, ModelState, ReplyEvent, ReplyOptions, StopReason, UiError,
};
use sinkchat_store::{MessageText, Role};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Transcripts remembered (beyond this the oldest are forgotten: those chats are read again).
const MAX_CHAINS: usize = 10_000;

pub struct ApiState {
    svc: ChatService,
    token: String,
    /// Transcript hash → (chat, id of its last message).
    chains: Mutex<HashMap<u64, (i64, i64)>>,
}

impl ApiState {
    pub fn new(svc: ChatService, token: String) -> Self {
        Self {
            svc,
            token,
            chains: Mutex::new(HashMap::new()),
        }
    }
}

type Shared = Arc<ApiState>;

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(completions))
        .with_state(state)
        .layer(axum::middleware::map_response(openai_shape))
}

/// Refusals made before a handler runs (a body over the size limit, a wrong method) in
/// OpenAI's error shape too: a client's error handling reads one shape.
async fn openai_shape(r: Response) -> Response {
    let json = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|c| {
            c.as_bytes().starts_with(b"application/json")
                || c.as_bytes().starts_with(b"text/event-stream")
        });
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !json => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "The request is larger than SinkChat takes ({} MB): send the conversation's \
                 newer messages only; earlier ones are kept in SinkChat's own memory.",
                crate::MAX_BODY_BYTES >> 20
            ),
        ),
        StatusCode::METHOD_NOT_ALLOWED if !json => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This path takes another method (GET /v1/models, POST /v1/chat/completions).",
        ),
        _ => r,
    }
}

/// Most messages one request may carry, and most characters in all of them together: checked
/// before anything is stored or queued. (A message alone is held to the store's limit, 100,000
/// characters; a conversation longer than these goes on in SinkChat's memory: send the newer
/// messages only.)
pub const MAX_MESSAGES: usize = 1_000;
pub const MAX_TOTAL_CHARS: usize = 400_000;

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    };
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

/// 503 with the reason and what to do, while no model can answer (loading, or failed to load).
fn not_ready(svc: &ChatService) -> Option<Response> {
    match svc.model_state() {
        ModelState::Ready { .. } => None,
        ModelState::Loading => Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_loading",
            "SinkChat is loading its model; send again in a few seconds.",
        )),
        ModelState::Failed { error: e } => Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_not_loaded",
            format!(
                "SinkChat has no model to answer with: {} Pick a model that loads in \
                 SinkChat's Models screen (GET /v1/models lists it once it does).",
                sentence(&e.message)
            ),
        )),
    }
}

/// `s` as a sentence: capital first, full stop last.
fn sentence(s: &str) -> String {
    let mut out = s.trim().to_string();
    if let Some(c) = out.get(..1) {
        out = c.to_uppercase() + &out[1..];
    }
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A service error as an HTTP error: the client's fault (4xx) or ours (5xx).
fn from_ui(e: UiError) -> Response {
    use ErrorCode as C;
    let status = match e.code {
        C::Busy => StatusCode::CONFLICT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::ModelLoading => StatusCode::SERVICE_UNAVAILABLE,
        C::EmptyMessage
        | C::MessageTooLong
        | C::InvalidMessage
        | C::InvalidSampling
        | C::EmptyInput
        | C::InvalidCacheConfig => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = if e.code == C::Busy {
        "conversation_busy".to_string()
    } else {
        e.code.as_str()
    };
    let mut msg = e.message;
    if let Some(c) = msg.get(..1) {
        msg = c.to_uppercase() + &msg[1..];
    }
    error(status, &code, msg)
}

fn check_token(state: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    // The scheme's name is case-insensitive in HTTP (RFC 9110 §11.1): `bearer KEY` is as good.
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    match given {
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "No access key was sent. Send the key shown in SinkChat's Settings as \
             'Authorization: Bearer KEY'.",
        )),
        // Compared in constant time: the time taken says nothing of how much matched.
        Some(k) if !constant_time_eq(k.as_bytes(), state.token.as_bytes()) => Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "The access key is not the one shown in SinkChat's Settings.",
        )),
        Some(_) => Ok(()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The id clients name the model by: the file's name without `.gguf`, or a server model's
/// name on its server.
fn model_id(svc: &ChatService) -> String {
    if let Ok(sinkchat_chat::Backend::Remote(r)) = svc.backend() {
        return r.choice().model.clone();
    }
    let p = svc.active_model_path();
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".gguf").unwrap_or(&name).to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn models(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&state, &headers) {
        return r;
    }
    // Only a model that answers is listed: while one loads, or when it failed, the list is
    // empty and `sinkchat` says why.
    let (data, status) = match state.svc.model_state() {
        ModelState::Ready { .. } => (
            json!([{
                "id": model_id(&state.svc),
                "object": "model",
                "created": 0,
                "owned_by": "sinkchat",
                "ready": true,
            }]),
            json!({"state": "ready"}),
        ),
        ModelState::Loading => (json!([]), json!({"state": "loading"})),
        ModelState::Failed { error } => (
            json!([]),
            json!({"state": "failed", "message": error.message}),
        ),
    };
    Json(json!({ "object": "list", "data": data, "sinkchat": status })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<u32>,
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// The request's messages as (system prompt, earlier turns, the new user message).
#[allow(clippy::type_complexity)]
fn split(
    messages: Vec<InMessage>,
) -> Result<(Option<String>, Vec<(Role, String)>, String), Response> {
    let mut system: Option<String> = None;
    let mut turns = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let text = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut t = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(bad(format!(
                            "messages[{i}] has a '{}' part; SinkChat's models read text only.",
                            p.kind
                        )));
                    }
                    t.push_str(p.text.as_deref().unwrap_or(""));
                }
                t
            }
        };
        match m.role.as_str() {
            "system" | "developer" if turns.is_empty() => {
                let s = system.get_or_insert_with(String::new);
                if !s.is_empty() {
                    s.push_str("\n\n");
                }
                s.push_str(&text);
            }
            "system" | "developer" => {
                return Err(bad(format!(
                    "messages[{i}] is a {} message after the conversation began; SinkChat \
                     takes system messages only at the start.",
                    m.role
                )))
            }
            "user" => turns.push((Role::User, text)),
            "assistant" => turns.push((Role::Assistant, text)),
            other => {
                return Err(bad(format!(
                    "messages[{i}] has the role '{other}'; SinkChat answers system, user and \
                     assistant messages (no tools)."
                )))
            }
        }
    }
    match turns.pop() {
        Some((Role::User, text)) => Ok((system, turns, text)),
        _ => Err(bad(
            "The last message must be the user's: it is what SinkChat answers.",
        )),
    }
}

fn chain_key(system: &str, turns: &[(Role, String)]) -> u64 {
    let mut h = DefaultHasher::new();
    system.hash(&mut h);
    for (r, t) in turns {
        r.as_str().hash(&mut h);
        t.hash(&mut h);
    }
    h.finish()
}

/// Stops the reply if the client goes away before it ends; the text so far is saved (as a
/// stopped reply) by the service.
struct StopOnDrop {
    svc: ChatService,
    conversation: i64,
    armed: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(
                conversation = self.conversation,
                "client went away; reply stopped"
            );
            self.svc.stop(self.conversation);
        }
    }
}

/// What a finished reply needs to be remembered and reported.
struct Turn {
    state: Shared,
    system: String,
    /// The transcript the reply answers, the new user message included.
    turns: Vec<(Role, String)>,
    conversation: i64,
    reply_id: i64,
    id: String,
    model: String,
    created: u64,
    memory: Option<MemorySource>,
}

impl Turn {
    /// Remembers that the chat now holds the transcript plus `text`.
    fn remember(&mut self, text: &str) {
        self.turns.push((Role::Assistant, text.to_string()));
        let key = chain_key(&self.system, &self.turns);
        let mut chains = self.state.chains.lock().expect("chains");
        if chains.len() >= MAX_CHAINS {
            chains.clear();
        }
        chains.insert(key, (self.conversation, self.reply_id));
    }

    fn usage(&self, prompt_tokens: usize, tokens: usize) -> Value {
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        })
    }

    /// SinkChat's own figures: the chat, where its memory came from, tokens read this turn.
    fn extension(&self, prompt_tokens: usize) -> Value {
        json!({
            "conversation_id": self.conversation,
            "memory": self.memory,
            "prompt_tokens_fed": prompt_tokens,
        })
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }
}

fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

async fn completions(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = check_token(&state, &headers) {
        return r;
    }
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "The request body is not a chat completion request in JSON: {e}."
            ))
        }
    };
    let svc = state.svc.clone();
    if let Some(r) = not_ready(&svc) {
        return r;
    }
    let model = model_id(&svc);
    if req.model != model {
        return error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "The model '{}' is not loaded. SinkChat serves one model at a time; now it is \
                 '{model}' (GET /v1/models).",
                req.model
            ),
        );
    }
    if req.n.is_some_and(|n| n != 1) {
        return bad("SinkChat writes one reply per request (n must be 1).");
    }
    if req.messages.len() > MAX_MESSAGES {
        return bad(format!(
            "The request carries {} messages; SinkChat takes at most {MAX_MESSAGES} in one \
             request. It keeps the conversation itself: send the newer messages only.",
            req.messages.len()
        ));
    }
    let (system, earlier, user_text) = match split(req.messages) {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Checked before any chat is made, so a refused request leaves nothing behind: every
    // message, the system prompt included, within the store's limit, and all of them together
    // within the request's.
    for text in system.iter().chain(earlier.iter().map(|(_, t)| t)) {
        if text.trim().is_empty() {
            continue; // an empty system prompt or reply stores as nothing
        }
        if let Err(e) = MessageText::parse(text) {
            return from_ui(e.into());
        }
    }
    let total: usize = system.iter().map(|s| s.chars().count()).sum::<usize>()
        + earlier
            .iter()
            .map(|(_, t)| t.chars().count())
            .sum::<usize>()
        + user_text.chars().count();
    if total > MAX_TOTAL_CHARS {
        return bad(format!(
            "The request carries {total} characters; SinkChat takes at most {MAX_TOTAL_CHARS} \
             in one request. It keeps the conversation itself: send the newer messages only."
        ));
    }
    if let Err(e) = MessageText::parse(&user_text) {
        return from_ui(e.into());
    }
    let settings = svc.settings().await;
    let system = system.unwrap_or_else(|| settings.system_prompt.clone());
    let mut sampling = settings.sampling.clone();
    if let Some(t) = req.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = req.top_p {
        sampling.top_p = p;
    }
    if let Some(m) = req.max_completion_tokens.or(req.max_tokens) {
        sampling.max_tokens = m;
    }
    if let Some(s) = req.seed {
        sampling.seed = s;
    }
    match req.stop {
        Some(Stop::One(s)) => sampling.stop = vec![s],
        Some(Stop::Many(v)) => sampling.stop = v,
        None => {}
    }

    // The chat that holds exactly `earlier` (if the server wrote its last reply), else a new
    // one holding it.
    let known = if earlier.is_empty() {
        None
    } else {
        let hit = state
            .chains
            .lock()
            .expect("chains")
            .get(&chain_key(&system, &earlier))
            .copied();
        match hit {
            // Another client is writing to this very conversation now.
            Some((conv, _)) if svc.is_busy(conv) => {
                return from_ui(UiError::new(
                    ErrorCode::Busy,
                    "This conversation is answering another request; wait for that reply to \
                     end, then send again.",
                ))
            }
            Some((conv, last)) => match svc.last_message_id(conv).await {
                Ok(Some(id)) if id == last => Some(conv),
                _ => None, // changed in the app since, or deleted
            },
            None => None,
        }
    };
    let conversation = match known {
        Some(c) => c,
        None => match svc.create_with_turns(&system, &earlier).await {
            Ok((c, _)) => c.id,
            Err(e) => return from_ui(e),
        },
    };
    let (tx, rx) = unbounded_channel();
    let sent = svc
        .send(
            conversation,
            &user_text,
            ReplyOptions {
                sampling: Some(sampling),
            },
            move |e| {
                let _ = tx.send(e);
            },
        )
        .await;
    let sent = match sent {
        Ok(s) => s,
        Err(e) => return from_ui(e),
    };
    let mut turns = earlier;
    turns.push((Role::User, user_text));
    let turn = Turn {
        state: state.clone(),
        system,
        turns,
        conversation,
        reply_id: sent.reply_id,
        id: format!("chatcmpl-{}", sent.reply_id),
        model,
        created: now_secs(),
        memory: None,
    };
    let guard = StopOnDrop {
        svc,
        conversation,
        armed: true,
    };
    if req.stream {
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        stream(turn, guard, rx, usage).into_response()
    } else {
        whole(turn, guard, rx).await
    }
}

/// Waits for the whole reply and answers with one `chat.completion`.
async fn whole(
    mut turn: Turn,
    mut guard: StopOnDrop,
    mut rx: UnboundedReceiver<ReplyEvent>,
) -> Response {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            ReplyEvent::Memory { source } => turn.memory = Some(source),
            ReplyEvent::Token { text: t } => text.push_str(&t),
            ReplyEvent::Done {
                reason,
                tokens,
                prompt_tokens,
                ..
            } => {
                guard.armed = false;
                turn.remember(&text);
                return Json(json!({
                    "id": turn.id,
                    "object": "chat.completion",
                    "created": turn.created,
                    "model": turn.model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason(reason),
                    }],
                    "usage": turn.usage(prompt_tokens, tokens),
                    "sinkchat": turn.extension(prompt_tokens),
                }))
                .into_response();
            }
            ReplyEvent::Error { code, message } => {
                guard.armed = false;
                return error(StatusCode::INTERNAL_SERVER_ERROR, &code.as_str(), message);
            }
            _ => {}
        }
    }
    guard.armed = false;
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "engine_stopped",
        "The reply ended without finishing.",
    )
}

struct Streaming {
    turn: Turn,
    guard: StopOnDrop,
    rx: UnboundedReceiver<ReplyEvent>,
    text: String,
    queue: VecDeque<Event>,
    usage: bool,
    ended: bool,
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// The reply as `chat.completion.chunk` events, then (if asked) a usage chunk, then `[DONE]`.
fn stream(
    turn: Turn,
    guard: StopOnDrop,
    rx: UnboundedReceiver<ReplyEvent>,
    usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let first = data(&turn.chunk(json!({"role": "assistant", "content": ""}), None));
    let st = Streaming {
        turn,
        guard,
        rx,
        text: String::new(),
        queue: VecDeque::from([first]),
        usage,
        ended: false,
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            if st.ended {
                return None;
            }
            let Some(ev) = st.rx.recv().await else {
                st.guard.armed = false;
                st.ended = true;
                continue;
            };
            match ev {
                ReplyEvent::Memory { source } => st.turn.memory = Some(source),
                ReplyEvent::Token { text } => {
                    st.text.push_str(&text);
                    let c = st.turn.chunk(json!({"content": text}), None);
                    st.queue.push_back(data(&c));
                }
                ReplyEvent::Done {
                    reason,
                    tokens,
                    prompt_tokens,
                    ..
                } => {
                    st.guard.armed = false;
                    let text = std::mem::take(&mut st.text);
                    st.turn.remember(&text);
                    let mut last = st.turn.chunk(json!({}), Some(finish_reason(reason)));
                    last["sinkchat"] = st.turn.extension(prompt_tokens);
                    st.queue.push_back(data(&last));
                    if st.usage {
                        let mut u = st.turn.chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = st.turn.usage(prompt_tokens, tokens);
                        u["sinkchat"] = st.turn.extension(prompt_tokens);
                        st.queue.push_back(data(&u));
                    }
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.ended = true;
                }
                ReplyEvent::Error { code, message } => {
                    st.guard.armed = false;
                    let e = json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}});
                    st.queue.push_back(data(&e));
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.ended = true;
                }
                _ => {}
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
