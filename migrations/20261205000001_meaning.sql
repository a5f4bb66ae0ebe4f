-- Vectors of meaning (#36): one per finished message (complete or stopped), made by the
-- meaning model (all-MiniLM-L6-v2, 384 numbers of length 1) on a background task, stored as 384
-- signed bytes (the vector scaled so that its largest number is +-127: 384 bytes a message, and
-- cosines within about 1% of the full vector's).
--
-- vectors_pending lists the finished messages that have no vector yet: the triggers below
-- add a message when it is finished (saved whole, or a reply closed), or when a finished
-- message's text or status changes; the background task takes the newest first, and drops an
-- entry only with the vector of the text it read. A message deleted (delete, edit, regenerate)
-- takes its vector and its entry with it; secure_delete (on for every connection) zeroes the
-- pages they leave.
CREATE TABLE message_vectors (
    message_id INTEGER PRIMARY KEY,
    vector     BLOB    NOT NULL
);
CREATE TABLE vectors_pending (
    message_id INTEGER PRIMARY KEY
);

CREATE TRIGGER vectors_ai AFTER INSERT ON messages
WHEN new.status IN ('complete', 'stopped') BEGIN
    INSERT OR IGNORE INTO vectors_pending(message_id) VALUES (new.id);
END;
CREATE TRIGGER vectors_au AFTER UPDATE OF content, status ON messages BEGIN
    DELETE FROM message_vectors WHERE message_id = new.id;
    DELETE FROM vectors_pending WHERE message_id = new.id;
    INSERT INTO vectors_pending(message_id)
        SELECT new.id WHERE new.status IN ('complete', 'stopped');
END;
CREATE TRIGGER vectors_ad AFTER DELETE ON messages BEGIN
    DELETE FROM message_vectors WHERE message_id = old.id;
    DELETE FROM vectors_pending WHERE message_id = old.id;
END;

-- Every history already here is embedded once, in the background, after the upgrade.
INSERT INTO vectors_pending(message_id)
    SELECT id FROM messages WHERE status IN ('complete', 'stopped');
