//! Cache snapshots on the real SmolLM2: a parked conversation comes back from disk and goes on
//! exactly as if it had never left memory, without reading anything old; a damaged, stale or
//! foreign snapshot is refused and the conversation is rebuilt from its transcript.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use candle_core::Device;
use sinkchat_engine::chat::{Role, Turn};
use sinkchat_engine::{
    CacheConfig, Engine, EngineEvent, EngineOptions, GenerateRequest, KvPrecision, MemorySource,
    SamplingParams,
};

fn request(conv: i64, text: &str, history: Vec<Turn>, ids: (i64, i64)) -> GenerateRequest {
    request_in(KvPrecision::F32, conv, text, history, ids)
}

fn request_in(
    precision: KvPrecision,
    conv: i64,
    text: &str,
    history: Vec<Turn>,
    ids: (i64, i64),
) -> GenerateRequest {
    GenerateRequest {
        conversation: conv,
        cache_key: format!("key-{conv}"),
        system_prompt: "You are a helpful assistant.".into(),
        history: history.into(),
        user_text: text.into(),
        user_message_id: ids.0,
        reply_message_id: ids.1,
        sampling: SamplingParams {
            max_tokens: 16,
            seed: 5,
            ..SamplingParams::default()
        },
        cache: CacheConfig {
            sinks: 4,
            window: 256,
            evict_step: 1,
            precision,
        },
        pin_system_prompt: true,
        spans: Default::default(),
    }
}

struct Reply {
    text: String,
    source: MemorySource,
    prompt_tokens: usize,
}

fn run(engine: &Engine, req: GenerateRequest) -> Reply {
    let (tx, rx) = mpsc::channel();
    engine.generate(req, move |e| drop(tx.send(e))).unwrap();
    let mut text = String::new();
    let mut source = None;
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            EngineEvent::Memory { source: s } => source = Some(s),
            EngineEvent::Token { text: t } => text.push_str(&t),
            EngineEvent::Done { prompt_tokens, .. } => {
                return Reply {
                    text,
                    source: source.expect("memory event first"),
                    prompt_tokens,
                }
            }
            EngineEvent::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}

fn start(model: &Path, dir: &Path) -> Engine {
    Engine::start_with(
        model,
        Device::Cpu,
        EngineOptions {
            snapshot_dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Turns 1 and 2 of conversation `conv`, and the history a caller passes for turn 3.
fn two_turns(engine: &Engine, conv: i64) -> Vec<Turn> {
    two_turns_in(KvPrecision::F32, engine, conv)
}

fn two_turns_in(precision: KvPrecision, engine: &Engine, conv: i64) -> Vec<Turn> {
    let request = |conv, text: &str, history, ids| request_in(precision, conv, text, history, ids);
    let a = run(engine, request(conv, "Name a colour.", vec![], (1, 2)));
    let h1 = vec![
        Turn {
            role: Role::User,
            content: "Name a colour.".into(),
            message_id: 1,
        },
        Turn {
            role: Role::Assistant,
            content: a.text,
            message_id: 2,
        },
    ];
    let b = run(engine, request(conv, "Another one?", h1.clone(), (3, 4)));
    let mut h2 = h1;
    h2.push(Turn {
        role: Role::User,
        content: "Another one?".into(),
        message_id: 3,
    });
    h2.push(Turn {
        role: Role::Assistant,
        content: b.text,
        message_id: 4,
    });
    h2
}

#[test]
fn parked_conversation_resumes_exactly_from_disk() {
    resumes_exactly_from_disk(KvPrecision::F32);
}

/// An f16 memory too: its values go to disk widened to f32 and come back to the same f16.
#[test]
fn parked_f16_conversation_resumes_exactly_from_disk() {
    resumes_exactly_from_disk(KvPrecision::F16);
}

fn resumes_exactly_from_disk(precision: KvPrecision) {
    let model = common::smollm_path();
    let dir = tempfile::tempdir().unwrap();
    let request = |conv, text: &str, history, ids| request_in(precision, conv, text, history, ids);
    let two_turns = |engine: &Engine, conv| two_turns_in(precision, engine, conv);
    // Reference: the conversation never leaves memory.
    let live = start(&model, &dir.path().join("live"));
    let history = two_turns(&live, 1);
    let want = run(&live, request(1, "And a fruit?", history.clone(), (5, 6)));
    assert_eq!(want.source, MemorySource::Live);
    drop(live);

    // Parked after two turns, engine restarted, resumed from the snapshot.
    let snaps = dir.path().join("snaps");
    let engine = start(&model, &snaps);
    let history2 = two_turns(&engine, 1);
    assert_eq!(
        history2[3].content, history[3].content,
        "same seed, same replies"
    );
    let held = engine.memory(1).expect("live").stats;
    assert_eq!(held.evicted_total, 0);
    engine.park(1);
    assert_eq!(engine.park_all(), 0, "nothing else live");
    // The values are written as the cache holds them (f16: 2 bytes each); the rest is the
    // header and the checksum. SmolLM2-135M: 30 layers, 3 K/V heads of 64.
    let values = (held.pinned_used + held.window_used) * 30 * 3 * 64 * 2 * precision.bytes();
    let size = std::fs::metadata(snaps.join("1.kv")).unwrap().len() as usize;
    assert!(
        size > values && size - values < 16 << 10,
        "{size} bytes for {values} bytes of values"
    );
    drop(engine);
    let engine = start(&model, &snaps);
    let got = run(
        &engine,
        request(1, "And a fruit?", history2.clone(), (5, 6)),
    );
    assert_eq!(got.source, MemorySource::Snapshot);
    assert_eq!(got.text, want.text, "the restored cache continues exactly");
    assert_eq!(
        got.prompt_tokens, want.prompt_tokens,
        "nothing old read again"
    );
    assert!(!snaps.join("1.kv").exists(), "a snapshot is used once");

    // Closing the app parks every live conversation.
    assert_eq!(engine.park_all(), 1);
    assert!(snaps.join("1.kv").exists());
}

#[test]
fn damaged_stale_or_foreign_snapshots_are_rebuilt() {
    let model = common::smollm_path();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let engine = start(&model, &snaps);
    let history = two_turns(&engine, 7);
    let rebuilt = |engine: &Engine, history: Vec<Turn>| {
        let r = run(engine, request(7, "And a fruit?", history, (5, 6)));
        assert_eq!(r.source, MemorySource::Rebuilt);
        assert!(!r.text.trim().is_empty());
        r
    };

    // One flipped byte: the checksum catches it.
    assert_eq!(engine.park_all(), 1);
    let path = snaps.join("7.kv");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let r = rebuilt(&engine, history.clone());
    assert!(r.prompt_tokens > 40, "the transcript was read again");

    // Cut short.
    assert_eq!(engine.park_all(), 1);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    rebuilt(&engine, history.clone());

    // Stale: the transcript has moved on since the snapshot (an edited or extra message).
    assert_eq!(engine.park_all(), 1);
    assert!(path.exists());
    let mut moved = history.clone();
    moved.push(Turn {
        role: Role::User,
        content: "Hello?".into(),
        message_id: 9,
    });
    rebuilt(&engine, moved);

    // Made with an f32 memory, asked for with a compact one (Settings changed): rebuilt in
    // the precision asked for, not restored in the old one.
    two_turns(&engine, 7);
    assert_eq!(engine.park_all(), 1);
    assert!(path.exists());
    let r = run(
        &engine,
        request_in(KvPrecision::F16, 7, "And a fruit?", history.clone(), (5, 6)),
    );
    assert_eq!(r.source, MemorySource::Rebuilt);
    let stats = engine.memory(7).expect("live").stats;
    // SmolLM2-135M: 30 layers, 3 K/V heads of 64; K and V of 2 bytes each per value.
    assert_eq!(
        stats.bytes,
        2 * 30 * 3 * 64 * 2 * stats.capacity,
        "f16: half of f32"
    );

    // Another chat's: a later chat with the same id and message ids (an id reused after a
    // delete whose snapshot stayed behind) has another key, and must not answer from it.
    let history = two_turns(&engine, 10);
    engine.park_all();
    assert!(snaps.join("10.kv").exists());
    let r = run(
        &engine,
        GenerateRequest {
            cache_key: "a-new-chat".into(),
            ..request(10, "And a fruit?", history, (5, 6))
        },
    );
    assert_eq!(
        r.source,
        MemorySource::Rebuilt,
        "another chat's memory restored"
    );
    drop(engine);

    // Another model (same weights under another name: another identity).
    let other = dir.path().join("other.gguf");
    std::fs::copy(&model, &other).unwrap();
    let engine = start(&model, &snaps);
    let history = two_turns(&engine, 8);
    engine.park(8);
    drop(engine);
    let engine = start(&other, &snaps);
    let r = run(&engine, request(8, "And a fruit?", history, (5, 6)));
    assert_eq!(r.source, MemorySource::Rebuilt);

    // Not a snapshot at all.
    std::fs::write(snaps.join("9.kv"), b"hello").unwrap();
    let r = run(&engine, request(9, "Hi", vec![], (1, 2)));
    assert_eq!(r.source, MemorySource::Rebuilt);
}

/// Snapshots stay within their disk budget: after each park the least recently parked go
/// first, and those chats rebuild from their transcript; the newest come back exactly. A
/// budget smaller than one snapshot keeps none. (Before the budget, every chat left with a
/// full cache kept its snapshot forever.)
#[test]
fn snapshots_stay_within_their_disk_budget_least_recently_parked_first() {
    let model = common::smollm_path();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let engine = start(&model, &snaps);
    let mut histories = Vec::new();
    for conv in 1..=3 {
        histories.push(two_turns(&engine, conv));
        engine.park_all();
        std::thread::sleep(Duration::from_millis(20)); // distinct park times
    }
    let one = std::fs::metadata(snaps.join("3.kv")).unwrap().len();
    let usage = sinkchat_engine::engine::snapshot_usage(&snaps);
    assert_eq!(usage.files, 3);
    // Room for two and a half: the fourth park removes the two oldest (chats 1 and 2).
    engine.set_snapshot_budget(Some(usage.bytes + one / 2 - one));
    histories.push(two_turns(&engine, 4));
    engine.park_all();
    let usage = sinkchat_engine::engine::snapshot_usage(&snaps);
    assert!(
        !snaps.join("1.kv").exists() && !snaps.join("2.kv").exists(),
        "oldest kept"
    );
    assert!(snaps.join("3.kv").exists() && snaps.join("4.kv").exists());
    assert!(usage.bytes <= 3 * one, "{usage:?}");
    let r = run(
        &engine,
        request(1, "And a fruit?", histories[0].clone(), (5, 6)),
    );
    assert_eq!(
        r.source,
        MemorySource::Rebuilt,
        "chat 1 rebuilds from its transcript"
    );
    let r = run(
        &engine,
        request(4, "And a fruit?", histories[3].clone(), (5, 6)),
    );
    assert_eq!(
        r.source,
        MemorySource::Snapshot,
        "the newest comes back whole"
    );

    // Smaller than one snapshot: none kept, and the chat still answers (rebuilt).
    engine.set_snapshot_budget(Some(one / 2));
    engine.park_all();
    assert_eq!(sinkchat_engine::engine::snapshot_usage(&snaps).bytes, 0);
    let r = run(
        &engine,
        request(3, "And a fruit?", histories[2].clone(), (5, 6)),
    );
    assert_eq!(r.source, MemorySource::Rebuilt);
}
