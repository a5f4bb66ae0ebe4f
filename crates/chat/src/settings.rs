//! App settings, kept in the transcript database's `settings` table as one JSON value: the
//! system prompt new chats start with, sampling, the cache's shape, the theme, the active model.

use serde::{Deserialize, Serialize};
use sinkchat_engine::{CacheConfig, SamplingParams};
use sinkchat_store::Store;

use crate::error::{ErrorCode, UiError, UiResult};

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
    /// The local OpenAI-compatible server (on 127.0.0.1 only) runs while the app does.
    pub api_server: bool,
    pub api_port: u16,
    /// What clients send as `Authorization: Bearer …`; made on first start, shown in Settings.
    pub api_token: String,
    /// Most disk the parked memories of chats (cache snapshots) may take, in MB; the least
    /// recently left go first (those chats rebuild from their transcript when opened). 0 keeps
    /// none.
    pub snapshot_budget_mb: u64,
    /// Give the model back earlier messages of the chat that left its window when a new
    /// message is about them (#19).
    pub recall: bool,
    /// How much of the window recalled messages may take, in percent (1-50; default 12,
    /// about an eighth). See [`crate::recall::budget`].
    pub recall_share: u8,
    /// Recall finds messages by meaning too, not only by their words (#36): a question asked
    /// in other words than the message that answers it.
    pub recall_meaning: bool,
}

/// The shortest window that keeps a system prompt whose chat opening takes `opening_tokens`
/// for good: the opening may take half the window ([`sinkchat_engine::CacheConfig::pin_budget`]),
/// so the rest of the chat always has as much room as the instructions.
pub fn window_floor(opening_tokens: usize) -> usize {
    2 * opening_tokens
}

/// Tokens of `text` when no tokenizer is at hand: about three characters each (English runs
/// near four; code, numbers and other languages fewer), so the floor errs on the safe side.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(3) + 8
}

/// About how many words `tokens` tokens hold (three words per four tokens in English),
/// rounded to a figure people read: 1,536 -> "1,500".
pub fn words(tokens: usize) -> String {
    let w = tokens * 3 / 4;
    let round = if w >= 1000 {
        100
    } else if w >= 100 {
        10
    } else {
        1
    };
    let w = (w + round / 2) / round * round;
    let s = w.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The share of the window recall may use unless the user picks another: about an eighth.
pub const DEFAULT_RECALL_SHARE: u8 = 12;

/// The snapshots' disk budget unless the user picks another: 2 GB, about twenty full caches
/// of the default model.
pub const DEFAULT_SNAPSHOT_BUDGET_MB: u64 = 2048;

/// The port the local server listens on unless the user picks another.
pub const DEFAULT_API_PORT: u16 = 8431;

/// A new random bearer token: 32 hex digits from the OS's random source.
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("sk-sinkchat-{}", hex::encode(bytes))
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system_prompt: crate::DEFAULT_SYSTEM_PROMPT.into(),
            pin_system_prompt: true,
            sampling: SamplingParams::default(),
            cache: CacheConfig::default(),
            theme: "system".into(),
            active_model: String::new(),
            welcomed: false,
            api_server: false,
            api_port: DEFAULT_API_PORT,
            api_token: String::new(),
            snapshot_budget_mb: DEFAULT_SNAPSHOT_BUDGET_MB,
            recall: true,
            recall_share: DEFAULT_RECALL_SHARE,
            recall_meaning: true,
        }
    }
}

impl Settings {
    /// The snapshots' disk budget in bytes.
    pub fn snapshot_budget_bytes(&self) -> u64 {
        self.snapshot_budget_mb << 20
    }

    /// Checks every field; the error names the first thing wrong, in plain words.
    pub fn validate(&self) -> UiResult<()> {
        self.cache.validate().map_err(UiError::from)?;
        self.sampling.validate().map_err(UiError::from)?;
        if !matches!(self.theme.as_str(), "system" | "light" | "dark") {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The theme must be system, light or dark.",
            ));
        }
        if self.system_prompt.chars().count() > 8000 {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The system prompt is too long (at most 8,000 characters).",
            ));
        }
        if self.api_port < 1024 {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The server's port must be between 1024 and 65535.",
            ));
        }
        if self.api_server && self.api_token.len() < 16 {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The server's access key must be at least 16 characters.",
            ));
        }
        if self.snapshot_budget_mb > 1 << 24 {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "The disk budget for chat memories must be at most 16,777,216 MB (16 TB).",
            ));
        }
        if !(1..=50).contains(&self.recall_share) {
            return Err(UiError::new(
                ErrorCode::InvalidSettings,
                "Recall may use between 1% and 50% of the memory window.",
            ));
        }
        if !self.active_model.is_empty() {
            sinkchat_hub::models::check_file_name(&self.active_model).map_err(UiError::from)?;
        }
        Ok(())
    }

    /// The saved settings (the defaults where nothing or something unreadable is saved). A
    /// missing server access key is made here, once, and saved.
    pub async fn load(store: &Store) -> Settings {
        let mut s = Self::load_saved(store).await;
        if s.api_token.is_empty() {
            s.api_token = new_token();
            let v = serde_json::to_string(&s).expect("settings serialize");
            if let Err(e) = store.set_setting(KEY, &v).await {
                tracing::warn!(error = %e, "the server's access key could not be saved");
            }
        }
        s
    }

    async fn load_saved(store: &Store) -> Settings {
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

#[cfg(test)]
mod tests {
    use super::*;
    use sinkchat_engine::KvPrecision;

    /// A new install gets the compact memory; settings saved before the choice existed keep
    /// the f32 memory their chats were built with (so their saved memories still restore).
    #[test]
    fn words_round_to_figures_people_read() {
        assert_eq!(words(2048), "1,500");
        assert_eq!(words(1024), "770");
        assert_eq!(words(40), "30");
        assert_eq!(words(8192), "6,100");
        assert_eq!(window_floor(60), 120);
        assert!(estimate_tokens("You are a helpful, friendly assistant.") >= 9);
    }

    #[test]
    fn memory_precision_defaults_to_f16_and_older_settings_keep_f32() {
        assert_eq!(Settings::default().cache.precision, KvPrecision::F16);
        let old: Settings =
            serde_json::from_str(r#"{"cache":{"sinks":4,"window":1020,"evict_step":1}}"#).unwrap();
        assert_eq!(old.cache.precision, KvPrecision::F32);
        assert_eq!(old.cache.window, 1020);
        let mut s = Settings::default();
        s.cache.precision = KvPrecision::F32;
        let back: Settings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.cache.precision, KvPrecision::F32);
        assert!(serde_json::to_string(&s)
            .unwrap()
            .contains(r#""precision":"f32""#));
    }
}
