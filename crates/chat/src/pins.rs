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
            let budget = Settings::load(&self.0.store).await.cache.pin_budget();
            if let Ok(backend) = self.backend() {
                let need = backend.opening_tokens(&with_pins(&conv.system_prompt, &pins))?;
                if need > budget {
                    return Err(UiError::new(
                        ErrorCode::PinBudget,
                        format!(
                            "There is no room to pin this message: the pinned start of the chat \
                             would take {need} tokens, and at most {budget} (half of the memory \
                             window set in Settings) can be pinned. Unpin another message, pin a \
                             shorter one, or make the window larger."
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
