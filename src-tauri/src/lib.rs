//! SinkChat's desktop shell: sets up logging, opens the store, loads the engine in the
//! background and registers the commands. All logic lives in the library crates.

pub mod api_server;
pub mod commands;

use std::path::PathBuf;

use sinkchat_chat::{instance, ChatService};
use tauri::Manager;

/// Builds the app for any runtime (the real webview, or `tauri::test`'s mock).
pub fn builder<R: tauri::Runtime>() -> tauri::Builder<R> {
    tauri::Builder::<R>::new()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        .invoke_handler(commands::handler())
}

/// Opens the conversation service on `data_dir` and starts loading the model on its own
/// thread. `SINKCHAT_MODEL` (tests, power users) wins over the model chosen in the app.
pub fn init_state<R: tauri::Runtime>(
    app: &tauri::AppHandle<R>,
    data_dir: PathBuf,
) -> anyhow::Result<()> {
    let model = std::env::var_os("SINKCHAT_MODEL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let svc = tauri::async_runtime::block_on(ChatService::open(&data_dir, model))?;
    tracing::info!(db = %svc.store().path().display(), "transcripts opened");
    svc.load_model();
    // Saving the settings (from any door) starts, stops or moves the window's local server.
    let handle = app.clone();
    svc.on_settings_saved(std::sync::Arc::new(move |settings| {
        let handle = handle.clone();
        Box::pin(async move {
            let svc = handle.state::<ChatService>();
            handle
                .state::<api_server::ApiServer>()
                .apply(&svc, &settings)
                .await;
        })
    }));
    app.manage(api_server::ApiServer::default());
    app.manage(svc);
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the desktop app.
pub fn run() {
    sinkchat_engine::tune_allocator();
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        eprintln!(
            "SinkChat needs a display to open its window, and this session has none \
             (neither DISPLAY nor WAYLAND_DISPLAY is set). Start it from a desktop session, \
             or under a virtual display: xvfb-run -a sinkchat-app. With no display at all, \
             `sinkchat serve` runs SinkChat for a web browser instead."
        );
        std::process::exit(2);
    }
    // `--api-server [--api-port N]`: the local OpenAI-compatible server on for this run.
    let args: Vec<String> = std::env::args().collect();
    let api_forced = args.iter().any(|a| a == "--api-server");
    let api_port = args
        .iter()
        .position(|a| a == "--api-port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse::<u16>().ok());
    let data_dir = sinkchat_hub::data_dir();
    // One SinkChat per data folder: a second launch raises the first window and leaves,
    // having touched nothing (see sinkchat_chat::instance).
    let mut instance = match instance::claim(&data_dir) {
        Ok(instance::Claim::First(i)) => i,
        Ok(instance::Claim::Running { answer }) => {
            eprintln!(
                "{}",
                instance::already_running_message(&data_dir, answer.as_deref())
            );
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!(
                "SinkChat could not use its data folder {}: {e}",
                data_dir.display()
            );
            std::process::exit(1);
        }
    };
    // Logging starts once the folder is ours: standard error and logs/ in the data folder.
    sinkchat_chat::logging::init(Some(&data_dir), "info,sqlx=warn");
    let result = builder::<tauri::Wry>()
        .setup(move |app| {
            // An installed package brings the default model; the first start puts it in place.
            // Only an installed one: a development build's resource folder is its own target
            // folder (where `tauri build` also copies the resources), and a test that starts
            // the app on an empty data folder must find no model there. (A package keeps its
            // resources apart from its binary: /usr/lib/SinkChat beside /usr/bin for the .deb.)
            let exe_dir = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.to_path_buf()));
            let packaged = app
                .path()
                .resource_dir()
                .ok()
                .filter(|res| Some(res) != exe_dir.as_ref());
            if let Some(res) = packaged {
                match sinkchat_hub::install_bundled_default(&data_dir, &res.join("models")) {
                    Ok(true) => tracing::info!("the bundled default model was installed"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the bundled default model was not installed")
                    }
                }
                // And the model that finds messages by meaning (#36).
                match sinkchat_chat::meaning::install_bundled(&data_dir, &res.join("models")) {
                    Ok(true) => tracing::info!("the bundled meaning model was installed"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the bundled meaning model was not installed")
                    }
                }
            }
            init_state(app.handle(), data_dir.clone()).map_err(|e| {
                tracing::error!(error = %e, "start-up failed");
                e
            })?;
            let front = app.handle().clone();
            let knocks = instance.answer_knocks(&data_dir, move || {
                tracing::info!("a second launch asked for this window");
                match front.get_webview_window("main") {
                    Some(w) => {
                        let _ = w.unminimize();
                        let _ = w.show();
                        match w.set_focus() {
                            Ok(()) => "its window was brought to the front".into(),
                            Err(e) => format!("its window could not be raised: {e}"),
                        }
                    }
                    None => "it has no window open".into(),
                }
            });
            if let Err(e) = knocks {
                tracing::warn!(error = %e, "a second launch will not be able to raise this window");
            }
            app.manage(instance); // held (and the folder with it) until the process ends
                                  // SIGTERM / SIGINT (a logout, a service manager, `kill`) close the app as the
                                  // window's close button does: pending deletes happen, caches are parked.
            let closing = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                wait_for_signal().await;
                tracing::info!("asked to stop; closing");
                closing.exit(0);
            });
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let svc = handle.state::<ChatService>();
                let server = handle.state::<api_server::ApiServer>();
                if api_forced {
                    server.force(api_port).await;
                }
                server.apply(&svc, &svc.settings().await).await;
            });
            Ok(())
        })
        .build(tauri::generate_context!());
    match result {
        Ok(app) => app.run(|handle, event| {
            if let tauri::RunEvent::Exit = event {
                if let Some(api) = handle.try_state::<api_server::ApiServer>() {
                    tauri::async_runtime::block_on(api.stop());
                }
                if let Some(s) = handle.try_state::<ChatService>() {
                    // Replies stop, every live cache is parked, the database closes.
                    tauri::async_runtime::block_on(s.shutdown());
                }
            }
        }),
        Err(e) => {
            eprintln!("SinkChat could not start: {e}");
            std::process::exit(1);
        }
    }
}
