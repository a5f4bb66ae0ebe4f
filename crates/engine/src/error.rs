//! The engine's error type: one enum, each variant a plain sentence a user can act on.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the model file {path} could not be opened: {source}")]
    ModelFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the model file {path} is not a valid GGUF file (it may be truncated or corrupt): {reason}"
    )]
    InvalidGguf { path: PathBuf, reason: String },
    /// No GGUF at all (a text file, a safetensors or a PyTorch file named `.gguf`): named for
    /// what it is, not called corrupt.
    #[error("{0} is not a GGUF model file (SinkChat runs GGUF models, as made for llama.cpp)")]
    NotGguf(String),
    /// A weight type the engine has no kernels for (an i-quant such as IQ4_XS): the file is
    /// fine, and the user is told which types work.
    #[error("this model's weights are stored as {name}{}, a weight type SinkChat cannot run yet; the file itself is not damaged. SinkChat runs {}: a copy of the same model in one of those types will work", tensor.as_deref().map(|t| format!(" (the tensor {t}, at least)")).unwrap_or_default(), crate::model::TYPES_THAT_RUN)]
    UnsupportedWeightType {
        name: String,
        tensor: Option<String>,
    },
    #[error("models of architecture '{0}' are not supported yet (SinkChat runs llama, qwen2, qwen3, phi3 and gemma3 models)")]
    UnsupportedArchitecture(String),
    /// The header holds values no real model has, or that contradict each other: a damaged
    /// or forged file, not a model SinkChat lacks support for.
    #[error("the model file is malformed: {0}")]
    Malformed(String),
    #[error("the model file is missing '{0}'")]
    MissingMetadata(String),
    #[error("the model file is missing the tensor '{0}' (the file is incomplete or not a llama-family model)")]
    MissingTensor(String),
    #[error("the model's tokenizer can't be built: {0}")]
    Tokenizer(String),
    #[error("the model's chat template can't be used: {0}")]
    Template(String),
    #[error("invalid cache settings: {0}")]
    InvalidCacheConfig(String),
    #[error("invalid sampling settings: {0}")]
    InvalidSampling(String),
    #[error("the message is empty")]
    EmptyInput,
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("the saved memory of this conversation can't be used ({0}); it will be rebuilt from the transcript")]
    Snapshot(String),
    #[error("the conversation's earlier messages could not be read: {0}")]
    History(String),
    #[error("the engine hit an internal error ({0}); this chat's memory will be rebuilt from its transcript")]
    Internal(String),
    #[error("computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    /// The sentence-vector model (recall and search by meaning) is missing or unusable:
    /// recall and search go on by words alone.
    #[error("the model that finds messages by meaning can't be used ({0}); recall and search go on by words")]
    Embedder(String),
}

impl Error {
    /// A stable code the UI can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ModelFileUnreadable { .. } => "model_missing",
            Error::InvalidGguf { .. } | Error::Malformed(_) => "model_corrupt",
            Error::NotGguf(_) => "not_gguf",
            Error::UnsupportedArchitecture(_) | Error::UnsupportedWeightType { .. } => {
                "model_unsupported"
            }
            Error::MissingMetadata(_) | Error::MissingTensor(_) => "model_incomplete",
            Error::Tokenizer(_) => "tokenizer",
            Error::Template(_) => "template",
            Error::InvalidCacheConfig(_) => "invalid_cache_config",
            Error::InvalidSampling(_) => "invalid_sampling",
            Error::EmptyInput => "empty_input",
            Error::EngineStopped => "engine_stopped",
            Error::Snapshot(_) => "snapshot",
            Error::History(_) => "history_unavailable",
            Error::Internal(_) => "internal",
            Error::Compute(_) => "compute",
            Error::Embedder(_) => "embedder",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
