//! The window's local OpenAI-compatible server: off unless Settings (or `--api-server` on the
//! command line) turns it on; on 127.0.0.1 only, with the access key shown in Settings.

use sinkchat_chat::{ChatService, ServerState, Settings};
use sinkchat_server::{Options, Server};
use tokio::sync::Mutex;

#[derive(Default)]
pub struct ApiServer(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The server running now, with the port and key it was started with.
    running: Option<(Server, u16, String)>,
    error: Option<String>,
    /// `--api-server` was given: on for this session whatever Settings say.
    forced: Option<u16>,
}

impl ApiServer {
    /// On for this run (the command-line flag), on `port` or the one in Settings.
    pub async fn force(&self, port: Option<u16>) {
        self.0.lock().await.forced = Some(port.unwrap_or(0));
    }

    /// Starts, stops or restarts the server to match `settings`, and tells the service where
    /// it stands (the `api_server_state` command reads it there).
    pub async fn apply(&self, svc: &ChatService, settings: &Settings) {
        self.switch(svc, settings).await;
        svc.set_server_state(self.state().await);
    }

    async fn switch(&self, svc: &ChatService, settings: &Settings) {
        let mut inner = self.0.lock().await;
        let port = match inner.forced {
            Some(p) if p != 0 => p,
            _ => settings.api_port,
        };
        let wanted = settings.api_server || inner.forced.is_some();
        let same = inner
            .running
            .as_ref()
            .is_some_and(|(_, p, k)| *p == port && *k == settings.api_token);
        if wanted && same {
            return;
        }
        if let Some((server, ..)) = inner.running.take() {
            server.stop().await;
        }
        inner.error = None;
        if !wanted {
            return;
        }
        let opts = Options {
            port,
            token: settings.api_token.clone(),
            ui_dir: None,
        };
        match sinkchat_server::start(svc.clone(), opts).await {
            Ok(server) => {
                tracing::info!(url = %server.url(), "local server on");
                inner.running = Some((server, port, settings.api_token.clone()));
            }
            Err(e) => {
                tracing::error!(error = %e, "local server not started");
                inner.error = Some(e);
            }
        }
    }

    /// Stops the server (the app is closing).
    pub async fn stop(&self) {
        if let Some((server, ..)) = self.0.lock().await.running.take() {
            server.stop().await;
        }
    }

    pub async fn state(&self) -> ServerState {
        let inner = self.0.lock().await;
        ServerState {
            running: inner.running.is_some(),
            url: inner
                .running
                .as_ref()
                .map(|(s, ..)| format!("{}/v1", s.url())),
            error: inner.error.clone(),
            always_on: false,
        }
    }
}
