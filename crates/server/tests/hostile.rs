//! The OpenAI door against a hostile or careless client (issue #32), on the real SmolLM2 file,
//! a real SQLite file and a real port: every refusal in OpenAI's error shape, limits on what a
//! request carries checked before anything is stored, the bearer scheme read as HTTP reads it,
//! and a model that did not load answered with 503 and what to do.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sinkchat_chat::{ChatService, ModelState};
use sinkchat_server::openai::{MAX_MESSAGES, MAX_TOTAL_CHARS};
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

const KEY: &str = "sk-test-key";

/// One request: the status, the content type and the body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (and close) before reading a body it refuses.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .expect("answered in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The `error` object of an OpenAI-shaped refusal (fails the test when it is not one).
fn openai_error(status: u16, ctype: &str, body: &str) -> Value {
    assert!(
        ctype.starts_with("application/json"),
        "{status} {ctype}: {body}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let e = v["error"].clone();
    assert!(e["message"].as_str().is_some_and(|m| m.len() > 20), "{v}");
    assert!(e["code"].is_string() && e["type"].is_string(), "{v}");
    e
}

async fn start(svc: ChatService) -> sinkchat_server::Server {
    sinkchat_server::start(
        svc,
        sinkchat_server::Options {
            port: 0,
            token: KEY.into(),
            ui_dir: None,
        },
    )
    .await
    .unwrap()
}

fn chat(messages: Value) -> Vec<u8> {
    json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": messages,
        "max_tokens": 3,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_speak_openai_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ChatService::open(dir.path(), Some(model_path()))
        .await
        .unwrap();
    svc.load_model();
    assert!(matches!(svc.wait_ready().await, ModelState::Ready { .. }));
    let server = start(svc.clone()).await;
    let port = server.addr.port();
    let bearer = format!("Bearer {KEY}");

    // 5. The scheme's name is case-insensitive: `bearer` and `BEARER` are as good as `Bearer`.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (status, _, body) = http(
            port,
            "GET",
            "/v1/models",
            Some(&format!("{scheme} {KEY}")),
            b"",
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1", "{v}");
    }
    let (status, ctype, body) = http(port, "GET", "/v1/models", Some("bearer wrong"), b"").await;
    assert_eq!(status, 401);
    openai_error(status, &ctype, &body);

    // 4. A body over the limit: 413 in OpenAI's shape, not a plain-text line.
    let huge = chat(
        json!([{"role": "user", "content": "x".repeat(sinkchat_server::MAX_BODY_BYTES + 10)}]),
    );
    let (status, ctype, body) =
        http(port, "POST", "/v1/chat/completions", Some(&bearer), &huge).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        openai_error(status, &ctype, &body)["code"],
        "request_too_large"
    );
    // A wrong method too.
    let (status, ctype, body) =
        http(port, "DELETE", "/v1/chat/completions", Some(&bearer), b"").await;
    assert_eq!(status, 405, "{body}");
    openai_error(status, &ctype, &body);

    // 3. What a request carries is held to limits before anything is stored or queued: a
    // system prompt over the message limit, too many messages, too many characters in all.
    let long_system = json!([
        {"role": "system", "content": "s".repeat(150_000)},
        {"role": "user", "content": "Say ok."},
    ]);
    let mut many = vec![json!({"role": "user", "content": "hi"}); MAX_MESSAGES + 1];
    many.push(json!({"role": "user", "content": "Say ok."}));
    let per = 90_000;
    let mut bulky: Vec<Value> = (0..MAX_TOTAL_CHARS / per + 1)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "w ".repeat(per / 2)}))
        .collect();
    bulky.push(json!({"role": "user", "content": "Say ok."}));
    for (what, messages) in [
        ("a long system prompt", long_system),
        ("too many messages", Value::from(many)),
        ("too many characters", Value::from(bulky)),
    ] {
        let (status, ctype, body) = http(
            port,
            "POST",
            "/v1/chat/completions",
            Some(&bearer),
            &chat(messages),
        )
        .await;
        assert_eq!(status, 400, "{what}: {body}");
        let e = openai_error(status, &ctype, &body);
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("at most") || m.contains("limit"), "{what}: {e}");
    }
    let kept = svc.list_conversations(None).await.unwrap();
    assert!(
        kept.is_empty(),
        "a refused request left {} chats",
        kept.len()
    );

    // Within the limits, a request with many earlier messages is served, and stored whole.
    let mut earlier: Vec<Value> = (0..60)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("Message number {i}.")}))
        .collect();
    earlier.push(json!({"role": "user", "content": "Say ok."}));
    let (status, _, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(&bearer),
        &chat(Value::from(earlier)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let kept = svc.list_conversations(None).await.unwrap();
    assert_eq!(kept.len(), 1);
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = svc.messages(kept[0].id, before).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page[0].id);
        all.splice(0..0, page);
    }
    assert_eq!(
        all.len(),
        62,
        "60 earlier messages, the question and the reply"
    );
    assert_eq!(all[0].content, "Message number 0.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_did_not_load_is_a_503_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.gguf");
    std::fs::write(&bad, b"these are my notes, not a model").unwrap();
    let svc = ChatService::open(dir.path(), Some(bad)).await.unwrap();
    svc.load_model();
    assert!(matches!(svc.wait_ready().await, ModelState::Failed { .. }));
    let server = start(svc.clone()).await;
    let port = server.addr.port();
    let bearer = format!("Bearer {KEY}");

    // No model is listed while none answers; the list says why.
    let (status, _, body) = http(port, "GET", "/v1/models", Some(&bearer), b"").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], json!([]), "{v}");
    assert_eq!(v["sinkchat"]["state"], "failed", "{v}");

    // A completion: 503 (not the server's fault, not the client's), with why and what to do.
    let (status, ctype, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(&bearer),
        &chat(json!([{"role": "user", "content": "Say ok."}])),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let e = openai_error(status, &ctype, &body);
    assert_eq!(e["code"], "model_not_loaded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("Models screen"),
        "{e}"
    );
    let kept = svc.list_conversations(None).await.unwrap();
    assert!(kept.is_empty(), "a refused request left a chat");
}
