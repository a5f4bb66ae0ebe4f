//! Recall (#19), first step: when a message arrives, the words of it that carry meaning are
//! looked up (SQLite FTS5, BM25) among this chat's messages that have left the model's window,
//! and the best matches, within a token budget, are given back to the model with the message,
//! marked as recalled. A message with nothing relevant adds nothing.
//!
//! Why FTS5 first: the transcript is already indexed, a lookup costs a millisecond or two (the
//! rowid range keeps it to this chat's span), and a fact stated once is usually asked about
//! with its own words (a name, a number, a place). Embeddings or InfLLM-style KV blocks would
//! catch paraphrases; they wait for `sinkchat bench recall` to show where FTS5 falls short.
//!
//! The recalled lines enter the window as part of the user's turn and scroll out with it, so
//! the sinks and the window stay as they are and positions stay by place in the cache.

/// Words too common to say what a message is about.
const STOP: &[&str] = &[
    "about", "above", "after", "again", "all", "also", "and", "any", "are", "because", "been",
    "before", "being", "but", "can", "could", "did", "does", "doing", "don", "down", "each", "for",
    "from", "further", "had", "has", "have", "having", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "into", "its", "itself", "just", "know", "like", "more", "most",
    "much", "myself", "nor", "not", "now", "off", "once", "only", "other", "our", "ours", "out",
    "over", "own", "please", "same", "say", "she", "should", "some", "such", "tell", "than",
    "thank", "thanks", "that", "the", "their", "theirs", "them", "then", "there", "these", "they",
    "thing", "things", "this", "those", "through", "too", "under", "until", "very", "was", "way",
    "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
    "would", "yes", "you", "your", "yours", "yourself", "remember", "recall", "earlier", "said",
    "told", "again", "still", "think", "want",
];

/// The words of `text` worth looking up: letters and digits, three characters or more (two
/// for numbers), lowercased, without the common ones, each once, at most 16.
pub fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let w = w.to_lowercase();
        let numeric = w.chars().all(|c| c.is_ascii_digit());
        if w.chars().count() < if numeric { 2 } else { 3 } || STOP.contains(&w.as_str()) {
            continue;
        }
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// A recalled message as the model is shown it.
pub fn line(role: sinkchat_store::Role, content: &str) -> String {
    const MAX_CHARS: usize = 600;
    let who = if role == sinkchat_store::Role::User {
        "The user"
    } else {
        "You"
    };
    let mut text: String = content.trim().chars().take(MAX_CHARS).collect();
    if content.trim().chars().count() > MAX_CHARS {
        text.push('…');
    }
    format!("- {who} said: {text}")
}

/// The user's message with the recalled lines before it, marked for the model.
pub fn with_recall(lines: &[String], user_text: &str) -> String {
    if lines.is_empty() {
        return user_text.to_string();
    }
    format!(
        "(Recalled from earlier in this conversation, which you can no longer see:\n{})\n\n{user_text}",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_keep_the_words_that_say_what_a_message_is_about() {
        assert_eq!(
            terms("What is my sister's name? Do you remember, the one in Lisbon since 1990?"),
            ["sister", "name", "one", "lisbon", "since", "1990"]
        );
        assert_eq!(terms("Thanks! What about it?"), Vec::<String>::new());
        assert_eq!(terms("Zürich zürich ZÜRICH 42"), ["zürich", "42"]);
        assert_eq!(terms(&"word ".repeat(100)).len(), 1);
        let many: String = (0..40).map(|i| format!("term{i} ")).collect();
        assert_eq!(terms(&many).len(), 16);
    }

    #[test]
    fn recalled_lines_are_marked_and_bounded() {
        let l = line(sinkchat_store::Role::User, &"x".repeat(1000));
        assert!(l.starts_with("- The user said: "));
        assert!(l.ends_with('…'));
        assert_eq!(with_recall(&[], "hi"), "hi");
        let t = with_recall(
            &[line(sinkchat_store::Role::Assistant, "It is blue.")],
            "And now?",
        );
        assert!(t.starts_with("(Recalled from earlier"));
        assert!(t.ends_with("- You said: It is blue.)\n\nAnd now?"));
    }
}
