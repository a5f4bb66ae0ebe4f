-- Pins (#19): a message the user marked "keep in memory" joins the pinned start of its chat
-- (with the system prompt) until it is unpinned. A flag on the message: it goes with the
-- message when a regenerate or an edit removes it, and with the chat when the chat is deleted.
ALTER TABLE messages ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));
CREATE INDEX messages_pinned ON messages(conversation_id, id) WHERE pinned = 1;
