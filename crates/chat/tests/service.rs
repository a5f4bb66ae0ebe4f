//! The conversation service driven as the window and the server drive it, on the real
//! SmolLM2 file and a real SQLite file, with no window.

use std::path::Path;
use std::time::Duration;

use sinkchat_chat::{ChatService, MemorySource, ModelState, ReplyEvent, ReplyOptions, StopReason};
use sinkchat_store::{MessageStatus, Role};

mod common;
use common::*;

/// A service on a fresh data folder with the model loaded; replies are short and greedy.
async fn service(dir: &Path, max_tokens: usize) -> ChatService {
    let svc = ChatService::open(dir, Some(model_path())).await.unwrap();
    let mut s = svc.settings().await;
    s.sampling.max_tokens = max_tokens;
    s.sampling.temperature = 0.0;
    svc.save_settings(s).await.unwrap();
    svc.load_model();
    assert!(matches!(svc.wait_ready().await, ModelState::Ready { .. }));
    svc
}

/// Bug: two sends to one chat at the same moment both started a reply (the idle check and
/// the reply's registration were several awaits apart); the first could no longer be
/// stopped, and when it ended the chat looked idle while the second still streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sends_at_once_start_one_reply_and_stop_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 400).await;
    let conv = svc.create_conversation().await.unwrap();
    let (cb1, mut rx1) = listener();
    let (cb2, mut rx2) = listener();
    let opts = ReplyOptions::default;
    let (a, b) = tokio::join!(
        svc.send(conv.id, "Tell me a long story about a fox.", opts(), cb1),
        svc.send(conv.id, "Tell me a long story about a cat.", opts(), cb2),
    );
    let started = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(started, 1, "both sends started a reply: {a:?} / {b:?}");
    let refused = if a.is_err() { &a } else { &b };
    assert_eq!(refused.as_ref().unwrap_err().code, "busy");
    // The reply that started is the one a stop reaches.
    assert!(svc.is_busy(conv.id));
    assert!(svc.stop(conv.id));
    let rx = if a.is_ok() { &mut rx1 } else { &mut rx2 };
    let events = until_done(rx).await;
    assert!(
        matches!(
            events.last(),
            Some(ReplyEvent::Done {
                reason: StopReason::Cancelled,
                ..
            })
        ),
        "the reply was not stopped: {:?}",
        events.last()
    );
    idle(&svc, conv.id).await;
    let msgs = svc.messages(conv.id, None).await.unwrap();
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant],
        "one question, one reply"
    );
    assert_eq!(msgs[1].status, MessageStatus::Stopped);
}

/// Adds `n` messages (user and assistant in turn) to a conversation in one statement.
async fn bulk_messages(svc: &ChatService, conversation: i64, n: i64) {
    sqlx::query(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) \
         INSERT INTO messages(conversation_id, role, content, status, created_at, updated_at) \
         SELECT ?, CASE i % 2 WHEN 1 THEN 'user' ELSE 'assistant' END, \
                'old message number ' || i, 'complete', 0, 0 FROM k",
    )
    .bind(n)
    .bind(conversation)
    .execute(svc.store().pool())
    .await
    .unwrap();
}

/// Bug: a regenerate or an edit read the transcript oldest first, capped at 100,000
/// messages; past the cap it picked an old user message and deleted every newer message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_and_edit_past_100_000_messages_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 6).await;
    let conv = svc.create_conversation().await.unwrap();
    bulk_messages(&svc, conv.id, 100_010).await;
    let (sent, _) = ask(&svc, conv.id, "The newest question.").await;
    let count = svc.store().message_count(conv.id).await.unwrap();
    assert_eq!(count, 100_012);

    let (cb, mut rx) = listener();
    let again = svc.regenerate(conv.id, cb).await.unwrap();
    finish(&svc, conv.id, &mut rx).await;
    assert_eq!(
        again.user_message.id, sent.user_message.id,
        "regenerate answered another message"
    );
    assert_eq!(svc.store().message_count(conv.id).await.unwrap(), count);

    let (cb, mut rx) = listener();
    let edited = svc
        .edit_and_resend(conv.id, "The newest question, edited.", cb)
        .await
        .unwrap();
    finish(&svc, conv.id, &mut rx).await;
    assert_eq!(svc.store().message_count(conv.id).await.unwrap(), count);
    let tail = svc.messages(conv.id, None).await.unwrap();
    let n = tail.len();
    assert_eq!(tail[n - 2].content, "The newest question, edited.");
    assert_eq!(tail[n - 2].id, edited.user_message.id);
    assert_eq!(tail[n - 3].content, "old message number 100010");
}

/// Bug: a save that failed while a reply streamed was only logged: the window showed a whole
/// reply that was not on disk. Now the failure is an event, and the text waits for a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_shown_and_the_reply_kept_for_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 24).await;
    let conv = svc.create_conversation().await.unwrap();
    // The real SQLite file refuses every write to a message, as a full disk does.
    sqlx::query(
        "CREATE TRIGGER full_disk BEFORE UPDATE ON messages \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(svc.store().pool())
    .await
    .unwrap();
    let (cb, mut rx) = listener();
    let sent = svc
        .send(conv.id, "Name three colours.", ReplyOptions::default(), cb)
        .await
        .unwrap();
    let events = until_done(&mut rx).await;
    let text = text_of(&events);
    assert!(!text.is_empty());
    // The not-saved notice may come before or after the end; wait for the service to finish.
    idle(&svc, conv.id).await;
    let mut all = events;
    while let Ok(e) = rx.try_recv() {
        all.push(e);
    }
    let notice = all.iter().find_map(|e| match e {
        ReplyEvent::NotSaved { reply_id, message } => Some((*reply_id, message)),
        _ => None,
    });
    let (id, message) = notice.expect("a not-saved event");
    assert_eq!(id, sent.reply_id);
    assert!(message.contains("disk is full"), "{message}");
    let on_disk = svc.store().message(sent.reply_id).await.unwrap();
    assert_ne!(
        on_disk.content, text,
        "the failed save wrote the text after all"
    );

    // Space is back: the retry writes the whole reply.
    sqlx::query("DROP TRIGGER full_disk")
        .execute(svc.store().pool())
        .await
        .unwrap();
    assert!(svc.retry_save(sent.reply_id).await.unwrap());
    let on_disk = svc.store().message(sent.reply_id).await.unwrap();
    assert_eq!(on_disk.content, text);
    assert_eq!(on_disk.status, MessageStatus::Complete);
    assert!(
        !svc.retry_save(sent.reply_id).await.unwrap(),
        "nothing left to retry"
    );
}

/// The engine asks for the transcript only when it has no live cache for the chat; a chat
/// that goes on reads none of its history again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_only_when_the_cache_must_be_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 6).await;
    let conv = svc.create_conversation().await.unwrap();
    let mut memory = Vec::new();
    let mut reads = Vec::new();
    for q in ["Hello!", "Name a colour.", "Name a fruit."] {
        let (_, events) = ask(&svc, conv.id, q).await;
        memory.extend(events.iter().find_map(|e| match e {
            ReplyEvent::Memory { source } => Some(*source),
            _ => None,
        }));
        reads.push(svc.history_reads());
    }
    assert_eq!(
        memory,
        [
            MemorySource::Rebuilt,
            MemorySource::Live,
            MemorySource::Live
        ]
    );
    assert!(
        reads[0] >= 1,
        "a new chat's rebuild asks for its (empty) history"
    );
    assert_eq!(reads[1], reads[0], "a live cache read history again");
    assert_eq!(reads[2], reads[0], "a live cache read history again");
    // An edit moves the transcript away from the cache: now it is read.
    let (cb, mut rx) = listener();
    svc.edit_and_resend(conv.id, "Name a tree.", cb)
        .await
        .unwrap();
    finish(&svc, conv.id, &mut rx).await;
    assert!(svc.history_reads() > reads[2]);
}

/// The gauge of a chat opened in the window (or written to over the local server) comes from
/// what the model holds now: live, parked on disk (as it will come back), or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chats_memory_is_shown_live_parked_and_gone() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 6).await;
    let conv = svc.create_conversation().await.unwrap();
    assert!(
        svc.memory(conv.id).await.is_none(),
        "a new chat holds nothing"
    );
    let (sent, _) = ask(&svc, conv.id, "Hello!").await;
    let live = svc.memory(conv.id).await.expect("a live chat has a view");
    assert!(live.stats.tokens_seen > 0);
    assert_eq!(live.first_visible_message, Some(sent.user_message.id));
    svc.leave(conv.id);
    // Parking runs on the engine thread; the view stays as it was.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dir
        .path()
        .join(format!("snapshots/{}.kv", conv.id))
        .exists());
    let parked = svc
        .memory(conv.id)
        .await
        .expect("a parked chat keeps its view");
    assert_eq!(parked.stats.tokens_seen, live.stats.tokens_seen);
    // After a restart the engine has no view, but the snapshot's header has the figures: the
    // gauge and the memory line show as soon as the chat is opened, before any reply.
    svc.shutdown().await;
    drop(svc);
    let svc = service(dir.path(), 6).await;
    let reopened = svc
        .memory(conv.id)
        .await
        .expect("a parked chat's view after a restart");
    assert_eq!(reopened.stats.tokens_seen, live.stats.tokens_seen);
    assert_eq!(reopened.stats.window_start, live.stats.window_start);
    assert_eq!(reopened.stats.capacity, live.stats.capacity);
    assert_eq!(reopened.stats.bytes, live.stats.bytes);
    assert_eq!(reopened.first_visible_message, live.first_visible_message);
    let other = svc.create_conversation().await.unwrap();
    assert!(svc.memory(other.id).await.is_none());
    svc.delete(conv.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        svc.memory(conv.id).await.is_none(),
        "a deleted chat's view went"
    );
}

/// A crafted model file used to panic the loader thread (a division by zero in the GGUF
/// reader), leaving the app "Loading" forever. Now it fails, in plain words, and the chats
/// stay usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_model_file_fails_to_load_instead_of_loading_forever() {
    let dir = tempfile::tempdir().unwrap();
    // GGUF v3, no tensors, one key: general.alignment = 0u32.
    let key = b"general.alignment";
    let mut gguf = b"GGUF".to_vec();
    gguf.extend(3u32.to_le_bytes());
    gguf.extend(0u64.to_le_bytes());
    gguf.extend(1u64.to_le_bytes());
    gguf.extend((key.len() as u64).to_le_bytes());
    gguf.extend(key);
    gguf.extend(4u32.to_le_bytes());
    gguf.extend(0u32.to_le_bytes());
    let model = dir.path().join("crafted.gguf");
    std::fs::write(&model, gguf).unwrap();
    let svc = ChatService::open(dir.path(), Some(model)).await.unwrap();
    svc.load_model();
    let state = tokio::time::timeout(Duration::from_secs(30), svc.wait_ready())
        .await
        .expect("the loader ended");
    let ModelState::Failed { error } = state else {
        panic!("the crafted file loaded: {state:?}")
    };
    assert!(error.message.contains("malformed"), "{}", error.message);
    // The chats still work without a model: a send is refused with the loader's reason.
    let conv = svc.create_conversation().await.unwrap();
    let e = svc
        .send(conv.id, "Hello", ReplyOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.message, error.message);
    assert_eq!(
        svc.store().message_count(conv.id).await.unwrap(),
        0,
        "nothing half-saved"
    );
}

/// A chat deleted within the undo window right before quitting is deleted at the quit (it used
/// to survive, and its memory was even parked to `snapshots/`); one brought back stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delete_happens_at_shutdown_and_an_undone_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 4).await;
    let gone = svc.create_conversation().await.unwrap();
    let kept = svc.create_conversation().await.unwrap();
    for id in [gone.id, kept.id] {
        ask(&svc, id, "Hello!").await;
    }
    svc.delete_later(gone.id, Duration::from_secs(600));
    svc.delete_later(kept.id, Duration::from_secs(600));
    assert!(svc.undo_delete(kept.id));
    let listed: Vec<i64> = svc
        .list_conversations(None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        listed,
        [kept.id],
        "a pending delete leaves the list at once"
    );
    svc.shutdown().await;
    drop(svc);
    let again = ChatService::open(dir.path(), Some(model_path()))
        .await
        .unwrap();
    assert!(
        again.conversation(gone.id).await.is_err(),
        "the deleted chat survived the quit"
    );
    assert!(again.conversation(kept.id).await.is_ok());
    assert!(
        !dir.path()
            .join(format!("snapshots/{}.kv", gone.id))
            .exists(),
        "its memory was parked"
    );
    assert!(dir
        .path()
        .join(format!("snapshots/{}.kv", kept.id))
        .exists());
}

/// The cache is bounded by memory, not only by slots: settings whose caches would not fit in
/// the memory free now are refused with the figures (they were accepted up to 16.7M slots,
/// hundreds of GB, and the allocation would have ended the process), a window that overflows
/// is refused instead of panicking, and a system prompt too long to pin scrolls like text
/// instead of growing the cache past the size chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_held_to_the_memory_free_and_to_the_size_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 4).await;
    let mut s = svc.settings().await;
    s.cache.window = 10_000_000; // 10M slots of SmolLM2: 230 GB in f16 (460 GB in f32)
    let e = svc.save_settings(s.clone()).await.unwrap_err();
    assert_eq!(e.code, "invalid_settings");
    assert!(
        e.message.contains("GB") && e.message.contains("free"),
        "{}",
        e.message
    );
    s.cache.window = 2044;
    s.recall_share = 80;
    let e = svc.save_settings(s.clone()).await.unwrap_err();
    assert_eq!(e.code, "invalid_settings");
    assert!(e.message.contains("50%"), "{}", e.message);
    s.recall_share = 12;
    s.cache.window = usize::MAX;
    let e = svc.save_settings(s.clone()).await.unwrap_err();
    assert_eq!(e.code, "invalid_cache_config", "{}", e.message);
    assert_eq!(
        svc.settings().await.cache.window,
        2044,
        "nothing refused was saved"
    );

    s.cache.window = 64;
    s.pin_system_prompt = true;
    svc.save_settings(s.clone()).await.unwrap();
    let long_prompt = "You are a careful assistant who answers briefly. ".repeat(40);
    let conv = svc
        .create_conversation_with("long prompt", &long_prompt)
        .await
        .unwrap();
    ask(&svc, conv.id, "Hello!").await;
    let m = svc.memory(conv.id).await.expect("a live cache");
    assert!(
        m.stats.capacity <= 4 + 64,
        "the cache grew to {} slots",
        m.stats.capacity
    );
}

/// #34: a window too short to keep the system prompt for good is refused in words, with the
/// floor (it was accepted, and the prompt silently scrolled away); with "keep it" off the same
/// window is the user's choice; a settings file saved before the floor loads and saves as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_too_short_for_the_system_prompt_is_refused_with_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 4).await;
    let mut s = svc.settings().await;
    s.pin_system_prompt = true;
    s.system_prompt = "You are a careful assistant who answers briefly and kindly. ".repeat(8);
    s.cache.window = 2044;
    svc.save_settings(s.clone()).await.unwrap();
    s.cache.window = 64;
    let e = svc.save_settings(s.clone()).await.unwrap_err();
    assert_eq!(e.code, "invalid_settings");
    assert!(
        e.message.contains("words") && e.message.contains("instructions"),
        "{}",
        e.message
    );
    assert!(!e.message.to_lowercase().contains("token"), "{}", e.message);
    // The floor it names is enough, and one less than it is not.
    let floor: usize = e
        .message
        .split("at least about ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .map(|w| w.replace(',', "").parse::<usize>().unwrap() * 4 / 3)
        .expect("a figure in words");
    assert_eq!(
        svc.settings().await.cache.window,
        2044,
        "nothing refused was saved"
    );
    s.cache.window = floor + 20;
    svc.save_settings(s.clone()).await.unwrap();
    // Not kept for good: the window is the user's to choose.
    s.pin_system_prompt = false;
    s.cache.window = 64;
    svc.save_settings(s.clone()).await.unwrap();
    // A file from before the floor: window 64 with the prompt kept. It loads unchanged, and a
    // change elsewhere (the theme) saves without touching it.
    let mut old = svc.settings().await;
    old.pin_system_prompt = true;
    svc.store()
        .set_setting("app", &serde_json::to_string(&old).unwrap())
        .await
        .unwrap();
    let mut loaded = svc.settings().await;
    assert_eq!((loaded.cache.window, loaded.pin_system_prompt), (64, true));
    loaded.theme = "dark".into();
    let saved = svc.save_settings(loaded).await.unwrap();
    assert_eq!((saved.cache.window, saved.theme.as_str()), (64, "dark"));
}

/// Importing reads the file in the backend: a folder, a pipe (which would block the reader),
/// a file over the size limit (a sparse one: no disk used) and a file that is not text are
/// refused in plain words before anything is added; a real export is imported.
#[tokio::test]
async fn import_reads_the_file_itself_and_refuses_what_is_not_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ChatService::open(&dir.path().join("data"), None)
        .await
        .unwrap();
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(sinkchat_store::MAX_IMPORT_BYTES + 1)
        .unwrap();
    let binary = dir.path().join("binary.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let mut cases = vec![
        (huge, "MB"),
        (binary, "not UTF-8"),
        (dir.path().to_path_buf(), "is not a file"),
        (dir.path().join("missing.json"), "could not be read"),
    ];
    #[cfg(unix)]
    {
        let fifo = dir.path().join("pipe.json");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        cases.push((fifo, "is not a file"));
    }
    for (path, why) in cases {
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            svc.import_conversations_file(&path.to_string_lossy()),
        )
        .await
        .unwrap_or_else(|_| panic!("importing {} blocked", path.display()));
        let e = got.expect_err("refused");
        assert_eq!(e.code, "invalid_import");
        assert!(e.message.contains(why), "{}: {}", path.display(), e.message);
    }
    assert!(svc.list_conversations(None).await.unwrap().is_empty());

    // A real export of a real chat comes back whole.
    let c = svc
        .store()
        .create_conversation("Trip", "m", "", "{}")
        .await
        .unwrap();
    svc.store()
        .add_user_message(
            c.id,
            &sinkchat_store::MessageText::parse("Where is the station?").unwrap(),
        )
        .await
        .unwrap();
    let file = dir.path().join("export.json");
    std::fs::write(
        &file,
        serde_json::to_string(&svc.store().export(None).await.unwrap()).unwrap(),
    )
    .unwrap();
    let got = svc
        .import_conversations_file(&file.to_string_lossy())
        .await
        .unwrap();
    assert_eq!((got.conversations, got.messages), (1, 1));
}

/// "Delete exported files" removes every export SinkChat wrote, and only those.
#[tokio::test]
async fn delete_exports_removes_every_export_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ChatService::open(dir.path(), None).await.unwrap();
    svc.store()
        .create_conversation("Secret plans", "m", "", "{}")
        .await
        .unwrap();
    let a = svc.export_conversations(None, "json").await.unwrap();
    let b = svc.export_conversations(None, "markdown").await.unwrap();
    assert!(std::fs::read_to_string(&a)
        .unwrap()
        .contains("Secret plans"));
    assert!(std::path::Path::new(&b).exists());
    // Two exports in one second do not overwrite each other.
    let c = svc.export_conversations(None, "json").await.unwrap();
    let d = svc.export_conversations(None, "json").await.unwrap();
    assert!(c != d && c != a, "{a} {c} {d}");
    assert!(std::path::Path::new(&c).exists() && std::path::Path::new(&d).exists());
    let name = std::path::Path::new(&a)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("sinkchat-20") && name.len() >= "sinkchat-YYYYMMDD-HHMMSS.json".len(),
        "{name}"
    );
    assert_eq!(svc.delete_exports().await.unwrap(), 4);
    assert!(!std::path::Path::new(&a).exists() && !std::path::Path::new(&b).exists());
    assert!(svc.store().path().exists(), "the chats themselves stay");
    assert_eq!(svc.delete_exports().await.unwrap(), 0);
}

/// Forensics: a secret typed, answered, then edited away (and a title renamed away) leaves no
/// trace in any file of the data folder after the app closes: the database, its WAL and
/// shared memory, and the parked cache snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_away_text_is_in_no_file_of_the_data_folder() {
    const SECRET: &str = "zebra-4711";
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 6).await;
    let conv = svc.create_conversation().await.unwrap();
    ask(
        &svc,
        conv.id,
        &format!("My locker code is {SECRET}. Remember it."),
    )
    .await;
    svc.rename(conv.id, &format!("Locker {SECRET}"))
        .await
        .unwrap();
    svc.rename(conv.id, "Locker").await.unwrap();
    let (cb, mut rx) = listener();
    svc.edit_and_resend(conv.id, "My locker code is private.", cb)
        .await
        .unwrap();
    finish(&svc, conv.id, &mut rx).await;
    assert_eq!(
        svc.conversation(conv.id).await.unwrap().title,
        "Locker",
        "a title the user typed stays"
    );
    // A chat titled from its first message, that message edited away: the title follows it.
    let titled = svc.create_conversation().await.unwrap();
    ask(
        &svc,
        titled.id,
        &format!("My bike lock is {SECRET}. Say ok."),
    )
    .await;
    assert!(svc
        .conversation(titled.id)
        .await
        .unwrap()
        .title
        .contains(SECRET));
    let (cb, mut rx) = listener();
    svc.edit_and_resend(titled.id, "Say ok.", cb).await.unwrap();
    finish(&svc, titled.id, &mut rx).await;
    assert_eq!(svc.conversation(titled.id).await.unwrap().title, "Say ok.");
    assert!(
        svc.search(SECRET).await.unwrap().is_empty(),
        "search still finds the edited-away text"
    );
    svc.shutdown().await;
    drop(svc);
    assert!(
        dir.path()
            .join(format!("snapshots/{}.kv", conv.id))
            .exists(),
        "the edited chat's memory was parked (the check below covers it)"
    );
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(files.iter().any(|f| f.ends_with("chats.db")));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} still holds the edited-away text",
            f.display()
        );
    }
}

/// The model is named as people know it (the catalog's title), not by the GGUF's
/// `general.name` ("Smollm2 135M 8k Lc100K Mix1 Ep2").
#[tokio::test]
async fn the_model_has_its_human_name() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 4).await;
    let ModelState::Ready { info } = svc.wait_ready().await else {
        panic!("the model did not load")
    };
    let default = sinkchat_hub::CATALOG.iter().find(|c| c.default).unwrap();
    assert_eq!(info.name, default.title);
    let models = svc.models_overview().await.unwrap();
    assert_eq!(
        models.installed.len(),
        0,
        "the test model lives outside the models folder"
    );
}

/// Four sinks and a 128-token window, so a few turns push the start of a chat out; returns
/// the settings saved.
async fn small_window(svc: &ChatService) -> sinkchat_chat::Settings {
    let mut s = svc.settings().await;
    s.cache.sinks = 4;
    s.cache.window = 128;
    svc.save_settings(s.clone()).await.unwrap();
    s
}

fn memory_source(events: &[ReplyEvent]) -> Option<MemorySource> {
    events.iter().find_map(|e| match e {
        ReplyEvent::Memory { source } => Some(*source),
        _ => None,
    })
}

/// Pins (#19): a pinned message joins the chat's pinned start (with the system prompt), so the
/// pinned part of the cache grows by it and stays however far the window moves; a pin or an
/// unpin rebuilds the memory once, the snapshot carries the pins, a pin past the budget (half
/// the window) is refused in words, and the flag is on the message in the transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_message_stays_in_the_pinned_start_until_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 8).await;
    small_window(&svc).await;
    let conv = svc.create_conversation().await.unwrap();
    let (fact, _) = ask(
        &svc,
        conv.id,
        "Remember this: my sister's name is Zanzibarina.",
    )
    .await;
    let before = svc.memory(conv.id).await.unwrap().stats.pinned;

    let pinned = svc
        .pin_message(conv.id, fact.user_message.id, true)
        .await
        .unwrap();
    assert!(pinned.pinned);
    let (_, events) = ask(&svc, conv.id, "Hello again.").await;
    assert_eq!(
        memory_source(&events),
        Some(MemorySource::Rebuilt),
        "a pin rebuilds the memory"
    );
    let with_pin = svc.memory(conv.id).await.unwrap().stats.pinned;
    assert!(
        with_pin > before + 8,
        "the pinned start grew by the message: {before} -> {with_pin}"
    );

    // The window rolls far past the message; the pinned start holds it still.
    for i in 0..8 {
        ask(
            &svc,
            conv.id,
            &format!("Tell me one fact about the number {i}."),
        )
        .await;
    }
    let view = svc.memory(conv.id).await.unwrap();
    assert!(
        view.stats.evicted_total > 0,
        "the window moved on: {:?}",
        view.stats
    );
    assert!(view.first_visible_message > Some(fact.user_message.id));
    assert_eq!(view.stats.pinned, with_pin);
    // The gauge tells the pin apart from the system prompt, with the room left for more.
    assert!(
        view.stats.pins_used > 8 && view.stats.pins_used < with_pin,
        "{:?}",
        view.stats
    );
    assert!(view.stats.pins_room >= view.stats.pins_used);
    assert!(view.stats.pins_room < view.stats.window / 2);

    // Parked and back: the snapshot carries the pins, so it is restored, not rebuilt.
    svc.leave(conv.id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, events) = ask(&svc, conv.id, "And now?").await;
    assert_eq!(memory_source(&events), Some(MemorySource::Snapshot));
    let restored = svc.memory(conv.id).await.unwrap().stats;
    assert_eq!(restored.pinned, with_pin);
    assert_eq!(
        restored.pins_used, view.stats.pins_used,
        "the snapshot keeps the pins' share"
    );

    // The flag is in the transcript.
    let msgs = svc.messages(conv.id, None).await.unwrap();
    let flagged: Vec<i64> = msgs.iter().filter(|m| m.pinned).map(|m| m.id).collect();
    assert_eq!(flagged, [fact.user_message.id]);

    // A pin past half the window is refused in words, and nothing changes.
    let long = "word ".repeat(400);
    let (big, _) = ask(&svc, conv.id, &long).await;
    let err = svc
        .pin_message(conv.id, big.user_message.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.code, "pin_budget", "{err}");
    assert!(
        err.message.contains("no room to keep this message"),
        "{err}"
    );
    // A share of the room, not a token count the gauge does not show (#34).
    assert!(err.message.contains("% of the room"), "{err}");
    assert!(!err.message.contains("token"), "{err}");
    let msgs = svc.messages(conv.id, None).await.unwrap();
    assert_eq!(msgs.iter().filter(|m| m.pinned).count(), 1);
    // Another chat's message cannot be pinned through this one.
    let other = svc.create_conversation().await.unwrap();
    assert!(svc
        .pin_message(other.id, fact.user_message.id, true)
        .await
        .is_err());

    // Unpinned: rebuilt once more, and the pinned start is back to the system prompt alone.
    let shown = svc.memory(conv.id).await.unwrap().stats;
    svc.pin_message(conv.id, fact.user_message.id, false)
        .await
        .unwrap();
    let (_, events) = ask(&svc, conv.id, "Bye.").await;
    assert_eq!(memory_source(&events), Some(MemorySource::Rebuilt));
    let after = svc.memory(conv.id).await.unwrap().stats;
    assert_eq!(after.pinned, before);
    // The rebuilt memory re-read only the transcript's tail, yet the gauge's counters went on
    // from where they stood, in the reply's events as in the memory view (#34, bug 5: they
    // fell from 884 read and 571 let go to 162 and 0).
    assert!(
        after.tokens_seen > shown.tokens_seen && after.evicted_total >= shown.evicted_total,
        "{shown:?} -> {after:?}"
    );
    let mut counts = events.iter().filter_map(|e| match e {
        ReplyEvent::Cache { stats, .. } => Some((stats.tokens_seen, stats.evicted_total)),
        _ => None,
    });
    assert!(
        counts.all(|(s, e)| s >= shown.tokens_seen && e >= shown.evicted_total),
        "the reply's gauge went back below {shown:?}"
    );
}

fn prompt_tokens(events: &[ReplyEvent]) -> usize {
    events
        .iter()
        .find_map(|e| match e {
            ReplyEvent::Done { prompt_tokens, .. } => Some(*prompt_tokens),
            _ => None,
        })
        .expect("a finished reply")
}

/// Recall (#19, first step): a fact said early leaves the window; a later message about it
/// gets it back (the reply records which message), a message about nothing in particular
/// or one that asks nothing gets nothing and reads no more tokens, and recall off gives
/// nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_about_something_the_window_let_go_gets_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 8).await;
    let mut s = small_window(&svc).await;
    let conv = svc.create_conversation().await.unwrap();
    let (fact, _) = ask(&svc, conv.id, "My cat is called Quokkamuffin.").await;
    assert!(fact.recalled.is_empty(), "nothing to recall in a new chat");
    // Talk until the fact has left the window (statements: they ask nothing, so they never
    // recall, even once the window counts earlier ones as gone).
    for i in 0..30 {
        let (sent, _) = ask(&svc, conv.id, &format!("Number {i} is noted.")).await;
        assert!(
            sent.recalled.is_empty(),
            "turn {i} recalled {:?}",
            sent.recalled
        );
        let view = svc.memory(conv.id).await.unwrap();
        if view.first_visible_message > Some(fact.user_message.id + 1) {
            break;
        }
    }
    let view = svc.memory(conv.id).await.unwrap();
    assert!(
        view.first_visible_message > Some(fact.user_message.id + 1),
        "the fact is still in view"
    );

    // A message with nothing relevant: nothing given back, and it reads what any turn reads.
    let (plain, plain_events) = ask(&svc, conv.id, "Thanks!").await;
    assert!(plain.recalled.is_empty());
    assert_eq!(svc.memory(conv.id).await.unwrap().stats.recalled_used, 0);
    // A statement that shares the fact's words asks for nothing: recall stays silent.
    let (told, _) = ask(&svc, conv.id, "My cat is called a good cat by everyone.").await;
    assert!(told.recalled.is_empty(), "{:?}", told.recalled);
    let plain_prompt = prompt_tokens(&plain_events);

    // A message about the cat: the fact comes back for this reply, recorded on it.
    let before_about = svc
        .memory(conv.id)
        .await
        .unwrap()
        .first_visible_message
        .unwrap();
    let (about, events) = ask(&svc, conv.id, "What is my cat called?").await;
    assert!(
        about.recalled.contains(&fact.user_message.id),
        "{:?}",
        about.recalled
    );
    assert!(about.recalled.len() <= 3);
    assert!(
        about.recalled.iter().all(|&id| id < before_about),
        "only what left the window: {:?} (window from {before_about})",
        about.recalled
    );
    let reply = svc
        .messages(conv.id, None)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == about.reply_id)
        .unwrap();
    assert_eq!(reply.recalled, about.recalled);
    let recalled_prompt = prompt_tokens(&events);
    assert!(
        recalled_prompt > plain_prompt + 8,
        "the recalled line was read: {plain_prompt} vs {recalled_prompt}"
    );
    // The gauge shows the recalled text in the window: about what the turn read beyond a
    // plain one (the two questions differ by a few tokens).
    let recalled_used = svc.memory(conv.id).await.unwrap().stats.recalled_used;
    assert!(
        recalled_used.abs_diff(recalled_prompt - plain_prompt) <= 8,
        "{recalled_used} recalled tokens shown, {} more read",
        recalled_prompt - plain_prompt
    );
    // The transcript keeps the user's words as typed.
    assert_eq!(about.user_message.content, "What is my cat called?");

    // Recall off: nothing is given back.
    s.recall = false;
    svc.save_settings(s).await.unwrap();
    let (off, _) = ask(&svc, conv.id, "What is my cat called?").await;
    assert!(off.recalled.is_empty());
}

/// #36: a fact whose message the window has begun to let go (its opening words gone, the rest
/// still in view) no longer counts as seen: a question about it gets it back. Before, the
/// message the window begins in counted as seen, and the question pushed the rest out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_on_the_edge_of_the_window_is_recalled() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), 8).await;
    let mut s = small_window(&svc).await;
    s.recall_share = 50; // room for the fact's line in a window of 128
    svc.save_settings(s).await.unwrap();
    let conv = svc.create_conversation().await.unwrap();
    let fact = "My sister's wedding is on the 17th of October in Valencia, and we will take \
                the night train there with our cousins and the blue dishes.";
    let (told, _) = ask(&svc, conv.id, fact).await;
    let id = told.user_message.id;
    // Statements (they ask nothing, so nothing is recalled), each shorter than the fact, until
    // the window begins inside the fact's message.
    let mut on_edge = false;
    for i in 0..40 {
        let (sent, _) = ask(&svc, conv.id, &format!("Noted, item {i}.")).await;
        assert!(sent.recalled.is_empty(), "{:?}", sent.recalled);
        let view = svc.memory(conv.id).await.unwrap();
        if view.stats.evicted_total > 0 && view.first_visible_message == Some(id) {
            on_edge = true;
            break;
        }
        assert!(
            view.first_visible_message <= Some(id),
            "the window passed the whole fact in one turn: {view:?}"
        );
    }
    assert!(on_edge, "the window never began inside the fact");
    let (asked, _) = ask(&svc, conv.id, "When is my sister's wedding?").await;
    assert!(
        asked.recalled.contains(&id),
        "the fact on the edge was not recalled: {:?}",
        asked.recalled
    );
}

/// Recall's lookup on a real transcript finds a fact written without the accents the question
/// has, and the other way round (FTS5 folds them, so the check that a match covers the
/// question must fold them too), and picks nothing for a question about something never said.
#[tokio::test]
async fn recall_matches_words_with_or_without_their_accents() {
    use sinkchat_store::{MessageText, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("chats.db")).await.unwrap();
    let c = store
        .create_conversation("Trip", "m", "", "{}")
        .await
        .unwrap();
    let say = |t: &str| MessageText::parse(t).unwrap();
    let fact = store
        .add_user_message(
            c.id,
            &say("Zoe runs the little cafe by the harbour in Mulheim."),
        )
        .await
        .unwrap();
    store
        .add_user_message(c.id, &say("We walked along the river all afternoon."))
        .await
        .unwrap();
    let now = store
        .add_user_message(c.id, &say("(the window starts here)"))
        .await
        .unwrap();
    let count = |line: &str| Some(line.len() / 4);
    for question in [
        "Who runs the café by the harbour?",
        "Where is Zoë's café?",
        "What about Mülheim?",
    ] {
        let found = sinkchat_chat::recall::find(&store, c.id, now.id, question, None, 200, count)
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|m| m.id).collect::<Vec<_>>(),
            [fact.id],
            "{question}"
        );
    }
    let found = sinkchat_chat::recall::find(
        &store,
        c.id,
        now.id,
        "Where is the lighthouse?",
        None,
        200,
        count,
    )
    .await
    .unwrap();
    assert!(found.is_empty());
}
