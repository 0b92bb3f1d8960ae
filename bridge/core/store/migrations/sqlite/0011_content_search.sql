-- content search over payloads (FTS5, indexed behind the intake) and search by message type
-- Two contentless FTS5 indexes (the index only, not a second copy of the text): the raw input of
-- every message and the encoded payload of every outbox row, each row's first 256 KiB (the same bound
-- as PostgreSQL's, whose tsvector has a size limit). They are filled in batches by
-- SQLiteStore.index_content, not by insert triggers: an FTS5 insert in each intake commit cost 3.5x
-- the commit's CPU (benchmarks/content_index.py). content_index holds the last id indexed per table.
CREATE VIRTUAL TABLE message_text USING fts5(body, content='', tokenize='unicode61');
CREATE VIRTUAL TABLE outbox_text USING fts5(body, content='', tokenize='unicode61');
CREATE TABLE content_index (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
INSERT INTO content_index VALUES ('messages', 0), ('outbox', 0);
-- A deleted (pruned) row leaves the index with the values it was indexed with, as a contentless
-- index needs; a row not indexed yet is not in it. SQLite may give a new row the id of a deleted
-- newest one, so the mark never stays above the newest id left: that id will be indexed again.
CREATE TRIGGER message_text_delete AFTER DELETE ON messages
    WHEN old.id <= (SELECT last_id FROM content_index WHERE name = 'messages') BEGIN
    INSERT INTO message_text(message_text, rowid, body)
        VALUES ('delete', old.id, substr(CAST(old.raw AS TEXT), 1, 262144));
    UPDATE content_index SET last_id = (SELECT COALESCE(MAX(id), 0) FROM messages)
        WHERE name = 'messages' AND last_id > (SELECT COALESCE(MAX(id), 0) FROM messages);
END;
CREATE TRIGGER outbox_text_delete AFTER DELETE ON outbox
    WHEN old.id <= (SELECT last_id FROM content_index WHERE name = 'outbox') BEGIN
    INSERT INTO outbox_text(outbox_text, rowid, body)
        VALUES ('delete', old.id, substr(CAST(old.payload AS TEXT), 1, 262144));
    UPDATE content_index SET last_id = (SELECT COALESCE(MAX(id), 0) FROM outbox)
        WHERE name = 'outbox' AND last_id > (SELECT COALESCE(MAX(id), 0) FROM outbox);
END;
-- search by message type, newest first, and the list of types the search form offers
CREATE INDEX messages_message_type ON messages(message_type, id) WHERE message_type IS NOT NULL;
