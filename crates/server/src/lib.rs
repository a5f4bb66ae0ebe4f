//! SinkChat's local HTTP server, on loopback only, over the same conversation service the
//! window uses:
//!
//! - an OpenAI-compatible API (`GET /v1/models`, `POST /v1/chat/completions`, streamed or
//!   not) behind a bearer token ([`openai`]). A request that continues a conversation the
//!   server already holds (its messages extend one it answered) goes on in that chat's live
//!   sink+window cache instead of reading the history again; every such chat appears in the
//!   app's history, with the gauge.
//! - optionally the web UI itself, for a browser where there is no display (`sinkchat serve`):
//!   the files of `ui/dist`, and `POST /api/{command}` carrying the same commands as the
//!   window's IPC, with a reply's events streamed back as server-sent events ([`webui`]).

// A refusal here is a whole HTTP response, made once on a cold path and returned at once;
// boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod openai;
pub mod webui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use sinkchat_chat::ChatService;

/// Most bytes one request's body may hold: an OpenAI request of [`openai::MAX_TOTAL_CHARS`]
/// characters with room for JSON escapes; more is refused (413, in OpenAI's shape) before it is
/// read whole.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// What to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// The port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The token OpenAI clients must send (`Authorization: Bearer …`).
    pub token: String,
    /// The built web UI (`ui/dist`) to serve with its `/api` routes; `None`: the API only.
    pub ui_dir: Option<PathBuf>,
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests and waits for the server to end: requests in flight get two
    /// seconds to finish, then the server ends anyway (a client that keeps a connection open
    /// must not keep Settings' "off" from taking effect; a CI run saw the stop wait past 10 s).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let graceful = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task);
        if graceful.await.is_err() {
            tracing::warn!("connections still open two seconds after the stop; closing them");
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

/// Binds 127.0.0.1 (never another interface: the server speaks for the user's chats) and
/// starts serving. Fails in plain words when the port is taken.
pub async fn start(svc: ChatService, opts: Options) -> Result<Server, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "SinkChat's server could not listen on {addr}: {e}. Another program may be using \
             port {}; pick another port.",
            opts.port
        )
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = router(svc, &opts);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the server stopped");
        }
    });
    tracing::info!(%addr, "server listening");
    Ok(Server {
        addr,
        stop: Some(tx),
        task,
    })
}

/// The routes: the OpenAI API always, the web UI when asked for.
pub fn router(svc: ChatService, opts: &Options) -> Router {
    let api = openai::routes(Arc::new(openai::ApiState::new(
        svc.clone(),
        opts.token.clone(),
    )));
    let app = match &opts.ui_dir {
        Some(dir) => api.merge(webui::routes(svc, dir.clone())),
        None => api,
    };
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}
