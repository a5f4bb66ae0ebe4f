//! Copy diagnostics: what a person can paste into a bug report, with the log file's last lines
//! and never their chats, their system prompt or the server's access key. (Its own test
//! binary: logging is set up once per process.)

use sinkchat_chat::{ChatService, Settings};

#[tokio::test]
async fn diagnostics_carry_the_log_and_no_chat_text() {
    let dir = tempfile::tempdir().unwrap();
    sinkchat_chat::logging::init(Some(dir.path()), "warn");
    let svc = ChatService::open(dir.path(), None).await.unwrap();
    let settings = Settings {
        system_prompt: "You are Captain Nemo's private diarist.".into(),
        ..svc.settings().await
    };
    let settings = svc.save_settings(settings).await.unwrap();
    let conv = svc
        .store()
        .create_conversation("Nautilus plans", "m", "", "{}")
        .await
        .unwrap();
    svc.store()
        .add_user_message(
            conv.id,
            &sinkchat_store::MessageText::parse("dive at dawn").unwrap(),
        )
        .await
        .unwrap();
    tracing::info!(marker = "diag-7f3a", "a line for the log file");
    let text = svc.diagnostics().await;
    assert!(
        text.contains(&format!("SinkChat {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("Stored: 1 chats, 1 messages"), "{text}");
    assert!(
        text.contains("diag-7f3a"),
        "the log file's last lines are missing:\n{text}"
    );
    assert!(text.contains("(39 characters, not shown)"), "{text}");
    for secret in [
        "Captain Nemo",
        "Nautilus",
        "dive at dawn",
        settings.api_token.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into:\n{text}");
    }
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .collect();
    assert_eq!(logs.len(), 1, "one daily log file");
}
