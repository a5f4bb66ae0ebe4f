//! The store on a real SQLite file in a temporary folder.

use sinkchat_store::{MessageStatus, MessageText, Role, Store};

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("chats.db")).await.unwrap()
}

#[tokio::test]
async fn messages_round_trip_and_streaming_replies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s
        .create_conversation("Trip", "smollm2", "Be brief.", "{}")
        .await
        .unwrap();
    let u = s
        .add_user_message(c.id, &MessageText::parse("Où est la gare ? 🚉").unwrap())
        .await
        .unwrap();
    let r = s.start_reply(c.id).await.unwrap();
    s.save_reply_text(r.id, "La gare est").await.unwrap();
    // The app dies here: the pool is dropped without finishing the reply.
    drop(s);
    let s = open(&dir).await;
    let msgs = s.messages(c.id, 0, 100).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].id, u.id);
    assert_eq!(msgs[0].content, "Où est la gare ? 🚉");
    assert_eq!(msgs[0].role, Role::User);
    assert_eq!(msgs[1].content, "La gare est");
    assert_eq!(msgs[1].status, MessageStatus::Interrupted);
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn finished_and_stopped_replies_keep_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("x", "m", "", "{}").await.unwrap();
    let r = s.start_reply(c.id).await.unwrap();
    s.finish_reply(r.id, "partial", MessageStatus::Stopped, None, Some(3))
        .await
        .unwrap();
    let m = s.message(r.id).await.unwrap();
    assert_eq!(
        (m.status, m.tokens, m.content.as_str()),
        (MessageStatus::Stopped, Some(3), "partial")
    );
    assert!(s
        .finish_reply(9999, "", MessageStatus::Complete, None, None)
        .await
        .is_err());
    assert!(s
        .add_user_message(4242, &MessageText::parse("hi").unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn search_treats_sql_and_fts_syntax_as_words() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s
        .create_conversation("Recipes", "m", "", "{}")
        .await
        .unwrap();
    let evil = "'; DROP TABLE messages; -- \"quoted\" AND OR NEAR(*)";
    s.add_user_message(c.id, &MessageText::parse(evil).unwrap())
        .await
        .unwrap();
    s.add_user_message(
        c.id,
        &MessageText::parse("How long to boil an egg?").unwrap(),
    )
    .await
    .unwrap();
    let hits = s.search("egg", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].snippet.contains("[[egg]]"), "{}", hits[0].snippet);
    let hits = s.search("DROP TABLE", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert!(s.search("\"quoted\" AND", 10).await.unwrap().len() == 1);
    assert!(s.search("   ", 10).await.unwrap().is_empty());
    assert_eq!(s.search("recipes", 10).await.unwrap()[0].message_id, None);
    assert_eq!(s.messages(c.id, 0, 10).await.unwrap()[0].content, evil);
}

/// #36: search finds the forms of a word (FTS5's porter stemmer) and leaves the common words
/// of a typed question out; a query of common words alone still searches them.
#[tokio::test]
async fn search_finds_word_forms_and_skips_common_words() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s
        .create_conversation("Gardening notes", "m", "", "{}")
        .await
        .unwrap();
    let text = |t: &str| MessageText::parse(t).unwrap();
    let garden = s
        .add_user_message(
            c.id,
            &text("I planted a zucchini in my small vegetable garden."),
        )
        .await
        .unwrap();
    let where_is = s
        .add_user_message(c.id, &text("Where is it?"))
        .await
        .unwrap();
    let in_messages = |hits: &[sinkchat_store::SearchHit]| -> Vec<i64> {
        hits.iter().filter_map(|h| h.message_id).collect()
    };
    let hits = s.search("zucchinis", 10).await.unwrap();
    assert_eq!(
        in_messages(&hits),
        [garden.id],
        "a plural finds the singular"
    );
    let hits = s.search("where is my garden", 10).await.unwrap();
    assert_eq!(
        in_messages(&hits),
        [garden.id],
        "the question's common words left out"
    );
    let hits = s.search("where is it", 10).await.unwrap();
    assert_eq!(
        in_messages(&hits),
        [where_is.id],
        "common words alone are searched"
    );
    let hits = s.search("gardens", 10).await.unwrap();
    assert!(
        hits.iter()
            .any(|h| h.message_id.is_none() && h.title == "Gardening notes"),
        "titles by their word forms too"
    );
    assert!(
        s.search("zucchini bread", 10).await.unwrap().is_empty(),
        "every word"
    );
    // Recall counts a message's words as the index reads them.
    let terms: Vec<String> = ["gardens", "zucchinis", "tomato"].map(String::from).into();
    let held = s
        .terms_held(&[garden.id, where_is.id], &terms)
        .await
        .unwrap();
    assert_eq!(held.get(&garden.id), Some(&2));
    assert_eq!(held.get(&where_is.id), None);
    assert!(s.terms_held(&[], &terms).await.unwrap().is_empty());
}

#[tokio::test]
async fn deleted_text_is_gone_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let keep = s.create_conversation("keep", "m", "", "{}").await.unwrap();
    s.add_user_message(keep.id, &MessageText::parse("ordinary words").unwrap())
        .await
        .unwrap();
    let c = s
        .create_conversation("secret plans", "m", "", "{}")
        .await
        .unwrap();
    let marker = "zanzibarquokka";
    for i in 0..50 {
        s.add_user_message(
            c.id,
            &MessageText::parse(&format!("{marker} number {i}")).unwrap(),
        )
        .await
        .unwrap();
    }
    s.delete_conversation(c.id).await.unwrap();
    let left = on_disk(&dir, marker);
    assert!(left.is_empty(), "deleted text still in {left:?}");
    assert!(s.search(marker, 10).await.unwrap().is_empty());
    assert_eq!(s.messages(keep.id, 0, 10).await.unwrap().len(), 1);
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

/// The bytes of `marker` in the database, its WAL or its shared-memory file.
fn on_disk(dir: &tempfile::TempDir, marker: &str) -> Vec<&'static str> {
    ["chats.db", "chats.db-wal", "chats.db-shm"]
        .into_iter()
        .filter(|f| {
            std::fs::read(dir.path().join(f))
                .is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .collect()
}

/// Text taken away by an edit, a regenerate (both truncate the transcript) or a rename leaves
/// every file, as a delete's does: not only the table but the search index and the WAL.
#[tokio::test]
async fn edited_regenerated_and_renamed_away_text_is_gone_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("plans", "m", "", "{}").await.unwrap();
    s.add_user_message(c.id, &MessageText::parse("an ordinary start").unwrap())
        .await
        .unwrap();
    // A message the user edits away, and a reply regenerated away.
    let secret = s
        .add_user_message(
            c.id,
            &MessageText::parse("my pin is quokkazanzibar").unwrap(),
        )
        .await
        .unwrap();
    let reply = s.start_reply(c.id).await.unwrap();
    s.finish_reply(
        reply.id,
        "noted: wombatkalamata",
        MessageStatus::Complete,
        None,
        Some(4),
    )
    .await
    .unwrap();
    s.truncate_from(c.id, reply.id).await.unwrap(); // regenerate
    assert!(
        on_disk(&dir, "wombatkalamata").is_empty(),
        "regenerated-away reply on disk: {:?}",
        on_disk(&dir, "wombatkalamata")
    );
    s.truncate_from(c.id, secret.id).await.unwrap(); // edit
    assert!(
        on_disk(&dir, "quokkazanzibar").is_empty(),
        "edited-away message on disk: {:?}",
        on_disk(&dir, "quokkazanzibar")
    );
    // A title renamed away.
    s.rename_conversation(c.id, "trip to okapiborneo")
        .await
        .unwrap();
    s.rename_conversation(c.id, "a trip").await.unwrap();
    assert!(
        on_disk(&dir, "okapiborneo").is_empty(),
        "renamed-away title on disk: {:?}",
        on_disk(&dir, "okapiborneo")
    );
    assert!(s.search("quokkazanzibar", 10).await.unwrap().is_empty());
    assert_eq!(s.search("ordinary", 10).await.unwrap().len(), 1);
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn list_is_newest_first_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.create_conversation(&format!("c{i}"), "m", "", "{}")
                .await
                .unwrap()
                .id,
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.add_user_message(ids[1], &MessageText::parse("bump").unwrap())
        .await
        .unwrap();
    let page = s.list_conversations(None, 3).await.unwrap();
    assert_eq!(page[0].id, ids[1]);
    let last = page.last().unwrap();
    let next = s
        .list_conversations(Some((last.updated_at, last.id)), 3)
        .await
        .unwrap();
    assert_eq!(page.len() + next.len(), 5);
    assert!(next.iter().all(|c| !page.iter().any(|p| p.id == c.id)));
}

#[tokio::test]
async fn a_damaged_file_gets_a_plain_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chats.db");
    std::fs::write(
        &p,
        b"this is not a database, just some bytes that happen to be here....",
    )
    .unwrap();
    let e = Store::open(&p).await.unwrap_err();
    assert!(
        e.to_string().contains("damaged") || e.to_string().contains("can't be opened"),
        "{e}"
    );
    // The damaged file is left as it was, for recovery.
    assert!(std::fs::read(&p).unwrap().starts_with(b"this is not"));
}

#[tokio::test]
async fn export_and_import_round_trip_and_bad_files_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let c = store
        .create_conversation("Trip plans", "SmolLM2", "Be brief.", r#"{"window":512}"#)
        .await
        .unwrap();
    store
        .add_user_message(
            c.id,
            &MessageText::parse("Where to in May? ' OR 1=1 --").unwrap(),
        )
        .await
        .unwrap();
    let r = store.start_reply(c.id).await.unwrap();
    store
        .save_reply_text(r.id, "Lisbon, **definitely**.")
        .await
        .unwrap();
    store
        .finish_reply(
            r.id,
            "Lisbon, **definitely**.",
            MessageStatus::Stopped,
            None,
            Some(7),
        )
        .await
        .unwrap();
    let other = store
        .create_conversation("Other", "", "", "{}")
        .await
        .unwrap();
    store
        .add_user_message(other.id, &MessageText::parse("unrelated").unwrap())
        .await
        .unwrap();

    let one = store.export(Some(&[c.id])).await.unwrap();
    assert_eq!(one.conversations.len(), 1);
    let json = serde_json::to_string(&one).unwrap();
    let md = store.export_markdown(Some(&[c.id])).await.unwrap();
    assert!(md.starts_with("# Trip plans\n"), "{md}");
    assert!(
        md.contains("## You\n\nWhere to in May? ' OR 1=1 --"),
        "{md}"
    );
    assert!(
        md.contains("## Assistant (stopped)\n\nLisbon, **definitely**."),
        "{md}"
    );
    assert!(md.contains("> **System prompt:** Be brief."));
    assert!(!md.contains("unrelated"));
    let all = store.export(None).await.unwrap();
    assert_eq!(all.conversations.len(), 2);

    // Into a fresh database: the same conversation, message for message.
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = open(&dir2).await;
    let got = fresh.import(&json).await.unwrap();
    assert_eq!((got.conversations, got.messages), (1, 2));
    let back = fresh.export(None).await.unwrap();
    assert_eq!(back.conversations, one.conversations);
    assert_eq!(
        fresh.search("Lisbon", 10).await.unwrap().len(),
        1,
        "imported text is searchable"
    );

    // Bad files: a plain error, and nothing added.
    let before = fresh.export(None).await.unwrap().conversations.len();
    for bad in [
        "not json".to_string(),
        r#"{"format":"other","version":1,"exported_at":0,"conversations":[]}"#.to_string(),
        r#"{"format":"sinkchat-export","version":99,"exported_at":0,"conversations":[]}"#
            .to_string(),
        json.replace("\"user\"", "\"wizard\""),
        json.replace("Where to in May?", "Where\\u0000to"),
        {
            // Second conversation good, first bad: all or nothing.
            let mut f = one.clone();
            f.conversations.push(one.conversations[0].clone());
            f.conversations[1].messages[0].content = " ".into();
            serde_json::to_string(&f).unwrap()
        },
    ] {
        let e = fresh.import(&bad).await.unwrap_err();
        assert_eq!(e.code(), "invalid_import", "{e}");
        assert!(
            e.to_string().starts_with("this file can't be imported"),
            "{e}"
        );
    }
    assert_eq!(
        fresh.export(None).await.unwrap().conversations.len(),
        before
    );
}

#[tokio::test]
async fn truncate_from_drops_a_message_and_what_follows_only_in_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let a = s.create_conversation("a", "m", "", "{}").await.unwrap();
    let b = s.create_conversation("b", "m", "", "{}").await.unwrap();
    let t = |x: &str| MessageText::parse(x).unwrap();
    let a1 = s
        .add_user_message(a.id, &t("first question"))
        .await
        .unwrap();
    let a2 = s.start_reply(a.id).await.unwrap();
    s.finish_reply(a2.id, "first answer", MessageStatus::Complete, None, None)
        .await
        .unwrap();
    let b1 = s.add_user_message(b.id, &t("other chat")).await.unwrap();
    let a3 = s
        .add_user_message(a.id, &t("second question zebra"))
        .await
        .unwrap();
    let a4 = s.start_reply(a.id).await.unwrap();
    s.finish_reply(a4.id, "second answer", MessageStatus::Complete, None, None)
        .await
        .unwrap();
    assert_eq!(s.truncate_from(a.id, a3.id).await.unwrap(), 2);
    let left: Vec<i64> = s
        .messages(a.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, [a1.id, a2.id]);
    assert_eq!(s.messages(b.id, 0, 100).await.unwrap()[0].id, b1.id);
    // The removed words are gone from search too.
    assert!(s.search("zebra", 10).await.unwrap().is_empty());
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}

/// Deleting the newest chat must not hand its ids (chat and messages) to the next one: a cache
/// snapshot or an open window that still knows the old ids would otherwise reach a new chat.
#[tokio::test]
async fn ids_of_deleted_chats_and_messages_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let t = |x: &str| MessageText::parse(x).unwrap();
    let old = s.create_conversation("old", "m", "", "{}").await.unwrap();
    let m = s
        .add_user_message(old.id, &t("my PIN is 4711"))
        .await
        .unwrap();
    s.delete_conversation(old.id).await.unwrap();
    drop(s);
    let s = open(&dir).await;
    let new = s.create_conversation("new", "m", "", "{}").await.unwrap();
    let m2 = s.add_user_message(new.id, &t("hello")).await.unwrap();
    assert!(new.id > old.id, "chat id {} reused", new.id);
    assert!(m2.id > m.id, "message id {} reused", m2.id);
    assert_ne!(new.cache_key, old.cache_key);
    assert_eq!(new.cache_key.len(), 32, "128 random bits in hex");
    assert!(new.cache_key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        s.conversation(new.id).await.unwrap().cache_key,
        new.cache_key
    );
}

/// A database made before the AUTOINCREMENT migration keeps every chat, message and search
/// entry through it, cascades deletes as before, and never reuses an id afterwards.
#[tokio::test]
async fn a_database_from_the_first_release_upgrades_whole() {
    use sqlx::sqlite::SqliteConnectOptions;
    use std::str::FromStr;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chats.db");
    {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut first = sqlx::migrate!("../../migrations");
        first.migrations = first.migrations[..1].to_vec().into();
        first.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (1, 'Kept chat', 1, 1)",
            "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (2, 'Gone chat', 2, 2)",
            "INSERT INTO messages(id, conversation_id, role, content, created_at, updated_at) \
             VALUES (10, 1, 'user', 'the walrus sings', 1, 1)",
            "INSERT INTO messages(id, conversation_id, role, content, created_at, updated_at) \
             VALUES (11, 2, 'user', 'newest words', 2, 2)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let s = Store::open(&path).await.unwrap();
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
    let kept = s.conversation(1).await.unwrap();
    assert_eq!(kept.title, "Kept chat");
    assert_eq!(kept.cache_key.len(), 32);
    assert_eq!(
        s.messages(1, 0, 10).await.unwrap()[0].content,
        "the walrus sings"
    );
    let hits = s.search("walrus", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, Some(10));
    // Reindexed with word forms (#36): "singing" finds "sings".
    let hits = s.search("singing", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, Some(10));
    assert_eq!(
        s.search("Kept", 10).await.unwrap().len(),
        1,
        "titles still searchable"
    );
    // Every finished message already there waits for its vector of meaning (#36).
    let wanted = s.vectors_wanted(10).await.unwrap();
    assert_eq!(
        wanted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [11, 10],
        "newest first"
    );
    // Foreign keys are back on: deleting a chat still takes its messages.
    s.delete_conversation(2).await.unwrap();
    assert_eq!(
        s.vector_progress().await.unwrap().waiting,
        1,
        "and their waiting"
    );
    let orphans: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = 2")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(orphans, 0);
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let c = s.create_conversation("after", "m", "", "{}").await.unwrap();
    let m = s
        .add_user_message(c.id, &MessageText::parse("x").unwrap())
        .await
        .unwrap();
    assert!(
        c.id > 2 && m.id > 11,
        "ids {} / {} reused after the upgrade",
        c.id,
        m.id
    );
}

fn export_json(conversations: Vec<serde_json::Value>) -> String {
    serde_json::json!({
        "format": "sinkchat-export", "version": 1, "exported_at": 0,
        "conversations": conversations,
    })
    .to_string()
}

fn chat_json(title: &str, system_prompt: &str, n: usize) -> serde_json::Value {
    let messages: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("message number {i}"),
                "status": "complete", "created_at": i,
            })
        })
        .collect();
    serde_json::json!({
        "title": title, "model": "m", "system_prompt": system_prompt, "settings": {},
        "created_at": 0, "updated_at": 0, "messages": messages,
    })
}

/// A big import writes in batches: a reply streaming to disk at the same time gets its save
/// in while the import is still running (one transaction made it wait for the whole import,
/// or fail after the five-second busy timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_import_lets_a_streaming_save_through() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("live", "m", "", "{}").await.unwrap();
    let r = s.start_reply(c.id).await.unwrap();
    let json = export_json(vec![chat_json("big", "", 60_000)]);
    let importer = {
        let s = s.clone();
        tokio::spawn(async move { s.import(&json).await })
    };
    // Wait for the import's first rows to be visible (committed), then save the reply.
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id != ?")
            .bind(c.id)
            .fetch_one(s.pool())
            .await
            .unwrap();
        if n > 0 || importer.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.save_reply_text(r.id, "still streaming").await.unwrap();
    assert!(
        !importer.is_finished(),
        "the reply's save waited for the whole import"
    );
    let summary = importer.await.unwrap().unwrap();
    assert_eq!(summary.messages, 60_000);
    assert_eq!(
        s.messages(c.id, 0, 10).await.unwrap()[0].content,
        "still streaming"
    );
}

/// Imports follow the rules of typing: a system prompt longer than Settings allows is refused
/// with the reason and adds nothing; an overlong title is cut; a batch that fails late takes
/// back every conversation the import had already added.
#[tokio::test]
async fn imports_are_limited_and_a_late_failure_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let count = |s: &Store| {
        let s = s.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
                .fetch_one(s.pool())
                .await
                .unwrap();
            n
        }
    };
    let long_prompt = "p".repeat(8_001);
    let e = s
        .import(&export_json(vec![
            chat_json("a", "", 2),
            chat_json("b", &long_prompt, 2),
        ]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("system prompt is longer than 8000"),
        "{e}"
    );
    assert_eq!(count(&s).await, 0);

    let got = s
        .import(&export_json(vec![chat_json(&"t".repeat(5_000), "", 2)]))
        .await
        .unwrap();
    assert_eq!(got.conversations, 1);
    let listed = s.list_conversations(None, 10).await.unwrap();
    assert_eq!(listed[0].title.chars().count(), 200);

    // The database refuses one message deep in the third batch.
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN new.content = 'message number 800' \
         BEGIN SELECT RAISE(ABORT, 'disk trouble'); END",
    )
    .execute(s.pool())
    .await
    .unwrap();
    let e = s
        .import(&export_json(vec![
            chat_json("x", "", 400),
            chat_json("y", "", 1_000),
        ]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("disk trouble"), "{e}");
    assert_eq!(
        count(&s).await,
        1,
        "a failed import left conversations behind"
    );
    let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(orphans, 2);
}

/// Pins (#19) are a flag on the message: set and cleared within its own chat only, kept across
/// a restart, listed oldest first, and gone with the message when a regenerate or an edit
/// removes it.
#[tokio::test]
async fn pins_belong_to_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("Pins", "m", "", "{}").await.unwrap();
    let other = s.create_conversation("Other", "m", "", "{}").await.unwrap();
    let text = |t: &str| MessageText::parse(t).unwrap();
    let a = s
        .add_user_message(c.id, &text("my sister is Ana"))
        .await
        .unwrap();
    let b = s
        .add_user_message(c.id, &text("I was born in 1990"))
        .await
        .unwrap();
    let late = s.add_user_message(c.id, &text("later")).await.unwrap();
    assert!(!a.pinned);
    assert!(s.set_pinned(c.id, b.id, true).await.unwrap().pinned);
    assert!(s.set_pinned(c.id, a.id, true).await.unwrap().pinned);
    assert!(s.set_pinned(c.id, late.id, true).await.unwrap().pinned);
    assert!(matches!(
        s.set_pinned(other.id, a.id, false).await,
        Err(sinkchat_store::Error::NoSuchMessage(_))
    ));
    drop(s);
    let s = open(&dir).await;
    let ids = |v: Vec<sinkchat_store::Message>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.pinned_messages(c.id).await.unwrap()),
        [a.id, b.id, late.id]
    );
    assert!(s.pinned_messages(other.id).await.unwrap().is_empty());
    s.truncate_from(c.id, late.id).await.unwrap();
    assert_eq!(ids(s.pinned_messages(c.id).await.unwrap()), [a.id, b.id]);
    s.set_pinned(c.id, a.id, false).await.unwrap();
    assert_eq!(ids(s.pinned_messages(c.id).await.unwrap()), [b.id]);
    assert!(s.messages(c.id, 0, 10).await.unwrap()[1].pinned);
    // An export keeps the pin (and says nothing of unpinned messages); an import restores it.
    let json = serde_json::to_string(&s.export(Some(&[c.id])).await.unwrap()).unwrap();
    assert_eq!(json.matches("\"pinned\":true").count(), 1, "{json}");
    assert!(!json.contains("\"pinned\":false"));
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = open(&dir2).await;
    fresh.import(&json).await.unwrap();
    let back = fresh.export(None).await.unwrap();
    let pinned: Vec<&str> = back.conversations[0]
        .messages
        .iter()
        .filter(|m| m.pinned)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(pinned, ["I was born in 1990"]);
}

/// Recall's two lookups: candidates (any of the words, best first, this chat only, older than
/// the bound, finished and unpinned) and which words the past knows at all.
#[tokio::test]
async fn recall_looks_only_at_this_chats_older_finished_unpinned_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("Mine", "m", "", "{}").await.unwrap();
    let other = s.create_conversation("Other", "m", "", "{}").await.unwrap();
    let text = |t: &str| MessageText::parse(t).unwrap();
    let fact = s
        .add_user_message(
            c.id,
            &text("My sister's name is Ana and she lives in Porto"),
        )
        .await
        .unwrap();
    let weak = s
        .add_user_message(c.id, &text("What a nice name for a boat"))
        .await
        .unwrap();
    let pinned = s
        .add_user_message(c.id, &text("My sister likes tea"))
        .await
        .unwrap();
    s.set_pinned(c.id, pinned.id, true).await.unwrap();
    s.add_user_message(other.id, &text("my sister Zoe, name and all"))
        .await
        .unwrap();
    let newer = s
        .add_user_message(c.id, &text("Porto sister name again"))
        .await
        .unwrap();
    let terms: Vec<String> = ["sister", "name", "porto", "lisbon"]
        .map(String::from)
        .into();
    let found = s
        .recall_candidates(c.id, newer.id, &terms, 8)
        .await
        .unwrap();
    let ids: Vec<i64> = found.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [fact.id, weak.id],
        "best first; not pinned, not the other chat, not newer"
    );
    assert_eq!(
        s.terms_present(c.id, newer.id, &terms).await.unwrap(),
        ["sister", "name", "porto"]
    );
    assert_eq!(
        s.terms_present(c.id, fact.id, &terms).await.unwrap(),
        Vec::<String>::new(),
        "nothing is older than the first message"
    );
    assert!(s
        .terms_present(other.id, i64::MAX, &["porto".into()])
        .await
        .unwrap()
        .is_empty());
}

/// A unit vector unlike any other: `seed` picks it.
fn unit(seed: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..sinkchat_store::VECTOR_DIM)
        .map(|i| (((i + 1) * (seed * 7 + 3)) % 23) as f32 - 11.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Vectors of meaning (#36) are made for finished messages only, are saved only for the text
/// they were made from, rank a chat's older unpinned messages, and go when their message goes,
/// from every file.
#[tokio::test]
async fn vectors_follow_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let c = s.create_conversation("x", "m", "", "{}").await.unwrap();
    let other = s.create_conversation("y", "m", "", "{}").await.unwrap();
    let fact = s
        .add_user_message(c.id, &MessageText::parse("the fact").unwrap())
        .await
        .unwrap();
    let reply = s.start_reply(c.id).await.unwrap();
    s.save_reply_text(reply.id, "half a rep").await.unwrap();
    let elsewhere = s
        .add_user_message(other.id, &MessageText::parse("elsewhere").unwrap())
        .await
        .unwrap();
    // A streaming reply waits for nothing yet.
    let wanted = s.vectors_wanted(10).await.unwrap();
    assert_eq!(
        wanted,
        [
            (elsewhere.id, "elsewhere".to_string()),
            (fact.id, "the fact".to_string())
        ]
    );
    s.finish_reply(reply.id, "a reply", MessageStatus::Complete, None, Some(2))
        .await
        .unwrap();
    let wanted = s.vectors_wanted(10).await.unwrap();
    assert_eq!(
        wanted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [elsewhere.id, reply.id, fact.id],
        "newest first"
    );
    assert_eq!(wanted[1].1, "a reply");
    // Made for the text read: saved. Made for a text since changed: left waiting.
    let made: Vec<_> = wanted
        .iter()
        .enumerate()
        .map(|(i, (id, text))| (*id, text.clone(), unit(i)))
        .collect();
    s.finish_reply(reply.id, "the reply", MessageStatus::Stopped, None, Some(2))
        .await
        .unwrap();
    assert_eq!(s.save_vectors(&made).await.unwrap(), 2);
    let p = s.vector_progress().await.unwrap();
    assert_eq!((p.done, p.waiting), (2, 1));
    let wanted = s.vectors_wanted(10).await.unwrap();
    assert_eq!(wanted, [(reply.id, "the reply".to_string())]);
    assert_eq!(
        s.save_vectors(&[(reply.id, "the reply".into(), unit(9))])
            .await
            .unwrap(),
        1
    );
    // Ranked by cosine among this chat's messages older than `before`.
    let (near, spread) = s
        .nearest_in_conversation(c.id, reply.id + 1, &unit(9), 5)
        .await
        .unwrap();
    assert_eq!(near[0].0.id, reply.id);
    assert!((near[0].1 - 1.0).abs() < 1e-3);
    assert_eq!(near.len(), 2, "the other chat's message is not this chat's");
    assert_eq!(spread.n, 2);
    assert!((spread.mean - (near[0].1 + near[1].1) / 2.0).abs() < 1e-5);
    let (near, _) = s
        .nearest_in_conversation(c.id, reply.id, &unit(9), 5)
        .await
        .unwrap();
    assert_eq!(near.len(), 1, "only older than `before`");
    s.set_pinned(c.id, fact.id, true).await.unwrap();
    assert!(
        s.nearest_in_conversation(c.id, reply.id, &unit(9), 5)
            .await
            .unwrap()
            .0
            .is_empty(),
        "pinned messages are in view already"
    );
    // An edit or a regenerate takes the vector along, from every file.
    let bytes: Vec<u8> = {
        let v = unit(9);
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        v.iter()
            .map(|x| (x * 127.0 / max).round() as i8 as u8)
            .collect()
    };
    let on_disk_bytes = || {
        ["chats.db", "chats.db-wal"]
            .into_iter()
            .filter(|f| {
                std::fs::read(dir.path().join(f))
                    .is_ok_and(|b| b.windows(bytes.len()).any(|w| w == bytes.as_slice()))
            })
            .collect::<Vec<_>>()
    };
    assert!(
        !on_disk_bytes().is_empty(),
        "the vector is stored as packed"
    );
    s.truncate_from(c.id, reply.id).await.unwrap();
    assert_eq!(
        on_disk_bytes(),
        Vec::<&str>::new(),
        "regenerated-away vector on disk"
    );
    let p = s.vector_progress().await.unwrap();
    assert_eq!((p.done, p.waiting), (2, 0));
    s.delete_conversation(c.id).await.unwrap();
    assert_eq!(s.vector_progress().await.unwrap().done, 1);
    assert_eq!(s.integrity_check().await.unwrap(), "ok");
}
