//! The chat list and one chat's life outside its replies: a page of chats, a new chat (empty,
//! or holding an API client's earlier turns), its messages, renaming, deleting (at once, or
//! after the undo window), search, leaving it (its memory is parked), its memory as the gauge
//! shows it, and the settings new replies use.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sinkchat_store::{Conversation, Message, MessageText, Role, SearchHit};

use crate::error::{ErrorCode, UiError, UiResult};
use crate::events::MemoryView;
use crate::replies::title_from;
use crate::settings::Settings;
use crate::{ChatService, ModelState, CONVERSATION_PAGE, MESSAGE_PAGE};

impl ChatService {
    /// One page of chats, newest first, older than `before` (`(updated_at, id)` of the last
    /// one shown).
    pub async fn list_conversations(
        &self,
        before: Option<(i64, i64)>,
    ) -> UiResult<Vec<Conversation>> {
        let mut page = self
            .0
            .store
            .list_conversations(before, CONVERSATION_PAGE)
            .await?;
        let pending = self.0.pending_deletes.lock().expect("pending deletes");
        page.retain(|c| !pending.contains_key(&c.id));
        Ok(page)
    }

    /// Deletes the chat after `after` unless [`ChatService::undo_delete`] comes first; it
    /// leaves the list at once. A pending delete happens at [`ChatService::shutdown`] at the
    /// latest, so quitting within the undo window never keeps a deleted chat.
    pub fn delete_later(&self, conversation_id: i64, after: Duration) {
        let ticket = self.0.counters.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .insert(conversation_id, ticket);
        self.stop(conversation_id);
        let svc = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let due = {
                let mut p = svc.0.pending_deletes.lock().expect("pending deletes");
                let due = p.get(&conversation_id) == Some(&ticket);
                if due {
                    p.remove(&conversation_id);
                }
                due
            };
            if due {
                if let Err(e) = svc.delete(conversation_id).await {
                    tracing::warn!(conversation = conversation_id, error = %e, "delete failed");
                }
            }
        });
    }

    /// Takes back a pending delete; false if there was none (too late, or never asked).
    pub fn undo_delete(&self, conversation_id: i64) -> bool {
        self.0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .remove(&conversation_id)
            .is_some()
    }

    /// Carries out every pending delete now.
    pub async fn flush_deletes(&self) {
        let ids: Vec<i64> = self
            .0
            .pending_deletes
            .lock()
            .expect("pending deletes")
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            if let Err(e) = self.delete(id).await {
                tracing::warn!(conversation = id, error = %e, "delete failed");
            }
        }
    }

    /// A new chat, with the system prompt of the settings and the model in use.
    pub async fn create_conversation(&self) -> UiResult<Conversation> {
        let settings = Settings::load(&self.0.store).await;
        self.create_conversation_with("New chat", &settings.system_prompt)
            .await
    }

    pub async fn create_conversation_with(
        &self,
        title: &str,
        system_prompt: &str,
    ) -> UiResult<Conversation> {
        let model = match self.model_state() {
            ModelState::Ready { info } => info.name,
            _ => String::new(),
        };
        Ok(self
            .0
            .store
            .create_conversation(title, &model, system_prompt, "{}")
            .await?)
    }

    /// A new chat that already holds `turns` (an API client's earlier messages, oldest first),
    /// titled from its first user message. Returns it and the id of its last message.
    pub async fn create_with_turns(
        &self,
        system_prompt: &str,
        turns: &[(Role, String)],
    ) -> UiResult<(Conversation, Option<i64>)> {
        // Every text is checked before anything is written: a bad one leaves no half chat.
        let mut checked = Vec::with_capacity(turns.len());
        for (role, text) in turns {
            checked.push((*role, MessageText::parse(text)?));
        }
        let first = turns
            .iter()
            .find(|(r, _)| *r == Role::User)
            .map(|(_, t)| title_from(t))
            .unwrap_or_else(|| "New chat".into()); // named by its first message when sent
        let conv = self.create_conversation_with(&first, system_prompt).await?;
        let checked: Vec<_> = checked
            .into_iter()
            .map(|(r, t)| (if r == Role::Assistant { r } else { Role::User }, t))
            .collect();
        let last = self.0.store.add_messages(conv.id, &checked).await?;
        self.meaning_wake();
        Ok((conv, last))
    }

    /// The id of the chat's last message, if any.
    pub async fn last_message_id(&self, conversation_id: i64) -> UiResult<Option<i64>> {
        let last = self
            .0
            .store
            .messages_before(conversation_id, None, 1)
            .await?;
        Ok(last.first().map(|m| m.id))
    }

    pub async fn conversation(&self, id: i64) -> UiResult<Conversation> {
        Ok(self.0.store.conversation(id).await?)
    }

    /// The newest page of a chat's messages before message `before` (`None`: the latest),
    /// oldest first, as the window shows them.
    pub async fn messages(
        &self,
        conversation_id: i64,
        before: Option<i64>,
    ) -> UiResult<Vec<Message>> {
        self.0.store.conversation(conversation_id).await?;
        let mut page = self
            .0
            .store
            .messages_before(conversation_id, before, MESSAGE_PAGE)
            .await?;
        page.reverse();
        Ok(page)
    }

    pub async fn rename(&self, conversation_id: i64, title: &str) -> UiResult<()> {
        Ok(self
            .0
            .store
            .rename_conversation(conversation_id, title)
            .await?)
    }

    /// Deletes a chat: its reply stops, its memory and snapshot go, then its transcript.
    pub async fn delete(&self, conversation_id: i64) -> UiResult<()> {
        if let Some(c) = self
            .0
            .replies
            .lock()
            .expect("replies")
            .get(&conversation_id)
        {
            c.cancel();
        }
        if let Ok(b) = self.backend() {
            b.forget(conversation_id);
        }
        self.0
            .gauge_counts
            .lock()
            .expect("gauge counts")
            .remove(&conversation_id);
        // Also when no model is loaded: a snapshot must never outlive its conversation.
        let _ = std::fs::remove_file(sinkchat_engine::engine::snapshot_path(
            &self.snapshot_dir(),
            conversation_id,
        ));
        Ok(self.0.store.delete_conversation(conversation_id).await?)
    }

    pub async fn search(&self, query: &str) -> UiResult<Vec<SearchHit>> {
        let mut hits = self.0.store.search(query, 50).await?;
        if query.trim().is_empty() || !self.settings().await.recall_meaning {
            return Ok(hits);
        }
        // Under the word matches, up to ten more found by meaning (#36).
        let found: Vec<i64> = hits.iter().filter_map(|h| h.message_id).collect();
        match self.search_by_meaning(query, &found, 10).await {
            Ok(more) => hits.extend(more),
            Err(e) => tracing::warn!(error = %e, "search by meaning failed; words only"),
        }
        Ok(hits)
    }

    /// The user moved to another chat: its cache goes to disk (a snapshot), so it comes back at
    /// once later without holding memory now.
    pub fn leave(&self, conversation_id: i64) {
        if !self.is_busy(conversation_id) {
            if let Ok(b) = self.backend() {
                b.park(conversation_id);
            }
        }
    }

    /// What the model holds of the chat now, for the gauge (`None`: nothing live).
    pub async fn memory(&self, conversation_id: i64) -> Option<MemoryView> {
        let mut view = self.raw_memory(conversation_id).await?;
        self.steady_gauge(conversation_id, &mut view.stats);
        Some(view)
    }

    async fn raw_memory(&self, conversation_id: i64) -> Option<MemoryView> {
        let backend = self.backend().ok()?;
        if let Some(v) = backend.memory(conversation_id) {
            return Some(v);
        }
        // Parked on disk (after a restart, say): its snapshot's header knows where the window
        // begins, so the gauge and the memory line show before the next reply.
        let key = self
            .0
            .store
            .conversation(conversation_id)
            .await
            .ok()?
            .cache_key;
        tokio::task::spawn_blocking(move || backend.parked_memory(conversation_id, &key))
            .await
            .ok()
            .flatten()
    }

    /// The gauge's counters as this chat has shown them: never lower than before (see
    /// [`crate::events::SteadyCounts`]).
    pub(crate) fn steady_gauge(&self, conversation_id: i64, g: &mut crate::Gauge) {
        self.0
            .gauge_counts
            .lock()
            .expect("gauge counts")
            .entry(conversation_id)
            .or_default()
            .apply(g);
    }

    /// Whether a reply is being written in the chat now.
    pub fn is_busy(&self, conversation_id: i64) -> bool {
        self.0
            .replies
            .lock()
            .expect("replies")
            .contains_key(&conversation_id)
    }

    /// Stops every reply in flight.
    pub fn stop_all(&self) {
        for c in self.0.replies.lock().expect("replies").values() {
            c.cancel();
        }
    }

    /// Stops the chat's reply; false if none was running.
    pub fn stop(&self, conversation_id: i64) -> bool {
        match self
            .0
            .replies
            .lock()
            .expect("replies")
            .get(&conversation_id)
        {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    pub async fn settings(&self) -> Settings {
        Settings::load(&self.0.store).await
    }

    /// Saves the settings after checking them; new replies use them at once. A cache that
    /// would not fit in the memory free now (for the chats the engine keeps ready) is refused
    /// with the figures. The door that runs the local server then applies its switch.
    pub async fn save_settings(&self, settings: Settings) -> UiResult<Settings> {
        settings.validate()?;
        // A window too short to keep the system prompt for good is refused in words, with
        // the floor (#34: it used to be accepted, and the prompt silently scrolled away). Only
        // when the window, the prompt or the choice to keep it changes: a settings file saved
        // before the floor existed loads and saves as it is.
        let saved = Settings::load(&self.0.store).await;
        let changed = saved.cache.window != settings.cache.window
            || saved.system_prompt != settings.system_prompt
            || saved.pin_system_prompt != settings.pin_system_prompt;
        // A model on a server keeps its own context (the server's size, checked per request
        // in words): the window setting is this computer's, for a model here.
        let remote = self.backend().is_ok_and(|b| b.is_remote());
        if changed && settings.pin_system_prompt && !remote {
            let opening = self
                .backend()
                .ok()
                .and_then(|b| b.opening_tokens(&settings.system_prompt).ok())
                .unwrap_or_else(|| crate::settings::estimate_tokens(&settings.system_prompt));
            let floor = crate::settings::window_floor(opening);
            if settings.cache.window < floor {
                return Err(UiError::new(
                    ErrorCode::InvalidSettings,
                    format!(
                        "To keep the assistant's instructions in mind for good, it must keep at \
                         least about {} words of the chat in mind: the \
                         instructions take about {} words and may use half. Choose more, or \
                         shorten the instructions.",
                        crate::settings::words(floor),
                        crate::settings::words(opening)
                    ),
                ));
            }
        }
        if let Ok(backend) = self.backend() {
            backend
                .check_cache_memory(&settings.cache, sinkchat_engine::engine::LIVE_CONVERSATIONS)
                .map_err(|m| {
                    let mut m = m;
                    m[..1].make_ascii_uppercase();
                    UiError::new(ErrorCode::InvalidSettings, m + ".")
                })?;
        }
        settings.save(&self.0.store).await?;
        let budget = settings.snapshot_budget_bytes();
        self.0.snapshot_budget.store(budget, Ordering::Relaxed);
        if let Ok(backend) = self.backend() {
            backend.set_snapshot_budget(budget);
        }
        // A smaller budget takes effect now, not at the next park.
        let dir = self.snapshot_dir();
        tokio::task::spawn_blocking(move || {
            sinkchat_engine::engine::enforce_snapshot_budget(&dir, budget)
        })
        .await
        .ok();
        let hook = self.0.server.read().expect("server").1.clone();
        if let Some(hook) = hook {
            hook(settings.clone()).await;
        }
        Ok(settings)
    }
}
