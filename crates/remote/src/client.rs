//! A server's OpenAI-compatible API as SinkChat uses it: the models it offers, its context size
//! where it says it (llama.cpp's `/props`, vLLM's `max_model_len`), its own tokenizer where it
//! has one (`/tokenize`, `/v1/chat/completions/input_tokens`), and a chat completion streamed
//! as it is written, with what the server took from its prompt cache. Every failure is an
//! [`Error`] worded for the person at the window; the key is never logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// What can go wrong with a server, each a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("\"{0}\" is not a server address: it should look like http://192.168.1.20:8080")]
    BadAddress(String),
    #[error("the server at {0} can't be reached: is it running, and is the address right?")]
    Unreachable(String),
    #[error("the server at {address} did not answer within {seconds} seconds")]
    Timeout { address: String, seconds: u64 },
    #[error("the server refused the key: check the key you entered for it")]
    BadKey,
    #[error("the server has no model called \"{asked}\" (it offers: {offered})")]
    NoSuchModel { asked: String, offered: String },
    #[error("the server's context ({context} tokens) is too small for this chat's pinned start and the new message ({needed} tokens): unpin something, shorten the system prompt, or start the server with a larger context")]
    TooSmall { context: usize, needed: usize },
    #[error("the request did not fit the server's context: {0}")]
    ContextFull(String),
    #[error("the server answered with an error: {0}")]
    Server(String),
    #[error("the server's answer could not be read ({0}): is this an OpenAI-compatible server?")]
    Malformed(String),
    #[error("the server stopped answering in the middle of the reply: {0}")]
    Interrupted(String),
    #[error("the server kept streaming past the reply's length limit; the reply was cut")]
    Endless,
}

/// A model the server offers, with its context size where the listing says it (vLLM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerModel {
    pub id: String,
    pub context: Option<usize>,
}

/// One message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A chat completion request; `extra` carries a server's own fields (llama.cpp's
/// `cache_prompt`, `n_cache_reuse`, `n_keep`), which other servers ignore.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (or hit a stop string).
    Stop,
    /// The reply's length limit.
    Length,
    /// Stopped by the user.
    Cancelled,
}

/// A finished reply with the server's own figures, where it gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish: Finish,
    /// Tokens of the prompt (`usage.prompt_tokens`).
    pub prompt_tokens: Option<usize>,
    /// Of those, tokens the server took from its cache (llama.cpp's `timings.cache_n`, else
    /// OpenAI's `usage.prompt_tokens_details.cached_tokens`, which vLLM reports).
    pub cached_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    pub ms: f64,
}

impl Completion {
    /// Prompt tokens the server computed (read), not taken from its cache.
    pub fn computed_tokens(&self) -> Option<usize> {
        Some(
            self.prompt_tokens?
                .saturating_sub(self.cached_tokens.unwrap_or(0)),
        )
    }
}

/// The longest wait for a server's first byte or for the next piece of a stream.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// An OpenAI-compatible server at one address, with an optional key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    key: Option<String>,
    /// How long to wait for an answer (and between two pieces of a stream).
    pub timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of every log line.
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `address` (`http://host:port`, with or without `/v1`; `https` too).
    pub fn new(address: &str, key: Option<&str>) -> Result<Self, Error> {
        let bad = || Error::BadAddress(address.trim().to_string());
        let mut base = reqwest::Url::parse(address.trim()).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        let path = base.path().trim_end_matches('/');
        let path = path.strip_suffix("/v1").unwrap_or(path).to_string();
        base.set_path(&format!("{path}/"));
        base.set_query(None);
        base.set_fragment(None);
        // No pooled connections: servers close idle keep-alive connections when they like
        // (llama.cpp's does between requests), and a request on a closed one fails. A new
        // connection per request costs nothing beside a reply.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| Error::Server(e.to_string()))?;
        Ok(Self {
            http,
            base,
            key: key
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from),
            timeout: ANSWER_TIMEOUT,
        })
    }

    /// The address as the user sees it (no key, no path beyond the server's root).
    pub fn address(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// Whether the address sends text unencrypted (`http://`) to another computer: the window
    /// asks before it uses such a server.
    pub fn is_plain_http_off_machine(&self) -> bool {
        if self.base.scheme() != "http" {
            return false;
        }
        match self.base.host() {
            Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
            Some(url::Host::Domain(d)) => d != "localhost",
            None => true,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = self.base.join(path).expect("a relative path joins");
        let rb = self.http.request(method, url);
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Sends `rb`, waiting at most [`Client::timeout`] for the answer's head; a refusal
    /// becomes its [`Error`].
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let resp = match tokio::time::timeout(self.timeout, rb.send()).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.transport(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = tokio::time::timeout(self.timeout, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(refusal(status.as_u16(), &body))
    }

    fn timed_out(&self) -> Error {
        Error::Timeout {
            address: self.address(),
            seconds: self.timeout.as_secs(),
        }
    }

    fn transport(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            self.timed_out()
        } else if e.is_connect() {
            Error::Unreachable(self.address())
        } else {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            Error::Interrupted(why)
        }
    }

    async fn get_json(&self, path: &str) -> Result<serde_json::Value, Error> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        self.json(resp).await
    }

    async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<serde_json::Value, Error> {
        let resp = self
            .send(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        self.json(resp).await
    }

    async fn json(&self, resp: reqwest::Response) -> Result<serde_json::Value, Error> {
        match tokio::time::timeout(self.timeout, resp.json::<serde_json::Value>()).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(Error::Malformed(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// The models the server offers (`/v1/models`).
    pub async fn models(&self) -> Result<Vec<ServerModel>, Error> {
        let v = self.get_json("v1/models").await?;
        let data = v
            .get("data")
            .and_then(|d| d.as_array())
            .ok_or_else(|| Error::Malformed("no model list".into()))?;
        Ok(data
            .iter()
            .filter_map(|m| {
                Some(ServerModel {
                    id: m.get("id")?.as_str()?.to_string(),
                    context: m
                        .get("max_model_len")
                        .and_then(|n| n.as_u64())
                        .map(|n| n as usize),
                })
            })
            .collect())
    }

    /// The model called `name` among the server's, or an error that lists those it has.
    pub async fn model(&self, name: &str) -> Result<ServerModel, Error> {
        let models = self.models().await?;
        if let Some(m) = models.iter().find(|m| m.id == name) {
            return Ok(m.clone());
        }
        // llama.cpp's server serves one model whatever the name asked (its id is a file path).
        match models.as_slice() {
            [only] if self.props().await.is_ok() => Ok(ServerModel {
                id: name.to_string(),
                context: only.context,
            }),
            _ => Err(Error::NoSuchModel {
                asked: name.to_string(),
                offered: models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    async fn props(&self) -> Result<serde_json::Value, Error> {
        self.get_json("props").await
    }

    /// The context one conversation has on the server, where the server says it: the
    /// model's `max_model_len` (vLLM), else llama.cpp's per-slot `n_ctx` from `/props`.
    /// `None`: the server does not say (the user enters it).
    pub async fn context_size(&self, model: &ServerModel) -> Option<usize> {
        if let Some(n) = model.context {
            return Some(n);
        }
        let props = self.props().await.ok()?;
        props
            .pointer("/default_generation_settings/n_ctx")
            .or_else(|| props.get("n_ctx"))
            .and_then(|n| n.as_u64())
            .map(|n| n as usize)
    }

    /// Tokens `text` takes by the server's own tokenizer (`/tokenize`); `None` when the
    /// server has no tokenizer endpoint.
    pub async fn count(&self, text: &str) -> Result<Option<usize>, Error> {
        let body =
            serde_json::json!({"content": text, "add_special": false, "parse_special": false});
        match self.post_json("tokenize", &body).await {
            Ok(v) => Ok(v.get("tokens").and_then(|t| t.as_array()).map(Vec::len)),
            Err(Error::Server(_)) | Err(Error::Malformed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tokens of `text` by the server's tokenizer, else about four characters a token.
    pub async fn count_or_estimate(&self, text: &str) -> Result<usize, Error> {
        Ok(match self.count(text).await? {
            Some(n) => n,
            None => text.chars().count().div_ceil(4),
        })
    }

    /// Tokens a whole request's prompt takes, chat template included, where the server counts
    /// it (llama.cpp's `/v1/chat/completions/input_tokens`); `None` otherwise.
    pub async fn count_request(&self, req: &ChatRequest) -> Result<Option<usize>, Error> {
        match self
            .post_json("v1/chat/completions/input_tokens", req)
            .await
        {
            Ok(v) => Ok(v
                .get("input_tokens")
                .and_then(|n| n.as_u64())
                .map(|n| n as usize)),
            Err(Error::Server(_)) | Err(Error::Malformed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams a chat completion: `on_text` gets each piece as it comes; `cancel` stops it
    /// (the connection is closed, which stops the server too). A stream that stalls longer
    /// than [`Client::timeout`], breaks off, or runs far past `max_tokens` is an error that
    /// says so; the text so far is in `on_text`'s hands.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cancel: &AtomicBool,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, Error> {
        let started = Instant::now();
        let mut body = serde_json::to_value(req).map_err(|e| Error::Malformed(e.to_string()))?;
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
        let resp = self
            .send(
                self.request(reqwest::Method::POST, "v1/chat/completions")
                    .json(&body),
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Completion {
            text: String::new(),
            finish: Finish::Stop,
            prompt_tokens: None,
            cached_tokens: None,
            completion_tokens: None,
            ms: 0.0,
        };
        let mut pieces = 0usize;
        let most_pieces = req.max_tokens.saturating_mul(4).saturating_add(64);
        let mut done = false;
        while !done {
            if cancel.load(Ordering::Relaxed) {
                out.finish = Finish::Cancelled;
                break;
            }
            let chunk = match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(self.timed_out()),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Error::Interrupted(e.to_string())),
                Ok(Some(Ok(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                let v: serde_json::Value = serde_json::from_str(data)
                    .map_err(|e| Error::Malformed(format!("a stream event is not JSON: {e}")))?;
                if let Some(err) = v.get("error") {
                    return Err(Error::Server(message_of(err)));
                }
                read_event(&v, &mut out, &mut on_text);
                pieces += 1;
                if pieces > most_pieces {
                    return Err(Error::Endless);
                }
            }
        }
        if !done && out.finish != Finish::Cancelled {
            return Err(Error::Interrupted(
                "the stream ended before its last event".into(),
            ));
        }
        out.ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(out)
    }
}

/// One stream event's text, finish reason and figures into `out`.
fn read_event(v: &serde_json::Value, out: &mut Completion, on_text: &mut impl FnMut(&str)) {
    if let Some(choice) = v.pointer("/choices/0") {
        if let Some(t) = choice.pointer("/delta/content").and_then(|t| t.as_str()) {
            if !t.is_empty() {
                out.text.push_str(t);
                on_text(t);
            }
        }
        match choice.get("finish_reason").and_then(|f| f.as_str()) {
            Some("length") => out.finish = Finish::Length,
            Some(_) => out.finish = Finish::Stop,
            None => {}
        }
    }
    let num = |p: &str| v.pointer(p).and_then(|n| n.as_u64()).map(|n| n as usize);
    if let Some(n) = num("/usage/prompt_tokens") {
        out.prompt_tokens = Some(n);
    }
    if let Some(n) = num("/usage/completion_tokens") {
        out.completion_tokens = Some(n);
    }
    if let Some(n) = num("/usage/prompt_tokens_details/cached_tokens") {
        out.cached_tokens = Some(n);
    }
    // llama.cpp's own figures say what it reused more exactly (its cache reuse included).
    if let (Some(cache_n), Some(prompt_n)) = (num("/timings/cache_n"), num("/timings/prompt_n")) {
        out.cached_tokens = Some(cache_n);
        out.prompt_tokens = Some(cache_n + prompt_n);
    }
}

fn message_of(err: &serde_json::Value) -> String {
    err.get("message")
        .and_then(|m| m.as_str())
        .map(String::from)
        .unwrap_or_else(|| err.to_string())
}

/// A refused request as an [`Error`], from its status and the server's error body.
fn refusal(status: u16, body: &str) -> Error {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let err = v.get("error").cloned().unwrap_or_default();
    let message = match message_of(&err) {
        m if m == "null" => body.chars().take(300).collect::<String>(),
        m => m,
    };
    let kind = err.get("type").and_then(|t| t.as_str()).unwrap_or_default();
    match status {
        401 | 403 => Error::BadKey,
        _ if kind == "exceed_context_size_error"
            || message.contains("context length")
            || message.contains("exceeds the available context") =>
        {
            Error::ContextFull(message)
        }
        404 if message.to_lowercase().contains("model") => Error::NoSuchModel {
            asked: String::new(),
            offered: message,
        },
        _ if message.trim().is_empty() => Error::Server(format!("status {status}")),
        _ => Error::Server(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_with_or_without_v1_and_bad_ones_named() {
        let c = Client::new(" http://127.0.0.1:8080/v1/ ", Some("  ")).unwrap();
        assert_eq!(c.address(), "http://127.0.0.1:8080");
        assert!(c.key.is_none(), "a blank key is no key");
        assert!(!c.is_plain_http_off_machine());
        let c = Client::new("http://gpu-box.lan:8000", Some("sk-1")).unwrap();
        assert!(c.is_plain_http_off_machine());
        assert!(
            !format!("{c:?}").contains("sk-1"),
            "the key is never printed"
        );
        assert!(!Client::new("https://example.org/api/v1", None)
            .unwrap()
            .is_plain_http_off_machine());
        assert_eq!(
            Client::new("https://example.org/api/v1", None)
                .unwrap()
                .address(),
            "https://example.org/api"
        );
        for bad in ["", "localhost:8080", "ftp://x", "http://", "not an address"] {
            assert!(
                matches!(Client::new(bad, None), Err(Error::BadAddress(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refusals_are_worded_by_what_they_mean() {
        assert_eq!(refusal(401, "{}"), Error::BadKey);
        let full = r#"{"error":{"code":400,"message":"request (2000 tokens) exceeds the available context size (1024 tokens)","type":"exceed_context_size_error"}}"#;
        assert!(matches!(refusal(400, full), Error::ContextFull(m) if m.contains("1024")));
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 1024 tokens.","type":"BadRequestError"}"#;
        assert!(matches!(
            refusal(400, vllm),
            Error::Server(_) | Error::ContextFull(_)
        ));
        assert_eq!(refusal(500, ""), Error::Server("status 500".into()));
        assert_eq!(
            refusal(500, "oops"),
            Error::Server("oops".into()),
            "a body that is not JSON is quoted"
        );
    }

    #[test]
    fn stream_events_fill_the_completion() {
        let mut out = Completion {
            text: String::new(),
            finish: Finish::Stop,
            prompt_tokens: None,
            cached_tokens: None,
            completion_tokens: None,
            ms: 0.0,
        };
        let mut seen = String::new();
        let mut on = |t: &str| seen.push_str(t);
        for e in [
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"},"finish_reason":"length"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":40}}}"#,
        ] {
            read_event(&serde_json::from_str(e).unwrap(), &mut out, &mut on);
        }
        assert_eq!(out.text, "Hello");
        assert_eq!(out.finish, Finish::Length);
        assert_eq!(out.computed_tokens(), Some(10));
        read_event(
            &serde_json::from_str(r#"{"choices":[],"timings":{"cache_n":45,"prompt_n":7}}"#)
                .unwrap(),
            &mut out,
            &mut on,
        );
        assert_eq!((out.prompt_tokens, out.cached_tokens), (Some(52), Some(45)));
        assert_eq!(seen, "Hello", "each piece went to the caller as it came");
    }
}
