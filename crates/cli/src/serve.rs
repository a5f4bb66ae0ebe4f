//! `sinkchat serve`: the conversation service with no window. The web UI is served to a
//! browser on 127.0.0.1 (the same UI as the window, over HTTP and server-sent events) and the
//! OpenAI-compatible API beside it, under the access key shown in Settings.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sinkchat_chat::{ChatService, ModelState};

pub struct Args {
    pub port: u16,
    pub data_dir: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub ui_dir: Option<PathBuf>,
}

/// The built web UI: `--ui`, else `SINKCHAT_UI_DIR`, else `ui/` beside the program (an
/// installed copy), else this source tree's `ui/dist`.
fn ui_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = given
        .into_iter()
        .chain(std::env::var_os("SINKCHAT_UI_DIR").map(PathBuf::from))
        .chain(
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("ui"))),
        )
        .chain(Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist"),
        ));
    for c in candidates {
        if c.join("index.html").is_file() {
            return Ok(c);
        }
    }
    anyhow::bail!(
        "the web UI is not built: run `cd ui && npm ci && npm run build` (or pass --ui DIR, \
         the folder holding index.html)"
    )
}

pub fn run(args: Args) -> Result<()> {
    let ui = ui_dir(args.ui_dir)?;
    let data_dir = args.data_dir.unwrap_or_else(sinkchat_hub::data_dir);
    // One SinkChat per data folder (the window or another `serve` may hold it).
    let _instance = match sinkchat_chat::instance::claim(&data_dir)
        .with_context(|| format!("using the data folder {}", data_dir.display()))?
    {
        sinkchat_chat::instance::Claim::First(i) => i,
        sinkchat_chat::instance::Claim::Running { answer } => anyhow::bail!(
            "{}",
            sinkchat_chat::instance::already_running_message(&data_dir, answer.as_deref())
        ),
    };
    sinkchat_chat::logging::init(Some(&data_dir), "warn");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let svc = ChatService::open(&data_dir, args.model)
            .await
            .with_context(|| format!("opening the chats in {}", data_dir.display()))?;
        svc.load_model();
        let settings = svc.settings().await;
        let server = sinkchat_server::start(
            svc.clone(),
            sinkchat_server::Options {
                port: args.port,
                token: settings.api_token.clone(),
                ui_dir: Some(ui),
            },
        )
        .await
        .map_err(anyhow::Error::msg)?;
        // The page is served by the API's own server: it runs, at this address.
        svc.set_server_state(sinkchat_chat::ServerState {
            running: true,
            url: Some(format!("{}/v1", server.url())),
            error: None,
            always_on: true,
        });
        // The first line is the address, for whoever started us (tests, scripts).
        println!("{}/", server.url());
        println!(
            "SinkChat is running with no window. Open {}/ in a browser on this computer.\n\
             OpenAI-compatible API: {}/v1 (access key: {})\n\
             Chats are kept in {}. Press Ctrl-C to stop.",
            server.url(),
            server.url(),
            settings.api_token,
            svc.store().path().display()
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        match svc.wait_ready().await {
            ModelState::Failed { error } => eprintln!("The model could not be loaded: {error}"),
            _ => eprintln!("The model is ready."),
        }
        wait_for_stop().await;
        eprintln!("Stopping: replies stop, every chat's memory is saved.");
        server.stop().await;
        svc.shutdown().await; // pending deletes happen, caches are parked
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM where there is one.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
