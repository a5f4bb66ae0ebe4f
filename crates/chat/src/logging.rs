//! Logs a person can send: every line goes to standard error and to a daily file in the data
//! folder's `logs/` (the last seven days kept), and Settings' *Copy diagnostics* gathers the
//! version, the model, the settings and the last log lines. Nothing here, and no log line in
//! SinkChat, carries chat text: messages, titles and the system prompt are never logged, and
//! the diagnostics give the system prompt's length only and leave the access key out.

use std::path::{Path, PathBuf};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::ChatService;

/// The log folder inside a data folder.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Sets up logging for the process: standard error (filtered by `RUST_LOG`, else
/// `default_filter`) and, with a data folder, its daily log file at `info` (without colour).
/// Call once, after this process has claimed the data folder (a second launch writes nothing).
pub fn init(data_dir: Option<&Path>, default_filter: &str) {
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(quiet_text(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        ));
    let file = data_dir.and_then(|d| {
        // The folder first: the appender prunes old files before it would create it.
        let _ = std::fs::create_dir_all(log_dir(d));
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("sinkchat")
            .filename_suffix("log")
            .max_log_files(7)
            .build(log_dir(d))
            .inspect_err(|e| eprintln!("SinkChat could not open its log file: {e}"))
            .ok()
    });
    let file = file.map(|appender| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(appender)
            .with_filter(quiet_text(EnvFilter::new(
                "info,sqlx=warn,tao=warn,wry=warn",
            )))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

/// Libraries whose detailed lines carry the text they work on: the tokenizer's normalizer
/// writes the prompt, system prompt included, one character per line at `trace`. Held to
/// warnings at every level (`RUST_LOG=trace` too), so no log line carries chat text.
pub const TEXT_TARGETS: &[&str] = &["tokenizers"];

fn quiet_text(mut filter: EnvFilter) -> EnvFilter {
    for t in TEXT_TARGETS {
        filter = filter.add_directive(format!("{t}=warn").parse().expect("a plain directive"));
    }
    filter
}

/// The last `n` lines of the newest log file in `dir`.
pub fn last_log_lines(dir: &Path, n: usize) -> Vec<String> {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sinkchat"))
        .max_by_key(|e| e.file_name());
    let Some(f) = newest else {
        return Vec::new();
    };
    let text = std::fs::read(f.path()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

impl ChatService {
    /// A plain-text report for a bug report: version, system, device, model, settings (the
    /// access key left out, the system prompt as its length), what is stored (counts only) and
    /// the last 200 log lines. Never chat text.
    pub async fn diagnostics(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "SinkChat {} on {} {} ({} CPUs)",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        ));
        line(format!("Data folder: {}", self.data_dir().display()));
        line(format!(
            "Memory free: {}",
            sinkchat_engine::device::available_memory()
                .map(sinkchat_engine::device::human_bytes)
                .unwrap_or_else(|| "unknown".into())
        ));
        line(format!(
            "Model file: {}",
            self.active_model_path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        line(format!(
            "Model: {}",
            serde_json::to_string(&self.model_state()).unwrap_or_default()
        ));
        let mut settings = serde_json::to_value(self.settings().await).unwrap_or_default();
        if let Some(m) = settings.as_object_mut() {
            let prompt_chars = m
                .get("system_prompt")
                .and_then(|p| p.as_str())
                .map(|p| p.chars().count())
                .unwrap_or(0);
            m.insert(
                "system_prompt".into(),
                format!("({prompt_chars} characters, not shown)").into(),
            );
            m.insert("api_token".into(), "(not shown)".into());
        }
        line(format!("Settings: {settings}"));
        if let Ok((c, m)) = self.store().counts().await {
            line(format!("Stored: {c} chats, {m} messages"));
        }
        let snaps = self.snapshot_usage().await;
        line(format!(
            "Saved chat memories: {} files, {}",
            snaps.files,
            sinkchat_engine::device::human_bytes(snaps.bytes)
        ));
        line("Last log lines:".into());
        let dir = log_dir(self.data_dir());
        let lines = tokio::task::spawn_blocking(move || last_log_lines(&dir, 200))
            .await
            .unwrap_or_default();
        if lines.is_empty() {
            line("  (no log file yet)".into());
        }
        for l in lines {
            line(format!("  {l}"));
        }
        out
    }
}
