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
    /// first, at most `limit`, each with its cosine; and what the cosines of all of them look
    /// like ([`Spread`]). A scan of the chat's span of ids: a chat of 100,000 messages reads
    /// 38 MB of vectors.
    pub async fn nearest_in_conversation(
        &self,
        conversation: i64,
        before: i64,
        query: &[f32],
        limit: usize,
    ) -> Result<(Vec<(Message, f32)>, Spread)> {
        let Some(first) = self.first_message_id(conversation).await? else {
            return Ok((Vec::new(), Spread::default()));
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
        let spread = Spread::of(ranked.iter().map(|r| r.1));
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
        Ok((out, spread))
    }
}

/// How a question's cosines with a set of messages spread: their count, mean and standard
/// deviation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f32,
    pub sd: f32,
}

impl Spread {
    pub fn of(xs: impl Iterator<Item = f32>) -> Self {
        let (mut n, mut sum, mut sq) = (0usize, 0f64, 0f64);
        for x in xs {
            n += 1;
            sum += x as f64;
            sq += (x as f64) * (x as f64);
        }
        if n == 0 {
            return Spread::default();
        }
        let mean = sum / n as f64;
        let var = (sq / n as f64 - mean * mean).max(0.0);
        Spread {
            n,
            mean: mean as f32,
            sd: var.sqrt() as f32,
        }
    }

    /// The spread of the same values with one of them, `x`, left out: how the rest spread
    /// around a match that is to stand out from them.
    pub fn without(self, x: f32) -> Self {
        if self.n <= 1 {
            return Spread::default();
        }
        let (n, x) = (self.n as f64, x as f64);
        let (mean, sd) = (self.mean as f64, self.sd as f64);
        let sum = mean * n - x;
        let sq = (sd * sd + mean * mean) * n - x * x;
        let rest = n - 1.0;
        let mean = sum / rest;
        Spread {
            n: self.n - 1,
            mean: mean as f32,
            sd: (sq / rest - mean * mean).max(0.0).sqrt() as f32,
        }
    }
}

impl Store {
    /// Up to `limit` stored vectors with ids above `after`, by id: the pages a whole-store
    /// index is built from.
    pub async fn vectors_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        Ok(sqlx::query_as(
            "SELECT message_id, vector FROM message_vectors WHERE message_id > ? \
             ORDER BY message_id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The stored vectors of the messages `ids` that have one.
    pub async fn vectors_of(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT message_id, vector FROM message_vectors WHERE message_id IN ({marks})"
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    /// Search hits for messages found by meaning, in the order of `ids` (those still there):
    /// the chat's title and the message's opening.
    pub async fn meaning_hits(&self, ids: &[i64]) -> Result<Vec<crate::SearchHit>> {
        const SNIPPET_CHARS: usize = 160;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row: Option<(i64, String, String)> = sqlx::query_as(
                "SELECT m.conversation_id, c.title, m.content FROM messages m \
                 JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((conversation_id, title, content)) = row {
                let mut snippet: String = content.trim().chars().take(SNIPPET_CHARS).collect();
                if content.trim().chars().count() > SNIPPET_CHARS {
                    snippet.push('…');
                }
                // The store marks matches with [[ ]]: a message's own brackets stay text.
                let snippet = snippet.replace("[[", "[ [").replace("]]", "] ]");
                out.push(crate::SearchHit {
                    conversation_id,
                    title,
                    message_id: Some(id),
                    snippet,
                    by_meaning: true,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_count_mean_and_deviation() {
        let s = Spread::of([0.1f32, 0.3, 0.5].into_iter());
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.3).abs() < 1e-6);
        assert!((s.sd - (0.08f32 / 3.0).sqrt()).abs() < 1e-5);
        assert_eq!(Spread::of(std::iter::empty()), Spread::default());
        // One left out: the spread of the rest.
        let all = [0.1f32, 0.3, 0.5, 0.9, -0.2];
        let rest = Spread::of(all.into_iter()).without(0.9);
        let direct = Spread::of([0.1f32, 0.3, 0.5, -0.2].into_iter());
        assert_eq!(rest.n, 4);
        assert!((rest.mean - direct.mean).abs() < 1e-6);
        assert!((rest.sd - direct.sd).abs() < 1e-5);
        assert_eq!(
            Spread::of([0.4f32].into_iter()).without(0.4),
            Spread::default()
        );
    }

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
