//! The Models screen's work: the catalog, installed models, downloads (progress on a
//! callback; pause, resume, cancel), import, delete, and switching the active model.

use serde::Serialize;
use sinkchat_hub::download::{self, Unfinished};
use sinkchat_hub::recommend::{self, Advice, Candidate, Machine, Speed};
use sinkchat_hub::{models, CatalogEntry, Control, InstalledModel, ModelRef, Outcome, Progress};

use crate::error::{ErrorCode, UiError, UiResult};
use crate::settings::Settings;
use crate::ChatService;

/// Runs file work (hashing, header reads, copies) off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> UiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UiError::new(ErrorCode::Io, e.to_string()))
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
    /// The model on a server in use, when it is one (then `active` is empty).
    pub server: Option<crate::remote::ServerChoice>,
    /// This computer: its memory, the GPU's, free disk, its measured decode speed.
    pub machine: Machine,
    /// How each catalog entry (by id) and each installed file outside the catalog (by file
    /// name) suits this computer; one of them is the best for it.
    pub advice: Vec<Advice>,
}

/// What the recommendation measures once per run of the app (a fraction of a second to a
/// few seconds): the decode kernel's weight reading rate, the step of the smallest installed
/// model, and the GPU's memory.
#[derive(Clone, Copy)]
pub(crate) struct Measured {
    speed: Option<Speed>,
    gpu_memory: Option<u64>,
}

/// Measures this computer's decode speed with the smallest runnable installed model, else the
/// model in use (see `sinkchat_engine::probe`); no speed when there is none or a measurement
/// fails.
fn measure(installed: &[InstalledModel], active: &std::path::Path) -> Measured {
    let gpu_memory =
        sinkchat_engine::device::gpu_memory(&sinkchat_engine::device::choose_device().0);
    let speed = (|| {
        let (path, bytes, layers) = match installed
            .iter()
            .filter_map(|m| Some((m, m.summary.as_ref()?)))
            .min_by_key(|(m, _)| m.bytes)
        {
            Some((m, s)) => (m.path.clone(), m.bytes, s.layers),
            None => {
                let s = sinkchat_engine::inspect(active).ok()?;
                (active.to_path_buf(), s.file_bytes, s.layers)
            }
        };
        let rate = sinkchat_engine::probe::weight_read_rate()
            .inspect_err(|e| tracing::warn!(error = %e, "measuring the weight reading rate"))
            .ok()?;
        let step = sinkchat_engine::probe::decode_seconds(&path, 32)
            .inspect_err(|e| tracing::warn!(error = %e, file = %path.display(), "measuring decode"))
            .ok()?;
        let speed = Speed::calibrated(rate, step, bytes, layers);
        tracing::info!(
            file = %path.display(),
            gb_per_s = rate / 1e9,
            tokens_per_s = 1.0 / step,
            layer_ms = speed.layer_s * 1e3,
            "measured this computer's decode speed"
        );
        Some(speed)
    })();
    Measured { speed, gpu_memory }
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
        let measured = self.measured(&installed).await?;
        let free_bytes = sinkchat_hub::folder::free_space(&dir);
        let machine = Machine {
            memory_bytes: sinkchat_engine::device::total_memory(),
            gpu_memory_bytes: measured.gpu_memory,
            free_disk_bytes: free_bytes,
            speed: measured.speed,
        };
        let files: Vec<String> = installed.iter().map(|m| m.file.clone()).collect();
        let mut candidates = recommend::catalog_candidates(&files);
        candidates.extend(installed.iter().filter_map(|m| {
            let s = m.summary.as_ref()?;
            let in_catalog = sinkchat_hub::CATALOG.iter().any(|c| c.file == m.file);
            (!in_catalog).then(|| Candidate {
                key: m.file.clone(),
                file_bytes: m.bytes,
                memory_bytes: s.memory_bytes,
                layers: s.layers,
                installed: true,
            })
        }));
        let advice = recommend::advise(&machine, &candidates);
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
            free_bytes,
            server: match self.backend() {
                Ok(crate::Backend::Remote(r)) => Some(r.choice().clone()),
                _ => None,
            },
            machine,
            advice,
        })
    }

    /// This run's measurement of the computer, taken the first time the Models screen asks
    /// with no reply running (a reply would share the processor and skew it), and kept.
    async fn measured(&self, installed: &[InstalledModel]) -> UiResult<Measured> {
        if let Some(m) = *self.0.measured.lock().expect("measured") {
            return Ok(m);
        }
        let busy = !self.0.replies.lock().expect("replies").is_empty();
        let installed = installed.to_vec();
        let active = self.active_model_path();
        let m = blocking(move || {
            if busy {
                Measured {
                    speed: None,
                    gpu_memory: None,
                }
            } else {
                measure(&installed, &active)
            }
        })
        .await?;
        if m.speed.is_some() {
            *self.0.measured.lock().expect("measured") = Some(m);
        }
        Ok(m)
    }

    /// Starts (or resumes) downloading `file` from the hub repository `repo`. Returns the
    /// download's key at once; progress and the end arrive on `on_event`. When that file is
    /// downloading already, `on_event` follows the running download (no second one starts).
    pub async fn start_download(
        &self,
        repo: &str,
        file: &str,
        on_event: impl Fn(DownloadEvent) + Send + Sync + 'static,
    ) -> UiResult<String> {
        let r = ModelRef::parse(repo, file)?;
        let key = r.key();
        let ctl = Control::default();
        let on_event: Listener = std::sync::Arc::new(on_event);
        let listeners = {
            let mut running = self.0.downloads.lock().expect("downloads");
            if let Some(d) = running.get(&key) {
                // Already downloading (started from another page, or before this page was
                // reloaded): this caller follows the same download from here on, and can pause
                // or cancel it.
                d.listeners.lock().expect("listeners").push(on_event);
                return Ok(key);
            }
            let listeners = std::sync::Arc::new(std::sync::Mutex::new(vec![on_event]));
            running.insert(
                key.clone(),
                RunningDownload {
                    ctl: ctl.clone(),
                    listeners: listeners.clone(),
                },
            );
            listeners
        };
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
        let tell = move |e: DownloadEvent| {
            let all = listeners.lock().expect("listeners").clone();
            for l in all {
                l(e.clone());
            }
        };
        tokio::spawn(async move {
            // Goes when the task ends, however it ends (a panic inside included), so a
            // download never stays "already downloading".
            let _running = running;
            let mut on_progress = |p: Progress| tell(DownloadEvent::Progress { progress: p });
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
            tell(match result {
                Ok(outcome) => DownloadEvent::Finished { outcome },
                Err(e) => DownloadEvent::Failed { error: e.into() },
            });
        });
        Ok(key)
    }

    /// Pauses a running download (its bytes stay for a resume).
    pub fn pause_download(&self, key: &str) -> bool {
        match self.0.downloads.lock().expect("downloads").get(key) {
            Some(d) => {
                d.ctl.pause();
                true
            }
            None => false,
        }
    }

    /// Cancels a download, running or paused: nothing of it stays on disk.
    pub fn cancel_download(&self, key: &str) -> UiResult<()> {
        if let Some(d) = self.0.downloads.lock().expect("downloads").get(key) {
            d.ctl.cancel();
            return Ok(());
        }
        if key.contains(['/', '\\']) || key.starts_with('.') {
            return Err(UiError::new(
                ErrorCode::BadReference,
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
                ErrorCode::ModelInUse,
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
        self.clear_server_choice().await?;
        let svc = self.clone();
        blocking(move || svc.unload_backend(path)).await?;
        self.load_model();
        Ok(())
    }
}

/// One follower of a download (a page's stream of its events).
type Listener = std::sync::Arc<dyn Fn(DownloadEvent) + Send + Sync>;

/// A download running now: its control, and everyone following it (each page that started or
/// re-joined it).
pub(crate) struct RunningDownload {
    ctl: Control,
    listeners: std::sync::Arc<std::sync::Mutex<Vec<Listener>>>,
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
