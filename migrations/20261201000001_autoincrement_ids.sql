-- Ids are never reused (AUTOINCREMENT), and each conversation gets a random key that its cache
-- snapshot carries: a snapshot left behind by a deleted chat (a crash between the delete and
-- the snapshot's removal, a second instance) can never be restored into another chat.
--
-- SQLite cannot add AUTOINCREMENT to a table, so both tables are rebuilt. The migration runs
-- in sqlx's transaction with foreign keys on (sqlx's SQLite migrator ignores
-- `-- no-transaction`, and `PRAGMA foreign_keys` is a no-op inside a transaction), so the order
-- matters: dropping the old `conversations` would cascade into every table that references it.
-- The new messages table references the new conversations table, the old messages table goes
-- first, and the renames carry the reference over (SQLite >= 3.26 rewrites foreign keys on
-- RENAME). Triggers are dropped before their tables so no FTS row is touched; the FTS tables
-- keep their rows (same ids) and the triggers are recreated.

CREATE TABLE conversations_v2 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    title         TEXT    NOT NULL DEFAULT 'New chat',
    model         TEXT    NOT NULL DEFAULT '',
    system_prompt TEXT    NOT NULL DEFAULT '',
    settings      TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- 128 random bits, written into the conversation's cache snapshot and checked on restore.
    cache_key     TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16))))
);
INSERT INTO conversations_v2 (id, title, model, system_prompt, settings, created_at, updated_at)
    SELECT id, title, model, system_prompt, settings, created_at, updated_at FROM conversations;

CREATE TABLE messages_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations_v2(id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('complete', 'streaming', 'stopped', 'failed', 'interrupted')),
    error           TEXT,
    tokens          INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO messages_v2 (id, conversation_id, role, content, status, error, tokens, created_at, updated_at)
    SELECT id, conversation_id, role, content, status, error, tokens, created_at, updated_at FROM messages;

DROP TRIGGER messages_ai;
DROP TRIGGER messages_ad;
DROP TRIGGER messages_au;
DROP TRIGGER conversations_ai;
DROP TRIGGER conversations_ad;
DROP TRIGGER conversations_au;
DROP TABLE messages;
DROP TABLE conversations;
ALTER TABLE conversations_v2 RENAME TO conversations;
ALTER TABLE messages_v2 RENAME TO messages;

CREATE INDEX conversations_by_update ON conversations(updated_at DESC, id DESC);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';

CREATE TRIGGER conversations_ai AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER conversations_ad AFTER DELETE ON conversations BEGIN
    DELETE FROM conversations_fts WHERE rowid = old.id;
END;
CREATE TRIGGER conversations_au AFTER UPDATE OF title ON conversations BEGIN
    UPDATE conversations_fts SET title = new.title WHERE rowid = old.id;
END;
CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
END;
CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
    UPDATE messages_fts SET content = new.content WHERE rowid = old.id;
END;
