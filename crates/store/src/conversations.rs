//! Reads and writes of the `conversations` table, and search.

use serde::Serialize;
use sqlx::Row;

use crate::{now_ms, Error, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Conversation {
    pub id: i64,
    pub title: String,
    pub model: String,
    pub system_prompt: String,
    pub settings: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// A random key made with the conversation, written into its cache snapshot and checked on
    /// restore, so a snapshot never crosses into another chat. Not sent to the window.
    #[serde(skip)]
    #[ts(skip)]
    pub cache_key: String,
}

/// One search result: a message (or a title) with a highlighted snippet.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct SearchHit {
    pub conversation_id: i64,
    pub title: String,
    pub message_id: Option<i64>,
    /// Text around the match, with matches wrapped in `[[` and `]]`.
    pub snippet: String,
    /// Found by meaning (#36), not by its words: listed under the word matches, its snippet
    /// the message's opening.
    pub by_meaning: bool,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Conversation {
    Conversation {
        id: r.get("id"),
        title: r.get("title"),
        model: r.get("model"),
        system_prompt: r.get("system_prompt"),
        settings: r.get("settings"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        cache_key: r.get("cache_key"),
    }
}

const COLUMNS: &str =
    "id, title, model, system_prompt, settings, created_at, updated_at, cache_key";

/// Turns what a person typed into an FTS5 query of quoted terms, so `AND`, quotes, `*` or
/// SQL-looking text are searched as words, never parsed. Common words ("where is my ...") are
/// left out unless nothing else is left: a match needs every term, and people type questions.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<&str> = q.split_whitespace().collect();
    let telling: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !crate::is_common(w.trim_matches(|c: char| !c.is_alphanumeric())))
        .collect();
    let words = if telling.is_empty() { words } else { telling };
    let terms: Vec<String> = words.iter().map(|t| crate::messages::quoted(t)).collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

impl Store {
    pub async fn create_conversation(
        &self,
        title: &str,
        model: &str,
        system_prompt: &str,
        settings: &str,
    ) -> Result<Conversation> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO conversations(title, model, system_prompt, settings, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        ))
        .bind(title)
        .bind(model)
        .bind(system_prompt)
        .bind(settings)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(from_row(&row))
    }

    pub async fn conversation(&self, id: i64) -> Result<Conversation> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM conversations WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NoSuchConversation(id))?;
        Ok(from_row(&row))
    }

    /// Newest first; `before` is `(updated_at, id)` of the last row of the previous page.
    pub async fn list_conversations(
        &self,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<Conversation>> {
        let (t, id) = before.unwrap_or((i64::MAX, i64::MAX));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE (updated_at, id) < (?, ?) \
             ORDER BY updated_at DESC, id DESC LIMIT ?"
        ))
        .bind(t)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    pub async fn rename_conversation(&self, id: i64, title: &str) -> Result<()> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::EmptyMessage);
        }
        let r = sqlx::query("UPDATE conversations SET title = ? WHERE id = ?")
            .bind(title.chars().take(200).collect::<String>())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchConversation(id));
        }
        // The old title leaves the titles' index and the WAL.
        self.scrub(&["conversations_fts"]).await
    }

    /// Deletes a conversation and its messages for good: secure delete overwrites the freed
    /// pages, and a WAL checkpoint removes the text from the write-ahead log.
    pub async fn delete_conversation(&self, id: i64) -> Result<()> {
        let r = sqlx::query("DELETE FROM conversations WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchConversation(id));
        }
        self.scrub(&["messages_fts", "conversations_fts"]).await
    }

    /// Full-text search over titles and messages, best matches first.
    /// Messages and titles containing every word of `query`, newest first. Newest-first (not
    /// bm25) because people look for "that conversation last week", and because FTS5 then
    /// walks its index from the end and stops at `limit`: a common word over a million
    /// messages costs what a rare one does, where ranking would score every match.
    pub async fn search(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT m.conversation_id AS cid, c.title AS title, m.id AS mid, \
                    snippet(messages_fts, 0, '[[', ']]', '…', 12) AS snip \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ?",
        )
        .bind(&q)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut hits: Vec<SearchHit> = rows
            .iter()
            .map(|r| SearchHit {
                conversation_id: r.get("cid"),
                title: r.get("title"),
                message_id: Some(r.get("mid")),
                snippet: r.get("snip"),
                by_meaning: false,
            })
            .collect();
        let rows = sqlx::query(
            "SELECT rowid AS cid, highlight(conversations_fts, 0, '[[', ']]') AS snip, title \
             FROM conversations_fts WHERE conversations_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
        )
        .bind(&q)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            hits.push(SearchHit {
                conversation_id: r.get("cid"),
                title: r.get("title"),
                message_id: None,
                snippet: r.get("snip"),
                by_meaning: false,
            });
        }
        Ok(hits)
    }
}
