//! The engine thread on the real SmolLM2: caches live across turns, seeds repeat, cancel frees
//! the engine at once.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use candle_core::Device;
use sinkchat_engine::{
    CacheConfig, Engine, EngineEvent, Error, GenerateRequest, Role, SamplingParams, StopReason,
    Turn,
};

fn request(conversation: i64, text: &str, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        conversation,
        system_prompt: "You are a helpful assistant.".into(),
        history: vec![],
        user_text: text.into(),
        user_message_id: 1,
        reply_message_id: 2,
        sampling: SamplingParams {
            max_tokens,
            seed: 11,
            ..SamplingParams::default()
        },
        cache: CacheConfig {
            sinks: 4,
            window: 512,
            evict_step: 1,
        },
        pin_system_prompt: true,
    }
}

/// Runs one reply to the end; returns (text, prefill total, done reason).
fn run(engine: &Engine, req: GenerateRequest) -> (String, usize, StopReason) {
    let (tx, rx) = mpsc::channel();
    engine
        .generate(req, move |e| {
            let _ = tx.send(e);
        })
        .unwrap();
    let (mut text, mut total) = (String::new(), 0);
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            EngineEvent::Token { text: t } => text.push_str(&t),
            EngineEvent::Prefill { total: t, .. } => total = t,
            EngineEvent::Done { reason, .. } => return (text, total, reason),
            EngineEvent::Error { message, .. } => panic!("{message}"),
            EngineEvent::Cache { .. } | EngineEvent::Memory { .. } => {}
        }
    }
}

#[test]
fn conversation_cache_lives_across_turns_and_seeds_repeat() {
    let engine = Engine::start(&common::smollm_path(), Device::Cpu).unwrap();
    let (a, first_prefill, _) = run(&engine, request(1, "Name three colours.", 24));
    assert!(!a.trim().is_empty());
    // The second turn reads only its own tokens, not the history again.
    // The request carries the transcript so far, as the app sends it; the live cache is reused
    // because it saw exactly that transcript (its last message is the reply, id 2).
    let mut second = request(1, "And three animals?", 24);
    second.history = vec![
        Turn {
            role: Role::User,
            content: "Name three colours.".into(),
            message_id: 1,
        },
        Turn {
            role: Role::Assistant,
            content: a.clone(),
            message_id: 2,
        },
    ];
    (second.user_message_id, second.reply_message_id) = (3, 4);
    let (_, second_prefill, _) = run(&engine, second);
    assert!(
        second_prefill < 20,
        "second turn re-read {second_prefill} tokens"
    );
    assert!(first_prefill > second_prefill);
    // A transcript that no longer ends where the cache does (the last reply was regenerated or
    // edited away) is read again instead of continuing a memory of words that are gone.
    let mut edited = request(1, "And three trees?", 8);
    edited.history = vec![Turn {
        role: Role::User,
        content: "Name three colours.".into(),
        message_id: 1,
    }];
    (edited.user_message_id, edited.reply_message_id) = (5, 6);
    let (_, edited_prefill, _) = run(&engine, edited);
    assert!(
        edited_prefill > second_prefill,
        "{edited_prefill} tokens read after the edit"
    );
    // Same seed, same conversation state: same text.
    let (b, _, _) = run(&engine, request(2, "Name three colours.", 24));
    assert_eq!(a, b);
    assert!(matches!(
        engine.generate(request(3, "   ", 5), |_| {}),
        Err(Error::EmptyInput)
    ));
}

#[test]
fn cancel_frees_the_engine_at_once() {
    let engine = Engine::start(&common::smollm_path(), Device::Cpu).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut req = request(
        7,
        "Write a very long story about a lighthouse keeper.",
        2000,
    );
    req.sampling.stop = vec![];
    let cancel = engine
        .generate(req, move |e| {
            let _ = tx.send(e);
        })
        .unwrap();
    // Wait for the first token, then cancel.
    loop {
        if let EngineEvent::Token { .. } = rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            break;
        }
    }
    let t = Instant::now();
    cancel.cancel();
    let reason = loop {
        if let EngineEvent::Done { reason, tokens, .. } =
            rx.recv_timeout(Duration::from_secs(10)).unwrap()
        {
            assert!(tokens < 2000);
            break reason;
        }
    };
    assert_eq!(reason, StopReason::Cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        t.elapsed()
    );
    // The engine serves the next request right away.
    let (text, _, _) = run(&engine, request(8, "Say hello.", 8));
    assert!(!text.is_empty());
}

#[test]
fn a_conversation_without_a_live_cache_is_rebuilt_from_its_transcript() {
    use sinkchat_engine::{Role, Turn};
    let engine = Engine::start(&common::smollm_path(), Device::Cpu).unwrap();
    let mut req = request(21, "What is my name?", 12);
    req.history = vec![
        Turn {
            role: Role::User,
            content: "Hello! My name is Ada.".into(),
            message_id: 10,
        },
        Turn {
            role: Role::Assistant,
            content: "Nice to meet you, Ada.".into(),
            message_id: 11,
        },
        // A user turn whose reply failed: it must not leave the template open.
        Turn {
            role: Role::User,
            content: "Are you there?".into(),
            message_id: 12,
        },
    ];
    let (text, prefill, reason) = run(&engine, req);
    assert!(prefill > 40, "history was not read: {prefill} tokens");
    assert!(!text.is_empty());
    assert_ne!(reason, StopReason::Cancelled);
}
