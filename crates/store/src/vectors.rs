//! Vectors of meaning (#36): one per finished message, made on a background task by the
//! engine's meaning model and kept here beside the text, 384 signed bytes each (see the
//! migration `20261205000001_meaning.sql`). Recall and search rank a chat's messages by the
//! cosine of their vector with the question's.

use crate::messages::{from_row, COLUMNS};
use crate::{Message, Result, Store};

/// The numbers in a vector.
pub const DIM: usize = 384;

/// A unit vector as stored: scaled so that its largest number is +-127, each number one
/// signed byte.
pub fn pack(v: &[f32]) -> Vec<u8> {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 127.0 / max } else { 0.0 };
    v.iter()
        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8 as u8)
        .collect()
}

/// The cosine of a unit vector `q` with a stored vector; 0 for a stored vector of another
/// length or of nothing but zeros.
pub fn cosine(q: &[f32], stored: &[u8]) -> f32 {
    if stored.len() != q.len() {
        return 0.0;
    }
    let (mut dot, mut norm) = (0.0f32, 0.0f32);
    for (x, &b) in q.iter().zip(stored) {
        let s = b as i8 as f32;
        dot += x * s;
        norm += s * s;
    }
    if norm == 0.0 {
        0.0
    } else {
        dot / norm.sqrt()
    }
}

/// How far the background task has come: messages with a vector, and those waiting for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorProgress {
    pub done: i64,
    pub waiting: i64,
}

impl Store {
    /// Up to `limit` finished messages that wait for a vector, newest first: (id, text).
    pub async fn vectors_wanted(&self, limit: i64) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.content FROM vectors_pending p JOIN messages m ON m.id = p.message_id \
             ORDER BY p.message_id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Saves the vectors of messages read by [`Store::vectors_wanted`], each only if the
    /// message still holds the text it was made from (an edit or a delete meanwhile leaves it
    /// waiting, or gone); returns how many were saved.
    pub async fn save_vectors(&self, made: &[(i64, String, Vec<f32>)]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut saved = 0;
        for (id, text, v) in made {
            let r = sqlx::query(
                "DELETE FROM vectors_pending WHERE message_id = ? \
                 AND (SELECT content FROM messages WHERE id = ?) = ?",
            )
            .bind(id)
            .bind(id)
            .bind(text)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 1 {
                sqlx::query(
                    "INSERT OR REPLACE INTO message_vectors(message_id, vector) VALUES (?, ?)",
                )
                .bind(id)
                .bind(pack(v))
                .execute(&mut *tx)
                .await?;
                saved += 1;
            }
        }
        tx.commit().await?;
        Ok(saved)
    }

    /// Messages with a vector, and messages waiting for one.
    pub async fn vector_progress(&self) -> Result<VectorProgress> {
        let (done, waiting): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM message_vectors), (SELECT count(*) FROM vectors_pending)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(VectorProgress { done, waiting })
    }

    /// Recall's candidates by meaning: the finished, unpinned messages of `conversation` older
    /// than `before` that have a vector, ranked by cosine with `query` (a unit vector), best
    /// first, at most `limit`, each with its cosine. A scan of the chat's span of ids: a chat of
    /// 100,000 messages reads 38 MB of vectors.
    pub async fn nearest_in_conversation(
        &self,
        conversation: i64,
        before: i64,
        query: &[f32],
        limit: usize,
    ) -> Result<Vec<(Message, f32)>> {
        let Some(first) = self.first_message_id(conversation).await? else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT v.message_id, v.vector FROM message_vectors v JOIN messages m ON m.id = v.message_id \
             WHERE v.message_id >= ? AND v.message_id < ? AND m.conversation_id = ? \
               AND m.pinned = 0 AND m.status IN ('complete', 'stopped')",
        )
        .bind(first)
        .bind(before)
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        let mut ranked: Vec<(i64, f32)> =
            rows.iter().map(|(id, v)| (*id, cosine(query, v))).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        ranked.truncate(limit);
        let mut out = Vec::with_capacity(ranked.len());
        for (id, score) in ranked {
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?"))
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            out.push((from_row(&row), score));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_vector_keeps_its_cosines() {
        let a: Vec<f32> = (0..DIM).map(|i| ((i * 7919) % 97) as f32 - 48.0).collect();
        let n = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let a: Vec<f32> = a.iter().map(|x| x / n).collect();
        let packed = pack(&a);
        assert_eq!(packed.len(), DIM);
        assert!((cosine(&a, &packed) - 1.0).abs() < 1e-3);
        let b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, x)| if i % 2 == 0 { *x } else { -x })
            .collect();
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((cosine(&a, &pack(&b)) - exact).abs() < 0.01);
        assert_eq!(cosine(&a, &[0; DIM]), 0.0, "all zeros");
        assert_eq!(cosine(&a, &[1; 3]), 0.0, "another length");
        assert_eq!(pack(&[0.0; 4]), vec![0; 4]);
    }
}
