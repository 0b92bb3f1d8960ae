-- content search in a table of its own, written once per inserted row (the GIN indexes leave the queue tables)
-- The expression indexes of migration 11 sat on messages and outbox, the two tables every claim,
-- result and delivery outcome updates. An update that changes an indexed column (status does) is
-- not HOT, and PostgreSQL then inserts into every index of the table, computing its expressions
-- again: each claim, result and settle decompressed the payload, ran bridge_payload_text (a
-- subtransaction, for its EXCEPTION block) and to_tsvector over it, and wrote GIN entries. Sampled
-- on a 2-core host, those two statements were most of the server's CPU in the pipeline benchmark.
-- Now each message's input and each outbox row's payload is analysed once, when its row is
-- inserted (statement triggers: one INSERT ... SELECT per statement, however many rows), into
-- content_words, which nothing updates; one tsvector per row, as before.
-- The words are what content_terms (bridge/core/store/reads.py) and SQLite's index call words:
-- runs of letters and digits, lowercased; split with a regular expression rather than the text
-- search parser, which took about twice the CPU on a FHIR bundle and kept tokens a search could
-- never name ('12.5', 'x.org/y', '-06' from a date), while '12', '5' or 'org' found nothing.
CREATE TABLE content_words (
    message_id BIGINT NOT NULL,
    words tsvector NOT NULL
);
CREATE INDEX content_words_words ON content_words USING GIN (words);
CREATE INDEX content_words_message ON content_words(message_id);  -- retention deletes by message
CREATE FUNCTION bridge_words(payload bytea) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_to_tsvector(array_remove(
        regexp_split_to_array(lower(bridge_payload_text(payload)), '[^[:alnum:]]+'), ''))
$$;
CREATE FUNCTION bridge_index_message_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO content_words (message_id, words)
        SELECT id, bridge_words(raw) FROM new_rows WHERE raw IS NOT NULL;
    RETURN NULL;
END $$;
CREATE FUNCTION bridge_index_outbox_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO content_words (message_id, words)
        SELECT message_id, bridge_words(payload) FROM new_rows
        WHERE payload IS NOT NULL AND length(payload) > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_content_words AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bridge_index_message_words();
CREATE TRIGGER outbox_content_words AFTER INSERT ON outbox REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bridge_index_outbox_words();
INSERT INTO content_words (message_id, words)
    SELECT id, bridge_words(raw) FROM messages WHERE raw IS NOT NULL;
INSERT INTO content_words (message_id, words)
    SELECT message_id, bridge_words(payload) FROM outbox
    WHERE payload IS NOT NULL AND length(payload) > 0;
DROP INDEX messages_raw_text;
DROP INDEX outbox_payload_text;
