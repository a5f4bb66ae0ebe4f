//! The server door against the real llama.cpp server (built by `scripts/llamacpp.sh`, started
//! here on 127.0.0.1 with the default model): a chat whose text is several times the server's
//! context goes on for 200 turns under SinkChat's policy, alone and with the model split over
//! two RPC servers, where a plain client fails at the context limit; and every fault a user
//! can meet is a sentence. Tiny hand-written servers stand in only for faults the real one
//! cannot be made to show (a server that never answers, a broken or endless stream, a model
//! list without the model asked for).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinkchat_remote::local::LocalServer;
use sinkchat_remote::{ChatMessage, ChatRequest, Client, Error, Session};

const CONTEXT: usize = 1024;
const REPLY_ROOM: usize = 24;
const SYSTEM: &str = "You are a helpful assistant. Answer in one short sentence.";

fn model_path() -> PathBuf {
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

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

/// What the user says at turn `i`: varied, a dozen tokens or so.
fn user_text(i: usize) -> String {
    const TOPICS: [&str; 8] = [
        "rivers", "bread", "owls", "trains", "tea", "maps", "clocks", "gardens",
    ];
    format!(
        "Turn {i}: tell me one short thing about {}.",
        TOPICS[i % TOPICS.len()]
    )
}

/// 200 turns under the policy.
async fn two_hundred_turns(server: &LocalServer) {
    let client = Client::new(&server.address(), None).unwrap();
    let mut s = Session::start(client, "smollm2", SYSTEM, REPLY_ROOM, None)
        .await
        .unwrap();
    assert_eq!(s.context(), CONTEXT, "the context as the server says it");
    s.extra.insert("cache_prompt".into(), true.into());
    let mut from_cache = 0usize;
    let mut evictions = 0usize;
    for i in 0..200 {
        let t = s
            .turn(&user_text(i), &never(), |_| {})
            .await
            .unwrap_or_else(|e| panic!("turn {i}: {e}\n{}", server.log()));
        assert!(
            t.prompt_tokens + REPLY_ROOM <= CONTEXT,
            "turn {i} asked for {} tokens",
            t.prompt_tokens
        );
        // The pinned start (the system prompt, then the first exchange) opens every request.
        let sent = &s.last_request().messages;
        assert_eq!(sent[0], ChatMessage::new("system", SYSTEM), "turn {i}");
        if i > 0 {
            assert_eq!(sent[1].content, user_text(0), "turn {i}");
            assert_eq!(sent[2].role, "assistant");
        }
        assert_eq!(sent.last().unwrap().content, user_text(i));
        if i >= 20 && t.cached * 2 >= t.prompt_tokens {
            from_cache += 1;
        }
        evictions += usize::from(t.evicted_messages > 0);
    }
    let last = s.last_stats().unwrap();
    let text = last.evicted_tokens_total + last.window_tokens;
    assert!(
        text >= 4 * CONTEXT,
        "the chat's text ({text} tokens) is four times the context"
    );
    // Evicting in blocks: few evictions, and between them the prefix cache serves the
    // requests (at least half of each prompt for most turns).
    assert!(
        evictions > 0 && evictions < 60,
        "{evictions} turns let messages go"
    );
    assert!(
        from_cache >= 120,
        "only {from_cache} of 180 turns took half their prompt from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_four_times_the_context_goes_on_where_a_plain_client_fails() {
    let server = LocalServer::start(&model_path(), CONTEXT, &[]).unwrap();
    two_hundred_turns(&server).await;

    // A plain client sends the whole history each turn: it fails at the context limit.
    let client = Client::new(&server.address(), None).unwrap();
    let mut messages = vec![ChatMessage::new("system", SYSTEM)];
    let mut failed = None;
    for i in 0..200 {
        messages.push(ChatMessage::new("user", &user_text(i)));
        let req = ChatRequest {
            model: "smollm2".into(),
            messages: messages.clone(),
            max_tokens: REPLY_ROOM,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            extra: Default::default(),
        };
        match client.chat(&req, &never(), |_| {}).await {
            Ok(c) => messages.push(ChatMessage::new("assistant", &c.text)),
            Err(e) => {
                failed = Some((i, e));
                break;
            }
        }
    }
    let (turn, e) = failed.expect("a plain client outgrew the context");
    assert!(matches!(e, Error::ContextFull(_)), "turn {turn}: {e}");
    assert!(e.to_string().contains("context"), "{e}");
    assert!(turn < 100, "failed at turn {turn}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_chat_with_the_model_split_over_two_rpc_servers() {
    let server = LocalServer::start_over_rpc(&model_path(), CONTEXT, 2, &[]).unwrap();
    two_hundred_turns(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_a_real_server_are_sentences_and_lose_nothing() {
    // Nothing listens: unreachable, in words.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let e = down.models().await.unwrap_err();
    assert!(matches!(e, Error::Unreachable(_)), "{e}");
    assert!(e.to_string().contains("can't be reached"), "{e}");

    // A server with a key: the wrong one is refused as such, the right one works.
    let server = Arc::new(Mutex::new(
        LocalServer::start(&model_path(), CONTEXT, &["--api-key", "sk-right"]).unwrap(),
    ));
    let address = server.lock().unwrap().address();
    let wrong = Client::new(&address, Some("sk-wrong")).unwrap();
    assert_eq!(wrong.models().await.unwrap_err(), Error::BadKey);
    let right = Client::new(&address, Some("sk-right")).unwrap();
    assert!(!right.models().await.unwrap().is_empty());

    // A pinned start larger than the server's context: refused with the figures.
    let huge = "Remember every word of this. ".repeat(300);
    let mut s = Session::start(right.clone(), "smollm2", &huge, REPLY_ROOM, None)
        .await
        .unwrap();
    let e = s.turn("Hello?", &never(), |_| {}).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooSmall {
                context: CONTEXT,
                ..
            }
        ),
        "{e}"
    );

    // The server dies mid-reply: an error that says so, the text so far in the caller's
    // hands, and the conversation as it was.
    let mut s = Session::start(right.clone(), "smollm2", SYSTEM, 400, None)
        .await
        .unwrap();
    s.turn("Say hello.", &never(), |_| {}).await.unwrap();
    let before = s.last_request().messages.len();
    let so_far = Arc::new(Mutex::new(String::new()));
    let (seen, srv) = (so_far.clone(), server.clone());
    let e = s
        .turn(
            "Write a very long story about a lighthouse keeper, with many chapters.",
            &never(),
            move |t| {
                let mut seen = seen.lock().unwrap();
                seen.push_str(t);
                if seen.len() > 20 {
                    srv.lock().unwrap().kill();
                }
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Interrupted(_)), "{e}");
    assert!(so_far.lock().unwrap().len() > 20);
    assert_eq!(
        s.last_request().messages.len(),
        before,
        "the turn left no trace"
    );
    let e = s
        .turn("Are you there?", &never(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unreachable(_)), "{e}");
}

/// A one-shot HTTP server on 127.0.0.1 that answers every connection with `reply` (and then,
/// if `endless`, with the same event forever); returns its address.
fn fake(reply: &'static str, endless: bool) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = c.read(&mut buf);
                if reply.is_empty() {
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                let _ = c.write_all(reply.as_bytes());
                if !endless {
                    return;
                }
                let event = "data: {\"choices\":[{\"delta\":{\"content\":\"la \"}}]}\n\n";
                while c.write_all(event.as_bytes()).is_ok() {}
            });
        }
    });
    addr
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::new("user", "hi")],
        max_tokens: 16,
        temperature: 0.0,
        top_p: 1.0,
        seed: None,
        extra: Default::default(),
    }
}

#[tokio::test]
async fn faults_no_real_server_shows_are_sentences_too() {
    const STREAM: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    // Accepts the connection and never answers: a timeout in words.
    let mut silent = Client::new(&fake("", false), None).unwrap();
    silent.timeout = Duration::from_secs(2);
    let e = silent.models().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { seconds: 2, .. }), "{e}");
    assert!(e.to_string().contains("did not answer within 2 seconds"));

    // A stream that is not JSON.
    let broken = format!("{STREAM}data: {{not json\n\n");
    let c = Client::new(&fake(Box::leak(broken.into_boxed_str()), false), None).unwrap();
    let e = c.chat(&request(), &never(), |_| {}).await.unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e}");

    // A stream that never ends: cut past the reply's limit.
    let c = Client::new(&fake(STREAM, true), None).unwrap();
    let mut got = 0;
    let e = c
        .chat(&request(), &never(), |_| got += 1)
        .await
        .unwrap_err();
    assert_eq!(e, Error::Endless);
    assert!(got >= 16, "the text so far came through: {got}");

    // A model list without the model asked for names what it has.
    const MODELS: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"data\":[{\"id\":\"qwen-72b\",\"max_model_len\":32768},{\"id\":\"llama-70b\"}]}";
    let c = Client::new(&fake(MODELS, false), None).unwrap();
    let e = c.model("gpt-4").await.unwrap_err();
    assert!(
        matches!(&e, Error::NoSuchModel { asked, offered } if asked == "gpt-4" && offered == "qwen-72b, llama-70b"),
        "{e}"
    );
    let m = c.model("qwen-72b").await.unwrap();
    assert_eq!(
        c.context_size(&m).await,
        Some(32768),
        "vLLM's max_model_len"
    );
}
