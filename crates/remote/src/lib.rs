//! A model that a server runs, with SinkChat's endless conversation (#35).
//!
//! Rival apps send a server the whole history each turn and fail when it outgrows the
//! server's context, or cut its middle one message at a time, which throws away the server's
//! prompt cache at every turn. SinkChat brings its own policy instead, at the level of
//! messages: a pinned start (the system prompt, pinned messages and the first exchange, which
//! play the attention sinks' part) and the newest messages that fit, evicted **in blocks**, so
//! that between two evictions each request extends the one before it and the server's prefix
//! cache serves it. With llama.cpp's server the eviction itself costs little too: its cache
//! reuse shifts the kept messages' cache into place instead of reading them again.
//!
//! - [`client`]: the server's OpenAI-compatible API (models, context size, tokenizer, a chat
//!   completion streamed as it is written), every failure in words.
//! - [`policy`]: which messages a request carries (pure, tested without a server).
//! - [`session`]: a conversation driven through both, turn by turn, with the figures the gauge
//!   and the benchmark show (tokens the server computed and took from its cache).
//! - [`local`]: starts llama.cpp's server (alone, or over RPC servers) as a child process, for
//!   the tests and the benchmark.

pub mod client;
pub mod local;
pub mod policy;
pub mod session;

pub use client::{ChatMessage, ChatRequest, Client, Completion, Error, Finish, ServerModel};
pub use policy::{Eviction, Plan, Policy};
pub use session::{Session, TurnStats};

pub type Result<T> = std::result::Result<T, Error>;
