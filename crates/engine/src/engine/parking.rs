//! Where parked memories live: one snapshot file per conversation in the snapshots folder,
//! what a snapshot keeps beside the cache, and the folder's disk budget (the least recently
//! parked go first).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cache::CacheConfig;

use super::protocol::GenerateRequest;
use super::worker::{Conversation, Marks, Segments, Worker};

/// Where the snapshot of `conversation` lives in the snapshots folder `dir`.
pub fn snapshot_path(dir: &Path, conversation: i64) -> PathBuf {
    dir.join(format!("{conversation}.kv"))
}

/// What the snapshots folder holds: files and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct SnapshotUsage {
    pub files: u64,
    pub bytes: u64,
}

/// The snapshots in `dir` (`*.kv`), oldest parked first, with their sizes.
fn snapshot_files(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    e.path(),
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                )
            })
        })
        .collect();
    out.sort_by_key(|(p, _, t)| (*t, p.clone()));
    out
}

/// What the snapshots in `dir` take.
pub fn snapshot_usage(dir: &Path) -> SnapshotUsage {
    let files = snapshot_files(dir);
    SnapshotUsage {
        files: files.len() as u64,
        bytes: files.iter().map(|(_, b, _)| b).sum(),
    }
}

/// Removes the least recently parked snapshots in `dir` until they take at most `budget`
/// bytes. Returns how many went.
pub fn enforce_snapshot_budget(dir: &Path, budget: u64) -> usize {
    let files = snapshot_files(dir);
    let mut total: u64 = files.iter().map(|(_, b, _)| b).sum();
    let mut removed = 0;
    for (path, bytes, _) in files {
        if total <= budget {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= bytes;
            removed += 1;
            tracing::info!(snapshot = %path.display(), bytes, "snapshot removed: over the disk budget");
        }
    }
    removed
}

/// What a snapshot keeps of a conversation besides its cache.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ConversationMeta {
    /// The conversation's key ([`GenerateRequest::cache_key`]); absent in older snapshots,
    /// which are then refused once and rebuilt.
    #[serde(default)]
    pub key: String,
    pub system_prompt: String,
    pub pin: bool,
    pub requested: CacheConfig,
    pub close_pending: bool,
    pub segments: Vec<(u64, i64)>,
    pub last_message: Option<i64>,
    /// Absent in older snapshots: no pins or recalled text shown until the next rebuild.
    #[serde(default)]
    pub marks: Marks,
}

impl Worker {
    pub(super) fn snapshot_path(&self, conversation: i64) -> Option<PathBuf> {
        self.snapshot_dir
            .as_ref()
            .map(|d| snapshot_path(d, conversation))
    }

    /// Writes a conversation's cache to disk and frees it. Returns whether it was written.
    pub(super) fn park(&mut self, id: i64) -> bool {
        // A parked chat keeps its view: its memory is on disk, whole, and comes back as it was.
        let (Some(c), Some(path)) = (self.conversations.remove(&id), self.snapshot_path(id)) else {
            self.views.lock().expect("views").remove(&id);
            return false;
        };
        let meta = ConversationMeta {
            key: c.key,
            system_prompt: c.system_prompt,
            pin: c.pin,
            requested: c.requested,
            close_pending: c.close_pending,
            segments: c.segments.0,
            last_message: c.last_message,
            marks: c.marks,
        };
        let started = Instant::now();
        let meta = serde_json::to_value(meta).expect("plain data");
        match crate::snapshot::save(&path, &self.model_id, &c.cache, meta) {
            Ok(bytes) => {
                tracing::info!(
                    conversation = id,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "cache parked"
                );
                let budget = self.snapshot_budget.load(Ordering::Relaxed);
                if let Some(dir) = &self.snapshot_dir {
                    enforce_snapshot_budget(dir, budget);
                }
                if !path.exists() {
                    // Over the budget on its own: the chat rebuilds from its transcript.
                    self.views.lock().expect("views").remove(&id);
                    return false;
                }
                true
            }
            Err(e) => {
                tracing::warn!(conversation = id, error = %e, "cache not parked");
                self.views.lock().expect("views").remove(&id);
                false
            }
        }
    }

    pub(super) fn park_all(&mut self) -> usize {
        let ids: Vec<i64> = self.conversations.keys().copied().collect();
        ids.into_iter().filter(|&id| self.park(id)).count()
    }

    /// The conversation's snapshot, if there is one that matches the request and the
    /// transcript. A snapshot is used once: the live cache supersedes it.
    pub(super) fn restore(&self, req: &GenerateRequest) -> Option<Conversation> {
        let path = self.snapshot_path(req.conversation)?;
        if !path.exists() {
            return None;
        }
        let loaded = crate::snapshot::load(
            &path,
            &self.model_id,
            self.model.spec(),
            self.model.device(),
        );
        let _ = std::fs::remove_file(&path);
        let (cache, meta) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(conversation = req.conversation, error = %e, "snapshot refused");
                return None;
            }
        };
        let meta: ConversationMeta = serde_json::from_value(meta).ok()?;
        let last_in_transcript = req.history.last_message();
        if meta.key != req.cache_key {
            tracing::warn!(
                conversation = req.conversation,
                "snapshot of another chat refused"
            );
            return None;
        }
        if meta.system_prompt != req.system_prompt
            || meta.pin != req.pin_system_prompt
            || meta.requested != req.cache
            || meta.last_message != last_in_transcript
        {
            tracing::info!(conversation = req.conversation, "snapshot out of date");
            return None;
        }
        Some(Conversation {
            cache,
            key: meta.key,
            system_prompt: meta.system_prompt,
            pin: meta.pin,
            requested: meta.requested,
            close_pending: meta.close_pending,
            segments: Segments(meta.segments),
            marks: meta.marks,
            last_message: meta.last_message,
            last_used: Instant::now(),
            last_token: None,
        })
    }
}
