//! Replies: a chat reserved for one reply at a time, the user's message saved first, the
//! reply started on the backend and saved as it streams (every [`SAVE_EVERY`], and at its end
//! before the end is told), a failed save told at once and tried again, and regenerate and
//! edit, which replace only what follows the chat's last user message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sinkchat_engine::{Cancel, History, Role as EngineRole, SamplingParams, Turn};
use sinkchat_store::{Conversation, Message, MessageStatus, MessageText, Role};

use crate::backend::{Backend, Prompt};
use crate::error::{ErrorCode, UiError, UiResult};
use crate::events::{ReplyEvent, ReplyKind, ReplyOptions, Sent, StopReason};
use crate::pins::with_pins;
use crate::recall;
use crate::settings::Settings;
use crate::ChatService;

/// How often a streaming reply is written to disk.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// A finished reply whose last save failed: everything needed to write it again.
#[derive(Debug, Clone)]
pub(crate) struct Unsaved {
    text: String,
    status: MessageStatus,
    error: Option<String>,
    tokens: Option<i64>,
}

impl ChatService {
    /// Reserves the chat for one reply, before anything else is read or written: a second
    /// send, regenerate or edit to the same chat is refused until the reservation goes (when
    /// the reply has ended and is saved, or at once if it never starts). The check and the
    /// reservation are one step under one lock, so two requests can never both pass.
    fn reserve(&self, conversation_id: i64) -> UiResult<Reservation> {
        let mut replies = self.0.replies.lock().expect("replies");
        if replies.contains_key(&conversation_id) {
            return Err(busy());
        }
        let cancel = Cancel::new();
        replies.insert(conversation_id, cancel.clone());
        Ok(Reservation {
            svc: self.clone(),
            conversation_id,
            cancel,
        })
    }

    /// Saves the user's message and starts the reply; returns once it has started. The reply's
    /// events arrive on `on_event` and it is saved as it streams.
    pub async fn send(
        &self,
        conversation_id: i64,
        text: &str,
        opts: ReplyOptions,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let text = MessageText::parse(text)?;
        let backend = self.backend()?;
        let slot = self.reserve(conversation_id)?;
        let conv = self.0.store.conversation(conversation_id).await?;
        let user = self
            .0
            .store
            .add_user_message(conversation_id, &text)
            .await?;
        if conv.title == "New chat" {
            let _ = self
                .0
                .store
                .rename_conversation(conversation_id, &title_from(text.as_str()))
                .await;
        }
        self.reply_to(slot, &backend, &conv, user, opts, ReplyKind::Send, on_event)
            .await
    }

    /// What a regenerate and an edit start with: the backend, the chat reserved, and its last
    /// user message, found from the end (whatever the transcript's length, only what follows
    /// it is replaced).
    async fn begin_redo(
        &self,
        conversation_id: i64,
    ) -> UiResult<(Backend, Reservation, Conversation, Message)> {
        let backend = self.backend()?;
        let slot = self.reserve(conversation_id)?;
        let conv = self.0.store.conversation(conversation_id).await?;
        let last_user = self
            .0
            .store
            .last_user_message(conversation_id)
            .await?
            .ok_or_else(nothing_to_redo)?;
        Ok((backend, slot, conv, last_user))
    }

    /// Writes the last reply again: the old reply goes, a new one streams.
    pub async fn regenerate(
        &self,
        conversation_id: i64,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let (backend, slot, conv, user) = self.begin_redo(conversation_id).await?;
        self.0
            .store
            .truncate_from(conversation_id, user.id + 1)
            .await?;
        let opts = ReplyOptions::default();
        let kind = ReplyKind::Regenerate;
        self.reply_to(slot, &backend, &conv, user, opts, kind, on_event)
            .await
    }

    /// Replaces the last user message (and the reply to it) with `text` and answers it.
    pub async fn edit_and_resend(
        &self,
        conversation_id: i64,
        text: &str,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let text = MessageText::parse(text)?;
        let (backend, slot, conv, old) = self.begin_redo(conversation_id).await?;
        self.0.store.truncate_from(conversation_id, old.id).await?;
        let user = self
            .0
            .store
            .add_user_message(conversation_id, &text)
            .await?;
        // A title made from the edited message follows the edit (its old words leave the
        // titles' index and the WAL with it); a title the user typed stays.
        if conv.title == title_from(&old.content) || conv.title == legacy_title_from(&old.content) {
            self.0
                .store
                .rename_conversation(conversation_id, &title_from(text.as_str()))
                .await?;
        }
        let opts = ReplyOptions::default();
        self.reply_to(slot, &backend, &conv, user, opts, ReplyKind::Edit, on_event)
            .await
    }

    /// The transcript before message `user`, as the engine reads it: the id of the message
    /// just before, and a reader of the tail, newest first, that the engine calls only when it
    /// has no live cache for the chat.
    async fn history_before(&self, conversation_id: i64, user: i64) -> UiResult<History> {
        let last = self
            .0
            .store
            .messages_before(conversation_id, Some(user), 1)
            .await?;
        let svc = self.clone();
        let rt = tokio::runtime::Handle::current();
        let read = move |before: Option<i64>, limit: usize| {
            svc.0.counters.history_reads.fetch_add(1, Ordering::Relaxed);
            let before = before.unwrap_or(user).min(user);
            rt.block_on(
                svc.0
                    .store
                    .messages_before(conversation_id, Some(before), limit as i64),
            )
            .map(|page| page.iter().map(to_turn).collect())
            .map_err(|e| sinkchat_engine::Error::History(e.to_string()))
        };
        Ok(History::Reader {
            last_message: last.first().map(|m| m.id),
            read: Arc::new(read),
        })
    }

    /// Starts the reply to `user` (already saved), saving it as it streams. A regenerated
    /// reply mixes the new reply's id into the seed ([`ReplyKind::Regenerate`]).
    #[allow(clippy::too_many_arguments)]
    async fn reply_to(
        &self,
        slot: Reservation,
        backend: &Backend,
        conv: &Conversation,
        user: Message,
        opts: ReplyOptions,
        kind: ReplyKind,
        on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) -> UiResult<Sent> {
        let conversation_id = conv.id;
        let settings = Settings::load(&self.0.store).await;
        let pins = self.0.store.pinned_messages(conversation_id).await?;
        let history = self.history_before(conversation_id, user.id).await?;
        let recalled = if settings.recall {
            self.recall_for(backend, conv, &user, &settings).await
        } else {
            Vec::new()
        };
        let recalled_ids: Vec<i64> = recalled.iter().map(|m| m.id).collect();
        let lines: Vec<String> = recalled
            .iter()
            .map(|m| recall::line(m.role, &m.content))
            .collect();
        // A server's window pins the chat's first exchange too (when it is one already).
        let first_exchange = if backend.is_remote() {
            let first = self.0.store.messages(conversation_id, 0, 2).await?;
            match first.as_slice() {
                [u, a] if u.role == Role::User && a.role == Role::Assistant && a.id < user.id => {
                    first.iter().map(to_turn).collect()
                }
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let reply = self.0.store.start_reply(conversation_id).await?;
        if !recalled_ids.is_empty() {
            self.0.store.set_recalled(reply.id, &recalled_ids).await?;
        }
        let sampling = opts.sampling.unwrap_or_else(|| settings.sampling.clone());
        // Pinned messages join the system prompt in the chat's opening; a pin or an unpin
        // changes the opening, so the memory is rebuilt (and one parked with other pins is not
        // restored). The recalled lines precede the user's words. The gauge shows both apart.
        let system_prompt = with_pins(&conv.system_prompt, &pins);
        let user_text = recall::with_recall(&lines, &user.content);
        let prompt = Prompt {
            conversation: conversation_id,
            cache_key: conv.cache_key.clone(),
            pins_len: if pins.is_empty() {
                0
            } else {
                system_prompt.len() - conv.system_prompt.trim_end().len()
            },
            system_prompt,
            history,
            recalled_len: user_text.len() - user.content.len(),
            user_text,
            user_message_id: user.id,
            reply_message_id: reply.id,
            sampling: SamplingParams {
                seed: if kind == ReplyKind::Regenerate {
                    sampling.seed ^ (reply.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                } else {
                    sampling.seed
                },
                ..sampling
            },
            cache: settings.cache,
            // Pins are pinned even when the system prompt alone would scroll.
            pin_system_prompt: settings.pin_system_prompt || !pins.is_empty(),
            first_exchange,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let svc = self.clone();
        if let Err(err) = backend.generate(prompt, slot.cancel.clone(), move |mut ev| {
            if let ReplyEvent::Cache { stats, .. } = &mut ev {
                svc.steady_gauge(conversation_id, stats);
            }
            let _ = tx.send(ev);
        }) {
            self.0
                .store
                .finish_reply(
                    reply.id,
                    "",
                    MessageStatus::Failed,
                    Some(&err.message),
                    None,
                )
                .await?;
            return Err(err);
        }
        tokio::spawn(
            self.clone()
                .save_as_it_streams(slot, reply.id, rx, on_event),
        );
        Ok(Sent {
            user_message: user,
            reply_id: reply.id,
            recalled: recalled_ids,
        })
    }

    /// Forwards a reply's events and saves its text every [`SAVE_EVERY`] and at its end. A
    /// failed save is told at once (`not_saved`), tried again at each later save, and at the
    /// end the text is kept for [`ChatService::retry_save`]. The chat stays reserved until the
    /// last save has been tried, so the next reply never races this one's writes.
    async fn save_as_it_streams(
        self,
        slot: Reservation,
        reply_id: i64,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<ReplyEvent>,
        mut on_event: impl FnMut(ReplyEvent) + Send + 'static,
    ) {
        let store = &self.0.store;
        let mut text = String::new();
        let mut last_save = Instant::now();
        let mut failing = false;
        let mut note = |result: sinkchat_store::Result<()>,
                        on_event: &mut dyn FnMut(ReplyEvent)| match result {
            Ok(()) if failing => {
                failing = false;
                on_event(ReplyEvent::Saved { reply_id });
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, reply_id, "saving the reply failed");
                if !failing {
                    failing = true;
                    on_event(ReplyEvent::NotSaved {
                        reply_id,
                        message: e.to_string(),
                    });
                }
            }
        };
        // A backend always ends a reply with `done` or `error`; a closed channel without one
        // (the engine went away) ends it as failed.
        let mut end = (
            MessageStatus::Failed,
            Some("the engine stopped".to_string()),
            None,
        );
        while let Some(ev) = rx.recv().await {
            let finished = match &ev {
                ReplyEvent::Token { text: t } => {
                    text.push_str(t);
                    if last_save.elapsed() >= SAVE_EVERY {
                        note(store.save_reply_text(reply_id, &text).await, &mut on_event);
                        last_save = Instant::now();
                    }
                    false
                }
                ReplyEvent::Done { reason, tokens, .. } => {
                    let status = if *reason == StopReason::Cancelled {
                        MessageStatus::Stopped
                    } else {
                        MessageStatus::Complete
                    };
                    end = (status, None, Some(*tokens as i64));
                    true
                }
                ReplyEvent::Error { message, .. } => {
                    end = (MessageStatus::Failed, Some(message.clone()), None);
                    true
                }
                _ => false,
            };
            if finished {
                // Saved before the end is told, so whoever hears `done` finds it on disk.
                let (status, error, tokens) = end.clone();
                let r = store
                    .finish_reply(reply_id, &text, status, error.as_deref(), tokens)
                    .await;
                if r.is_err() {
                    self.0.unsaved.lock().expect("unsaved").insert(
                        reply_id,
                        Unsaved {
                            text: text.clone(),
                            status,
                            error,
                            tokens,
                        },
                    );
                }
                note(r, &mut on_event);
                on_event(ev);
                drop(slot);
                return;
            }
            on_event(ev);
        }
        let (status, error, tokens) = end;
        if let Err(e) = store
            .finish_reply(reply_id, &text, status, error.as_deref(), tokens)
            .await
        {
            tracing::error!(error = %e, reply_id, "saving the ended reply failed");
        }
        drop(slot);
    }

    /// Writes a finished reply whose save failed. Ok(false): nothing was waiting.
    pub async fn retry_save(&self, reply_id: i64) -> UiResult<bool> {
        let Some(u) = self
            .0
            .unsaved
            .lock()
            .expect("unsaved")
            .get(&reply_id)
            .cloned()
        else {
            return Ok(false);
        };
        let r = self
            .0
            .store
            .finish_reply(reply_id, &u.text, u.status, u.error.as_deref(), u.tokens)
            .await;
        // Saved, or its chat was deleted meanwhile: either way nothing is left to keep.
        if matches!(r, Ok(()) | Err(sinkchat_store::Error::NoSuchMessage(_))) {
            self.0.unsaved.lock().expect("unsaved").remove(&reply_id);
        }
        r?;
        Ok(true)
    }
}

/// A chat reserved for one reply; dropping it frees the chat.
pub(crate) struct Reservation {
    svc: ChatService,
    conversation_id: i64,
    cancel: Cancel,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut replies = self.svc.0.replies.lock().expect("replies");
        // Only this reservation's own entry: never one made after it.
        if replies
            .get(&self.conversation_id)
            .is_some_and(|c| c.same_as(&self.cancel))
        {
            replies.remove(&self.conversation_id);
        }
        drop(replies);
        // The reply is saved: its vector (and the question's) can be made now.
        self.svc.meaning_wake();
    }
}

fn busy() -> UiError {
    UiError::new(
        ErrorCode::Busy,
        "A reply is still being written in this chat; stop it or wait.",
    )
}

/// Longest title made from a message, in characters.
const TITLE_CHARS: usize = 48;

/// A new chat's title: its first message's words, at most [`TITLE_CHARS`] characters. A longer
/// message is cut after its last whole word that fits (mid-word only when one word is longer
/// than half a title), and an ellipsis says there is more.
pub(crate) fn title_from(text: &str) -> String {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.chars().count() <= TITLE_CHARS {
        return words;
    }
    // Room for the ellipsis.
    let room: String = words.chars().take(TITLE_CHARS - 1).collect();
    let next_is_space = words.chars().nth(TITLE_CHARS - 1) == Some(' ');
    let cut = match room.rfind(' ') {
        _ if next_is_space => room.as_str(),
        Some(at) if room[..at].chars().count() >= TITLE_CHARS / 2 => &room[..at],
        _ => room.as_str(),
    };
    let cut = cut.trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—".contains(c));
    format!("{cut}…")
}

/// The titles an earlier version made (the first 48 characters, cut anywhere): a chat still
/// so titled is one the user has not renamed.
fn legacy_title_from(text: &str) -> String {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    words.chars().take(TITLE_CHARS).collect()
}

pub(crate) fn to_turn(m: &Message) -> Turn {
    Turn {
        role: match m.role {
            Role::User => EngineRole::User,
            Role::Assistant => EngineRole::Assistant,
            Role::System => EngineRole::System,
        },
        content: m.content.clone(),
        message_id: m.id,
    }
}

fn nothing_to_redo() -> UiError {
    UiError::new(
        ErrorCode::NothingToRedo,
        "This chat has no message to answer again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// #34, bug 6: a long first message made a title cut at 48 characters mid-word with no
    /// ellipsis ("...the best way to keep tomatoes from spl").
    #[test]
    fn titles_end_on_a_whole_word_with_an_ellipsis() {
        let long = "Could you tell me the best way to keep tomatoes from splitting in the rain?";
        let t = title_from(long);
        assert_eq!(t, "Could you tell me the best way to keep tomatoes…");
        assert!(t.chars().count() <= TITLE_CHARS);
        // Short ones stay as typed, spaces tidied.
        assert_eq!(title_from("  Hello\n there "), "Hello there");
        let exact = "x".repeat(TITLE_CHARS);
        assert_eq!(title_from(&exact), exact);
        // One endless word is cut inside it, still marked.
        let word = "a".repeat(100);
        let t = title_from(&word);
        assert_eq!(t.chars().count(), TITLE_CHARS);
        assert!(t.ends_with('…'));
        // A word that ends right at the limit is kept whole; punctuation before the cut goes.
        let t = title_from(&format!(
            "{}, and more words here",
            "b".repeat(TITLE_CHARS - 1)
        ));
        assert_eq!(t, format!("{}…", "b".repeat(TITLE_CHARS - 1)));
        let t = title_from("Alpha beta gamma delta epsilon zeta eta theta, iota kappa lambda");
        assert_eq!(t, "Alpha beta gamma delta epsilon zeta eta theta…");
        // Any script: characters, not bytes.
        let t = title_from(&"日本語の文章 ".repeat(20));
        assert!(t.chars().count() <= TITLE_CHARS && t.ends_with('…'), "{t}");
        // A chat titled by the old rule is still known as untouched by the user.
        assert_eq!(
            legacy_title_from(long),
            "Could you tell me the best way to keep tomatoes "
        );
    }
}
