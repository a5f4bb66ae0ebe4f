//! `UiError`: what a command returns on failure: a stable code the UI branches on
//! ([`ErrorCode`], the same enum in TypeScript), and a plain sentence it shows.

use serde::{Deserialize, Serialize};

/// Every code a command can fail with. The engine, the store and the hub name their errors
/// with these words ([`ErrorCode::of`]); the UI's hints are keyed by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The request
    BadRequest,
    BadFormat,
    Forbidden,
    NotFound,
    Busy,
    NothingToRedo,
    InvalidSettings,
    InvalidCacheConfig,
    InvalidSampling,
    // Messages and the store
    EmptyInput,
    EmptyMessage,
    MessageTooLong,
    InvalidMessage,
    InvalidImport,
    ExportFailed,
    DeleteFailed,
    DiskFull,
    ReadOnly,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    // Pins and the model's memory
    PinRefused,
    PinBudget,
    Snapshot,
    HistoryUnavailable,
    // Models
    ModelLoading,
    ModelLoader,
    ModelMissing,
    ModelCorrupt,
    ModelIncomplete,
    ModelUnsupported,
    ModelInUse,
    NotGguf,
    NotAFile,
    NameTaken,
    BadReference,
    RepoNotFound,
    FileNotFound,
    NoChecksum,
    Network,
    Tokenizer,
    Template,
    // A model on a server (#35): the sentence says which fault (down, key, model, context…)
    Server,
    // The engine
    EngineStopped,
    Compute,
    Internal,
    Io,
}

impl ErrorCode {
    /// The code named `word` (what the engine, store and hub errors' `code()` return).
    /// A word this enum lacks is a bug, caught by the tests; in a release it reads `internal`.
    pub fn of(word: &str) -> ErrorCode {
        serde_json::from_value(serde_json::Value::String(word.to_string())).unwrap_or_else(|_| {
            debug_assert!(false, "no ErrorCode for {word:?}");
            ErrorCode::Internal
        })
    }

    /// The word itself, as JSON and TypeScript spell it.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// A code compares equal to its word (`code == "busy"`).
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct UiError {
    pub code: ErrorCode,
    pub message: String,
}

impl UiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<sinkchat_store::Error> for UiError {
    fn from(e: sinkchat_store::Error) -> Self {
        Self::new(ErrorCode::of(e.code()), e.to_string())
    }
}

impl From<sinkchat_engine::Error> for UiError {
    fn from(e: sinkchat_engine::Error) -> Self {
        Self::new(ErrorCode::of(e.code()), e.to_string())
    }
}

impl From<sinkchat_hub::Error> for UiError {
    fn from(e: sinkchat_hub::Error) -> Self {
        Self::new(ErrorCode::of(e.code()), e.to_string())
    }
}

pub type UiResult<T> = Result<T, UiError>;

impl std::error::Error for UiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every code the engine, the store and the hub give has its word in [`ErrorCode`]: one of
    /// each of their error variants, mapped without falling back.
    #[test]
    fn every_lower_error_has_a_code() {
        let io = || std::io::Error::other("x");
        let p = PathBuf::from("m.gguf");
        use sinkchat_engine::Error as E;
        let engine = [
            E::ModelFileUnreadable {
                path: p.clone(),
                source: io(),
            },
            E::InvalidGguf {
                path: p.clone(),
                reason: "x".into(),
            },
            E::UnsupportedArchitecture("x".into()),
            E::NotGguf("x".into()),
            E::MissingMetadata("x".into()),
            E::MissingTensor("x".into()),
            E::Tokenizer("x".into()),
            E::Template("x".into()),
            E::InvalidCacheConfig("x".into()),
            E::InvalidSampling("x".into()),
            E::EmptyInput,
            E::EngineStopped,
            E::Snapshot("x".into()),
            E::History("x".into()),
            E::Internal("x".into()),
            E::Malformed("x".into()),
            E::Compute(candle_core::Error::Msg("x".into())),
        ];
        let mut words: Vec<&str> = engine.iter().map(|e| e.code()).collect();
        use sinkchat_store::Error as S;
        let store = [
            S::EmptyMessage,
            S::MessageTooLong { chars: 1 },
            S::NulInMessage,
            S::NoSuchConversation(1),
            S::NoSuchMessage(1),
            S::Open {
                path: p.clone(),
                reason: "x".into(),
            },
            S::DiskFull,
            S::ReadOnly,
            S::Corrupt("x".into()),
            S::InvalidImport("x".into()),
            S::Database("x".into()),
        ];
        words.extend(store.iter().map(|e| e.code()));
        use sinkchat_hub::Error as H;
        let hub = [
            H::ModelMissing(p.clone()),
            H::WrongSize {
                path: p.clone(),
                expected: 1,
                actual: 2,
            },
            H::ChecksumMismatch { path: p.clone() },
            H::FileNotFound {
                repo: "x".into(),
                file: "x".into(),
            },
            H::DiskFull {
                needed: None,
                free: None,
            },
            H::OutsideModels("x".into()),
            H::Io(p.clone(), io()),
            H::BadReference("x".into()),
            H::RepoNotFound("x".into()),
            H::NoChecksum("x".into()),
            H::Network("x".into()),
            H::NameTaken("x".into()),
            H::Model(sinkchat_engine::Error::UnsupportedArchitecture("x".into())),
            H::NotGguf(p.clone()),
            H::NotAFile(p.clone()),
        ];
        words.extend(hub.iter().map(|e| e.code()));
        for w in words {
            let code = serde_json::from_value::<ErrorCode>(serde_json::Value::String(w.into()));
            assert!(code.is_ok(), "{w:?} has no ErrorCode");
            assert_eq!(code.unwrap().as_str(), w);
        }
    }
}
