-- content search over payloads (full text, GIN) and search by message type
-- A payload is bytes in any encoding: bridge_payload_text reads it as UTF-8 and, where it is not
-- (a binary payload), as escaped text, so indexing never fails an insert. Only the first 256 KiB
-- of each payload is indexed: a tsvector is limited to 1 MB, and an insert must never fail on size.
-- The 'simple' configuration lowercases words without stemming: identifiers and names stay whole.
CREATE FUNCTION bridge_payload_text(payload bytea) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(substring(payload FROM 1 FOR 262144), 'UTF8');
EXCEPTION WHEN others THEN
    RETURN encode(substring(payload FROM 1 FOR 262144), 'escape');
END $$;
CREATE INDEX messages_raw_text ON messages USING GIN (to_tsvector('simple', bridge_payload_text(raw)));
CREATE INDEX outbox_payload_text ON outbox USING GIN (to_tsvector('simple', bridge_payload_text(payload)));
CREATE INDEX messages_message_type ON messages(message_type, id) WHERE message_type IS NOT NULL;
