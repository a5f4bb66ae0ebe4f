//! What the service's integration tests share: the default model's file, a reply's events
//! on a channel, waiting for a reply to end and be saved.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::time::Duration;

use sinkchat_chat::{ChatService, ReplyEvent, ReplyOptions, Sent};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("SINKCHAT_MODEL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "run `scripts/setup.sh test-deps` first: {}",
        p.display()
    );
    p
}

/// A reply's events, as its listener sends them.
pub type Events = UnboundedReceiver<ReplyEvent>;

pub fn listener() -> (impl FnMut(ReplyEvent) + Send + 'static, Events) {
    let (tx, rx) = unbounded_channel();
    (
        move |e| {
            let _ = tx.send(e);
        },
        rx,
    )
}

/// Every event of a reply, up to and including its end.
pub async fn until_done(rx: &mut Events) -> Vec<ReplyEvent> {
    until_end_with(rx, |_| {}).await
}

pub fn text_of(events: &[ReplyEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ReplyEvent::Token { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// Waits until the chat has no reply in flight (the service has finished saving it).
pub async fn idle(svc: &ChatService, id: i64) {
    for _ in 0..2400 {
        if !svc.is_busy(id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("conversation {id} stayed busy");
}

/// Waits for a reply to end and for the service to finish saving it; returns its events.
pub async fn finish(svc: &ChatService, id: i64, rx: &mut Events) -> Vec<ReplyEvent> {
    let events = until_done(rx).await;
    idle(svc, id).await;
    events
}

/// Sends `text` with the settings' options and waits until the reply is saved.
pub async fn ask(svc: &ChatService, id: i64, text: &str) -> (Sent, Vec<ReplyEvent>) {
    let (cb, mut rx) = listener();
    let sent = svc
        .send(id, text, ReplyOptions::default(), cb)
        .await
        .unwrap();
    (sent, finish(svc, id, &mut rx).await)
}

/// Every event of a reply up to its end, each shown to `on_event` as it comes (to stop the
/// reply, or kill its server, at some point of it).
pub async fn until_end_with(
    rx: &mut Events,
    mut on_event: impl FnMut(&ReplyEvent),
) -> Vec<ReplyEvent> {
    let mut all = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("the reply ended")
            .expect("the reply's events");
        on_event(&e);
        let end = e.ends_reply();
        all.push(e);
        if end {
            return all;
        }
    }
}

/// The meaning model's folder (all-MiniLM-L6-v2), installed by `scripts/setup.sh`.
pub fn meaning_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(".data/models")
        .join(sinkchat_engine::embed::FOLDER);
    assert!(
        p.join("model.safetensors").exists(),
        "the meaning model is missing at {}: run `scripts/setup.sh test-deps` first",
        p.display()
    );
    p
}

/// Puts the meaning model into the data folder `data`, where the app looks for it (a link).
pub fn install_meaning(data: &Path) {
    let link = data.join("models").join(sinkchat_engine::embed::FOLDER);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(meaning_dir(), link).unwrap();
}
