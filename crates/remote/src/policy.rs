//! Which messages a request to a server carries: the sink+window policy at the level of
//! messages. The pinned start (system prompt, pinned messages, the first exchange) goes in
//! every request, like the attention sinks; then the newest messages that fit the server's
//! context less the reply's room. When the newest no longer fit, the oldest kept ones go
//! **in blocks** of about a quarter of the window ([`Eviction::Blocks`]), so that the next
//! several requests each extend the one before and the server's prefix cache serves them;
//! [`Eviction::OneByOne`] (what a client that trims to fit does) changes the start of the
//! kept text at every turn once the window is full, and the server reads it all again.

/// How the window lets messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Only as many messages as the new turn needs (a plain trimming client).
    OneByOne,
    /// Enough messages to leave this many tokens free beyond the new turn's need.
    Blocks(usize),
}

/// The window a server conversation has, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The server's context for one conversation.
    pub context: usize,
    /// Room kept for the reply (the request's `max_tokens`).
    pub reply_room: usize,
    pub eviction: Eviction,
}

impl Policy {
    /// Blocks of a quarter of the window the pinned start leaves (`context - pinned - reply`).
    pub fn with_blocks(context: usize, reply_room: usize, pinned: usize) -> Self {
        let window = context.saturating_sub(reply_room + pinned);
        Self {
            context,
            reply_room,
            eviction: Eviction::Blocks((window / 4).max(1)),
        }
    }
}

/// A request's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Index of the first message of the history the request carries (those before it are
    /// out of the window).
    pub from: usize,
    /// Tokens the pinned start and the kept history take.
    pub tokens: usize,
    /// Messages this request let go that the one before still carried.
    pub evicted: usize,
}

/// Too little room for the pinned start and the newest message alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    pub needed: usize,
}

/// The plan for a request whose history (the messages after the pinned start, oldest first,
/// the new one last) takes `history[i]` tokens each, the pinned start `pinned`, when the last
/// request carried the history from `from` on. The start only moves forward: a message let
/// go does not come back (recall gives it back, by its own rule).
pub fn plan(p: &Policy, pinned: usize, history: &[usize], from: usize) -> Result<Plan, TooSmall> {
    let room = p.context.saturating_sub(p.reply_room + pinned);
    let newest = history.last().copied().unwrap_or(0);
    if newest > room || (history.is_empty() && pinned > room) {
        return Err(TooSmall {
            needed: pinned + newest + p.reply_room,
        });
    }
    let last = history.len().saturating_sub(1);
    let mut start = from.min(last);
    let mut kept: usize = history[start..].iter().sum();
    if kept > room {
        // Let go of the oldest until the kept part fits, with a block's room to spare.
        let target = match p.eviction {
            Eviction::OneByOne => room,
            Eviction::Blocks(block) => room.saturating_sub(block),
        };
        while start < last && kept > target {
            kept -= history[start];
            start += 1;
        }
    }
    Ok(Plan {
        from: start,
        tokens: pinned + kept,
        evicted: start - from.min(start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(eviction: Eviction) -> Policy {
        Policy {
            context: 100,
            reply_room: 20,
            eviction,
        }
    }

    #[test]
    fn while_everything_fits_nothing_goes() {
        let p = policy(Eviction::Blocks(15));
        let h = [10, 10, 10, 10, 10, 10];
        assert_eq!(
            plan(&p, 20, &h, 0),
            Ok(Plan {
                from: 0,
                tokens: 80,
                evicted: 0
            })
        );
    }

    #[test]
    fn one_by_one_lets_go_only_what_the_new_turn_needs() {
        let p = policy(Eviction::OneByOne);
        // 70 tokens of history in a room of 60: one message of 10 goes.
        let h = [10; 7];
        assert_eq!(plan(&p, 20, &h, 0).unwrap().from, 1);
        // Next turn: one more message, one more goes; the kept text starts somewhere new at
        // every turn.
        let h = [10; 8];
        assert_eq!(plan(&p, 20, &h, 1).unwrap().from, 2);
    }

    #[test]
    fn blocks_free_a_block_and_then_extend_for_several_turns() {
        let p = policy(Eviction::Blocks(25));
        let mut h = vec![10; 7];
        let first = plan(&p, 20, &h, 0).unwrap();
        // Room 60, a block of 25: kept at most 35, so four of ten go.
        assert_eq!(first.from, 4);
        assert_eq!(first.evicted, 4);
        assert_eq!(first.tokens, 20 + 30);
        // The next two turns fit without letting anything go: each request extends the last.
        for _ in 0..2 {
            h.push(10);
            let next = plan(&p, 20, &h, first.from).unwrap();
            assert_eq!(next.from, first.from);
            assert_eq!(next.evicted, 0);
        }
    }

    #[test]
    fn the_newest_message_always_goes_in_or_the_plan_says_why_not() {
        let p = policy(Eviction::Blocks(25));
        // A long newest message: everything before it goes, it stays.
        let h = [10, 10, 55];
        assert_eq!(plan(&p, 20, &h, 0).unwrap().from, 2);
        // Too long for the room left beside the pinned start: refused with the figure.
        assert_eq!(plan(&p, 20, &[10, 61], 0), Err(TooSmall { needed: 101 }));
        assert_eq!(plan(&p, 90, &[], 0), Err(TooSmall { needed: 110 }));
        // The start never moves back.
        assert_eq!(plan(&p, 20, &[10, 10, 10], 2).unwrap().from, 2);
    }

    #[test]
    fn blocks_are_a_quarter_of_the_window() {
        let p = Policy::with_blocks(1024, 128, 96);
        assert_eq!(p.eviction, Eviction::Blocks(200));
        assert_eq!(Policy::with_blocks(10, 20, 5).eviction, Eviction::Blocks(1));
    }
}
