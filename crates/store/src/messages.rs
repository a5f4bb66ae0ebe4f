//! Reads and writes of the `messages` table.

use serde::Serialize;
use sqlx::Row;

use crate::{now_ms, Error, MessageText, Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
    /// The role named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return None,
        })
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Complete,
    /// Being written right now; a crash leaves it so, and the next start marks it interrupted.
    Streaming,
    /// The user pressed stop.
    Stopped,
    Failed,
    /// The app died while it streamed.
    Interrupted,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Streaming => "streaming",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
    /// The status named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "complete" => Self::Complete,
            "streaming" => Self::Streaming,
            "stopped" => Self::Stopped,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub tokens: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Kept in the model's memory with the system prompt (the user pinned it).
    pub pinned: bool,
    /// For a reply: the earlier messages, gone from the model's window, that were given back
    /// to it for this reply (recall); empty for most.
    pub recalled: Vec<i64>,
}

pub(crate) fn from_row(r: &sqlx::sqlite::SqliteRow) -> Message {
    Message {
        id: r.get("id"),
        conversation_id: r.get("conversation_id"),
        role: Role::parse(r.get::<&str, _>("role")).unwrap_or(Role::Assistant),
        content: r.get("content"),
        status: MessageStatus::parse(r.get::<&str, _>("status"))
            .unwrap_or(MessageStatus::Interrupted),
        error: r.get("error"),
        tokens: r.get("tokens"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        pinned: r.get::<i64, _>("pinned") != 0,
        recalled: r
            .get::<Option<String>, _>("recalled")
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    }
}

pub(crate) const COLUMNS: &str =
    "id, conversation_id, role, content, status, error, tokens, created_at, \
                       updated_at, pinned, recalled";

impl Store {
    /// Saves a user message (checked text) and touches its conversation.
    pub async fn add_user_message(&self, conversation: i64, text: &MessageText) -> Result<Message> {
        self.insert_message(
            conversation,
            Role::User,
            text.as_str(),
            MessageStatus::Complete,
        )
        .await
    }

    /// Saves an assistant message that is already whole (an API client's earlier turns).
    pub async fn add_assistant_message(
        &self,
        conversation: i64,
        text: &MessageText,
    ) -> Result<Message> {
        self.insert_message(
            conversation,
            Role::Assistant,
            text.as_str(),
            MessageStatus::Complete,
        )
        .await
    }

    /// Saves whole messages (an API client's earlier turns, oldest first) in one transaction:
    /// all of them or none. Returns the last one's id.
    pub async fn add_messages(
        &self,
        conversation: i64,
        messages: &[(Role, MessageText)],
    ) -> Result<Option<i64>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        touch(&mut tx, conversation, now).await?;
        let mut last = None;
        for (role, text) in messages {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO messages(conversation_id, role, content, status, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(conversation)
            .bind(role.as_str())
            .bind(text.as_str())
            .bind(MessageStatus::Complete.as_str())
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            last = Some(id);
        }
        tx.commit().await?;
        Ok(last)
    }

    /// Starts an assistant reply, saved as `streaming` with no text yet.
    pub async fn start_reply(&self, conversation: i64) -> Result<Message> {
        self.insert_message(conversation, Role::Assistant, "", MessageStatus::Streaming)
            .await
    }

    async fn insert_message(
        &self,
        conversation: i64,
        role: Role,
        content: &str,
        status: MessageStatus,
    ) -> Result<Message> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        touch(&mut tx, conversation, now).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO messages(conversation_id, role, content, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        ))
        .bind(conversation)
        .bind(role.as_str())
        .bind(content)
        .bind(status.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(from_row(&row))
    }

    /// Saves the text of a reply so far (called several times a second while it streams).
    pub async fn save_reply_text(&self, id: i64, content: &str) -> Result<()> {
        sqlx::query("UPDATE messages SET content = ?, updated_at = ? WHERE id = ?")
            .bind(content)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes a reply with its final text and status.
    pub async fn finish_reply(
        &self,
        id: i64,
        content: &str,
        status: MessageStatus,
        error: Option<&str>,
        tokens: Option<i64>,
    ) -> Result<()> {
        let r = sqlx::query(
            "UPDATE messages SET content = ?, status = ?, error = ?, tokens = ?, updated_at = ? WHERE id = ?",
        )
        .bind(content)
        .bind(status.as_str())
        .bind(error)
        .bind(tokens)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchMessage(id));
        }
        Ok(())
    }

    /// Messages of a conversation, oldest first, `limit` of them after `after_id`.
    pub async fn messages(
        &self,
        conversation: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(conversation)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The newest `limit` messages of a conversation before message `before_id` (`None`: the
    /// latest), newest first: how the engine reads a transcript's tail, however long it is.
    pub async fn messages_before(
        &self,
        conversation: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = ? AND id < ? \
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(conversation)
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The conversation's last message from the user, if any (what a regenerate answers again
    /// and an edit replaces), found from the end whatever the transcript's length.
    pub async fn last_user_message(&self, conversation: i64) -> Result<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = ? AND role = 'user' \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(conversation)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row))
    }

    /// How many messages the conversation holds.
    /// Chats and messages stored, for diagnostics.
    pub async fn counts(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn message_count(&self, conversation: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = ?")
                .bind(conversation)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Removes the message `from_id` and every later one of its conversation (regenerate, edit
    /// and resend). Returns how many went.
    pub async fn truncate_from(&self, conversation: i64, from_id: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM messages WHERE conversation_id = ? AND id >= ?")
            .bind(conversation)
            .bind(from_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(conversation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if r.rows_affected() > 0 {
            self.scrub(&["messages_fts"]).await?;
        }
        Ok(r.rows_affected())
    }

    pub async fn message(&self, id: i64) -> Result<Message> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NoSuchMessage(id))?;
        Ok(from_row(&row))
    }

    /// Pins or unpins a message of `conversation`. Refused for a message of another chat.
    pub async fn set_pinned(&self, conversation: i64, id: i64, pinned: bool) -> Result<Message> {
        let r = sqlx::query("UPDATE messages SET pinned = ? WHERE id = ? AND conversation_id = ?")
            .bind(pinned as i64)
            .bind(id)
            .bind(conversation)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchMessage(id));
        }
        self.message(id).await
    }

    /// Records which earlier messages reply `id` was given back (recall).
    pub async fn set_recalled(&self, id: i64, recalled: &[i64]) -> Result<()> {
        let json =
            (!recalled.is_empty()).then(|| serde_json::to_string(recalled).expect("ids serialize"));
        sqlx::query("UPDATE messages SET recalled = ? WHERE id = ?")
            .bind(json)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Recall candidates: finished, unpinned messages of `conversation` older than `before`
    /// that contain any of `terms` (FTS5), most relevant first (BM25), at most `limit`. The
    /// rowid range keeps FTS5 to this chat's span of ids, so a word common in other chats
    /// costs little.
    pub async fn recall_candidates(
        &self,
        conversation: i64,
        before: i64,
        terms: &[String],
        limit: i64,
    ) -> Result<Vec<Message>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let query = terms
            .iter()
            .map(|t| quoted(t))
            .collect::<Vec<_>>()
            .join(" OR ");
        let Some(first) = self.first_message_id(conversation).await? else {
            return Ok(Vec::new());
        };
        let cols = COLUMNS
            .split(',')
            .map(|c| format!("m.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             WHERE messages_fts MATCH ? AND messages_fts.rowid >= ? AND messages_fts.rowid < ? \
               AND m.conversation_id = ? AND m.pinned = 0 AND m.status IN ('complete', 'stopped') \
             ORDER BY bm25(messages_fts) LIMIT ?"
        ))
        .bind(query)
        .bind(first)
        .bind(before)
        .bind(conversation)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Which of `terms` occur in any of the messages [`Store::recall_candidates`] looks
    /// through (finished, unpinned, of `conversation`, older than `before`).
    pub async fn terms_present(
        &self,
        conversation: i64,
        before: i64,
        terms: &[String],
    ) -> Result<Vec<String>> {
        let Some(first) = self.first_message_id(conversation).await? else {
            return Ok(Vec::new());
        };
        let mut present = Vec::new();
        for t in terms {
            let hit: Option<i64> = sqlx::query_scalar(
                "SELECT m.id FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
                 WHERE messages_fts MATCH ? AND messages_fts.rowid >= ? AND messages_fts.rowid < ? \
                   AND m.conversation_id = ? AND m.pinned = 0 \
                   AND m.status IN ('complete', 'stopped') LIMIT 1",
            )
            .bind(quoted(t))
            .bind(first)
            .bind(before)
            .bind(conversation)
            .fetch_optional(&self.pool)
            .await?;
            if hit.is_some() {
                present.push(t.clone());
            }
        }
        Ok(present)
    }

    /// How many of `terms` each of the messages `ids` holds, as the full-text index reads
    /// them (case, accents and word forms folded as its tokenizer folds them): what recall's
    /// rule on a match counts. Messages that hold none are absent.
    pub async fn terms_held(
        &self,
        ids: &[i64],
        terms: &[String],
    ) -> Result<std::collections::HashMap<i64, usize>> {
        let mut held = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(held);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND rowid IN ({marks})"
        );
        for t in terms {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(quoted(t));
            for id in ids {
                q = q.bind(id);
            }
            for id in q.fetch_all(&self.pool).await? {
                *held.entry(id).or_insert(0) += 1;
            }
        }
        Ok(held)
    }

    /// The chat's oldest message id: the lower end of the rowid range that keeps FTS5 lookups
    /// to this chat's span of ids.
    pub(crate) async fn first_message_id(&self, conversation: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT min(id) FROM messages WHERE conversation_id = ?")
                .bind(conversation)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The pinned messages of a chat, oldest first.
    pub async fn pinned_messages(&self, conversation: i64) -> Result<Vec<Message>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = ? AND pinned = 1 ORDER BY id"
        ))
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Marks replies left `streaming` (by a crash) as `interrupted`; returns how many.
    pub(crate) async fn mark_interrupted(&self) -> Result<u64> {
        let r =
            sqlx::query("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected())
    }
}

/// `term` as one FTS5 string (quotes doubled): searched as words, never parsed as a query.
pub(crate) fn quoted(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Marks `conversation` updated at `now` inside `tx`; a conversation that is not there is
/// [`Error::NoSuchConversation`] (and the caller's transaction writes nothing).
async fn touch(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    conversation: i64,
    now: i64,
) -> Result<()> {
    let touched = sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(conversation)
        .execute(&mut **tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(Error::NoSuchConversation(conversation));
    }
    Ok(())
}
