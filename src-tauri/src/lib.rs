//! SinkChat's desktop shell: sets up logging, opens the store, loads the engine in the
//! background and registers the commands. All logic lives in the library crates.

pub mod commands;
pub mod error;
pub mod models;
pub mod settings;
pub mod state;

use std::path::PathBuf;

use tauri::Manager;

use crate::error::UiError;
use crate::state::AppState;

/// Builds the app for any runtime (the real webview, or `tauri::test`'s mock).
pub fn builder<R: tauri::Runtime>() -> tauri::Builder<R> {
    tauri::Builder::<R>::new().invoke_handler(tauri::generate_handler![
        commands::app_status,
        commands::list_conversations,
        commands::create_conversation,
        commands::get_messages,
        commands::rename_conversation,
        commands::delete_conversation,
        commands::search,
        commands::send_message,
        commands::stop_reply,
        commands::leave_conversation,
        commands::export_conversations,
        commands::import_conversations,
        commands::regenerate_reply,
        commands::edit_and_resend,
        commands::get_settings,
        commands::save_settings,
        models::models_overview,
        models::start_download,
        models::pause_download,
        models::cancel_download,
        models::inspect_model_file,
        models::import_model,
        models::delete_model,
        models::use_model,
    ])
}

/// Opens the store under `data_dir` and starts loading the model on its own thread.
pub fn init_state<R: tauri::Runtime>(
    app: &tauri::AppHandle<R>,
    data_dir: PathBuf,
) -> anyhow::Result<()> {
    let db = data_dir.join("chats.db");
    let store = tauri::async_runtime::block_on(sinkchat_store::Store::open(&db))?;
    tracing::info!(db = %db.display(), "transcripts opened");
    let settings = tauri::async_runtime::block_on(settings::Settings::load(&store));
    // `SINKCHAT_MODEL` wins (tests, power users), then the model chosen in the app, then the
    // default model.
    let path = match std::env::var_os("SINKCHAT_MODEL") {
        Some(p) => PathBuf::from(p),
        None if !settings.active_model.is_empty() => {
            sinkchat_hub::models_dir(&data_dir).join(&settings.active_model)
        }
        None => sinkchat_hub::active_model_path(&data_dir),
    };
    app.manage(AppState::new(store, data_dir, path.clone()));
    load_model(app.clone(), path);
    Ok(())
}

/// Loads `path` on its own thread; the state says `Loading` until it is ready or failed.
pub fn load_model<R: tauri::Runtime>(handle: tauri::AppHandle<R>, path: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("model-loader".into())
        .spawn(move || {
            let state = handle.state::<AppState>();
            let snapshot_dir = state.data_dir.join("snapshots");
            tracing::info!(model = %path.display(), "loading model");
            let started = std::time::Instant::now();
            let result = sinkchat_hub::check_model(&path)
                .map_err(UiError::from)
                .and_then(|_| {
                    sinkchat_engine::Engine::start_with(
                        &path,
                        sinkchat_engine::device::best_device(),
                        sinkchat_engine::EngineOptions {
                            snapshot_dir: Some(snapshot_dir),
                        },
                    )
                    .map_err(UiError::from)
                });
            if result.is_ok() {
                tracing::info!(secs = started.elapsed().as_secs_f32(), "model ready");
            }
            // A newer choice may have replaced this one while it loaded.
            if state.active_model_path() == path {
                state.set_engine(result);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the model loader");
    }
}

/// Runs the desktop app.
pub fn run() {
    sinkchat_engine::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        eprintln!(
            "SinkChat needs a display to open its window, and this session has none \
             (neither DISPLAY nor WAYLAND_DISPLAY is set). Start it from a desktop session, \
             or under a virtual display: xvfb-run -a sinkchat-app"
        );
        std::process::exit(2);
    }
    let data_dir = sinkchat_hub::data_dir();
    let result = builder::<tauri::Wry>()
        .setup(move |app| {
            init_state(app.handle(), data_dir.clone()).map_err(|e| {
                tracing::error!(error = %e, "start-up failed");
                e.into()
            })
        })
        .build(tauri::generate_context!());
    match result {
        Ok(app) => app.run(|handle, event| {
            if let tauri::RunEvent::Exit = event {
                if let Some(s) = handle.try_state::<AppState>() {
                    // Park every live conversation's cache, so each comes back at once.
                    // Stop replies in flight first, so parking does not wait for them to end.
                    for c in s.replies.lock().expect("replies").values() {
                        c.cancel();
                    }
                    if let Ok(engine) = s.engine() {
                        let n = engine.park_all();
                        tracing::info!(conversations = n, "caches parked");
                    }
                    tauri::async_runtime::block_on(s.store.close());
                }
            }
        }),
        Err(e) => {
            eprintln!("SinkChat could not start: {e}");
            std::process::exit(1);
        }
    }
}
