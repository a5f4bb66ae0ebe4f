//! Every command of the table, driven through the browser door (`POST /api/{command}`) with its
//! arguments named as `ui/src/bindings/commands.ts` names them, on the real SmolLM2 file and a
//! real SQLite file: none is unknown to the door, none has its arguments refused, the
//! window-only ones are not offered, and a command the test has no sample for fails here
//! (each new command gets one).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sinkchat_chat::commands::COMMANDS;
use sinkchat_chat::{ChatService, ModelState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("SINKCHAT_MODEL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run `scripts/setup.sh test-deps` first");
    p
}

/// One command through the door: the status and the body (for a streaming command, every
/// server-sent event's name and data, until the stream ends).
async fn call(port: u16, command: &str, args: &Value) -> (u16, String) {
    let body = args.to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "POST /api/{command} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .expect("the command answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reaches_the_service_through_the_browser_door() {
    let dir = tempfile::tempdir().unwrap();
    let ui = tempfile::tempdir().unwrap();
    std::fs::write(ui.path().join("index.html"), "<!doctype html>").unwrap();
    let svc = ChatService::open(dir.path(), Some(model_path()))
        .await
        .unwrap();
    let mut s = svc.settings().await;
    s.sampling.max_tokens = 4;
    svc.save_settings(s).await.unwrap();
    svc.load_model();
    assert!(matches!(svc.wait_ready().await, ModelState::Ready { .. }));
    let server = sinkchat_server::start(
        svc.clone(),
        sinkchat_server::Options {
            port: 0,
            token: "t".into(),
            ui_dir: Some(ui.path().to_path_buf()),
        },
    )
    .await
    .unwrap();
    let port = server.addr.port();

    let (status, text) = call(port, "create_conversation", &json!({})).await;
    assert_eq!(status, 200, "{text}");
    let conv: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = conv["id"].as_i64().unwrap();
    let export = dir.path().join("in.json");
    std::fs::write(&export, "{}").unwrap();
    let settings = serde_json::to_value(svc.settings().await).unwrap();
    let c = json!(id);
    // A sample call of every command, in an order that makes each meaningful.
    let samples: Vec<(&str, Value)> = vec![
        ("app_status", json!({})),
        (
            "list_conversations",
            json!({ "beforeUpdated": null, "beforeId": null }),
        ),
        ("create_conversation", json!({})),
        (
            "send_message",
            json!({ "conversationId": c, "text": "Hello there" }),
        ),
        (
            "get_messages",
            json!({ "conversationId": c, "beforeId": null }),
        ),
        ("regenerate_reply", json!({ "conversationId": c })),
        (
            "edit_and_resend",
            json!({ "conversationId": c, "text": "Hello again" }),
        ),
        ("stop_reply", json!({ "conversationId": c })),
        ("retry_save", json!({ "replyId": 1 })),
        ("conversation_memory", json!({ "conversationId": c })),
        (
            "pin_message",
            json!({ "conversationId": c, "messageId": 1, "pinned": false }),
        ),
        (
            "rename_conversation",
            json!({ "conversationId": c, "title": "Renamed" }),
        ),
        ("search", json!({ "query": "hello" })),
        ("leave_conversation", json!({ "conversationId": c })),
        (
            "export_conversations",
            json!({ "conversationIds": [c], "format": "markdown" }),
        ),
        ("import_conversations", json!({ "text": "{}" })),
        ("import_conversations_file", json!({ "path": export })),
        ("delete_exports", json!({})),
        ("snapshot_usage", json!({})),
        ("meaning_state", json!({})),
        ("diagnostics", json!({})),
        ("get_settings", json!({})),
        ("save_settings", json!({ "settings": settings })),
        ("api_server_state", json!({})),
        ("models_overview", json!({})),
        (
            "start_download",
            json!({ "repo": "not a repo", "file": "x.gguf" }),
        ),
        ("pause_download", json!({ "key": "none" })),
        ("cancel_download", json!({ "key": "none" })),
        ("inspect_model_file", json!({ "path": "/nonexistent.gguf" })),
        ("import_model", json!({ "path": "/nonexistent.gguf" })),
        ("delete_model", json!({ "file": "none.gguf" })),
        ("use_model", json!({ "file": "none.gguf" })),
        // Port 1 on loopback: nothing listens, so each answers in words and changes nothing.
        (
            "check_server",
            json!({ "address": "http://127.0.0.1:1", "key": null }),
        ),
        (
            "use_server",
            json!({ "address": "http://127.0.0.1:1", "key": null, "model": "m", "context": null }),
        ),
        ("undo_delete", json!({ "conversationId": c })),
        ("delete_conversation_later", json!({ "conversationId": c })),
        ("undo_delete", json!({ "conversationId": c })),
        ("delete_conversation", json!({ "conversationId": c })),
    ];
    for cmd in COMMANDS {
        assert!(
            samples.iter().any(|(n, _)| *n == cmd.name),
            "no sample call of `{}`: add one to this test",
            cmd.name
        );
    }
    for (name, args) in &samples {
        let info = COMMANDS
            .iter()
            .find(|c| c.name == *name)
            .unwrap_or_else(|| panic!("{name} is not in the table"));
        // Each named argument of the table is one this call sends, by the same name.
        for (arg, _) in info.args {
            let camel: String = arg
                .split('_')
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 {
                        w.to_string()
                    } else {
                        w[..1].to_uppercase() + &w[1..]
                    }
                })
                .collect();
            assert!(args.get(&camel).is_some(), "{name}: sample lacks {camel}");
        }
        let (status, text) = call(port, name, args).await;
        if !info.door.browser() {
            assert_eq!(status, 404, "{name} is the window's alone: {text}");
            assert!(text.contains("There is no command"), "{text}");
            continue;
        }
        assert!(!text.contains("There is no command"), "{name}: {text}");
        assert!(
            !text.contains("arguments are missing or wrong"),
            "{name}: {text}"
        );
        assert_ne!(status, 0, "{name}: {text}");
        if info.events.is_some() {
            assert!(text.contains("text/event-stream"), "{name}: {text}");
            assert!(
                text.contains("event: result") || text.contains("event: failure"),
                "{name}: {text}"
            );
        }
        if name.starts_with("send_message") {
            assert!(text.contains("\"kind\":\"done\""), "{name}: {text}");
        }
    }
    // A renamed argument is refused in words, not ignored.
    let (status, text) = call(
        port,
        "rename_conversation",
        &json!({ "conversation": c, "title": "x" }),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("arguments are missing or wrong"), "{text}");
    // A wrong one is named, as the page named it.
    let (status, text) = call(port, "get_messages", &json!({ "conversationId": "x" })).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("conversationId"), "{text}");
    server.stop().await;
    svc.shutdown().await;
}
