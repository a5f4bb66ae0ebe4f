//! SinkChat's inference engine: GGUF llama-family models run by our own candle forward pass
//! over an attention-sink KV cache ([`SinkCache`]), so that a conversation never hits a
//! context limit and token 100,000 costs what token 1,000 did.

pub mod alloc;
pub mod arch;
pub mod attend;
mod bert;
pub mod cache;
pub mod chat;
pub mod device;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod inspect;
pub mod model;
mod par;
pub mod probe;
pub mod qmatmul;
pub mod rope;
pub mod sampling;
pub mod snapshot;
pub mod spec;
pub mod text;
pub mod tokenizer;
mod vecmath;

pub use alloc::tune_allocator;
pub use cache::{CacheConfig, CacheStats, KvPrecision, SinkCache};
pub use chat::{ChatTemplate, Role, Turn};
pub use engine::{
    Cancel, Engine, EngineEvent, EngineOptions, GenerateRequest, History, HistoryReader, Horizon,
    MemorySource, MemoryView, Spans, StopReason,
};
pub use error::{Error, Result};
pub use inspect::{check_header_prefix, inspect, ModelSummary};
pub use model::{CpuWeights, LoadOptions, Model};
pub use sampling::{Sampler, SamplingParams};
pub use spec::{Architecture, ModelSpec};
pub use text::TokenOutputStream;
pub use tokenizer::{GgufTokenizer, VocabType};
