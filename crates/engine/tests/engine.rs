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
        cache_key: format!("key-{conversation}"),
        system_prompt: "You are a helpful assistant.".into(),
        history: Default::default(),
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
            precision: sinkchat_engine::KvPrecision::F32,
        },
        pin_system_prompt: true,
        spans: Default::default(),
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
    ]
    .into();
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
    }]
    .into();
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
    ]
    .into();
    let (text, prefill, reason) = run(&engine, req);
    assert!(prefill > 40, "history was not read: {prefill} tokens");
    assert!(!text.is_empty());
    assert_ne!(reason, StopReason::Cancelled);
}

/// A tiny random-weight model of `arch` around one of llama.cpp's vocabularies.
fn tiny_with_vocab(arch: &str, vocab: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let t = match arch {
        "qwen3" => common::Tiny::qwen3(2),
        "phi3" => common::Tiny::phi3(2),
        _ => common::Tiny::llama(2),
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("tiny-{arch}.gguf"));
    common::write_tiny_with_vocab(t, &p, &common::vocab_file(vocab));
    (dir, p)
}

/// Models past llama/qwen2 and byte-level BPE chat through the engine: a SentencePiece llama
/// (no template in the file: ChatML), a SentencePiece Phi-3 with its own template, and a Qwen3.
/// Two turns each, the second on the live cache, and the inspector agrees it can run them.
#[test]
fn sentencepiece_qwen3_and_phi3_models_chat() {
    for (arch, vocab, from_file) in [
        ("llama", "ggml-vocab-llama-spm.gguf", false),
        ("phi3", "ggml-vocab-phi-3.gguf", true),
        ("qwen3", "ggml-vocab-qwen2.gguf", true),
    ] {
        let (_d, p) = tiny_with_vocab(arch, vocab);
        let s = sinkchat_engine::inspect(&p).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(s.architecture, arch);
        assert_eq!(s.template_from_file, from_file, "{arch}");
        let engine = Engine::start(&p, Device::Cpu).unwrap();
        let mut req = request(7, "Hello there", 12);
        req.sampling.temperature = 1.0;
        let (first, prefill1, _) = run(&engine, req.clone());
        req.history = vec![
            Turn {
                role: Role::User,
                content: "Hello there".into(),
                message_id: 1,
            },
            Turn {
                role: Role::Assistant,
                content: first.clone(),
                message_id: 2,
            },
        ]
        .into();
        req.user_message_id = 3;
        req.reply_message_id = 4;
        req.user_text = "And again".into();
        let (_, prefill2, _) = run(&engine, req);
        // The second turn reads only its own tokens (plus the first reply's close).
        assert!(
            prefill2 < prefill1 + 8,
            "{arch}: second turn re-read {prefill2} tokens"
        );
        assert!(
            prefill1 > 5,
            "{arch}: opening and turn too short ({prefill1})"
        );
    }
}

#[test]
fn the_gauge_shows_pins_and_recalled_text_apart_and_recalled_text_scrolls_out() {
    use sinkchat_engine::Spans;
    let engine = Engine::start(&common::smollm_path(), Device::Cpu).unwrap();
    let base = "You are a helpful assistant.";
    let pins = "\n\nThe user pinned these messages from earlier in this conversation; keep them in mind:\n- The user said: My cat is called Tom.";
    let recall = "(Recalled from earlier in this conversation, which you can no longer see:\n- The user said: My dog is called Rex.)\n\n";
    let mut req = request(31, &format!("{recall}What is my dog called?"), 4);
    req.system_prompt = format!("{base}{pins}");
    req.spans = Spans {
        opening_tail: pins.len(),
        turn_head: recall.len(),
    };
    req.cache.window = 128;
    let system = req.system_prompt.clone();
    let mut history: Vec<Turn> = Vec::new();
    let (reply, _, _) = run(&engine, req);
    let s = engine.memory(31).unwrap().stats;
    let base_tokens = engine.opening_tokens(base).unwrap();
    assert_eq!(
        s.opening_tail_used,
        engine.opening_tokens(&system).unwrap() - base_tokens
    );
    assert!(s.opening_tail_used > 10, "{s:?}");
    assert!(s.pinned_used >= base_tokens + s.opening_tail_used, "{s:?}");
    assert_eq!(s.opening_tail_room, 64 - base_tokens);
    let n = engine.count_tokens(recall).unwrap();
    assert!(
        s.turn_head_used.abs_diff(n) <= 2,
        "recalled {} of {n} tokens",
        s.turn_head_used
    );
    // Later turns bring nothing back: the recalled part only shrinks, and leaves with its turn.
    history.push(Turn {
        role: Role::User,
        content: "What is my dog called?".into(),
        message_id: 1,
    });
    history.push(Turn {
        role: Role::Assistant,
        content: reply,
        message_id: 2,
    });
    let mut last = s.turn_head_used;
    for k in 0..20 {
        let text = format!("Tell me one thing about rivers, part {k}.");
        let mut req = request(31, &text, 16);
        req.system_prompt = system.clone();
        req.spans.opening_tail = pins.len();
        req.cache.window = 128;
        req.history = history.clone().into();
        let ids = (3 + 2 * k as i64, 4 + 2 * k as i64);
        (req.user_message_id, req.reply_message_id) = ids;
        let (reply, _, _) = run(&engine, req);
        let s = engine.memory(31).unwrap().stats;
        assert!(s.turn_head_used <= last, "{s:?}");
        assert_eq!(
            s.opening_tail_used,
            engine.opening_tokens(&system).unwrap() - base_tokens
        );
        last = s.turn_head_used;
        if last == 0 {
            assert!(s.evicted_total > 0);
            return;
        }
        history.push(Turn {
            role: Role::User,
            content: text,
            message_id: ids.0,
        });
        history.push(Turn {
            role: Role::Assistant,
            content: reply,
            message_id: ids.1,
        });
    }
    panic!("the recalled text never left the window ({last} tokens still there)");
}

/// A long prompt shares the engine: a short reply asked for while another chat's long prompt
/// is being read is written in between its chunks (before the long one's prompt is read), and
/// comes out word for word as it does alone: replies taking turns do not touch each other's
/// memory.
#[test]
fn a_long_prompt_does_not_hold_up_another_chat() {
    let engine = Engine::start(&common::smollm_path(), Device::Cpu).unwrap();
    let (alone, _, _) = run(&engine, request(30, "Name three colours.", 12));
    let (tx, rx) = mpsc::channel();
    let long = "The lighthouse keeper wrote the weather in his book every morning. ".repeat(300);
    let mut big = request(31, &long, 4);
    big.cache.window = 1024;
    let a = tx.clone();
    engine
        .generate(big, move |e| {
            let _ = a.send((31, e));
        })
        .unwrap();
    // Once the long prompt is being read, the short one comes.
    loop {
        let (_, e) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        if let EngineEvent::Prefill { done, total } = e {
            assert!(done < total, "the long prompt is long");
            break;
        }
    }
    let b = tx.clone();
    engine
        .generate(request(32, "Name three colours.", 12), move |e| {
            let _ = b.send((32, e));
        })
        .unwrap();
    let (mut short, mut long_read, mut long_total) = (String::new(), 0, 0);
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            (32, EngineEvent::Token { text }) => short.push_str(&text),
            (32, EngineEvent::Done { .. }) => break,
            (31, EngineEvent::Prefill { done, total }) => (long_read, long_total) = (done, total),
            (31, EngineEvent::Done { .. }) => panic!("the long reply ended before the short one"),
            (_, EngineEvent::Error { message, .. }) => panic!("{message}"),
            _ => {}
        }
    }
    assert!(
        long_read < long_total,
        "the short reply waited for the whole long prompt ({long_read} of {long_total} tokens read)"
    );
    assert_eq!(
        short, alone,
        "a reply written between another's chunks differs"
    );
    // The long one goes on to its end.
    loop {
        match rx.recv_timeout(Duration::from_secs(300)).unwrap() {
            (31, EngineEvent::Done { prompt_tokens, .. }) => {
                assert_eq!(prompt_tokens, long_total);
                break;
            }
            (_, EngineEvent::Error { message, .. }) => panic!("{message}"),
            _ => {}
        }
    }
}
