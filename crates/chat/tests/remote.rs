//! A chat on a model that a server runs, through the conversation service as the window and
//! the local API drive it (#35): the real llama.cpp server (built by `scripts/llamacpp.sh`)
//! started here on 127.0.0.1 with the default model and a small context, and a real SQLite
//! file. Send, stream, stop, regenerate, edit, pins and recall work as on a model here, every
//! reply is saved, and the chat goes on long past the server's context; each fault is a
//! sentence in the chat and loses nothing already written.

use std::path::Path;

use sinkchat_chat::{Backend, ChatService, ModelState, ReplyEvent, ReplyOptions, StopReason};
use sinkchat_remote::local::LocalServer;
use sinkchat_store::{MessageStatus, Role};

mod common;
use common::*;

const CONTEXT: usize = 1024;
const SYSTEM: &str = "You are a helpful assistant. Answer in one short sentence.";

/// A service on a fresh data folder, short greedy replies, no model of its own loaded.
async fn service(dir: &Path, max_tokens: usize) -> ChatService {
    let svc = ChatService::open(dir, None).await.unwrap();
    let mut s = svc.settings().await;
    s.sampling.max_tokens = max_tokens;
    s.sampling.temperature = 0.0;
    s.system_prompt = SYSTEM.into();
    svc.save_settings(s).await.unwrap();
    svc
}

fn error_of(events: &[ReplyEvent]) -> Option<String> {
    events.iter().find_map(|e| match e {
        ReplyEvent::Error { message, .. } => Some(message.clone()),
        _ => None,
    })
}

/// Message `id` of the chat as saved.
async fn saved_message(svc: &ChatService, conversation: i64, id: i64) -> sinkchat_store::Message {
    svc.messages(conversation, None)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .expect("the message is saved")
}

/// The last request the service sent to the server.
fn last_request(svc: &ChatService) -> sinkchat_remote::ChatRequest {
    match svc.backend().unwrap() {
        Backend::Remote(r) => r.last_request().expect("a request was sent"),
        Backend::Local(_) => panic!("the backend is a model here"),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_chat_outlasts_the_servers_context_with_pins_recall_stop_and_redo() {
    let server = LocalServer::start(&model_path(), CONTEXT, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 24).await;

    // Check lists the server's model with the context it was started with; using it makes
    // the model ready at once.
    let check = svc.check_server(&server.address(), None).await.unwrap();
    assert_eq!(check.models.len(), 1, "{check:?}");
    assert_eq!(check.models[0].context, Some(CONTEXT));
    assert_eq!(check.warning, None, "loopback needs no warning");
    let model = check.models[0].id.clone();
    let choice = svc
        .use_server(&server.address(), None, &model, None)
        .await
        .unwrap();
    assert_eq!(choice.context, CONTEXT);
    match svc.model_state() {
        ModelState::Ready { info } => assert_eq!(info.name, model),
        s => panic!("{s:?}"),
    }
    assert_eq!(svc.models_overview().await.unwrap().server, Some(choice));

    let conv = svc.create_conversation().await.unwrap();
    // A fact early in the chat (after the first exchange, which stays pinned), to be recalled
    // once the window has let it go.
    let fact = "My sister Ottilie lives in Lisbon and keeps bees on her roof.";
    let mut evicted = 0u64;
    let mut seen = 0u64;
    let mut from_cache = 0;
    let turns = 50;
    for i in 0..turns {
        let text = if i == 2 {
            fact.to_string()
        } else {
            user_text(i)
        };
        let (sent, events) = ask(&svc, conv.id, &text).await;
        assert_eq!(error_of(&events), None, "turn {i}\n{}", server.log());
        let streamed = text_of(&events);
        let saved = saved_message(&svc, conv.id, sent.reply_id).await;
        assert_eq!(saved.status, MessageStatus::Complete, "turn {i}");
        assert_eq!(saved.content, streamed, "turn {i}: saved as streamed");
        let req = last_request(&svc);
        assert_eq!(req.messages[0].role, "system");
        assert!(req.messages[0].content.starts_with(SYSTEM), "turn {i}");
        if i > 0 {
            // The first exchange opens every later request, right after the system prompt.
            assert_eq!(req.messages[1].content, user_text(0), "turn {i}");
            assert_eq!(req.messages[2].role, "assistant", "turn {i}");
        }
        assert_eq!(req.messages.last().unwrap().content, text);
        let gauge = events
            .iter()
            .find_map(|e| match e {
                ReplyEvent::Cache { stats, .. } => Some(stats.clone()),
                _ => None,
            })
            .expect("a gauge after the reply");
        assert_eq!(gauge.capacity, CONTEXT);
        let prompt = gauge.server_prompt.expect("the server's prompt size");
        assert!(prompt + 24 <= CONTEXT, "turn {i}: {prompt} prompt tokens");
        if i >= 20 && gauge.server_cached.unwrap_or(0) * 2 >= prompt {
            from_cache += 1;
        }
        evicted = gauge.evicted_total;
        seen = gauge.tokens_seen;
    }
    let all = svc.messages(conv.id, None).await.unwrap();
    assert_eq!(all.len(), 2 * turns, "every message kept");
    assert!(
        seen > 3 * CONTEXT as u64 / 2,
        "the chat ({seen} tokens) is well past the server's context"
    );
    assert!(evicted > 0, "the window let messages go");
    assert!(
        from_cache >= (turns - 20) / 2,
        "only {from_cache} of {} turns took half their prompt from the server's cache",
        turns - 20
    );
    let gone = last_request(&svc);
    assert!(
        !gone.messages.iter().any(|m| m.content == fact),
        "the fact has left the window"
    );

    // Recall gives the fact back when a message is about it.
    let (sent, events) = ask(&svc, conv.id, "Where does my sister Ottilie live?").await;
    assert_eq!(error_of(&events), None);
    let fact_id = all.iter().find(|m| m.content == fact).unwrap().id;
    assert_eq!(sent.recalled, vec![fact_id]);
    let req = last_request(&svc);
    assert!(
        req.messages.last().unwrap().content.contains("Lisbon"),
        "{:?}",
        req.messages.last()
    );

    // A pinned message joins the pinned start of every request from then on.
    svc.pin_message(conv.id, fact_id, true).await.unwrap();
    let (_, events) = ask(&svc, conv.id, &user_text(100)).await;
    assert_eq!(error_of(&events), None);
    let req = last_request(&svc);
    assert!(req.messages[0].content.starts_with(SYSTEM));
    assert!(
        req.messages[0].content.contains("Ottilie"),
        "{:?}",
        req.messages[0]
    );

    // Regenerate: the last reply goes, a new one is saved in its place.
    let before = svc.messages(conv.id, None).await.unwrap();
    let (cb, mut rx) = listener();
    let sent = svc.regenerate(conv.id, cb).await.unwrap();
    let events = finish(&svc, conv.id, &mut rx).await;
    assert_eq!(error_of(&events), None);
    let after = svc.messages(conv.id, None).await.unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.last().unwrap().id, sent.reply_id);
    assert_eq!(after.last().unwrap().content, text_of(&events));

    // Edit: the last message is replaced and answered.
    let (cb, mut rx) = listener();
    svc.edit_and_resend(conv.id, "Name one bird that lives near rivers.", cb)
        .await
        .unwrap();
    let events = finish(&svc, conv.id, &mut rx).await;
    assert_eq!(error_of(&events), None);
    let after = svc.messages(conv.id, None).await.unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(
        after[after.len() - 2].content,
        "Name one bird that lives near rivers."
    );
    // (Recall may put earlier messages about rivers before it.)
    assert!(last_request(&svc)
        .messages
        .last()
        .unwrap()
        .content
        .ends_with("Name one bird that lives near rivers."));

    // Stop: a long reply stopped after its first words is kept as stopped, with them.
    let mut s = svc.settings().await;
    s.sampling.max_tokens = 200;
    svc.save_settings(s).await.unwrap();
    let (cb, mut rx) = listener();
    let sent = svc
        .send(
            conv.id,
            "Write a long story about a lighthouse keeper.",
            ReplyOptions::default(),
            cb,
        )
        .await
        .unwrap();
    let events = until_end_with(&mut rx, |e| {
        if matches!(e, ReplyEvent::Token { .. }) {
            svc.stop(conv.id);
        }
    })
    .await;
    assert!(
        events.iter().any(|e| matches!(
            e,
            ReplyEvent::Done {
                reason: StopReason::Cancelled,
                ..
            }
        )),
        "{events:?}"
    );
    idle(&svc, conv.id).await;
    let reply = saved_message(&svc, conv.id, sent.reply_id).await;
    assert_eq!(reply.status, MessageStatus::Stopped);
    assert_eq!(reply.content, text_of(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_faults_are_sentences_in_the_chat_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 300).await;

    // Nothing listens at the address: said so, and the app keeps what it had.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = svc
        .check_server(&format!("http://127.0.0.1:{port}"), None)
        .await
        .unwrap_err();
    assert!(e.message.contains("can't be reached"), "{e}");
    let e = svc.check_server("not a url", None).await.unwrap_err();
    assert!(e.message.contains("is not a server address"), "{e}");
    // A server with a key: the wrong key is refused in words, the right one is kept in a
    // file only its owner reads, and it is in no diagnostics.
    let mut server =
        LocalServer::start(&model_path(), CONTEXT, &["--api-key", "sk-secret-key-1"]).unwrap();
    let e = svc
        .check_server(&server.address(), Some("sk-wrong"))
        .await
        .unwrap_err();
    assert!(e.message.contains("refused the key"), "{e}");
    // (A model name the server lacks is the client's test, on a server that lists several:
    // llama.cpp's server answers to any name with its one model.)
    let check = svc
        .check_server(&server.address(), Some("sk-secret-key-1"))
        .await
        .unwrap();
    let model = check.models[0].id.clone();
    svc.use_server(&server.address(), Some("sk-secret-key-1"), &model, None)
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!svc.diagnostics().await.contains("sk-secret-key-1"));
    // Saved keys are used by Check when none is typed.
    assert!(svc.check_server(&server.address(), None).await.is_ok());

    let conv = svc.create_conversation().await.unwrap();
    let (_, events) = ask(&svc, conv.id, "Say hello.").await;
    assert_eq!(error_of(&events), None, "{}", server.log());

    // A system prompt larger than the server's context: a sentence with the figures.
    let mut s = svc.settings().await;
    s.system_prompt = "Remember every word of this. ".repeat(250);
    svc.save_settings(s).await.unwrap();
    let big = svc.create_conversation().await.unwrap();
    let (sent, events) = ask(&svc, big.id, "Hello?").await;
    let e = error_of(&events).expect("refused");
    assert!(e.contains("context (1024 tokens) is too small"), "{e}");
    let kept = svc.messages(big.id, None).await.unwrap();
    assert_eq!(kept[0].content, "Hello?", "the user's message is kept");
    assert_eq!(kept[1].id, sent.reply_id);
    assert_eq!(kept[1].status, MessageStatus::Failed);

    // The server dies mid-reply: the reply is saved as interrupted with its text so far.
    let (cb, mut rx) = listener();
    let sent = svc
        .send(
            conv.id,
            "Write a very long story about a lighthouse keeper, with many chapters.",
            ReplyOptions::default(),
            cb,
        )
        .await
        .unwrap();
    let mut so_far = String::new();
    let events = until_end_with(&mut rx, |e| {
        if let ReplyEvent::Token { text } = e {
            so_far.push_str(text);
            if so_far.len() > 20 {
                server.kill();
            }
        }
    })
    .await;
    let e = error_of(&events).expect("an error");
    assert!(e.contains("stopped answering in the middle"), "{e}");
    idle(&svc, conv.id).await;
    let msgs = svc.messages(conv.id, None).await.unwrap();
    let reply = msgs.iter().find(|m| m.id == sent.reply_id).unwrap();
    assert_eq!(reply.status, MessageStatus::Failed);
    assert_eq!(reply.content, so_far, "the text so far is saved");
    assert!(reply.content.len() > 20);

    // Down when the next message is sent: said so; the message is kept.
    let (_, events) = ask(&svc, conv.id, "Are you there?").await;
    let e = error_of(&events).expect("an error");
    assert!(e.contains("can't be reached"), "{e}");
    let msgs = svc.messages(conv.id, None).await.unwrap();
    assert!(msgs
        .iter()
        .any(|m| m.role == Role::User && m.content == "Are you there?"));

    // The server is back (at a new address): the chat goes on with everything in it.
    let server =
        LocalServer::start(&model_path(), CONTEXT, &["--api-key", "sk-secret-key-1"]).unwrap();
    svc.use_server(&server.address(), None, &model, None)
        .await
        .unwrap();
    let (_, events) = ask(&svc, conv.id, "Say goodbye.").await;
    assert_eq!(error_of(&events), None, "{}", server.log());
    let req = last_request(&svc);
    assert!(req.messages.iter().any(|m| m.content == "Are you there?"));
    assert_eq!(
        svc.messages(conv.id, None).await.unwrap().len(),
        msgs.len() + 2
    );
}
