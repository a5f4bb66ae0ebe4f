//! SinkChat's transcripts in one SQLite file: conversations, messages saved while they stream,
//! full-text search, settings. WAL mode, foreign keys on, migrations applied at open.

mod conversations;
mod export;
mod messages;
mod text;
mod vectors;
mod words;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use conversations::{Conversation, SearchHit};
pub use export::{
    to_markdown, ExportConversation, ExportFile, ExportMessage, ImportSummary, MAX_IMPORT_BYTES,
};
pub use messages::{Message, MessageStatus, Role};
pub use text::{MessageText, MAX_MESSAGE_CHARS};
pub use vectors::{cosine as vector_cosine, Spread, VectorProgress, DIM as VECTOR_DIM};
pub use words::is_common;

/// Everything that can go wrong in the store, each a sentence a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is too long: {chars} characters, the limit is {MAX_MESSAGE_CHARS}")]
    MessageTooLong { chars: usize },
    #[error("the message contains NUL characters, which can't be stored")]
    NulInMessage,
    #[error("there is no conversation {0}")]
    NoSuchConversation(i64),
    #[error("there is no message {0}")]
    NoSuchMessage(i64),
    #[error("the chat history at {path} can't be opened: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("the disk is full: free some space, nothing already saved was lost")]
    DiskFull,
    #[error("the data folder is read-only: nothing can be saved")]
    ReadOnly,
    #[error("the chat history file is damaged: {0}")]
    Corrupt(String),
    #[error("this file can't be imported: {0}")]
    InvalidImport(String),
    #[error("database error: {0}")]
    Database(String),
}

impl Error {
    /// A stable code the UI can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::EmptyMessage => "empty_message",
            Error::MessageTooLong { .. } => "message_too_long",
            Error::NulInMessage => "invalid_message",
            Error::NoSuchConversation(_) | Error::NoSuchMessage(_) => "not_found",
            Error::Open { .. } => "store_unavailable",
            Error::DiskFull => "disk_full",
            Error::ReadOnly => "read_only",
            Error::Corrupt(_) => "store_corrupt",
            Error::InvalidImport(_) => "invalid_import",
            Error::Database(_) => "store_error",
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let msg = db.message().to_ascii_lowercase();
            if msg.contains("disk is full") || msg.contains("database or disk is full") {
                return Error::DiskFull;
            }
            if msg.contains("readonly") || msg.contains("read-only") {
                return Error::ReadOnly;
            }
            if msg.contains("malformed") || msg.contains("not a database") {
                return Error::Corrupt(db.message().to_string());
            }
        }
        Error::Database(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The transcript database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies migrations, and marks any
    /// reply left mid-stream by a crash as interrupted.
    pub async fn open(path: &Path) -> Result<Self> {
        let open_err = |reason: String| Error::Open {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| open_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| match Error::from(e) {
                Error::Database(m) => open_err(m),
                other => other,
            })?;
        sqlx::migrate!("../../migrations")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => Error::from(e),
                other => open_err(other.to_string()),
            })?;
        let store = Self {
            pool,
            path: path.to_path_buf(),
        };
        let n = store.mark_interrupted().await?;
        if n > 0 {
            tracing::warn!(
                count = n,
                "replies cut off by the last shutdown marked interrupted"
            );
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub async fn integrity_check(&self) -> Result<String> {
        Ok(sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Folds the WAL back into the main file and truncates it, so deleted text leaves every
    /// file on disk. A checkpoint that a reader holds back (`busy`) is tried again, a few
    /// times, until the log is empty.
    pub async fn checkpoint(&self) -> Result<()> {
        for attempt in 0..20 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await?;
            if busy == 0 {
                return Ok(());
            }
            tracing::debug!(attempt, "checkpoint held back by a reader; trying again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("the WAL could not be truncated now; it will be at the next checkpoint");
        Ok(())
    }

    /// After text is taken away (a delete, an edit, a regenerate, a rename): the search
    /// indexes are rewritten so no segment keeps the removed words (secure_delete zeroes the
    /// pages they leave), and the WAL is folded in and truncated.
    pub(crate) async fn scrub(&self, indexes: &[&str]) -> Result<()> {
        for t in indexes {
            sqlx::query(&format!("INSERT INTO {t}({t}) VALUES('optimize')"))
                .execute(&self.pool)
                .await?;
        }
        self.checkpoint().await
    }

    /// Whether [`Store::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    pub async fn close(&self) {
        let _ = self.checkpoint().await;
        self.pool.close().await;
    }

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
