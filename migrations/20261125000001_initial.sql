-- SinkChat's transcripts. Forward-only: never edit a migration that has shipped.

CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    title         TEXT    NOT NULL DEFAULT 'New chat',
    model         TEXT    NOT NULL DEFAULT '',
    system_prompt TEXT    NOT NULL DEFAULT '',
    -- JSON: sampling and cache settings of this conversation.
    settings      TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,  -- unix milliseconds
    updated_at    INTEGER NOT NULL
);
CREATE INDEX conversations_by_update ON conversations(updated_at DESC, id DESC);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('complete', 'streaming', 'stopped', 'failed', 'interrupted')),
    error           TEXT,
    tokens          INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';

-- Full-text search over contents and titles. Plain FTS5 tables (each keeps its own copy of the
-- text) kept in step by triggers. FTS5's own 'secure-delete' option left a "malformed inverted
-- index" in integrity_check after deletes with the bundled SQLite 3.46, so a delete instead
-- ends with the 'optimize' command (see Store::delete_conversation), which rewrites the index
-- without the deleted words.
CREATE VIRTUAL TABLE messages_fts USING fts5(content);
CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
END;
CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
    UPDATE messages_fts SET content = new.content WHERE rowid = old.id;
END;

CREATE VIRTUAL TABLE conversations_fts USING fts5(title);
CREATE TRIGGER conversations_ai AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER conversations_ad AFTER DELETE ON conversations BEGIN
    DELETE FROM conversations_fts WHERE rowid = old.id;
END;
CREATE TRIGGER conversations_au AFTER UPDATE OF title ON conversations BEGIN
    UPDATE conversations_fts SET title = new.title WHERE rowid = old.id;
END;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
