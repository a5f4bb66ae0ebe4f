//! App settings, kept in the transcript database's `settings` table as one JSON value: the
//! system prompt new chats start with, sampling, the cache's shape, the theme, the active model.

use serde::{Deserialize, Serialize};
use sinkchat_engine::{CacheConfig, SamplingParams};
use sinkchat_store::Store;

use crate::error::{UiError, UiResult};

const KEY: &str = "app";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct Settings {
    /// Given to new chats; kept in the model's memory for good (pinned with the sinks).
    pub system_prompt: String,
    pub pin_system_prompt: bool,
    pub sampling: SamplingParams,
    pub cache: CacheConfig,
    /// `system`, `light` or `dark`.
    pub theme: String,
    /// File name in the models folder; empty: the default model.
    pub active_model: String,
    /// The first-run screen has been seen.
    pub welcomed: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system_prompt: crate::commands::DEFAULT_SYSTEM_PROMPT.into(),
            pin_system_prompt: true,
            sampling: SamplingParams::default(),
            cache: CacheConfig::default(),
            theme: "system".into(),
            active_model: String::new(),
            welcomed: false,
        }
    }
}

impl Settings {
    /// Checks every field; the error names the first thing wrong, in plain words.
    pub fn validate(&self) -> UiResult<()> {
        self.cache.validate().map_err(UiError::from)?;
        self.sampling.validate().map_err(UiError::from)?;
        if !matches!(self.theme.as_str(), "system" | "light" | "dark") {
            return Err(UiError::new(
                "invalid_settings",
                "The theme must be system, light or dark.",
            ));
        }
        if self.system_prompt.chars().count() > 8000 {
            return Err(UiError::new(
                "invalid_settings",
                "The system prompt is too long (at most 8,000 characters).",
            ));
        }
        if !self.active_model.is_empty() {
            sinkchat_hub::models::check_file_name(&self.active_model).map_err(UiError::from)?;
        }
        Ok(())
    }

    pub async fn load(store: &Store) -> Settings {
        match store.get_setting(KEY).await {
            Ok(Some(v)) => serde_json::from_str(&v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable settings; using the defaults");
                Settings::default()
            }),
            _ => Settings::default(),
        }
    }

    pub async fn save(&self, store: &Store) -> UiResult<()> {
        self.validate()?;
        let v = serde_json::to_string(self).expect("settings serialize");
        Ok(store.set_setting(KEY, &v).await?)
    }
}
