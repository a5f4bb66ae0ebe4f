//! One conversation with a server, turn by turn, under the [`crate::policy`]: what each request
//! carries, the token counts it is planned with (the server's own tokenizer; the template's
//! share per message learned from the server's counts), and the figures of each turn.

use std::sync::atomic::AtomicBool;

use crate::client::{ChatMessage, ChatRequest, Client, Error, Finish};
use crate::policy::{plan, Eviction, Policy};

/// What the template adds to a message before the server has said (about a role marker and
/// an end marker); learned from the server's counts after the first request.
const FIRST_GUESS_PER_MESSAGE: usize = 8;

/// The figures of one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnStats {
    pub reply: String,
    pub finish: Finish,
    /// Tokens of the user's message and of the reply.
    pub user_tokens: usize,
    pub reply_tokens: usize,
    /// Prompt tokens of the request, as the server counted them (else as planned).
    pub prompt_tokens: usize,
    /// Of those, tokens the server took from its cache, and tokens it computed.
    pub cached: usize,
    pub computed: usize,
    pub ms: f64,
    /// Messages the request carried after the pinned start, and how many left the window
    /// with it.
    pub kept_messages: usize,
    pub evicted_messages: usize,
    /// The server's context, the pinned start's tokens, and the kept history's tokens.
    pub context: usize,
    pub pinned_tokens: usize,
    pub window_tokens: usize,
    /// Every message the window has let go so far, and their tokens.
    pub evicted_total: usize,
    pub evicted_tokens_total: usize,
}

/// A conversation with a model on a server.
#[derive(Debug)]
pub struct Session {
    client: Client,
    model: String,
    context: usize,
    reply_room: usize,
    eviction: Option<Eviction>,
    /// Fields for the server beyond OpenAI's (llama.cpp's `cache_prompt`, `n_cache_reuse`).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub temperature: f32,
    pub seed: Option<u64>,
    /// The system prompt, then the first exchange once it fits: sent with every request.
    pinned: Vec<(ChatMessage, usize)>,
    pinned_first_exchange: bool,
    history: Vec<(ChatMessage, usize)>,
    from: usize,
    per_message: usize,
    evicted_tokens_total: usize,
    last: Option<(ChatRequest, TurnStats)>,
}

impl Session {
    /// A conversation with `model` on the server `client` speaks to: the model must be there,
    /// and the context is the server's where it says it, else `context`.
    pub async fn start(
        client: Client,
        model: &str,
        system_prompt: &str,
        reply_room: usize,
        context: Option<usize>,
    ) -> Result<Self, Error> {
        let m = client.model(model).await?;
        let context = match client.context_size(&m).await.or(context) {
            Some(n) => n,
            None => {
                return Err(Error::Server(
                    "the server does not say how much context it has: enter its context size"
                        .into(),
                ))
            }
        };
        let mut s = Self {
            client,
            model: model.to_string(),
            context,
            reply_room,
            eviction: None,
            extra: serde_json::Map::new(),
            temperature: 0.0,
            seed: None,
            pinned: Vec::new(),
            pinned_first_exchange: false,
            history: Vec::new(),
            from: 0,
            per_message: FIRST_GUESS_PER_MESSAGE,
            evicted_tokens_total: 0,
            last: None,
        };
        if !system_prompt.trim().is_empty() {
            let n = s.count(system_prompt).await?;
            s.pinned
                .push((ChatMessage::new("system", system_prompt), n));
        }
        Ok(s)
    }

    /// Lets messages go one at a time, as a client that trims to fit does (for comparison).
    pub fn evict(&mut self, eviction: Eviction) {
        self.eviction = Some(eviction);
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// The last request that got a reply, as it was sent.
    pub fn last_request(&self) -> &ChatRequest {
        &self.last.as_ref().expect("a turn was taken").0
    }

    /// The figures of the last turn that got a reply.
    pub fn last_stats(&self) -> Option<&TurnStats> {
        self.last.as_ref().map(|l| &l.1)
    }

    /// Tokens of `text` by the server's tokenizer, else about four characters a token.
    async fn count(&self, text: &str) -> Result<usize, Error> {
        self.client.count_or_estimate(text).await
    }

    fn cost(&self, tokens: usize) -> usize {
        tokens + self.per_message
    }

    fn policy(&self, pinned: usize) -> Policy {
        match self.eviction {
            Some(eviction) => Policy {
                context: self.context,
                reply_room: self.reply_room,
                eviction,
            },
            None => Policy::with_blocks(self.context, self.reply_room, pinned),
        }
    }

    fn request(&self, from: usize) -> ChatRequest {
        let messages = self
            .pinned
            .iter()
            .chain(&self.history[from..])
            .map(|(m, _)| m.clone())
            .collect();
        ChatRequest {
            model: self.model.clone(),
            messages,
            max_tokens: self.reply_room,
            temperature: self.temperature,
            top_p: 1.0,
            seed: self.seed,
            extra: self.extra.clone(),
        }
    }

    /// Sends `user` and streams the reply into `on_text`. On an error the conversation is as
    /// it was before the turn (the caller keeps the user's text).
    pub async fn turn(
        &mut self,
        user: &str,
        cancel: &AtomicBool,
        on_text: impl FnMut(&str),
    ) -> Result<TurnStats, Error> {
        let n = self.count(user).await?;
        self.history.push((ChatMessage::new("user", user), n));
        let result = self.send(cancel, on_text).await;
        if result.is_err() {
            self.history.pop();
        }
        result
    }

    async fn send(
        &mut self,
        cancel: &AtomicBool,
        on_text: impl FnMut(&str),
    ) -> Result<TurnStats, Error> {
        // Plan; where the server counts whole requests, check the plan against its count and
        // learn the template's share per message until it fits.
        let mut tries = 0;
        let (p, req, pinned_tokens) = loop {
            let pinned_tokens: usize = self.pinned.iter().map(|m| self.cost(m.1)).sum();
            let costs: Vec<usize> = self.history.iter().map(|m| self.cost(m.1)).collect();
            let p = plan(
                &self.policy(pinned_tokens),
                pinned_tokens,
                &costs,
                self.from,
            )
            .map_err(|e| Error::TooSmall {
                context: self.context,
                needed: e.needed,
            })?;
            let req = self.request(p.from);
            tries += 1;
            let counted = if tries <= 3 {
                self.client.count_request(&req).await?
            } else {
                None
            };
            match counted {
                Some(actual) if actual + self.reply_room > self.context => {
                    self.learn(actual, &req);
                }
                _ => break (p, req, pinned_tokens),
            }
        };
        let done = self.client.chat(&req, cancel, on_text).await?;
        let planned = p.tokens;
        let kept_messages = self.history.len() - p.from;
        let user_tokens = self.history.last().map_or(0, |m| m.1);
        if let Some(actual) = done.prompt_tokens {
            self.learn(actual, &req);
        }
        let reply_tokens = match done.completion_tokens {
            Some(n) => n,
            None => self.count(&done.text).await?,
        };
        let evicted_tokens: usize = self.history[self.from.min(p.from)..p.from]
            .iter()
            .map(|m| m.1)
            .sum();
        self.evicted_tokens_total += evicted_tokens;
        self.from = p.from;
        self.history
            .push((ChatMessage::new("assistant", &done.text), reply_tokens));
        // The first exchange joins the pinned start when it takes at most a quarter of the
        // context: like the sinks, it anchors what the model makes of everything after it.
        if !self.pinned_first_exchange && self.from == 0 && self.history.len() == 2 {
            let cost: usize = self.history.iter().map(|m| self.cost(m.1)).sum();
            if pinned_tokens + cost <= self.context / 4 {
                self.pinned.append(&mut self.history);
            }
            self.pinned_first_exchange = true;
        }
        let prompt_tokens = done.prompt_tokens.unwrap_or(planned);
        let cached = done.cached_tokens.unwrap_or(0).min(prompt_tokens);
        let stats = TurnStats {
            reply: done.text,
            finish: done.finish,
            user_tokens,
            reply_tokens,
            prompt_tokens,
            cached,
            computed: prompt_tokens - cached,
            ms: done.ms,
            kept_messages,
            evicted_messages: p.evicted,
            context: self.context,
            pinned_tokens,
            window_tokens: planned - pinned_tokens,
            evicted_total: self.from,
            evicted_tokens_total: self.evicted_tokens_total,
        };
        self.last = Some((req, stats.clone()));
        Ok(stats)
    }

    /// Learns the template's share per message from the server's count of a request.
    fn learn(&mut self, actual: usize, req: &ChatRequest) {
        let content: usize = self
            .pinned
            .iter()
            .chain(&self.history[self.history.len() + self.pinned.len() - req.messages.len()..])
            .map(|m| m.1)
            .sum();
        let n = req.messages.len().max(1);
        self.per_message = actual.saturating_sub(content).div_ceil(n).max(1);
    }
}
