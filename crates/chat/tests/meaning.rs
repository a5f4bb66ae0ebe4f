//! Finding by meaning (#36) through the real service, store and meaning model: recall finds a
//! fact asked in other words, search lists messages found by meaning under the word matches,
//! histories saved before are embedded in the background, and without the model everything
//! goes on by words.

mod common;

use sinkchat_chat::meaning::MeaningState;
use sinkchat_chat::ChatService;
use sinkchat_engine::embed::Embedder;
use sinkchat_store::{MessageText, Role, Store};

const FACT: &str = "My sister's wedding is on the 17th of October in Valencia.";
const CHATTER: &[&str] = &[
    "We walked along the river all afternoon.",
    "The bread came out of the oven a little burnt.",
    "Chess openings are hard to memorise.",
    "The tide was very low this morning.",
];

/// The service on the data folder `data` with the meaning model installed, once its
/// background task has given all `messages` their vectors.
async fn open_caught_up(data: &std::path::Path, messages: i64) -> ChatService {
    common::install_meaning(data);
    let svc = ChatService::open(data, Some(common::model_path()))
        .await
        .unwrap();
    svc.meaning_caught_up().await;
    assert_eq!(
        svc.meaning_state().await,
        MeaningState::Ready {
            done: messages,
            waiting: 0
        }
    );
    svc
}

/// Recall's lookup on a real transcript with real vectors: the fact asked in words it does
/// not share is found by meaning, and only by meaning; a statement looks nothing up.
#[tokio::test]
async fn recall_finds_a_fact_asked_in_other_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("chats.db")).await.unwrap();
    let e = Embedder::open(&common::meaning_dir()).unwrap();
    let c = store.create_conversation("x", "m", "", "{}").await.unwrap();
    let say = |t: &str| MessageText::parse(t).unwrap();
    let fact = store.add_user_message(c.id, &say(FACT)).await.unwrap();
    for t in CHATTER {
        store.add_user_message(c.id, &say(t)).await.unwrap();
    }
    let now = store
        .add_user_message(c.id, &say("(the window starts here)"))
        .await
        .unwrap();
    let wanted = store.vectors_wanted(100).await.unwrap();
    let texts: Vec<&str> = wanted.iter().map(|(_, t)| t.as_str()).collect();
    let made: Vec<_> = wanted
        .iter()
        .zip(e.embed(&texts).unwrap())
        .map(|((id, t), v)| (*id, t.clone(), v))
        .collect();
    assert_eq!(store.save_vectors(&made).await.unwrap(), 6);
    let count = |line: &str| Some(line.len() / 4);
    for question in [
        "Which city will the marriage ceremony take place in?",
        "When do the bride and groom say their vows?",
    ] {
        let q = e.embed(&[question]).unwrap().remove(0);
        let by_words =
            sinkchat_chat::recall::find(&store, c.id, now.id, question, None, 200, count)
                .await
                .unwrap();
        assert!(
            by_words.is_empty(),
            "{question}: no shared word, nothing by words"
        );
        let found =
            sinkchat_chat::recall::find(&store, c.id, now.id, question, Some(&q), 200, count)
                .await
                .unwrap();
        assert_eq!(
            found.first().map(|m| m.id),
            Some(fact.id),
            "{question}: {:?}",
            found.iter().map(|m| &m.content).collect::<Vec<_>>()
        );
    }
    // A statement asks nothing: nothing is looked up, by words or by meaning.
    let text = "My cousin's wedding was lovely.";
    let q = e.embed(&[text]).unwrap().remove(0);
    let found = sinkchat_chat::recall::find(&store, c.id, now.id, text, Some(&q), 200, count)
        .await
        .unwrap();
    assert!(found.is_empty());
    // Nothing about the question in the past: nothing comes back.
    let question = "What programming language should I learn first?";
    let q = e.embed(&[question]).unwrap().remove(0);
    let found = sinkchat_chat::recall::find(&store, c.id, now.id, question, Some(&q), 200, count)
        .await
        .unwrap();
    assert!(
        found.is_empty(),
        "{:?}",
        found.iter().map(|m| &m.content).collect::<Vec<_>>()
    );
}

/// A history saved before the meaning model came (here: written while the service was closed)
/// is embedded in the background once the service opens, Settings' state says how far it has
/// come, and search lists the messages found by meaning under the word matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_by_meaning_under_the_word_matches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("chats.db")).await.unwrap();
        let c = store
            .create_conversation("Family", "m", "", "{}")
            .await
            .unwrap();
        store
            .add_messages(
                c.id,
                &[
                    (Role::User, MessageText::parse(FACT).unwrap()),
                    (Role::Assistant, MessageText::parse("How lovely!").unwrap()),
                    (
                        Role::User,
                        MessageText::parse("I grow zucchini in my small vegetable garden.")
                            .unwrap(),
                    ),
                ],
            )
            .await
            .unwrap();
        for t in CHATTER {
            store
                .add_messages(c.id, &[(Role::User, MessageText::parse(t).unwrap())])
                .await
                .unwrap();
        }
        store.close().await;
    }
    let svc = open_caught_up(dir.path(), 7).await;
    // No shared word: found by meaning alone.
    let hits = svc.search("marriage ceremony").await.unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.by_meaning));
    assert!(hits[0].snippet.contains("wedding"), "{hits:?}");
    // Word forms by words ("zucchinis", "gardens"), then the rest by meaning, never twice.
    let hits = svc.search("zucchinis").await.unwrap();
    assert!(
        !hits[0].by_meaning && hits[0].snippet.contains("zucchini"),
        "{hits:?}"
    );
    let ids: Vec<_> = hits.iter().map(|h| h.message_id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "{hits:?}");
    assert!(
        hits.iter()
            .skip_while(|h| !h.by_meaning)
            .all(|h| h.by_meaning),
        "meaning matches come last: {hits:?}"
    );
    let hits = svc.search("where is my garden").await.unwrap();
    assert!(hits[0].snippet.contains("garden"), "{hits:?}");
    // A new message is embedded too, and found (the index learns it).
    let c = svc.create_conversation().await.unwrap();
    svc.create_with_turns(
        "",
        &[(Role::User, "We fly to Lisbon on the 14th.".to_string())],
    )
    .await
    .unwrap();
    svc.meaning_caught_up().await;
    let hits = svc.search("holiday travel plans by plane").await.unwrap();
    assert!(
        hits.iter()
            .any(|h| h.by_meaning && h.snippet.contains("Lisbon")),
        "{hits:?}"
    );
    // Turned off in Settings: words only.
    let mut s = svc.settings().await;
    s.recall_meaning = false;
    svc.save_settings(s).await.unwrap();
    assert!(svc.search("marriage ceremony").await.unwrap().is_empty());
    svc.delete(c.id).await.unwrap();
    svc.shutdown().await;
}

/// Without the meaning model, Settings says so and search and recall go on by words.
#[tokio::test]
async fn without_the_model_everything_goes_on_by_words() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ChatService::open(dir.path(), Some(common::model_path()))
        .await
        .unwrap();
    svc.create_with_turns("", &[(Role::User, FACT.to_string())])
        .await
        .unwrap();
    svc.meaning_caught_up().await;
    match svc.meaning_state().await {
        MeaningState::Unavailable { reason } => {
            assert!(reason.contains("not installed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The message, and the chat's title made from it: both by their words.
    let hits = svc.search("wedding").await.unwrap();
    assert!(hits.iter().any(|h| h.message_id.is_some()), "{hits:?}");
    assert!(hits.iter().all(|h| !h.by_meaning), "{hits:?}");
    assert!(svc.search("marriage ceremony").await.unwrap().is_empty());
    svc.shutdown().await;
}

/// Hard input for the background task: a message of 100,000 characters (embedded by its
/// start), a reply that ended empty, text in scripts the model barely knows, emoji alone. Each
/// gets its vector, none stops the task, and the chat's search still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_messages_get_their_vectors_without_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("chats.db")).await.unwrap();
        let c = store
            .create_conversation("Hard", "m", "", "{}")
            .await
            .unwrap();
        let long = "The harbour wall is long. ".repeat(4000);
        assert_eq!(long.chars().count(), 104_000);
        let long: String = long.chars().take(100_000).collect();
        for t in [
            long.as_str(),
            "ཀུན་ལ་བདེ་བ་ཡོང་བར་ཤོག",
            "ქართული ენა ძალიან ლამაზია.",
            "🙂🙂🙂 🎉",
        ] {
            store
                .add_user_message(c.id, &MessageText::parse(t).unwrap())
                .await
                .unwrap();
        }
        let r = store.start_reply(c.id).await.unwrap();
        store
            .finish_reply(
                r.id,
                "",
                sinkchat_store::MessageStatus::Stopped,
                None,
                Some(0),
            )
            .await
            .unwrap();
        store.close().await;
    }
    let svc = open_caught_up(dir.path(), 5).await;
    let hits = svc.search("harbour").await.unwrap();
    assert!(hits.iter().any(|h| !h.by_meaning), "{hits:?}");
    svc.shutdown().await;
}
