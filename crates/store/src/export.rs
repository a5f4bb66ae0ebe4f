//! Export of conversations as JSON (complete, for import back) and Markdown (for reading), and
//! import of the JSON. An import is one transaction: a file with one bad message adds nothing.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{now_ms, Error, MessageStatus, MessageText, Result, Role, Store};

/// The `format` field of an export file.
pub const EXPORT_FORMAT: &str = "sinkchat-export";
pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportFile {
    pub format: String,
    pub version: u32,
    pub exported_at: i64,
    pub conversations: Vec<ExportConversation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportConversation {
    pub title: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub messages: Vec<ExportMessage>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMessage {
    pub role: String,
    pub content: String,
    #[serde(default = "complete")]
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub tokens: Option<i64>,
    pub created_at: i64,
    /// Kept in memory by the user (#19); left out of the file when false, so older readers
    /// and files stay as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

fn complete() -> String {
    "complete".into()
}

/// What an import added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct ImportSummary {
    pub conversations: usize,
    pub messages: usize,
}

/// Longest reply accepted by an import, in characters.
const MAX_REPLY_CHARS: usize = 1_000_000;
/// Largest export file an import reads (about a million average messages).
pub const MAX_IMPORT_BYTES: u64 = 512 << 20;
/// Most conversations in one import.
pub const MAX_IMPORT_CONVERSATIONS: usize = 100_000;
/// Most messages in one import.
pub const MAX_IMPORT_MESSAGES: usize = 2_000_000;
/// Longest system prompt an import keeps, as in Settings.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 8_000;
/// Longest title an import keeps (longer ones are cut, as titles are only for the sidebar).
const MAX_TITLE_CHARS: usize = 200;
/// Longest per-conversation settings object, as JSON.
const MAX_SETTINGS_BYTES: usize = 64 << 10;
/// Rows written per transaction at most: between batches other writers (a reply streaming to
/// disk) get the database, so an import of a million messages never holds it for more than a
/// moment.
const IMPORT_BATCH: usize = 500;
/// A batch also ends after this long, and the import then rests for [`IMPORT_REST`]. The rest
/// matters: a writer that found the database busy sleeps in SQLite's busy handler (up to
/// 100 ms between tries) and would, without it, almost never catch the moment between two
/// batches (a test saw a streaming save fail after its 5 s timeout). Resting about a third of
/// the time gives it dozens of chances a second, for about 40% more import time.
const IMPORT_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(25);
const IMPORT_REST: std::time::Duration = std::time::Duration::from_millis(10);

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidImport(msg.into())
}

impl Store {
    /// Every conversation in `ids` (all of them for `None`), oldest first, with its messages.
    pub async fn export(&self, ids: Option<&[i64]>) -> Result<ExportFile> {
        let convs = match ids {
            None => {
                sqlx::query(
                    "SELECT id, title, model, system_prompt, settings, created_at, updated_at \
                     FROM conversations ORDER BY created_at, id",
                )
                .fetch_all(self.pool())
                .await?
            }
            Some(ids) => {
                let mut rows = Vec::new();
                for &id in ids {
                    let r = sqlx::query(
                        "SELECT id, title, model, system_prompt, settings, created_at, updated_at \
                         FROM conversations WHERE id = ?",
                    )
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?
                    .ok_or(Error::NoSuchConversation(id))?;
                    rows.push(r);
                }
                rows
            }
        };
        let mut out = Vec::with_capacity(convs.len());
        for c in convs {
            let id: i64 = c.get("id");
            let messages = sqlx::query(
                "SELECT role, content, status, error, tokens, created_at, pinned FROM messages \
                 WHERE conversation_id = ? ORDER BY id",
            )
            .bind(id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|m| ExportMessage {
                role: m.get("role"),
                content: m.get("content"),
                status: m.get("status"),
                error: m.get("error"),
                tokens: m.get("tokens"),
                created_at: m.get("created_at"),
                pinned: m.get::<i64, _>("pinned") != 0,
            })
            .collect();
            let settings: String = c.get("settings");
            out.push(ExportConversation {
                title: c.get("title"),
                model: c.get("model"),
                system_prompt: c.get("system_prompt"),
                settings: serde_json::from_str(&settings).unwrap_or_else(|_| empty_object()),
                created_at: c.get("created_at"),
                updated_at: c.get("updated_at"),
                messages,
            });
        }
        Ok(ExportFile {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            exported_at: now_ms(),
            conversations: out,
        })
    }

    /// The same conversations as Markdown, for reading and sharing.
    pub async fn export_markdown(&self, ids: Option<&[i64]>) -> Result<String> {
        Ok(to_markdown(&self.export(ids).await?))
    }

    /// Adds the conversations of an export file (as new conversations; nothing is replaced).
    /// Checks everything first (sizes, counts, the text rules of typing); then writes in
    /// batches of [`IMPORT_BATCH`] rows, letting other writers in between, and if a batch
    /// fails removes what the import had added: all or nothing once it ends.
    pub async fn import(&self, json: &str) -> Result<ImportSummary> {
        if json.len() as u64 > MAX_IMPORT_BYTES {
            return Err(bad(format!(
                "the file is larger than {} MB; split the export and import the parts",
                MAX_IMPORT_BYTES >> 20
            )));
        }
        let file: ExportFile = serde_json::from_str(json)
            .map_err(|e| bad(format!("the file is not a SinkChat export ({e})")))?;
        if file.format != EXPORT_FORMAT {
            return Err(bad(format!(
                "the file is not a SinkChat export (its format is {:?})",
                file.format
            )));
        }
        if file.version > EXPORT_VERSION {
            return Err(bad(format!(
                "the file comes from a newer SinkChat (export version {}); update SinkChat to import it",
                file.version
            )));
        }
        if file.conversations.len() > MAX_IMPORT_CONVERSATIONS {
            return Err(bad(format!(
                "the file holds {} conversations; one import takes at most {MAX_IMPORT_CONVERSATIONS}",
                file.conversations.len()
            )));
        }
        let total: usize = file.conversations.iter().map(|c| c.messages.len()).sum();
        if total > MAX_IMPORT_MESSAGES {
            return Err(bad(format!(
                "the file holds {total} messages; one import takes at most {MAX_IMPORT_MESSAGES}"
            )));
        }
        for (ci, c) in file.conversations.iter().enumerate() {
            if c.title.contains('\0') || c.system_prompt.contains('\0') {
                return Err(bad(format!("conversation {} has a NUL character", ci + 1)));
            }
            if c.system_prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
                return Err(bad(format!(
                    "conversation {}: its system prompt is longer than {MAX_SYSTEM_PROMPT_CHARS} characters",
                    ci + 1
                )));
            }
            if c.settings.to_string().len() > MAX_SETTINGS_BYTES {
                return Err(bad(format!(
                    "conversation {}: its settings are too large",
                    ci + 1
                )));
            }
            for (mi, m) in c.messages.iter().enumerate() {
                let at = || {
                    format!(
                        "conversation {} ({:?}), message {}",
                        ci + 1,
                        c.title,
                        mi + 1
                    )
                };
                let role = Role::parse(&m.role)
                    .ok_or_else(|| bad(format!("{}: unknown role {:?}", at(), m.role)))?;
                MessageStatus::parse(&m.status)
                    .ok_or_else(|| bad(format!("{}: unknown status {:?}", at(), m.status)))?;
                match role {
                    Role::User => {
                        MessageText::parse(&m.content)
                            .map_err(|e| bad(format!("{}: {e}", at())))?;
                    }
                    _ => {
                        if m.content.contains('\0') {
                            return Err(bad(format!("{}: a NUL character", at())));
                        }
                        if m.content.chars().count() > MAX_REPLY_CHARS {
                            return Err(bad(format!(
                                "{}: longer than {MAX_REPLY_CHARS} characters",
                                at()
                            )));
                        }
                    }
                }
            }
        }
        let mut added: Vec<i64> = Vec::new();
        let written = self.import_batches(&file, &mut added).await;
        match written {
            Ok(messages) => Ok(ImportSummary {
                conversations: file.conversations.len(),
                messages,
            }),
            Err(e) => {
                // Take back what went in before the failure (cascades to the messages). The
                // failure is what the person is told; a cleanup that fails is logged and tried
                // again (a CI run once saw it fail where the import's own error was the point).
                for chunk in added.chunks(IMPORT_BATCH) {
                    let mut last = None;
                    for _ in 0..3 {
                        match self.delete_conversations(chunk).await {
                            Ok(()) => {
                                last = None;
                                break;
                            }
                            Err(err) => last = Some(err),
                        }
                    }
                    if let Some(err) = last {
                        tracing::error!(error = %err, "a failed import could not be taken back whole");
                    }
                }
                Err(e)
            }
        }
    }

    async fn delete_conversations(&self, ids: &[i64]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM conversations WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn import_batches(&self, file: &ExportFile, added: &mut Vec<i64>) -> Result<usize> {
        let mut tx = Some(self.pool().begin().await?);
        let written = self.import_rows(file, added, &mut tx).await;
        if written.is_err() {
            // Roll the failed batch back now, before anything else touches the database.
            if let Some(t) = tx.take() {
                let _ = t.rollback().await;
            }
        }
        written
    }

    async fn import_rows(
        &self,
        file: &ExportFile,
        added: &mut Vec<i64>,
        slot: &mut Option<sqlx::Transaction<'static, sqlx::Sqlite>>,
    ) -> Result<usize> {
        let mut messages = 0;
        let mut rows = 0;
        let mut batch_started = std::time::Instant::now();
        for c in &file.conversations {
            let title: String = c.title.chars().take(MAX_TITLE_CHARS).collect();
            let id: i64 = sqlx::query(
                "INSERT INTO conversations(title, model, system_prompt, settings, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(if title.trim().is_empty() { "Imported chat" } else { &title })
            .bind(&c.model)
            .bind(&c.system_prompt)
            .bind(c.settings.to_string())
            .bind(c.created_at)
            .bind(c.updated_at)
            .fetch_one(&mut **slot.as_mut().expect("an open transaction"))
            .await?
            .get(0);
            added.push(id);
            rows += 1;
            for m in &c.messages {
                // A reply that was mid-stream in the exporting app stays marked as cut off.
                let status = match m.status.as_str() {
                    "streaming" => "interrupted",
                    s => s,
                };
                sqlx::query(
                    "INSERT INTO messages(conversation_id, role, content, status, error, tokens, created_at, updated_at, pinned) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(&m.role)
                .bind(&m.content)
                .bind(status)
                .bind(&m.error)
                .bind(m.tokens)
                .bind(m.created_at)
                .bind(m.created_at)
                .bind(m.pinned as i64)
                .execute(&mut **slot.as_mut().expect("an open transaction"))
                .await?;
                messages += 1;
                rows += 1;
                if rows >= IMPORT_BATCH || batch_started.elapsed() >= IMPORT_BATCH_TIME {
                    slot.take().expect("an open transaction").commit().await?;
                    rows = 0;
                    tokio::time::sleep(IMPORT_REST).await;
                    *slot = Some(self.pool().begin().await?);
                    batch_started = std::time::Instant::now();
                }
            }
        }
        slot.take().expect("an open transaction").commit().await?;
        Ok(messages)
    }
}

/// Markdown of an export: a heading per conversation, a sub-heading per message.
pub fn to_markdown(file: &ExportFile) -> String {
    let mut s = String::new();
    for (i, c) in file.conversations.iter().enumerate() {
        if i > 0 {
            s.push_str("\n---\n\n");
        }
        s.push_str(&format!("# {}\n\n", c.title.replace('\n', " ")));
        if !c.model.is_empty() {
            s.push_str(&format!("_Model: {}_\n\n", c.model));
        }
        if !c.system_prompt.is_empty() {
            s.push_str(&format!(
                "> **System prompt:** {}\n\n",
                c.system_prompt.replace('\n', "\n> ")
            ));
        }
        for m in &c.messages {
            let who = match m.role.as_str() {
                "user" => "You",
                "assistant" => "Assistant",
                _ => "System",
            };
            let note = match m.status.as_str() {
                "complete" => String::new(),
                "stopped" => " (stopped)".into(),
                "interrupted" => " (cut off when the app closed)".into(),
                "failed" => " (failed)".into(),
                other => format!(" ({other})"),
            };
            s.push_str(&format!("## {who}{note}\n\n{}\n\n", m.content.trim_end()));
        }
    }
    s
}
