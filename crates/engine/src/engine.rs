//! `Engine`: owns one loaded model and serves many conversations, each with its own
//! [`SinkCache`] kept alive between turns, one step at a time on a dedicated thread.
//!
//! Requests arrive over a channel and carry their own event callback. A reply is cancelled by
//! flipping its flag; the loop checks it between steps, so the engine is free at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use candle_core::Device;

use crate::cache::{CacheConfig, CacheStats, SinkCache};
use crate::chat::{encode_pieces, ChatTemplate, Role, Turn};
use crate::model::{Logits, Model};
use crate::sampling::{Sampler, SamplingParams};
use crate::text::TokenOutputStream;
use crate::tokenizer::GgufTokenizer;
use crate::{Error, LoadOptions, Result};

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    StopString,
    MaxTokens,
    Cancelled,
}

/// What a reply streams to its caller.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EngineEvent {
    /// The new turn's tokens are being read (`done` of `total`).
    Prefill {
        done: usize,
        total: usize,
    },
    /// A piece of reply text.
    Token {
        text: String,
    },
    /// Cache state after a step, with the first message the model still sees whole.
    Cache {
        stats: CacheStats,
        first_visible_message: Option<i64>,
    },
    Done {
        reason: StopReason,
        tokens: usize,
        tokens_per_s: f64,
        prompt_tokens: usize,
    },
    Error {
        code: String,
        message: String,
    },
}

/// One reply to produce.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub conversation: i64,
    pub system_prompt: String,
    /// Earlier turns, oldest first, used only when this conversation has no live cache.
    pub history: Vec<Turn>,
    pub user_text: String,
    pub user_message_id: i64,
    pub reply_message_id: i64,
    pub sampling: SamplingParams,
    pub cache: CacheConfig,
    /// Pin the opening and system prompt with the sinks (on by default).
    pub pin_system_prompt: bool,
}

/// Handle to a running reply.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

type Callback = Box<dyn FnMut(EngineEvent) + Send>;

enum Command {
    Generate(Box<GenerateRequest>, Cancel, Callback),
    Forget(i64),
    Shutdown,
}

/// What the UI shows about the loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub device: String,
    pub weights: String,
    pub trained_context: usize,
    pub kv_bytes_per_token: usize,
}

/// The inference engine.
pub struct Engine {
    tx: mpsc::Sender<Command>,
    info: ModelInfo,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

/// Where each message starts in a conversation's token stream.
#[derive(Debug, Default)]
struct Segments(Vec<(u64, i64)>);

impl Segments {
    fn push(&mut self, start: u64, message: i64) {
        self.0.push((start, message));
    }
    /// The first message whose every token is still in the window.
    fn first_whole_after(&self, window_start: u64, pinned: usize) -> Option<i64> {
        if window_start <= pinned as u64 {
            return self.0.first().map(|s| s.1);
        }
        self.0.iter().find(|(s, _)| *s >= window_start).map(|s| s.1)
    }
}

struct Conversation {
    cache: SinkCache,
    system_prompt: String,
    pin: bool,
    /// An assistant turn is open: its closing markup goes before the next user turn.
    close_pending: bool,
    segments: Segments,
    last_used: Instant,
}

/// How many conversations keep a live cache; the least recently used beyond it is dropped and
/// rebuilt from its transcript when it comes back.
const LIVE_CONVERSATIONS: usize = 4;

impl Engine {
    /// Loads `model_path` on the best device and starts the engine thread.
    pub fn start(model_path: &Path, device: Device) -> Result<Self> {
        let model = Model::load(model_path, &device, LoadOptions::default())?;
        let header = crate::model::read_gguf_header(model_path)?;
        let tokenizer = GgufTokenizer::from_gguf(&header)?;
        let template = ChatTemplate::detect(tokenizer.chat_template.as_deref());
        let spec = model.spec().clone();
        let info = ModelInfo {
            name: spec.name.clone(),
            architecture: spec.architecture.gguf_name().into(),
            device: crate::device::device_label(&device).into(),
            weights: format!("{:?}", model.weight_dtype()),
            trained_context: spec.trained_context,
            kv_bytes_per_token: spec.kv_bytes_per_token(),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sinkchat-engine".into())
            .spawn(move || {
                let mut w = Worker {
                    model,
                    tokenizer,
                    template,
                    conversations: HashMap::new(),
                };
                w.run(rx)
            })
            .map_err(|_| Error::EngineStopped)?;
        Ok(Self {
            tx,
            info,
            thread: Some(thread),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Queues a reply; events arrive on `on_event` from the engine thread.
    pub fn generate(
        &self,
        req: GenerateRequest,
        on_event: impl FnMut(EngineEvent) + Send + 'static,
    ) -> Result<Cancel> {
        if req.user_text.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        req.sampling.validate()?;
        req.cache.validate()?;
        let cancel = Cancel(Arc::new(AtomicBool::new(false)));
        self.tx
            .send(Command::Generate(
                Box::new(req),
                cancel.clone(),
                Box::new(on_event),
            ))
            .map_err(|_| Error::EngineStopped)?;
        Ok(cancel)
    }

    /// Drops a conversation's cache (deleted conversation, edited history).
    pub fn forget(&self, conversation: i64) {
        let _ = self.tx.send(Command::Forget(conversation));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    model: Model,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    conversations: HashMap<i64, Conversation>,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Generate(req, cancel, mut cb) => {
                    let _span =
                        tracing::info_span!("reply", conversation = req.conversation).entered();
                    if let Err(e) = self.generate(&req, &cancel, &mut cb) {
                        tracing::error!(error = %e, "reply failed");
                        // A failed step may have left the cache half-written: rebuild next time.
                        self.conversations.remove(&req.conversation);
                        cb(EngineEvent::Error {
                            code: e.code().into(),
                            message: e.to_string(),
                        });
                    }
                }
                Command::Forget(id) => {
                    self.conversations.remove(&id);
                }
                Command::Shutdown => break,
            }
        }
    }

    /// The BOS token's text, for templates that open with it (ChatML does not).
    fn bos_str(&self) -> Option<String> {
        if self.template == ChatTemplate::ChatMl {
            return None;
        }
        self.tokenizer.bos.and_then(|b| self.tokenizer.id_to_token(b))
    }

    /// Makes sure the conversation has a live cache matching the request, rebuilding it from
    /// the transcript's tail if needed. Returns the tokens still to feed before the user turn.
    fn prepare(&mut self, req: &GenerateRequest) -> Result<Vec<(Vec<u32>, Option<i64>)>> {
        let keep = self.conversations.get(&req.conversation).is_some_and(|c| {
            c.system_prompt == req.system_prompt
                && c.pin == req.pin_system_prompt
                && c.cache.config().window == req.cache.window
                && c.cache.config().evict_step == req.cache.evict_step
        });
        let mut feeds = Vec::new();
        if keep {
            let c = self
                .conversations
                .get_mut(&req.conversation)
                .expect("checked");
            if c.close_pending {
                feeds.push((
                    encode_pieces(&self.tokenizer, &self.template.assistant_close())?,
                    None,
                ));
                c.close_pending = false;
            }
            return Ok(feeds);
        }
        if self.conversations.len() >= LIVE_CONVERSATIONS {
            if let Some((&oldest, _)) = self.conversations.iter().min_by_key(|(_, c)| c.last_used) {
                self.conversations.remove(&oldest);
            }
        }
        let opening = encode_pieces(
            &self.tokenizer,
            &self
                .template
                .opening(self.bos_str().as_deref(), &req.system_prompt),
        )?;
        let sinks = if req.pin_system_prompt {
            req.cache.sinks.max(opening.len())
        } else {
            req.cache.sinks
        };
        let config = CacheConfig {
            sinks,
            window: req.cache.window.max(sinks),
            evict_step: req.cache.evict_step,
        };
        let cache = SinkCache::new(self.model.spec(), config, self.model.device())?;
        feeds.push((opening, None));
        // Rebuild from the transcript's tail: the turns that fit in three quarters of the
        // window, so the new turn and the reply still have room.
        let budget = config.window * 3 / 4;
        let mut tail: Vec<(Vec<u32>, Option<i64>)> = Vec::new();
        let mut used = 0;
        let turns: Vec<&Turn> = req
            .history
            .iter()
            .filter(|t| t.role != Role::System)
            .collect();
        for (i, t) in turns.iter().enumerate().rev() {
            let mut pieces = match t.role {
                Role::User => self.template.user_turn(&t.content),
                _ => self.template.assistant_text(&t.content),
            };
            // Every assistant turn is closed, and so is a user turn left without a reply
            // (a failed one), so the template never nests two turns.
            let answered = turns.get(i + 1).is_some_and(|n| n.role == Role::Assistant);
            if t.role == Role::Assistant || !answered {
                pieces.extend(self.template.assistant_close());
            }
            let ids = encode_pieces(&self.tokenizer, &pieces)?;
            if used + ids.len() > budget {
                break;
            }
            used += ids.len();
            tail.push((ids, Some(t.message_id)));
        }
        tail.reverse();
        feeds.extend(tail);
        self.conversations.insert(
            req.conversation,
            Conversation {
                cache,
                system_prompt: req.system_prompt.clone(),
                pin: req.pin_system_prompt,
                close_pending: false,
                segments: Segments::default(),
                last_used: Instant::now(),
            },
        );
        Ok(feeds)
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        cancel: &Cancel,
        cb: &mut Callback,
    ) -> Result<()> {
        let mut feeds = self.prepare(req)?;
        let user = encode_pieces(&self.tokenizer, &self.template.user_turn(&req.user_text))?;
        feeds.push((user, Some(req.user_message_id)));
        let total: usize = feeds.iter().map(|f| f.0.len()).sum();
        let conv = self
            .conversations
            .get_mut(&req.conversation)
            .expect("prepared");
        conv.last_used = Instant::now();
        let chunk = (conv.cache.config().window / 4).clamp(1, 256);
        let mut done = 0;
        let mut logits = None;
        for (ids, msg) in &feeds {
            if ids.is_empty() {
                continue;
            }
            if let Some(m) = msg {
                conv.segments.push(conv.cache.tokens_seen(), *m);
            }
            for c in ids.chunks(chunk) {
                if cancel.is_cancelled() {
                    // The turn is half-read: drop the cache rather than keep a torn turn.
                    self.conversations.remove(&req.conversation);
                    cb(EngineEvent::Done {
                        reason: StopReason::Cancelled,
                        tokens: 0,
                        tokens_per_s: 0.0,
                        prompt_tokens: done,
                    });
                    return Ok(());
                }
                logits = Some(self.model.forward(c, &mut conv.cache, Logits::Last)?);
                done += c.len();
                cb(EngineEvent::Prefill { done, total });
            }
        }
        conv.segments
            .push(conv.cache.tokens_seen(), req.reply_message_id);
        let mut logits = logits.ok_or(Error::EmptyInput)?;
        let mut sampler = Sampler::new(req.sampling.clone())?;
        let mut out = TokenOutputStream::new(self.tokenizer.clone());
        let mut recent: Vec<u32> = Vec::new();
        let started = Instant::now();
        let mut reason = StopReason::MaxTokens;
        let pinned = conv.cache.config().sinks;
        let emit_cache = |conv: &Conversation, cb: &mut Callback| {
            let stats = conv.cache.stats();
            let first = conv.segments.first_whole_after(stats.window_start, pinned);
            cb(EngineEvent::Cache {
                stats,
                first_visible_message: first,
            });
        };
        emit_cache(conv, cb);
        let mut produced = 0;
        while produced < req.sampling.max_tokens {
            if cancel.is_cancelled() {
                reason = StopReason::Cancelled;
                break;
            }
            let v: Vec<f32> = logits.to_vec1()?;
            let tok = sampler.sample(&v, &recent);
            if self.tokenizer.end_of_turn.contains(&tok) {
                reason = StopReason::EndOfTurn;
                break;
            }
            produced += 1;
            recent.push(tok);
            if let Some(piece) = out.next(tok)? {
                cb(EngineEvent::Token { text: piece });
            }
            // The token is fed in every case, so the cache holds the whole reply.
            logits = self.model.forward(&[tok], &mut conv.cache, Logits::Last)?;
            if req
                .sampling
                .stop
                .iter()
                .any(|s| out.text().ends_with(s.as_str()))
            {
                reason = StopReason::StopString;
                break;
            }
            emit_cache(conv, cb);
        }
        if let Some(piece) = out.finish()? {
            cb(EngineEvent::Token { text: piece });
        }
        conv.close_pending = true;
        let secs = started.elapsed().as_secs_f64();
        emit_cache(conv, cb);
        cb(EngineEvent::Done {
            reason,
            tokens: produced,
            tokens_per_s: if secs > 0.0 {
                produced as f64 / secs
            } else {
                0.0
            },
            prompt_tokens: total,
        });
        Ok(())
    }
}
