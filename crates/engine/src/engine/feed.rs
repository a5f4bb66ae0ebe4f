//! What a reply feeds the model, decided before anything is computed: a chat's opening (pinned
//! with the sinks or not), the turns of the transcript that a rebuilt memory reads back, the
//! closing markup of the last reply, and the user's new turn. Pure functions of the tokenizer,
//! the chat template and the request, tested without a model (`tests/feed.rs`).

use crate::cache::CacheConfig;
use crate::chat::{encode_pieces, ChatTemplate, Piece, Role, Turn};
use crate::tokenizer::GgufTokenizer;
use crate::Result;

use super::protocol::{GenerateRequest, History};

/// Tokens still to feed, and the message they belong to (`None`: the opening, template text).
pub type PendingTokens = (Vec<u32>, Option<i64>);

/// Turns read per page when a memory is rebuilt from the transcript.
pub const HISTORY_PAGE: usize = 64;

/// The tokens a chat's cache opens with: the template's opening around the system prompt, BOS
/// first where the file asks for it and the template did not put it there.
pub fn encode_opening(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    system_prompt: &str,
) -> Result<Vec<u32>> {
    let mut opening = encode_pieces(tk, &template.opening(system_prompt), None)?;
    if let (true, Some(bos)) = (tk.add_bos, tk.bos) {
        if opening.first() != Some(&bos) {
            opening.insert(0, bos);
        }
    }
    Ok(opening)
}

/// The tokens two encodings share at their start.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A turn of the transcript as template pieces, closed or not.
pub fn pieces_of(template: &ChatTemplate, t: &Turn, close: bool) -> Vec<Piece> {
    let mut pieces = match t.role {
        Role::User => template.user_turn(&t.content),
        _ => template.assistant_text(&t.content),
    };
    if close {
        pieces.extend(template.assistant_close());
    }
    pieces
}

/// The newest turns of `history` that fit in `budget` tokens, newest first, each with whether
/// its closing markup follows. Read a page at a time, newest first, each sized as if it
/// followed a special token; system turns and empty ones are skipped. Every assistant turn is
/// closed, and so is a user turn left without a reply (a failed one), so the template never
/// nests two turns.
pub fn kept_turns(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    history: &History,
    budget: usize,
) -> Result<Vec<(Turn, bool)>> {
    let mut used = 0;
    let mut kept = Vec::new();
    // The role of the turn after the one being looked at (the new user turn, at first).
    let mut newer_role = Role::User;
    let mut before = None;
    loop {
        let page = history.newest_first(before, HISTORY_PAGE)?;
        let Some(last) = page.last() else { break };
        before = Some(last.message_id);
        let short = page.len() < HISTORY_PAGE;
        for t in page {
            if t.role == Role::System || t.content.is_empty() {
                continue;
            }
            let close = t.role == Role::Assistant || newer_role != Role::Assistant;
            let n = encode_pieces(tk, &pieces_of(template, &t, close), None)?.len();
            if used + n > budget {
                return Ok(kept);
            }
            used += n;
            newer_role = t.role;
            kept.push((t, close));
        }
        if short {
            break;
        }
    }
    Ok(kept)
}

/// A memory rebuilt from the transcript: the cache to allocate and what to feed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    /// The request's cache, with the sinks grown to hold a pinned opening.
    pub config: CacheConfig,
    /// Whether the opening is pinned with the sinks: asked for, and at most the pin budget.
    pub pinned: bool,
    /// Tokens of the pinned opening that are its tail span, and the room the pin budget leaves
    /// for that span beside the rest of the opening.
    pub tail_used: usize,
    pub tail_room: usize,
    /// The opening, then the kept turns oldest first, each tokenized after the token before it.
    pub feeds: Vec<PendingTokens>,
}

/// What a memory rebuilt for `req` holds: the opening (pinned when the request asks and it
/// takes at most [`CacheConfig::pin_budget`]; a longer one is read like any text and scrolls
/// away in time, so a huge prompt never makes the pinned part outgrow the memory chosen), then
/// the newest turns that fit in [`CacheConfig::rebuild_budget`], so the new turn and the reply
/// still have room.
pub fn plan_rebuild(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    req: &GenerateRequest,
) -> Result<Rebuild> {
    let opening = encode_opening(tk, template, &req.system_prompt)?;
    let pinned = req.pin_system_prompt && opening.len() <= req.cache.pin_budget();
    if req.pin_system_prompt && !pinned {
        tracing::warn!(
            tokens = opening.len(),
            window = req.cache.window,
            "system prompt too long to pin; it will scroll like other text"
        );
    }
    // The opening without its tail span says how much of the pinned part the span takes, and
    // how much room is left for more.
    let tail = req.spans.opening_tail;
    let base_len = match req.system_prompt.len().checked_sub(tail) {
        Some(cut) if tail > 0 && req.system_prompt.is_char_boundary(cut) => {
            encode_opening(tk, template, &req.system_prompt[..cut])?.len()
        }
        _ => opening.len(),
    };
    let sinks = if pinned {
        req.cache.sinks.max(opening.len())
    } else {
        req.cache.sinks
    };
    let config = CacheConfig {
        sinks,
        window: req.cache.window.max(sinks),
        ..req.cache
    };
    let kept = kept_turns(tk, template, &req.history, config.rebuild_budget())?;
    let mut prev = opening.last().copied();
    let mut feeds = vec![(opening.clone(), None)];
    for (t, close) in kept.iter().rev() {
        let ids = encode_pieces(tk, &pieces_of(template, t, *close), prev)?;
        prev = ids.last().copied().or(prev);
        feeds.push((ids, Some(t.message_id)));
    }
    Ok(Rebuild {
        config,
        pinned,
        tail_used: if pinned {
            opening.len().saturating_sub(base_len)
        } else {
            0
        },
        tail_room: req.cache.pin_budget().saturating_sub(base_len),
        feeds,
    })
}

/// A turn's tokens, and where a span sits among them: `(skip, len)`.
pub type TurnTokens = (Vec<u32>, Option<(usize, usize)>);

/// The user's new turn after token `prev`, and where its head span (the first `head_len`
/// bytes of `text`) sits among its tokens: `(skip, len)`, the tokens the turn has beyond the
/// same turn without the span, after the template's start the two share.
pub fn user_turn(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    text: &str,
    head_len: usize,
    prev: Option<u32>,
) -> Result<TurnTokens> {
    let ids = encode_pieces(tk, &template.user_turn(text), prev)?;
    let head = match text.get(head_len..) {
        Some(own) if head_len > 0 => {
            let without = encode_pieces(tk, &template.user_turn(own), prev)?;
            let n = ids.len().saturating_sub(without.len());
            Some((common_prefix(&ids, &without), n))
        }
        _ => None,
    };
    Ok((ids, head))
}

/// The closing markup of the assistant turn the cache ended on, after token `prev`.
pub fn assistant_close(
    tk: &GgufTokenizer,
    template: &ChatTemplate,
    prev: Option<u32>,
) -> Result<Vec<u32>> {
    encode_pieces(tk, &template.assistant_close(), prev)
}
