//! What a reply feeds the model, decided without a model: the SmolLM2 file's tokenizer and
//! chat template (its header only, no weights) and the pure functions of `engine::feed`.

mod common;

use sinkchat_engine::chat::{encode_pieces, ChatTemplate};
use sinkchat_engine::engine::feed::{self, Rebuild};
use sinkchat_engine::engine::{GenerateRequest, History, Spans};
use sinkchat_engine::{CacheConfig, GgufTokenizer, KvPrecision, Role, SamplingParams, Turn};

fn vocab() -> (GgufTokenizer, ChatTemplate) {
    let header = sinkchat_engine::model::read_gguf_header(&common::smollm_path()).unwrap();
    let tk = GgufTokenizer::from_gguf(&header).unwrap();
    let template = ChatTemplate::for_tokenizer(&tk).unwrap();
    (tk, template)
}

fn turn(id: i64, role: Role, content: &str) -> Turn {
    Turn {
        role,
        content: content.into(),
        message_id: id,
    }
}

/// `n` exchanges, oldest first, ids 1.. (user odd, assistant even).
fn exchanges(n: i64) -> Vec<Turn> {
    (0..n)
        .flat_map(|i| {
            [
                turn(
                    2 * i + 1,
                    Role::User,
                    &format!("Question number {i} about rivers?"),
                ),
                turn(
                    2 * i + 2,
                    Role::Assistant,
                    &format!("Answer {i}: rivers flow to the sea."),
                ),
            ]
        })
        .collect()
}

fn request(system: &str, history: Vec<Turn>, window: usize) -> GenerateRequest {
    GenerateRequest {
        conversation: 1,
        cache_key: "k".into(),
        system_prompt: system.into(),
        history: history.into(),
        user_text: "And the next one?".into(),
        user_message_id: 1000,
        reply_message_id: 1001,
        sampling: SamplingParams::default(),
        cache: CacheConfig {
            sinks: 4,
            window,
            evict_step: 1,
            precision: KvPrecision::F16,
        },
        pin_system_prompt: true,
        spans: Spans::default(),
    }
}

fn fed(plan: &Rebuild) -> usize {
    plan.feeds[1..].iter().map(|f| f.0.len()).sum()
}

#[test]
fn a_short_opening_is_pinned_and_the_newest_turns_that_fit_follow_it_oldest_first() {
    let (tk, template) = vocab();
    let req = request("You are a helpful assistant.", exchanges(200), 256);
    let plan = feed::plan_rebuild(&tk, &template, &req).unwrap();
    let opening = feed::encode_opening(&tk, &template, &req.system_prompt).unwrap();
    assert!(plan.pinned);
    assert_eq!(
        plan.feeds[0],
        (opening.clone(), None),
        "the opening comes first"
    );
    assert_eq!(
        plan.config.sinks,
        opening.len().max(4),
        "the sinks hold the opening"
    );
    assert_eq!(plan.config.window, 256);
    // The kept turns: the newest, in transcript order, ending with the last message.
    let ids: Vec<i64> = plan.feeds[1..].iter().map(|f| f.1.unwrap()).collect();
    assert_eq!(*ids.last().unwrap(), 400);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert!(ids.len() > 4 && ids.len() < 400, "{} turns kept", ids.len());
    // Within the rebuild budget, and one more (older) turn would not have fit.
    let budget = req.cache.rebuild_budget();
    assert_eq!(budget, 192);
    assert!(fed(&plan) <= budget + 8, "{} tokens fed", fed(&plan));
    let kept = feed::kept_turns(&tk, &template, &req.history, budget).unwrap();
    assert_eq!(kept.len(), ids.len());
    let sized = |t: &Turn, close: bool| {
        encode_pieces(&tk, &feed::pieces_of(&template, t, close), None)
            .unwrap()
            .len()
    };
    let used: usize = kept.iter().map(|(t, c)| sized(t, *c)).sum();
    let older = &exchanges(200)[400 - ids.len() - 1];
    assert!(used <= budget && used + sized(older, true) > budget);
    // Every assistant turn is closed; the newest user turn before an assistant is not.
    for (t, close) in &kept {
        assert_eq!(*close, t.role == Role::Assistant, "{t:?}");
    }
}

#[test]
fn a_user_turn_without_a_reply_is_closed_so_turns_never_nest() {
    let (tk, template) = vocab();
    let mut h = exchanges(3);
    h.push(turn(7, Role::User, "This one failed."));
    let kept = feed::kept_turns(&tk, &template, &History::from(h), 1000).unwrap();
    assert_eq!(kept[0].0.message_id, 7);
    assert!(
        kept[0].1,
        "a user turn followed by the new user turn is closed"
    );
    assert!(!kept[1].1 || kept[1].0.role == Role::Assistant);
    // System turns and empty ones are skipped.
    let h = vec![
        turn(1, Role::System, "ignored"),
        turn(2, Role::User, ""),
        turn(3, Role::User, "Hello?"),
    ];
    let kept = feed::kept_turns(&tk, &template, &History::from(h), 1000).unwrap();
    assert_eq!(
        kept.iter().map(|k| k.0.message_id).collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn an_opening_over_the_pin_budget_scrolls_and_the_tail_span_is_counted_apart() {
    let (tk, template) = vocab();
    let long = "You are a careful assistant who reads slowly. ".repeat(40);
    let req = request(&long, exchanges(4), 128);
    let plan = feed::plan_rebuild(&tk, &template, &req).unwrap();
    assert!(
        !plan.pinned,
        "an opening over half the window is not pinned"
    );
    assert_eq!(plan.config.sinks, 4);
    assert_eq!(plan.tail_used, 0);

    let base = "You are a helpful assistant.";
    let pins = "\n\nThe user pinned these messages: My cat is called Tom.";
    let mut req = request(&format!("{base}{pins}"), exchanges(4), 256);
    req.spans.opening_tail = pins.len();
    let plan = feed::plan_rebuild(&tk, &template, &req).unwrap();
    let with = feed::encode_opening(&tk, &template, &req.system_prompt)
        .unwrap()
        .len();
    let without = feed::encode_opening(&tk, &template, base).unwrap().len();
    assert!(plan.pinned);
    assert_eq!(plan.tail_used, with - without);
    assert!(plan.tail_used > 5);
    assert_eq!(plan.tail_room, req.cache.pin_budget() - without);
}

#[test]
fn the_head_span_of_a_user_turn_is_found_among_its_tokens() {
    let (tk, template) = vocab();
    let head = "(Recalled from earlier: the user said: My dog is called Rex.)\n\n";
    let text = format!("{head}What is my dog called?");
    let (ids, span) = feed::user_turn(&tk, &template, &text, head.len(), None).unwrap();
    let (skip, n) = span.expect("a head span");
    let plain = feed::user_turn(&tk, &template, "What is my dog called?", 0, None).unwrap();
    assert!(plain.1.is_none());
    assert_eq!(n, ids.len() - plain.0.len());
    let shown = tk.decode(&ids[skip..skip + n]).unwrap();
    assert!(shown.contains("My dog is called Rex"), "{shown:?}");
    assert!(!shown.contains("What is my dog"), "{shown:?}");
}
