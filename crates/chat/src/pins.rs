//! Pinned messages: kept in the model's memory with the system prompt however far the window
//! moves on, within the pin budget (half the window, as the system prompt may take).

use sinkchat_store::{Message, MessageStatus, Role};

use crate::error::{ErrorCode, UiError, UiResult};
use crate::settings::Settings;
use crate::ChatService;

impl ChatService {
    /// Pins a message (keeps it in the model's memory with the system prompt, however far
    /// the window moves on) or unpins it. The pinned part of a chat may take at most half of
    /// the memory window, as the system prompt may; a pin past that is refused in words. The
    /// chat's memory is rebuilt with the new pinned start at its next reply.
    pub async fn pin_message(
        &self,
        conversation_id: i64,
        message_id: i64,
        pinned: bool,
    ) -> UiResult<Message> {
        let conv = self.0.store.conversation(conversation_id).await?;
        let msg = self.0.store.message(message_id).await?;
        if msg.conversation_id != conversation_id {
            return Err(sinkchat_store::Error::NoSuchMessage(message_id).into());
        }
        if pinned && !msg.pinned {
            if msg.status == MessageStatus::Streaming {
                return Err(UiError::new(
                    ErrorCode::PinRefused,
                    "This reply is still being written; pin it when it is finished.",
                ));
            }
            if msg.content.trim().is_empty() {
                return Err(UiError::new(
                    ErrorCode::PinRefused,
                    "An empty message cannot be pinned.",
                ));
            }
            let mut pins = self.0.store.pinned_messages(conversation_id).await?;
            pins.push(msg.clone());
            pins.sort_by_key(|m| m.id);
            let cache = Settings::load(&self.0.store).await.cache;
            if let Ok(backend) = self.backend() {
                let budget = backend.pin_budget(&cache);
                let need = backend.opening_tokens(&with_pins(&conv.system_prompt, &pins))?;
                if need > budget {
                    // In words (#34): the gauge shows no such token counts; a share does.
                    let share = (need * 100).div_ceil(budget.max(1));
                    return Err(UiError::new(
                        ErrorCode::PinBudget,
                        format!(
                            "There is no room to keep this message in memory: with it, what is \
                             kept for good would need {share}% of the room set aside for that \
                             (half of the model's memory). Unpin another message, keep a \
                             shorter one, or give the model more memory in Settings."
                        ),
                    ));
                }
            }
        }
        Ok(self
            .0
            .store
            .set_pinned(conversation_id, message_id, pinned)
            .await?)
    }
}

/// The system prompt with the chat's pinned messages after it, marked for the model.
pub fn with_pins(system_prompt: &str, pins: &[Message]) -> String {
    if pins.is_empty() {
        return system_prompt.to_string();
    }
    let mut s = system_prompt.trim_end().to_string();
    if !s.is_empty() {
        s.push_str("\n\n");
    }
    s.push_str(
        "The user pinned these messages from earlier in this conversation; keep them in mind:",
    );
    for m in pins {
        let who = if m.role == Role::User {
            "The user"
        } else {
            "You"
        };
        s.push_str(&format!("\n- {who} said: {}", m.content.trim()));
    }
    s
}
