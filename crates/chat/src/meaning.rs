//! Finding messages by meaning (#36): the meaning model (all-MiniLM-L6-v2, [`sinkchat_engine::embed`])
//! gives every finished message a vector, on one background task, and recall and search rank
//! by cosine beside the full-text index's BM25.
//!
//! The task takes the store's waiting list (the triggers of migration `20261205000001_meaning`
//! keep it: a message finished, changed or deleted), newest first, 16 at a time, and steps
//! aside while any reply is being written, so a chat never waits for it: a reply runs at full
//! speed and the vectors catch up between turns. The same list holds every message already in
//! the store after the upgrade, so old histories are embedded once, in the background, while
//! chatting goes on. The model is loaded on the first message that needs it; without its
//! folder (a build whose set-up did not install it), recall and search go on by words alone,
//! and Settings says so.
//!
//! Texts seen recently are embedded once (a small memo by text): short replies repeat
//! ("Noted.", "Thanks!"), and an import or a copied chat repeats whole transcripts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use sinkchat_engine::embed::Embedder;

/// What the meaning model is doing, for Settings.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MeaningState {
    /// Not loaded yet (nothing has needed it).
    Idle,
    /// Loaded: `done` messages have a vector, `waiting` wait for one.
    Ready {
        #[ts(type = "number")]
        done: i64,
        #[ts(type = "number")]
        waiting: i64,
    },
    /// Not installed, or not usable: recall and search go on by words.
    Unavailable { reason: String },
}

/// The service's meaning model and its background task.
pub(crate) struct Meaning {
    dir: PathBuf,
    embedder: Mutex<Option<Result<Arc<Embedder>, String>>>,
    wake: tokio::sync::Notify,
    memo: Mutex<HashMap<String, Vec<f32>>>,
    /// Search's whole-store index, built on the first search by meaning.
    index: tokio::sync::Mutex<Option<Index>>,
}

/// Search by meaning over every message, fast at a million: each stored vector's signs (384
/// bits, 48 bytes a message: 48 MB for 1,000,000) in memory; a search ranks them all by how
/// many signs agree with the question's (Hamming distance, a popcount per 64 bits), then
/// reads the best [`SHORTLIST`] full vectors from the store and ranks those by cosine. Signs
/// alone put the true nearest neighbours of a 384-number vector near the top (random
/// hyperplane hashing, Charikar 2002); the cosine decides.
#[derive(Default)]
pub(crate) struct Index {
    ids: Vec<i64>,
    signs: Vec<[u64; 6]>,
}

/// Vectors whose cosine search computes exactly.
const SHORTLIST: usize = 256;

impl Index {
    fn push(&mut self, id: i64, signs: [u64; 6]) {
        self.ids.push(id);
        self.signs.push(signs);
    }

    /// The `n` ids whose signs agree most with `q`'s, best first.
    fn nearest(&self, q: &[u64; 6], n: usize) -> Vec<i64> {
        let mut scored: Vec<(u32, i64)> = self
            .signs
            .iter()
            .zip(&self.ids)
            .map(|(s, id)| {
                let d: u32 = s.iter().zip(q).map(|(a, b)| (a ^ b).count_ones()).sum();
                (d, *id)
            })
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable(n - 1);
        scored.truncate(n);
        scored.sort_unstable();
        scored.into_iter().map(|(_, id)| id).collect()
    }
}

/// The signs of a vector (stored bytes or numbers): bit i set when number i is positive.
pub(crate) fn signs(v: &[f32]) -> [u64; 6] {
    sign_bits(v.iter().map(|x| *x > 0.0))
}

/// [`signs`] of a stored vector, read in place (the index reads a million of them).
fn stored_signs(v: &[u8]) -> [u64; 6] {
    sign_bits(v.iter().map(|b| *b as i8 > 0))
}

fn sign_bits(positive: impl Iterator<Item = bool>) -> [u64; 6] {
    let mut out = [0u64; 6];
    for (i, p) in positive.take(384).enumerate() {
        if p {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

/// Texts kept in the memo; a vector takes 1.5 KB, so at most about 6 MB.
const MEMO: usize = 4096;

/// Messages embedded per step.
const STEP: i64 = 16;

impl Meaning {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            embedder: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            memo: Mutex::new(HashMap::new()),
            index: tokio::sync::Mutex::new(None),
        }
    }

    /// The model, loading it on first use; `Err` says in words why it cannot be used.
    pub(crate) fn embedder(&self) -> Result<Arc<Embedder>, String> {
        let mut slot = self.embedder.lock().expect("meaning");
        if slot.is_none() {
            let loaded = if self.dir.join("model.safetensors").exists() {
                Embedder::open(&self.dir)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "the model that finds messages by meaning is not installed (it belongs in {}); recall and search go on by words",
                    self.dir.display()
                ))
            };
            if let Err(e) = &loaded {
                tracing::warn!(error = %e, "finding by meaning is off");
            }
            *slot = Some(loaded);
        }
        slot.clone().expect("set above")
    }

    fn loaded(&self) -> Option<Result<(), String>> {
        self.embedder
            .lock()
            .expect("meaning")
            .as_ref()
            .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
    }

    /// Vectors of `texts`, from the memo where it has them.
    pub(crate) fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let embedder = self.embedder()?;
        let mut out: Vec<Option<Vec<f32>>> = {
            let memo = self.memo.lock().expect("memo");
            texts.iter().map(|t| memo.get(*t).cloned()).collect()
        };
        let missing: Vec<&str> = texts
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(t, _)| *t)
            .collect();
        if !missing.is_empty() {
            let made = embedder.embed(&missing).map_err(|e| e.to_string())?;
            let mut memo = self.memo.lock().expect("memo");
            if memo.len() + made.len() > MEMO {
                memo.clear();
            }
            let mut made = made.into_iter();
            for (t, slot) in texts.iter().zip(out.iter_mut()) {
                if slot.is_none() {
                    let v = made.next().expect("one per text");
                    memo.insert((*t).to_string(), v.clone());
                    *slot = Some(v);
                }
            }
        }
        Ok(out.into_iter().map(|v| v.expect("filled")).collect())
    }
}

/// Puts the meaning model an installed package brings (`bundled`: its resource folder's
/// `models`) into the data folder's models folder, once, each file whole or not at all;
/// whether it did. Nothing to do when it is there already or the package has none.
pub fn install_bundled(data: &std::path::Path, bundled: &std::path::Path) -> std::io::Result<bool> {
    use sinkchat_engine::embed::{FILES, FOLDER};
    let dest = sinkchat_hub::models_dir(data).join(FOLDER);
    let src = bundled.join(FOLDER);
    if dest.join(FILES[0]).exists() || !FILES.iter().all(|f| src.join(f).is_file()) {
        return Ok(false);
    }
    let part = dest.with_extension("part");
    let _ = std::fs::remove_dir_all(&part);
    for f in FILES {
        let to = part.join(f);
        std::fs::create_dir_all(to.parent().expect("a folder"))?;
        std::fs::copy(src.join(f), &to)?;
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&part, &dest)?;
    Ok(true)
}

impl crate::ChatService {
    /// Starts the background task that gives finished messages their vectors; it ends when
    /// the service does. Called once, by [`crate::ChatService::open`].
    pub(crate) fn start_meaning(&self) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move { meaning_task(weak).await });
    }

    /// Wakes the background task: a message was finished.
    pub(crate) fn meaning_wake(&self) {
        self.0.meaning.wake.notify_one();
    }

    /// Where the meaning model stands, for Settings: not loaded yet, its progress through the
    /// messages, or why it cannot be used.
    pub async fn meaning_state(&self) -> MeaningState {
        match self.0.meaning.loaded() {
            None => MeaningState::Idle,
            Some(Err(reason)) => MeaningState::Unavailable { reason },
            Some(Ok(())) => match self.store().vector_progress().await {
                Ok(p) => MeaningState::Ready {
                    done: p.done,
                    waiting: p.waiting,
                },
                Err(e) => MeaningState::Unavailable {
                    reason: e.to_string(),
                },
            },
        }
    }

    /// Waits until every finished message has its vector, or finding by meaning is off.
    pub async fn meaning_caught_up(&self) {
        loop {
            self.meaning_wake();
            if matches!(self.0.meaning.loaded(), Some(Err(_))) {
                return;
            }
            match self.store().vector_progress().await {
                Ok(p) if p.waiting == 0 => return,
                Err(_) => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Messages of every chat found by meaning for `query` (#36), best first, at most `limit`,
    /// leaving out `skip` (those found by their words): a cosine of at least
    /// [`crate::recall::MEANING_MIN`]. Nothing when finding by meaning is off.
    pub(crate) async fn search_by_meaning(
        &self,
        query: &str,
        skip: &[i64],
        limit: usize,
    ) -> sinkchat_store::Result<Vec<sinkchat_store::SearchHit>> {
        let Some(q) = self.meaning_of(query).await else {
            return Ok(Vec::new());
        };
        let shortlist = {
            let mut index = self.0.meaning.index.lock().await;
            if index.is_none() {
                let mut built = Index::default();
                let mut after = 0;
                loop {
                    let page = self.store().vectors_after(after, 10_000).await?;
                    let Some(last) = page.last() else { break };
                    after = last.0;
                    for (id, v) in &page {
                        built.push(*id, stored_signs(v));
                    }
                }
                *index = Some(built);
            }
            index
                .as_ref()
                .expect("built")
                .nearest(&signs(&q), SHORTLIST)
        };
        let mut ranked: Vec<(i64, f32)> = self
            .store()
            .vectors_of(&shortlist)
            .await?
            .into_iter()
            .filter(|(id, _)| !skip.contains(id))
            .map(|(id, v)| (id, sinkchat_store::vector_cosine(&q, &v)))
            .filter(|(_, c)| *c >= crate::recall::MEANING_MIN)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(limit);
        let ids: Vec<i64> = ranked.into_iter().map(|(id, _)| id).collect();
        self.store().meaning_hits(&ids).await
    }

    /// The vector of `text` (a question), or `None` when finding by meaning is off.
    pub(crate) async fn meaning_of(&self, text: &str) -> Option<Vec<f32>> {
        let text = text.to_string();
        let meaning = self.0.meaning.clone();
        tokio::task::spawn_blocking(move || meaning.embed(&[&text]))
            .await
            .ok()?
            .ok()
            .map(|mut v| v.remove(0))
    }
}

async fn meaning_task(weak: Weak<crate::Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let svc = crate::ChatService(inner);
        if svc.store().is_closed() {
            return;
        }
        // A reply being written comes first.
        if !svc.0.replies.lock().expect("replies").is_empty() {
            drop(svc);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let wanted = match svc.store().vectors_wanted(STEP).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "the messages waiting for a vector could not be read");
                Vec::new()
            }
        };
        if wanted.is_empty() || matches!(svc.0.meaning.loaded(), Some(Err(_))) {
            // Nothing to do (or no model): sleep until a message is finished, checking now and
            // then, holding the model's part only, so that the service can end meanwhile.
            let meaning = svc.0.meaning.clone();
            drop(svc);
            let _ = tokio::time::timeout(Duration::from_secs(2), meaning.wake.notified()).await;
            continue;
        }
        let meaning = svc.0.meaning.clone();
        let texts: Vec<String> = wanted.iter().map(|(_, t)| t.clone()).collect();
        let made = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            meaning.embed(&refs)
        })
        .await;
        match made {
            Ok(Ok(vectors)) => {
                let rows: Vec<(i64, String, Vec<f32>)> = wanted
                    .into_iter()
                    .zip(vectors)
                    .map(|((id, t), v)| (id, t, v))
                    .collect();
                match svc.store().save_vectors(&rows).await {
                    Ok(_) => {
                        // Search's index, once built, learns them too (a message changed or
                        // deleted meanwhile is skipped when search reads its vector back).
                        if let Some(index) = svc.0.meaning.index.lock().await.as_mut() {
                            for (id, _, v) in &rows {
                                index.push(*id, signs(v));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "vectors could not be saved");
                        drop(svc);
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
            // The model could not be loaded: recorded; the loop sleeps from now on.
            Ok(Err(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "embedding stopped");
                drop(svc);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundled_model_is_installed_once_and_whole() {
        use sinkchat_engine::embed::{FILES, FOLDER};
        let data = tempfile::tempdir().unwrap();
        let res = tempfile::tempdir().unwrap();
        assert!(
            !install_bundled(data.path(), res.path()).unwrap(),
            "none bundled"
        );
        for f in FILES {
            let p = res.path().join(FOLDER).join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        assert!(install_bundled(data.path(), res.path()).unwrap());
        let dest = sinkchat_hub::models_dir(data.path()).join(FOLDER);
        for f in FILES {
            assert_eq!(std::fs::read_to_string(dest.join(f)).unwrap(), f);
        }
        assert!(!install_bundled(data.path(), res.path()).unwrap(), "once");
    }

    #[test]
    fn the_index_ranks_by_agreeing_signs() {
        let mut index = Index::default();
        let a: Vec<f32> = (0..384)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut b = a.clone();
        for x in b.iter_mut().take(40) {
            *x = -*x;
        }
        let c: Vec<f32> = a.iter().map(|x| -x).collect();
        index.push(1, signs(&c));
        index.push(2, signs(&b));
        index.push(3, signs(&a));
        assert_eq!(index.nearest(&signs(&a), 2), [3, 2]);
        assert_eq!(index.nearest(&signs(&a), 10), [3, 2, 1]);
        assert!(Index::default().nearest(&signs(&a), 5).is_empty());
        let packed: Vec<u8> = a.iter().map(|x| (*x * 127.0) as i8 as u8).collect();
        assert_eq!(stored_signs(&packed), signs(&a));
    }
}
