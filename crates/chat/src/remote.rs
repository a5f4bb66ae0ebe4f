//! A model that a server runs, as a [`crate::Backend`] (#35): the chat service sends, streams,
//! stops, regenerates, edits, pins and recalls on it as on a model loaded here, and the
//! transcript is saved as it streams, by the same code. What differs is the memory: the
//! server's context is the window, and SinkChat's policy decides what each request carries
//! ([`sinkchat_remote::policy`]): the pinned start (the system prompt with the pinned
//! messages, then the chat's first exchange while it is small), then the newest messages that
//! fit, let go **in blocks**, so that between two evictions each request extends the one
//! before it and the server's prompt cache serves it.
//!
//! Token counts are the server's own (`/tokenize`), kept per message; where it has no
//! tokenizer, about four characters a token, corrected by the prompt sizes it reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sinkchat_engine::engine::ModelInfo;
use sinkchat_engine::{Cancel, History, Role, Turn};
use sinkchat_remote::policy::{plan, Policy};
use sinkchat_remote::{ChatMessage, ChatRequest, Client, Finish};

use crate::backend::Prompt;
use crate::error::{ErrorCode, UiError, UiResult};
use crate::events::{Gauge, MemorySource, MemoryView, ReplyEvent, StopReason};

/// What the template adds to each message (a role marker, an end marker) until the server's
/// counts say better.
const FIRST_GUESS_PER_MESSAGE: usize = 8;

/// Messages read from the transcript per page while filling the window.
const PAGE: usize = 64;

/// The server model chosen in the app (the key is kept apart, see [`crate::server_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct ServerChoice {
    /// `http(s)://host:port`, as the user typed it.
    pub address: String,
    /// The model's name on the server (`/v1/models`).
    pub model: String,
    /// Tokens of context one conversation has there.
    pub context: usize,
}

/// What *Check* found on a server: its models, and whether sending text to it is unencrypted.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ServerCheck {
    pub address: String,
    pub models: Vec<ServerModelInfo>,
    /// Set when the address is plain `http://` to another computer: one sentence to show
    /// before the user goes on.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ServerModelInfo {
    pub id: String,
    /// The context the server says it has for this model (`None`: it does not say; the user
    /// enters it).
    pub context: Option<usize>,
}

/// The words for a plain-HTTP address on another computer.
pub(crate) fn plain_http_warning(address: &str) -> String {
    format!(
        "{address} is not encrypted (http://): what you write to this model crosses the \
         network readable by anyone on the way. Use it only on a network you trust, or use an \
         https:// address."
    )
}

/// A server failure as the window shows it: the client's sentence, capitalised.
pub(crate) fn ui_error(e: sinkchat_remote::Error) -> UiError {
    let code = match e {
        sinkchat_remote::Error::BadAddress(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Server,
    };
    let text = e.to_string();
    let mut chars = text.chars();
    let sentence = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
        None => text,
    };
    UiError::new(code, format!("{sentence}."))
}

/// What the window keeps of one chat on the server.
#[derive(Debug, Clone, Default)]
struct ChatWindow {
    /// The oldest message after the pinned start that the last request carried; those
    /// before it have left the window (recall may give them back). 0: nothing has left.
    from_id: i64,
    /// Tokens of each message's text, by id, as the server counted them.
    counts: HashMap<i64, usize>,
    per_message: usize,
    /// The gauge after the last reply, and the oldest message it carried whole.
    view: Option<(Gauge, Option<i64>)>,
    seen: u64,
    evicted_tokens: u64,
    /// The first exchange, while it is pinned with the system prompt.
    pinned_ids: Vec<i64>,
}

/// A model on a server, with each chat's window.
#[derive(Debug)]
pub struct RemoteModel {
    client: Client,
    choice: ServerChoice,
    info: ModelInfo,
    chats: Mutex<HashMap<i64, ChatWindow>>,
    /// The last request sent, as sent (for the tests and diagnostics; the key is never in it).
    last_request: Mutex<Option<ChatRequest>>,
}

impl RemoteModel {
    /// A backend for `choice`; nothing is sent until the first reply (a server that is down
    /// is said then, in the chat, and the chat goes on when it is back).
    pub fn new(choice: ServerChoice, key: Option<&str>) -> UiResult<Self> {
        let client = Client::new(&choice.address, key).map_err(ui_error)?;
        if choice.context < 64 {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The server's context must be at least 64 tokens.",
            ));
        }
        let info = ModelInfo {
            name: choice.model.clone(),
            architecture: "server".into(),
            device: format!("server at {}", client.address()),
            weights: String::new(),
            trained_context: choice.context,
            kv_bytes_per_token: 0,
            sliding_kv_bytes: 0,
            kv_f16: false,
            device_note: None,
        };
        Ok(Self {
            client,
            choice,
            info,
            chats: Mutex::new(HashMap::new()),
            last_request: Mutex::new(None),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn choice(&self) -> &ServerChoice {
        &self.choice
    }

    /// The last request sent to the server.
    pub fn last_request(&self) -> Option<ChatRequest> {
        self.last_request.lock().expect("last request").clone()
    }

    /// Room kept for the reply: what the user asked, at most a quarter of the context.
    pub fn reply_room(&self, max_tokens: usize) -> usize {
        max_tokens.clamp(1, self.choice.context / 4)
    }

    /// The window's size for shares of it (recall's): three quarters of the context.
    pub fn window(&self) -> usize {
        self.choice.context * 3 / 4
    }

    /// Room for pinned messages and the system prompt: half the context.
    pub fn pin_budget(&self) -> usize {
        self.choice.context / 2
    }

    /// A count without asking the server (the window's synchronous questions): about four
    /// characters a token, plus the template's share.
    pub fn estimate(&self, text: &str) -> usize {
        text.chars().count().div_ceil(4) + FIRST_GUESS_PER_MESSAGE
    }

    /// What the window shows of the chat.
    pub fn memory(&self, conversation: i64) -> Option<MemoryView> {
        let chats = self.chats.lock().expect("chats");
        let (stats, first) = chats.get(&conversation)?.view.clone()?;
        Some(MemoryView {
            stats,
            first_visible_message: first,
            horizon: Default::default(),
        })
    }

    /// Messages every request carries beside the user's pins (the first exchange): in view
    /// for good, never recalled.
    pub fn held_for_good(&self, conversation: i64) -> Vec<i64> {
        let chats = self.chats.lock().expect("chats");
        chats
            .get(&conversation)
            .map(|c| c.pinned_ids.clone())
            .unwrap_or_default()
    }

    pub fn forget(&self, conversation: i64) {
        self.chats.lock().expect("chats").remove(&conversation);
    }

    /// Starts a reply on the server; events arrive on `on_event`, the last `done` or `error`.
    pub fn generate(
        self: &Arc<Self>,
        p: Prompt,
        cancel: Cancel,
        mut on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(error) = me.reply(p, &cancel, &mut on_event).await {
                on_event(ReplyEvent::Error {
                    code: error.code,
                    message: error.message,
                });
            }
        });
    }

    async fn count(&self, text: &str) -> UiResult<usize> {
        self.client.count_or_estimate(text).await.map_err(ui_error)
    }

    /// Tokens of a stored message, counted once.
    async fn count_message(&self, conversation: i64, id: i64, text: &str) -> UiResult<usize> {
        let known = self
            .chats
            .lock()
            .expect("chats")
            .get(&conversation)
            .and_then(|c| c.counts.get(&id).copied());
        if let Some(n) = known {
            return Ok(n);
        }
        let n = self.count(text).await?;
        self.chats
            .lock()
            .expect("chats")
            .entry(conversation)
            .or_default()
            .counts
            .insert(id, n);
        Ok(n)
    }

    async fn reply(
        &self,
        p: Prompt,
        cancel: &Cancel,
        on_event: &mut (impl FnMut(ReplyEvent) + Send),
    ) -> UiResult<()> {
        let started = Instant::now();
        let conv = p.conversation;
        let (from_id, per_message) = {
            let mut chats = self.chats.lock().expect("chats");
            let c = chats.entry(conv).or_default();
            if c.per_message == 0 {
                c.per_message = FIRST_GUESS_PER_MESSAGE;
            }
            (c.from_id, c.per_message)
        };
        on_event(ReplyEvent::Memory {
            source: MemorySource::Live,
        });
        let reply_room = self.reply_room(p.sampling.max_tokens);
        // The pinned start: the system prompt (pins at its end), then the first exchange while
        // it takes at most a quarter of the context.
        let mut pinned: Vec<(ChatMessage, usize)> = Vec::new();
        if !p.system_prompt.trim().is_empty() {
            let n = self.count(&p.system_prompt).await?;
            pinned.push((ChatMessage::new("system", &p.system_prompt), n));
        }
        let mut first_ids = Vec::new();
        if p.first_exchange.len() == 2 {
            let mut exchange = Vec::new();
            for t in &p.first_exchange {
                let n = self.count_message(conv, t.message_id, &t.content).await?;
                exchange.push((ChatMessage::new(role(t.role), &t.content), n));
            }
            let cost: usize = exchange.iter().map(|m| m.1 + per_message).sum();
            if cost <= self.choice.context / 4 {
                first_ids = p.first_exchange.iter().map(|t| t.message_id).collect();
                pinned.extend(exchange);
            }
        }
        if let Some(c) = self.chats.lock().expect("chats").get_mut(&conv) {
            c.pinned_ids = first_ids.clone();
        }
        let pinned_tokens: usize = pinned.iter().map(|m| m.1 + per_message).sum();
        let room = self
            .choice
            .context
            .saturating_sub(reply_room + pinned_tokens);
        // The history, newest first, back to where the window began or as far as can fit.
        let user_tokens = self.count(&p.user_text).await?;
        let mut kept: Vec<(Turn, usize)> = Vec::new();
        let mut total = user_tokens + per_message;
        let mut page = read_history(&p.history, None, PAGE).await?;
        'read: while !page.is_empty() {
            let oldest = page.last().map(|t| t.message_id);
            for t in page {
                if t.message_id < from_id || first_ids.contains(&t.message_id) {
                    break 'read;
                }
                if t.content.trim().is_empty() {
                    continue;
                }
                let n = self.count_message(conv, t.message_id, &t.content).await?;
                total += n + per_message;
                kept.push((t, n));
                if total > room {
                    break 'read;
                }
            }
            page = read_history(&p.history, oldest, PAGE).await?;
        }
        kept.reverse();
        let mut costs: Vec<usize> = kept.iter().map(|(_, n)| n + per_message).collect();
        costs.push(user_tokens + per_message);
        let policy = Policy::with_blocks(self.choice.context, reply_room, pinned_tokens);
        let planned = plan(&policy, pinned_tokens, &costs, 0).map_err(|e| {
            ui_error(sinkchat_remote::Error::TooSmall {
                context: self.choice.context,
                needed: e.needed,
            })
        })?;
        let carried = &kept[planned.from..];
        let evicted_now: usize = kept[..planned.from].iter().map(|(_, n)| n).sum();
        let mut messages: Vec<ChatMessage> = pinned.iter().map(|m| m.0.clone()).collect();
        messages.extend(
            carried
                .iter()
                .map(|(t, _)| ChatMessage::new(role(t.role), &t.content)),
        );
        messages.push(ChatMessage::new("user", &p.user_text));
        let req = ChatRequest {
            model: self.choice.model.clone(),
            messages,
            max_tokens: reply_room,
            temperature: p.sampling.temperature,
            top_p: p.sampling.top_p,
            seed: Some(p.sampling.seed),
            extra: llama_server_fields(),
        };
        *self.last_request.lock().expect("last request") = Some(req.clone());
        // The window's new start holds from now, whatever the reply does.
        let new_from = carried
            .first()
            .map(|(t, _)| t.message_id)
            .unwrap_or(p.user_message_id);
        let mut tokens = 0usize;
        let done = self
            .client
            .chat(&req, cancel.flag(), |piece| {
                tokens += 1;
                on_event(ReplyEvent::Token {
                    text: piece.to_string(),
                })
            })
            .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                self.moved(conv, new_from, evicted_now);
                return Err(ui_error(e));
            }
        };
        let content: usize = pinned.iter().map(|m| m.1).sum::<usize>()
            + carried.iter().map(|(_, n)| n).sum::<usize>()
            + user_tokens;
        let prompt_tokens = done.prompt_tokens.unwrap_or(planned.tokens);
        let reply_tokens = done.completion_tokens.unwrap_or(tokens);
        let cached = done.cached_tokens.map(|c| c.min(prompt_tokens));
        let pins_used = if p.pins_len > 0 {
            self.estimate(&p.system_prompt[p.system_prompt.len() - p.pins_len..])
        } else {
            0
        };
        let recalled_used = if p.recalled_len > 0 {
            self.estimate(&p.user_text[..p.recalled_len])
        } else {
            0
        };
        let gauge = {
            let mut chats = self.chats.lock().expect("chats");
            let c = chats.entry(conv).or_default();
            if done.prompt_tokens.is_some() {
                let n = pinned.len() + carried.len() + 1;
                c.per_message = prompt_tokens.saturating_sub(content).div_ceil(n).max(1);
            }
            c.from_id = c.from_id.max(new_from);
            c.evicted_tokens += evicted_now as u64;
            c.seen += (user_tokens + reply_tokens) as u64;
            let window = self
                .choice
                .context
                .saturating_sub(reply_room + pinned_tokens);
            let gauge = Gauge {
                capacity: self.choice.context,
                pinned: pinned_tokens,
                pinned_used: pinned_tokens,
                window,
                window_used: (planned.tokens - pinned_tokens + reply_tokens).min(window),
                tokens_seen: c.seen.max(prompt_tokens as u64),
                evicted_total: c.evicted_tokens,
                evicted_last_step: evicted_now as u64,
                window_start: pinned_tokens as u64 + c.evicted_tokens,
                bytes: 0,
                device: "server".into(),
                pins_used,
                pins_room: self.pin_budget(),
                recalled_used,
                sliding_layers: 0,
                sliding_window: 0,
                server_prompt: Some(prompt_tokens),
                server_cached: cached,
            };
            c.view = Some((gauge.clone(), Some(new_from)));
            gauge
        };
        on_event(ReplyEvent::Cache {
            stats: gauge,
            first_visible_message: Some(new_from),
        });
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        on_event(ReplyEvent::Done {
            reason: match done.finish {
                Finish::Stop => StopReason::EndOfTurn,
                Finish::Length => StopReason::MaxTokens,
                Finish::Cancelled => StopReason::Cancelled,
            },
            tokens: reply_tokens,
            tokens_per_s: reply_tokens as f64 / secs,
            prompt_tokens,
        });
        Ok(())
    }

    /// A reply that failed still moved the window: its start stays where the request put it.
    fn moved(&self, conversation: i64, from: i64, evicted: usize) {
        let mut chats = self.chats.lock().expect("chats");
        let c = chats.entry(conversation).or_default();
        if from > c.from_id {
            c.from_id = from;
            c.evicted_tokens += evicted as u64;
        }
    }
}

/// llama.cpp's server keeps a conversation's prompt in its cache and reuses what matches
/// (`cache_prompt`, its default); other servers ignore the field.
fn llama_server_fields() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("cache_prompt".into(), true.into());
    m
}

fn role(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

/// A page of the transcript before `before` (newest first), read off the runtime's threads
/// (the reader blocks on the store).
async fn read_history(history: &History, before: Option<i64>, limit: usize) -> UiResult<Vec<Turn>> {
    if history.last_message().is_none() {
        return Ok(Vec::new());
    }
    let h = history.clone();
    tokio::task::spawn_blocking(move || h.newest_first(before, limit))
        .await
        .map_err(|e| UiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(UiError::from)
}

/// The settings key of the server model in use (kept apart from [`crate::Settings`], which
/// the Settings screen saves whole).
const CHOICE_KEY: &str = "server_model";

/// The file holding the server's key, beside the database: the owner's alone (0600, as every
/// file of the data folder), never in the settings, the logs, an export or diagnostics.
const KEY_FILE: &str = "server-key";

/// The server choice saved in `store`, if any.
pub(crate) async fn saved_choice(store: &sinkchat_store::Store) -> Option<ServerChoice> {
    let v = store.get_setting(CHOICE_KEY).await.ok()??;
    serde_json::from_str(&v).ok()
}

impl crate::ChatService {
    /// The server model chosen in the app, if one is.
    pub async fn server_choice(&self) -> Option<ServerChoice> {
        saved_choice(self.store()).await
    }

    fn server_key(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir().join(KEY_FILE))
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
    }

    fn save_server_key(&self, key: Option<&str>) -> UiResult<()> {
        let path = self.data_dir().join(KEY_FILE);
        let io = |e: std::io::Error| {
            UiError::new(
                ErrorCode::Io,
                format!("The server's key could not be saved: {e}"),
            )
        };
        match key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => {
                crate::private::restrict_new_files();
                std::fs::write(&path, k).map_err(io)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                }
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            },
        }
        Ok(())
    }

    /// Asks the server at `address` which models it offers and what context each has (the
    /// Models screen's *Check*).
    pub async fn check_server(&self, address: &str, key: Option<&str>) -> UiResult<ServerCheck> {
        let key = key
            .map(str::to_string)
            .filter(|k| !k.trim().is_empty())
            .or_else(|| self.server_key());
        let client = Client::new(address, key.as_deref()).map_err(ui_error)?;
        let models = client.models().await.map_err(ui_error)?;
        let mut out = Vec::new();
        for m in models {
            let context = client.context_size(&m).await;
            out.push(ServerModelInfo { id: m.id, context });
        }
        Ok(ServerCheck {
            address: client.address(),
            warning: client
                .is_plain_http_off_machine()
                .then(|| plain_http_warning(&client.address())),
            models: out,
        })
    }

    /// Makes `model` on the server at `address` the model in use: it must be there, and its
    /// context is the server's where it says it, else `context`. Replies in flight stop and
    /// every chat's memory here is parked, as for a switch between files. `key`: `None` keeps
    /// the key saved before, `Some("")` removes it.
    pub async fn use_server(
        &self,
        address: &str,
        key: Option<&str>,
        model: &str,
        context: Option<usize>,
    ) -> UiResult<ServerChoice> {
        let key_now = match key {
            Some(k) => Some(k.to_string()).filter(|k| !k.trim().is_empty()),
            None => self.server_key(),
        };
        let client = Client::new(address, key_now.as_deref()).map_err(ui_error)?;
        let m = client.model(model).await.map_err(ui_error)?;
        let context = match client.context_size(&m).await.or(context) {
            Some(n) => n,
            None => {
                return Err(UiError::new(
                    ErrorCode::InvalidSettings,
                    "The server does not say how much context this model has: enter it (in \
                     tokens, as the server was started with).",
                ))
            }
        };
        let choice = ServerChoice {
            address: client.address(),
            model: m.id,
            context,
        };
        let remote = RemoteModel::new(choice.clone(), key_now.as_deref())?;
        if key.is_some() {
            self.save_server_key(key)?;
        }
        let v = serde_json::to_string(&choice).expect("choice serializes");
        self.store().set_setting(CHOICE_KEY, &v).await?;
        let svc = self.clone();
        tokio::task::spawn_blocking(move || svc.unload_backend(std::path::PathBuf::new()))
            .await
            .map_err(|e| UiError::new(ErrorCode::Internal, e.to_string()))?;
        self.set_remote(Arc::new(remote));
        tracing::info!(address = %choice.address, model = %choice.model, context, "using a model on a server");
        Ok(choice)
    }

    /// Forgets the server model: the app uses its files again.
    pub(crate) async fn clear_server_choice(&self) -> UiResult<()> {
        Ok(self.store().set_setting(CHOICE_KEY, "null").await?)
    }

    /// Puts a server model in the model slot, ready at once (nothing is sent until a reply).
    pub(crate) fn set_remote(&self, remote: Arc<RemoteModel>) {
        let mut slot = self.0.model.write().expect("model slot");
        slot.state = crate::ModelState::Ready {
            info: remote.info().clone(),
        };
        slot.path = std::path::PathBuf::new();
        slot.server = None;
        slot.backend = Some(crate::Backend::Remote(remote));
    }

    /// The backend of a saved server choice (at start-up), with the saved key.
    pub(crate) fn remote_for(&self, choice: ServerChoice) -> UiResult<RemoteModel> {
        RemoteModel::new(choice, self.server_key().as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_read_as_sentences_with_the_server_code() {
        let e = ui_error(sinkchat_remote::Error::BadKey);
        assert_eq!(e.code, ErrorCode::Server);
        assert!(e.message.starts_with("The server refused the key"), "{e}");
        assert!(e.message.ends_with('.'));
        let e = ui_error(sinkchat_remote::Error::BadAddress("x".into()));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(
            e.message.starts_with("\"x\" is not a server address"),
            "{e}"
        );
    }

    #[test]
    fn a_server_model_keeps_a_quarter_for_the_reply_and_half_for_pins() {
        let choice = ServerChoice {
            address: "http://127.0.0.1:8080".into(),
            model: "m".into(),
            context: 4096,
        };
        let r = RemoteModel::new(choice.clone(), None).unwrap();
        assert_eq!(r.reply_room(512), 512);
        assert_eq!(r.reply_room(5000), 1024);
        assert_eq!(r.pin_budget(), 2048);
        assert_eq!(r.info().trained_context, 4096);
        assert_eq!(r.info().device, "server at http://127.0.0.1:8080");
        // Nothing sent yet: no memory to show, nothing held for good.
        assert!(r.memory(1).is_none() && r.held_for_good(1).is_empty());
        let tiny = ServerChoice {
            context: 10,
            ..choice.clone()
        };
        assert_eq!(
            RemoteModel::new(tiny, None).unwrap_err().code,
            ErrorCode::InvalidSettings
        );
        let bad = ServerChoice {
            address: "ftp://example.com".into(),
            ..choice
        };
        assert!(RemoteModel::new(bad, None).is_err());
    }
}
