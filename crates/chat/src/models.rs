//! The Models screen's work: the catalog, installed models, downloads (progress on a
//! callback; pause, resume, cancel), import, delete, and switching the active model.

use serde::Serialize;
use sinkchat_hub::download::{self, Unfinished};
use sinkchat_hub::{models, CatalogEntry, Control, InstalledModel, ModelRef, Outcome, Progress};

use crate::error::{UiError, UiResult};
use crate::settings::Settings;
use crate::ChatService;

/// Runs file work (hashing, header reads, copies) off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> UiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UiError::new("io", e.to_string()))
}

#[derive(Serialize, ts_rs::TS)]
pub struct ModelsOverview {
    pub catalog: Vec<CatalogEntry>,
    pub installed: Vec<InstalledModel>,
    pub unfinished: Vec<Unfinished>,
    /// Keys of downloads running now.
    pub running: Vec<String>,
    /// File name of the model in use (or being loaded).
    pub active: String,
    pub models_dir: String,
    pub free_bytes: Option<u64>,
}

/// What a download's callback receives.
#[derive(Clone, Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DownloadEvent {
    Progress { progress: Progress },
    Finished { outcome: Outcome },
    Failed { error: UiError },
}

impl ChatService {
    pub async fn models_overview(&self) -> UiResult<ModelsOverview> {
        let dir = self.models_dir();
        let d2 = dir.clone();
        let (installed, unfinished) =
            blocking(move || (models::installed(&d2), download::unfinished(&d2))).await?;
        let active = self
            .active_model_path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ModelsOverview {
            catalog: sinkchat_hub::CATALOG.to_vec(),
            installed,
            unfinished,
            running: self
                .0
                .downloads
                .lock()
                .expect("downloads")
                .keys()
                .cloned()
                .collect(),
            active,
            models_dir: dir.display().to_string(),
            free_bytes: download::free_space(&dir),
        })
    }

    /// Starts (or resumes) downloading `file` from the hub repository `repo`. Returns the
    /// download's key at once; progress and the end arrive on `on_event`.
    pub async fn start_download(
        &self,
        repo: &str,
        file: &str,
        on_event: impl Fn(DownloadEvent) + Send + Sync + 'static,
    ) -> UiResult<String> {
        let r = ModelRef::parse(repo, file)?;
        let key = r.key();
        let ctl = Control::default();
        {
            let mut running = self.0.downloads.lock().expect("downloads");
            if running.contains_key(&key) {
                return Err(UiError::new("busy", "This model is already downloading."));
            }
            running.insert(key.clone(), ctl.clone());
        }
        let api = match download::api(None) {
            Ok(a) => a,
            Err(e) => {
                self.0.downloads.lock().expect("downloads").remove(&key);
                return Err(e.into());
            }
        };
        let dir = self.models_dir();
        let running = Running {
            svc: self.clone(),
            key: key.clone(),
        };
        let on_event = std::sync::Arc::new(on_event);
        tokio::spawn(async move {
            // Goes when the task ends, however it ends (a panic inside included), so a
            // download never stays "already downloading".
            let _running = running;
            let ch = on_event.clone();
            let mut on_progress = move |p: Progress| ch(DownloadEvent::Progress { progress: p });
            let result = download::download(
                &api,
                &dir,
                &r,
                &ctl,
                &download::Options::default(),
                &mut on_progress,
            )
            .await;
            drop(_running);
            on_event(match result {
                Ok(outcome) => DownloadEvent::Finished { outcome },
                Err(e) => DownloadEvent::Failed { error: e.into() },
            });
        });
        Ok(key)
    }

    /// Pauses a running download (its bytes stay for a resume).
    pub fn pause_download(&self, key: &str) -> bool {
        match self.0.downloads.lock().expect("downloads").get(key) {
            Some(c) => {
                c.pause();
                true
            }
            None => false,
        }
    }

    /// Cancels a download, running or paused: nothing of it stays on disk.
    pub fn cancel_download(&self, key: &str) -> UiResult<()> {
        if let Some(c) = self.0.downloads.lock().expect("downloads").get(key) {
            c.cancel();
            return Ok(());
        }
        if key.contains(['/', '\\']) || key.starts_with('.') {
            return Err(UiError::new(
                "bad_reference",
                "That is not a download of this app.",
            ));
        }
        download::discard(&self.models_dir(), key);
        Ok(())
    }

    /// Reads a GGUF file's header and says whether the engine can run it.
    pub async fn inspect_model_file(&self, path: &str) -> UiResult<sinkchat_engine::ModelSummary> {
        let path = std::path::PathBuf::from(path);
        Ok(blocking(move || models::inspect(&path)).await??)
    }

    /// Copies a GGUF file the engine can run into the models folder.
    pub async fn import_model(&self, path: &str) -> UiResult<InstalledModel> {
        let dir = self.models_dir();
        let path = std::path::PathBuf::from(path);
        Ok(blocking(move || models::import(&dir, &path)).await??)
    }

    /// Deletes an installed model (not the one in use); returns the bytes freed.
    pub fn delete_model(&self, file: &str) -> UiResult<u64> {
        let active = self.active_model_path();
        if active.file_name().and_then(|n| n.to_str()) == Some(file) {
            return Err(UiError::new(
                "model_in_use",
                "This model is in use. Switch to another model first, then delete it.",
            ));
        }
        Ok(models::delete(&self.models_dir(), file)?)
    }

    /// Makes an installed model the active one: replies in flight stop, every chat's memory is
    /// parked on disk, and the new model loads in the background (the status says when).
    pub async fn use_model(&self, file: &str) -> UiResult<()> {
        models::check_file_name(file)?;
        let path = self.models_dir().join(file);
        let d2 = path.clone();
        blocking(move || models::inspect(&d2)).await??;
        let mut settings = Settings::load(self.store()).await;
        settings.active_model = file.to_string();
        settings.save(self.store()).await?;
        let svc = self.clone();
        blocking(move || svc.unload_engine(path)).await?;
        self.load_model();
        Ok(())
    }

    /// Writes conversations (`None`: all) to a file in the data folder's `exports` and returns
    /// its path. `format`: `json` (complete, can be imported back) or `markdown`.
    pub async fn export_conversations(
        &self,
        ids: Option<&[i64]>,
        format: &str,
    ) -> UiResult<String> {
        let store = self.store();
        let (body, ext) = match format {
            "json" => (
                serde_json::to_string_pretty(&store.export(ids).await?)
                    .map_err(|e| UiError::new("export_failed", e.to_string()))?,
                "json",
            ),
            "markdown" => (store.export_markdown(ids).await?, "md"),
            other => {
                return Err(UiError::new(
                    "bad_format",
                    format!("Export as {other:?} is not offered; choose JSON or Markdown."),
                ))
            }
        };
        let dir = self.data_dir().join("exports");
        let stamp = stamp();
        // Never over an earlier export: two in one second get -2, -3...
        let write = |path: &std::path::Path| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(body.as_bytes())
        };
        let mut path = dir.join(format!("sinkchat-{stamp}.{ext}"));
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            let mut n = 1;
            loop {
                match write(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                        n += 1;
                        path = dir.join(format!("sinkchat-{stamp}-{n}.{ext}"));
                    }
                    other => return other,
                }
            }
        });
        written.map_err(|e| {
            UiError::new(
                "export_failed",
                format!("The export could not be written to {}: {e}", path.display()),
            )
        })?;
        Ok(path.display().to_string())
    }

    /// Removes every file SinkChat exported (the `exports` folder of the data folder): an
    /// export is a plain copy of chats, and deleting a chat does not reach copies. Returns how
    /// many files went. Files written elsewhere by the person are not touched.
    pub async fn delete_exports(&self) -> UiResult<usize> {
        let dir = self.data_dir().join("exports");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(UiError::new(
                    "delete_failed",
                    format!(
                        "The exports folder {} could not be read: {e}",
                        dir.display()
                    ),
                ))
            }
        };
        let mut n = 0;
        for e in entries.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                std::fs::remove_file(&path).map_err(|err| {
                    UiError::new(
                        "delete_failed",
                        format!("{} could not be deleted: {err}", path.display()),
                    )
                })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Adds the conversations of an export file's text.
    pub async fn import_conversations(
        &self,
        text: &str,
    ) -> UiResult<sinkchat_store::ImportSummary> {
        Ok(self.store().import(text).await?)
    }

    /// Adds the conversations of an export file, read here rather than sent whole through
    /// the window's IPC. A folder, a pipe or a file over the size limit is refused before
    /// anything is read.
    pub async fn import_conversations_file(
        &self,
        path: &str,
    ) -> UiResult<sinkchat_store::ImportSummary> {
        let path = std::path::PathBuf::from(path);
        let refuse = |why: String| {
            UiError::new(
                "invalid_import",
                format!("This file can't be imported: {why}"),
            )
        };
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| refuse(format!("{} could not be read ({e})", path.display())))?;
        if !meta.is_file() {
            return Err(refuse(format!("{} is not a file", path.display())));
        }
        let max = sinkchat_store::MAX_IMPORT_BYTES;
        if meta.len() > max {
            return Err(refuse(format!(
                "it is {} MB; the largest export SinkChat imports at once is {} MB. Split it \
                 and import the parts",
                meta.len() >> 20,
                max >> 20
            )));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| refuse(format!("{} could not be read ({e})", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| refuse("it is not a SinkChat export (not UTF-8 text)".into()))?;
        self.import_conversations(&text).await
    }
}

/// A download's entry among the running ones; removed when dropped.
struct Running {
    svc: ChatService,
    key: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.svc
            .0
            .downloads
            .lock()
            .expect("downloads")
            .remove(&self.key);
    }
}

/// `YYYYMMDD-HHMMSS` in local time where the platform gives it safely (a multi-threaded Unix
/// process gets UTC: `time` refuses to read the offset there), for export file
/// names. (The `time` crate, where the first version had a home-made calendar.)
fn stamp() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
