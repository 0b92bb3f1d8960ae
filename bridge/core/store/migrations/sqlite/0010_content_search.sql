-- content search over payloads (FTS5) and search by message type
-- Two contentless FTS5 indexes (they hold the index only, not a second copy of the text): the raw
-- input of every message and the encoded payload of every outbox row, each row's first 256 KiB
-- (the same bound as PostgreSQL's, whose tsvector has a size limit). Triggers keep them in step in the
-- transaction that writes the row; a delete passes the same values, as a contentless index needs,
-- so a pruned message's id (which SQLite may reuse) matches nothing afterwards.
CREATE VIRTUAL TABLE message_text USING fts5(body, content='', tokenize='unicode61');
CREATE VIRTUAL TABLE outbox_text USING fts5(body, content='', tokenize='unicode61');
CREATE TRIGGER message_text_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_text(rowid, body) VALUES (new.id, substr(CAST(new.raw AS TEXT), 1, 262144));
END;
CREATE TRIGGER message_text_delete AFTER DELETE ON messages BEGIN
    INSERT INTO message_text(message_text, rowid, body)
        VALUES ('delete', old.id, substr(CAST(old.raw AS TEXT), 1, 262144));
END;
CREATE TRIGGER outbox_text_insert AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_text(rowid, body) VALUES (new.id, substr(CAST(new.payload AS TEXT), 1, 262144));
END;
CREATE TRIGGER outbox_text_delete AFTER DELETE ON outbox BEGIN
    INSERT INTO outbox_text(outbox_text, rowid, body)
        VALUES ('delete', old.id, substr(CAST(old.payload AS TEXT), 1, 262144));
END;
-- what is already stored is indexed now
INSERT INTO message_text(rowid, body) SELECT id, substr(CAST(raw AS TEXT), 1, 262144) FROM messages;
INSERT INTO outbox_text(rowid, body) SELECT id, substr(CAST(payload AS TEXT), 1, 262144) FROM outbox;
-- search by message type, newest first, and the list of types the search form offers
CREATE INDEX messages_message_type ON messages(message_type, id) WHERE message_type IS NOT NULL;
