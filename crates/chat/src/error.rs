//! `UiError`: what a command returns on failure: a stable code the UI branches on, and a plain
//! sentence it shows.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct UiError {
    pub code: String,
    pub message: String,
}

impl UiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
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
        Self::new(e.code(), e.to_string())
    }
}

impl From<sinkchat_engine::Error> for UiError {
    fn from(e: sinkchat_engine::Error) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<sinkchat_hub::Error> for UiError {
    fn from(e: sinkchat_hub::Error) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

pub type UiResult<T> = Result<T, UiError>;

impl std::error::Error for UiError {}
