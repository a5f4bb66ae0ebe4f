-- Search and recall find the forms of a word (#36): "zucchinis" finds "zucchini", "gardens"
-- finds "garden". Both full-text indexes are rebuilt with FTS5's porter stemmer over the
-- unicode61 tokenizer (which folds case and accents, as before). Rows keep their ids; the
-- triggers that keep the indexes in step are recreated unchanged. secure_delete (on for every
-- connection) zeroes the pages the old indexes leave.
DROP TRIGGER messages_ai;
DROP TRIGGER messages_ad;
DROP TRIGGER messages_au;
DROP TRIGGER conversations_ai;
DROP TRIGGER conversations_ad;
DROP TRIGGER conversations_au;
DROP TABLE messages_fts;
DROP TABLE conversations_fts;

CREATE VIRTUAL TABLE messages_fts USING fts5(content, tokenize = 'porter unicode61');
CREATE VIRTUAL TABLE conversations_fts USING fts5(title, tokenize = 'porter unicode61');
INSERT INTO messages_fts(rowid, content) SELECT id, content FROM messages;
INSERT INTO conversations_fts(rowid, title) SELECT id, title FROM conversations;

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
