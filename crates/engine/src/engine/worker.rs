//! The engine's thread: it owns the model and every live conversation's cache, and serves
//! commands: replies (prepare the memory, feed the new turn, decode) taking turns step by step,
//! parks, forgets. A panic in a reply ends that reply with an error, never the thread.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::cache::{CacheConfig, CacheStats, SinkCache};
use crate::chat::ChatTemplate;
use crate::model::{Logits, Model};
use crate::sampling::Sampler;
use crate::text::TokenOutputStream;
use crate::tokenizer::GgufTokenizer;
use crate::{Error, Result};

use super::feed::{self, PendingTokens};
use super::protocol::{
    Cancel, EngineEvent, GenerateRequest, Horizon, MemorySource, MemoryView, StopReason,
};
use super::LIVE_CONVERSATIONS;

/// The live conversations' views, kept by the engine thread as it works, read by anyone at
/// once (the thread may be busy writing a reply).
pub(super) type Views = Arc<std::sync::Mutex<HashMap<i64, MemoryView>>>;

/// What the gauge shows beyond the cache's own figures: how much of the pinned part is the
/// opening's tail span (and the room for it), and where turns' head spans sit in the token
/// stream. (Snapshots written before the spans were named kept the first names.)
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Marks {
    #[serde(alias = "pins_used")]
    pub tail_used: usize,
    #[serde(alias = "pins_room")]
    pub tail_room: usize,
    /// Token ranges `[start, end)` of head spans, oldest first.
    #[serde(alias = "recalled")]
    pub heads: Vec<(u64, u64)>,
}

impl Marks {
    /// Adds the marks to `stats`, and forgets head spans the window has let go.
    pub fn apply(&mut self, stats: &mut CacheStats) {
        let (lo, hi) = (stats.window_start, stats.tokens_seen);
        self.heads.retain(|&(_, end)| end > lo);
        stats.opening_tail_used = self.tail_used;
        stats.opening_tail_room = self.tail_room;
        stats.turn_head_used = self
            .heads
            .iter()
            .map(|&(s, e)| e.min(hi).saturating_sub(s.max(lo)) as usize)
            .sum();
    }
}

pub(super) type Callback = Box<dyn FnMut(EngineEvent) + Send>;

pub(super) enum Command {
    Generate(Box<GenerateRequest>, Cancel, Callback),
    Forget(i64),
    Park(i64),
    ParkAll(mpsc::Sender<usize>),
    Shutdown,
}

/// Where each message starts in a conversation's token stream.
#[derive(Debug, Default)]
pub(super) struct Segments(pub Vec<(u64, i64)>);

impl Segments {
    pub fn push(&mut self, start: u64, message: i64) {
        self.0.push((start, message));
    }
    /// The first message the model still sees, whole or in part: the one the window begins
    /// in. Every message before it is forgotten (only the pinned opening stays).
    pub fn first_visible(&self, window_start: u64, pinned: usize) -> Option<i64> {
        if window_start <= pinned as u64 {
            return self.0.first().map(|s| s.1);
        }
        self.0
            .iter()
            .rev()
            .find(|(s, _)| *s <= window_start)
            .or(self.0.first())
            .map(|s| s.1)
    }

    /// What [`Horizon`] needs of these starts with the cache's figures: the messages from
    /// the one the window begins in.
    pub fn horizon(&self, stats: &CacheStats, pinned: usize) -> Horizon {
        let from = match self.first_visible(stats.window_start, pinned) {
            Some(id) => self.0.iter().rposition(|s| s.1 == id).unwrap_or(0),
            None => 0,
        };
        Horizon {
            starts: self.0[from..].to_vec(),
            window_start: stats.window_start,
            pinned: pinned as u64,
            window: stats.window,
            window_used: stats.window_used,
        }
    }
}

pub(super) struct Conversation {
    pub cache: SinkCache,
    pub key: String,
    pub system_prompt: String,
    pub pin: bool,
    /// The cache settings the caller asked for (the cache may pin more for the opening).
    pub requested: CacheConfig,
    /// An assistant turn is open: its closing markup goes before the next user turn.
    pub close_pending: bool,
    pub segments: Segments,
    pub marks: Marks,
    /// The last message the cache has read (the last reply), to match a snapshot to its
    /// transcript.
    pub last_message: Option<i64>,
    pub last_used: Instant,
    /// The last token the cache read (`None`: unknown, e.g. after a restore), which decides
    /// whether SentencePiece puts a space before the next text.
    pub last_token: Option<u32>,
}

pub(super) struct Worker {
    pub views: Views,
    pub model: Model,
    pub tokenizer: GgufTokenizer,
    pub template: ChatTemplate,
    pub conversations: HashMap<i64, Conversation>,
    pub model_id: String,
    pub snapshot_dir: Option<PathBuf>,
    pub snapshot_budget: Arc<AtomicU64>,
    /// How long a prompt token has taken lately (for the size of a shared chunk).
    pub prefill_pace: Option<Duration>,
}

/// How long one step of a long prompt may hold the engine while other replies wait: their
/// next token comes at most about this late (plus one step of each other reply). A prompt
/// alone is fed in the largest chunks the cache takes.
pub const SLICE: Duration = Duration::from_millis(40);

/// Smallest prompt chunk fed while others wait (a chunk of one token takes another path
/// through the matmuls; a few tokens keep the figures the same as an uncontended reply's).
const MIN_SHARED_CHUNK: usize = 8;

/// A reply in progress: the engine takes turns among them (see [`Worker::run`]).
struct Job {
    req: Box<GenerateRequest>,
    cancel: Cancel,
    cb: Callback,
    state: Phase,
    /// Engine time this reply has had (from the moment it joined, see [`Worker::admit`]): the
    /// one with the least goes next, so each of N replies gets about 1/N of the engine.
    used: Duration,
    span: tracing::Span,
}

enum Phase {
    /// Not started: its memory is prepared at its first turn.
    Waiting,
    Prefill {
        feeds: Vec<PendingTokens>,
        /// Which feed, and how far into it.
        feed: usize,
        offset: usize,
        head: Option<(usize, usize)>,
        done: usize,
        total: usize,
        logits: Option<Tensor>,
    },
    Decode(Box<Decode>),
}

struct Decode {
    logits: Tensor,
    sampler: Sampler,
    out: TokenOutputStream,
    recent: Vec<u32>,
    started: Instant,
    produced: usize,
    total: usize,
}

/// What one step of a reply came to.
enum Step {
    More,
    Finished,
}

impl Command {
    /// The conversation a command is about (`None`: all of them).
    fn conversation(&self) -> Option<i64> {
        match self {
            Command::Generate(req, ..) => Some(req.conversation),
            Command::Forget(id) | Command::Park(id) => Some(*id),
            Command::ParkAll(_) | Command::Shutdown => None,
        }
    }
}

impl Worker {
    /// Serves commands until shutdown. Replies in progress take turns, one step each (a chunk
    /// of prompt of at most about [`SLICE`], or one token), the one that has had the least
    /// engine time first: a long prompt from one client delays the others' tokens by a slice at
    /// most, and shares the engine with them instead of holding it. A command about a
    /// conversation with a reply in progress (a second reply, a park, a forget) waits for it,
    /// in the order it came; parking everything and shutting down wait for every reply.
    pub fn run(&mut self, rx: mpsc::Receiver<Command>) {
        let mut jobs: Vec<Job> = Vec::new();
        let mut waiting: VecDeque<Command> = VecDeque::new();
        loop {
            if jobs.is_empty() && waiting.is_empty() {
                match rx.recv() {
                    Ok(cmd) => {
                        if !self.accept(cmd, &mut jobs, &mut waiting) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        if !self.accept(cmd, &mut jobs, &mut waiting) {
                            return;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        if jobs.is_empty() && waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            let Some(next) = (0..jobs.len()).min_by_key(|&i| jobs[i].used) else {
                // Nothing runs: what waited can go now.
                for cmd in std::mem::take(&mut waiting) {
                    if !self.accept(cmd, &mut jobs, &mut waiting) {
                        return;
                    }
                }
                continue;
            };
            let busy: Vec<i64> = jobs.iter().map(|j| j.req.conversation).collect();
            let shared = jobs.len() > 1;
            let job = &mut jobs[next];
            let started = Instant::now();
            let finished = self.turn(job, &busy, shared);
            job.used += started.elapsed();
            if finished {
                jobs.swap_remove(next);
                for cmd in std::mem::take(&mut waiting) {
                    if !self.accept(cmd, &mut jobs, &mut waiting) {
                        return;
                    }
                }
            }
        }
    }

    /// Takes a command: a reply joins the ones in progress, anything else runs now, unless
    /// it must wait (see [`Worker::run`]). Returns `false` at shutdown.
    fn accept(
        &mut self,
        cmd: Command,
        jobs: &mut Vec<Job>,
        waiting: &mut VecDeque<Command>,
    ) -> bool {
        let blocked = waiting
            .iter()
            .any(|w| match (w.conversation(), cmd.conversation()) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => a == b,
            })
            || match cmd.conversation() {
                None => !jobs.is_empty(),
                Some(id) => jobs.iter().any(|j| j.req.conversation == id),
            };
        if blocked {
            waiting.push_back(cmd);
            return true;
        }
        match cmd {
            Command::Generate(req, cancel, cb) => {
                // A newcomer starts level with the reply that has had the least so far: it
                // neither waits for the others to catch up nor holds the engine until it has.
                let used = jobs.iter().map(|j| j.used).min().unwrap_or_default();
                let span = tracing::info_span!("reply", conversation = req.conversation);
                jobs.push(Job {
                    req,
                    cancel,
                    cb,
                    state: Phase::Waiting,
                    used,
                    span,
                });
            }
            Command::Forget(id) => {
                self.drop_live(id);
                if let Some(p) = self.snapshot_path(id) {
                    let _ = std::fs::remove_file(p);
                }
            }
            Command::Park(id) => {
                self.park(id);
            }
            Command::ParkAll(done) => {
                let _ = done.send(self.park_all());
            }
            Command::Shutdown => {
                self.park_all();
                return false;
            }
        }
        true
    }

    /// One step of `job`; `true` when the reply has ended (done, cancelled or failed). A panic
    /// in a step ends that reply with an error, not the engine: the thread lives on for every
    /// other chat.
    fn turn(&mut self, job: &mut Job, busy: &[i64], shared: bool) -> bool {
        let span = job.span.clone();
        let _span = span.enter();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.step(job, busy, shared)
        }))
        .unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(what))
        });
        match result {
            Ok(Step::More) => false,
            Ok(Step::Finished) => true,
            Err(e) => {
                tracing::error!(error = %e, "reply failed");
                // A failed step may have left the cache half-written: rebuild next time.
                self.drop_live(job.req.conversation);
                (job.cb)(EngineEvent::Error {
                    code: e.code().into(),
                    message: e.to_string(),
                });
                true
            }
        }
    }

    /// Frees a conversation's live cache (its view goes with it).
    pub(super) fn drop_live(&mut self, id: i64) {
        self.conversations.remove(&id);
        self.views.lock().expect("views").remove(&id);
    }

    /// Makes sure the conversation has a live cache matching the request, rebuilding it from
    /// the transcript's tail if needed. Returns the tokens still to feed before the user turn.
    /// Conversations in `busy` have replies in progress and keep their caches.
    fn prepare(
        &mut self,
        req: &GenerateRequest,
        busy: &[i64],
    ) -> Result<(MemorySource, Vec<PendingTokens>)> {
        // A live cache is only reused when it saw exactly the transcript the request continues:
        // after a regenerate or an edit the transcript's tail differs and the cache is rebuilt.
        let last_in_transcript = req.history.last_message();
        let keep = self.conversations.get(&req.conversation).is_some_and(|c| {
            c.key == req.cache_key
                && c.system_prompt == req.system_prompt
                && c.pin == req.pin_system_prompt
                && c.requested == req.cache
                && c.last_message == last_in_transcript
        });
        let mut source = MemorySource::Live;
        if !keep {
            self.drop_live(req.conversation);
            if self.conversations.len() >= LIVE_CONVERSATIONS {
                // The least recently used that no reply is writing (with more replies in
                // progress than live caches, each keeps its own until it ends).
                let oldest = self
                    .conversations
                    .iter()
                    .filter(|(id, _)| !busy.contains(id))
                    .min_by_key(|(_, c)| c.last_used);
                if let Some((&oldest, _)) = oldest {
                    self.park(oldest); // frees it whether or not it is written
                }
            }
            source = MemorySource::Rebuilt;
            if let Some(c) = self.restore(req) {
                self.conversations.insert(req.conversation, c);
                source = MemorySource::Snapshot;
            }
        }
        if source != MemorySource::Rebuilt {
            let c = self
                .conversations
                .get_mut(&req.conversation)
                .expect("checked");
            let mut feeds = Vec::new();
            if c.close_pending {
                let close = feed::assistant_close(&self.tokenizer, &self.template, c.last_token)?;
                feeds.push((close, None));
                c.close_pending = false;
            }
            return Ok((source, feeds));
        }
        let plan = feed::plan_rebuild(&self.tokenizer, &self.template, req)?;
        let config = plan.config;
        // Held against the memory free now, before anything is allocated: an allocation that
        // fails would end the process.
        crate::device::check_cache_memory(
            SinkCache::bytes_for(self.model.spec(), config, self.model.device()) as u64,
            1,
            self.model.device(),
        )
        .map_err(Error::InvalidCacheConfig)?;
        let cache = SinkCache::new(self.model.spec(), config, self.model.device())?;
        self.conversations.insert(
            req.conversation,
            Conversation {
                cache,
                key: req.cache_key.clone(),
                system_prompt: req.system_prompt.clone(),
                pin: req.pin_system_prompt,
                requested: req.cache,
                close_pending: false,
                segments: Segments::default(),
                marks: Marks {
                    tail_used: plan.tail_used,
                    tail_room: plan.tail_room,
                    heads: Vec::new(),
                },
                last_message: None,
                last_used: Instant::now(),
                last_token: None,
            },
        );
        Ok((source, plan.feeds))
    }

    /// The reply's first step: its memory made ready and its new turn planned.
    fn start(&mut self, job: &mut Job, busy: &[i64]) -> Result<Phase> {
        let req = &job.req;
        let (source, mut feeds) = self.prepare(req, busy)?;
        (job.cb)(EngineEvent::Memory { source });
        let prev = feeds
            .iter()
            .rev()
            .find_map(|f| f.0.last().copied())
            .or_else(|| {
                self.conversations
                    .get(&req.conversation)
                    .and_then(|c| c.last_token)
            });
        let (user, head) = feed::user_turn(
            &self.tokenizer,
            &self.template,
            &req.user_text,
            req.spans.turn_head,
            prev,
        )?;
        feeds.push((user, Some(req.user_message_id)));
        feeds.retain(|f| !f.0.is_empty());
        let total: usize = feeds.iter().map(|f| f.0.len()).sum();
        Ok(Phase::Prefill {
            feeds,
            feed: 0,
            offset: 0,
            head,
            done: 0,
            total,
            logits: None,
        })
    }

    /// One step of a reply: its start, a chunk of its prompt, or one token of its answer.
    fn step(&mut self, job: &mut Job, busy: &[i64], shared: bool) -> Result<Step> {
        if matches!(job.state, Phase::Waiting) {
            job.state = self.start(job, busy)?;
            return Ok(Step::More);
        }
        let id = job.req.conversation;
        let conv = self.conversations.get_mut(&id).ok_or(Error::Internal(
            "the conversation's memory went while its reply was in progress".into(),
        ))?;
        conv.last_used = Instant::now();
        match &mut job.state {
            Phase::Waiting => unreachable!("started above"),
            Phase::Prefill {
                feeds,
                feed,
                offset,
                head,
                done,
                total,
                logits,
            } => {
                let Some((ids, msg)) = feeds.get(*feed) else {
                    // Every token read: the answer begins.
                    conv.segments
                        .push(conv.cache.tokens_seen(), job.req.reply_message_id);
                    let logits = logits.take().ok_or(Error::EmptyInput)?;
                    let total = *total;
                    job.state = Phase::Decode(Box::new(Decode {
                        logits,
                        sampler: Sampler::new(job.req.sampling.clone())?,
                        out: TokenOutputStream::new(self.tokenizer.clone()),
                        recent: Vec::new(),
                        started: Instant::now(),
                        produced: 0,
                        total,
                    }));
                    emit_cache(&self.views, id, conv, &mut job.cb);
                    return Ok(Step::More);
                };
                if job.cancel.is_cancelled() {
                    // The turn is half-read: drop the cache rather than keep a torn turn.
                    let done = *done;
                    self.drop_live(id);
                    (job.cb)(EngineEvent::Done {
                        reason: StopReason::Cancelled,
                        tokens: 0,
                        tokens_per_s: 0.0,
                        prompt_tokens: done,
                    });
                    return Ok(Step::Finished);
                }
                if *offset == 0 {
                    if let Some(m) = msg {
                        let at = conv.cache.tokens_seen();
                        conv.segments.push(at, *m);
                        if let (Some((skip, n)), true) = (*head, *m == job.req.user_message_id) {
                            let start = at + skip as u64;
                            conv.marks.heads.push((start, start + n as u64));
                        }
                    }
                }
                let most = (conv.cache.config().window / 4)
                    .clamp(1, 256)
                    .min(conv.cache.max_chunk());
                let chunk = if shared {
                    shared_chunk(self.prefill_pace, most)
                } else {
                    most
                };
                let end = (*offset + chunk).min(ids.len());
                let c = &ids[*offset..end];
                let t = Instant::now();
                *logits = Some(self.model.forward(c, &mut conv.cache, Logits::Last)?);
                note_prefill(&mut self.prefill_pace, c.len(), t.elapsed());
                conv.last_token = c.last().copied();
                *done += c.len();
                *offset = end;
                if *offset == ids.len() {
                    *feed += 1;
                    *offset = 0;
                }
                (job.cb)(EngineEvent::Prefill {
                    done: *done,
                    total: *total,
                });
                Ok(Step::More)
            }
            Phase::Decode(d) => {
                let req = &job.req;
                let mut reason = None;
                if d.produced >= req.sampling.max_tokens {
                    reason = Some(StopReason::MaxTokens);
                } else if job.cancel.is_cancelled() {
                    reason = Some(StopReason::Cancelled);
                } else {
                    let v: Vec<f32> = d.logits.to_vec1()?;
                    let tok = d.sampler.sample(&v, &d.recent);
                    if self.tokenizer.end_of_turn.contains(&tok) {
                        reason = Some(StopReason::EndOfTurn);
                    } else {
                        d.produced += 1;
                        d.recent.push(tok);
                        if let Some(piece) = d.out.next(tok)? {
                            (job.cb)(EngineEvent::Token { text: piece });
                        }
                        // The token is fed in every case, so the cache holds the whole reply.
                        d.logits = self.model.forward(&[tok], &mut conv.cache, Logits::Last)?;
                        conv.last_token = Some(tok);
                        if req
                            .sampling
                            .stop
                            .iter()
                            .any(|s| d.out.text().ends_with(s.as_str()))
                        {
                            reason = Some(StopReason::StopString);
                        } else {
                            emit_cache(&self.views, id, conv, &mut job.cb);
                        }
                    }
                }
                let Some(reason) = reason else {
                    return Ok(Step::More);
                };
                if let Some(piece) = d.out.finish()? {
                    (job.cb)(EngineEvent::Token { text: piece });
                }
                conv.close_pending = true;
                conv.last_message = Some(req.reply_message_id);
                let secs = d.started.elapsed().as_secs_f64();
                emit_cache(&self.views, id, conv, &mut job.cb);
                (job.cb)(EngineEvent::Done {
                    reason,
                    tokens: d.produced,
                    tokens_per_s: if secs > 0.0 {
                        d.produced as f64 / secs
                    } else {
                        0.0
                    },
                    prompt_tokens: d.total,
                });
                Ok(Step::Finished)
            }
        }
    }
}

/// A prompt chunk that takes about [`SLICE`] at the pace prompts have been read at lately
/// (`pace`, per token): at most `most`, at least [`MIN_SHARED_CHUNK`].
fn shared_chunk(pace: Option<Duration>, most: usize) -> usize {
    let per_token = pace.unwrap_or(Duration::from_millis(5));
    let n = (SLICE.as_secs_f64() / per_token.as_secs_f64().max(1e-6)) as usize;
    n.clamp(MIN_SHARED_CHUNK.min(most), most)
}

/// Keeps `pace`, a running average of the time a prompt token takes (chunks of several tokens).
fn note_prefill(pace: &mut Option<Duration>, tokens: usize, took: Duration) {
    if tokens < MIN_SHARED_CHUNK {
        return;
    }
    let now = took / tokens as u32;
    *pace = Some(match *pace {
        None => now,
        Some(p) => (p * 3 + now) / 4,
    });
}

/// Publishes a conversation's memory (the view anyone may read) and tells the reply.
fn emit_cache(views: &Views, id: i64, conv: &mut Conversation, cb: &mut Callback) {
    let pinned = conv.cache.config().sinks;
    let mut stats = conv.cache.stats();
    conv.marks.apply(&mut stats);
    let first = conv.segments.first_visible(stats.window_start, pinned);
    views.lock().expect("views").insert(
        id,
        MemoryView {
            stats: stats.clone(),
            first_visible_message: first,
            horizon: conv.segments.horizon(&stats, pinned),
        },
    );
    cb(EngineEvent::Cache {
        stats,
        first_visible_message: first,
    });
}

#[cfg(test)]
mod segment_tests {
    use super::Segments;

    #[test]
    fn the_first_visible_message_is_the_one_the_window_begins_in() {
        let s = Segments(vec![(20, 1), (40, 2), (100, 3), (300, 4)]);
        assert_eq!(s.first_visible(4, 20), Some(1), "nothing evicted yet");
        assert_eq!(s.first_visible(30, 20), Some(1), "message 1 partly evicted");
        assert_eq!(s.first_visible(40, 20), Some(2), "message 1 gone, 2 whole");
        assert_eq!(s.first_visible(250, 20), Some(3), "inside a long message");
        assert_eq!(s.first_visible(1000, 20), Some(4));
        assert_eq!(Segments::default().first_visible(1000, 20), None);
    }

    fn stats(window_start: u64, window: usize, window_used: usize) -> crate::CacheStats {
        crate::CacheStats {
            window_start,
            window,
            window_used,
            ..Default::default()
        }
    }

    /// #36: a message counts as seen only while all of it is in the window, and only if it
    /// stays there once the next turn and the reply's room are read.
    #[test]
    fn a_message_is_whole_only_while_none_of_it_has_left_or_is_about_to() {
        let s = Segments(vec![(20, 1), (40, 2), (100, 3), (300, 4)]);
        // Nothing evicted and room to spare: every message is whole, now and after 50 more.
        let h = s.horizon(&stats(20, 400, 200), 20);
        assert_eq!(h.starts, s.0);
        assert_eq!(h.first_whole_after(0), Some(1));
        assert_eq!(h.first_whole_after(50), Some(1));
        // A full window: n more tokens push its first n out.
        let h = s.horizon(&stats(20, 400, 400), 20);
        assert_eq!(h.first_whole_after(0), Some(1));
        assert_eq!(
            h.first_whole_after(15),
            Some(2),
            "message 1 loses its first tokens"
        );
        assert_eq!(h.first_whole_after(20), Some(2), "message 2 begins at 40");
        assert_eq!(h.first_whole_after(21), Some(3));
        // The window begins inside message 1 (the bug: it counted as seen).
        let h = s.horizon(&stats(28, 400, 400), 20);
        assert_eq!(h.starts, s.0, "from the message the window begins in");
        assert_eq!(h.first_whole_after(0), Some(2));
        // Past the window's end of what it holds: no message stays whole.
        let h = s.horizon(&stats(250, 400, 400), 20);
        assert_eq!(h.starts, vec![(100, 3), (300, 4)]);
        assert_eq!(h.first_whole_after(0), Some(4));
        assert_eq!(h.first_whole_after(60), None);
        assert_eq!(
            Segments::default()
                .horizon(&stats(0, 8, 0), 4)
                .first_whole_after(9),
            None
        );
    }
}
