-- content search: accents do not matter (Muller finds Müller), as on SQLite
-- An analyst types a patient's name the way the keyboard allows: "Pena" for "Peña", "Jose" for
-- "José". SQLite's FTS5 tokenizer drops diacritics; PostgreSQL's words (migration 13) kept them,
-- so the same search found different messages on the two backends. bridge_words now folds a word's
-- accents before it is stored: the text is decomposed (NFD), its combining diacritical marks
-- (U+0300 to U+036F) dropped, and what is left composed again (NFC, so Hangul and the like are as
-- before). Letters that are letters of their own, not an accented letter (ø, ł, ß, đ), stay, as on
-- SQLite. A text whose every character is one byte (ASCII, or any single-byte server encoding) is
-- left as it is without the two normalisations; normalize() needs PostgreSQL 13 and, for anything
-- but ASCII, a UTF8 database, where only such texts reach it. The search side (content_clause in
-- bridge/core/store/postgres.py) asks for each word as typed and folded, so a search with accents
-- finds rows of either kind. Rows already indexed with accented words are indexed again here.
CREATE FUNCTION bridge_fold_accents(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(t) = length(t) THEN t
                ELSE normalize(regexp_replace(normalize(t, NFD), '[\u0300-\u036f]', '', 'g'), NFC) END
$$;
CREATE OR REPLACE FUNCTION bridge_words(payload bytea) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_to_tsvector(array_remove(
        regexp_split_to_array(bridge_fold_accents(lower(bridge_payload_text(payload))), '[^[:alnum:]]+'), ''))
$$;
CREATE TEMPORARY TABLE bridge_refold AS
    SELECT DISTINCT message_id FROM content_words
    WHERE octet_length(words::text) <> length(words::text)
      AND bridge_fold_accents(words::text) <> words::text;
DELETE FROM content_words WHERE message_id IN (SELECT message_id FROM bridge_refold);
INSERT INTO content_words (message_id, words)
    SELECT id, bridge_words(raw) FROM messages
    WHERE raw IS NOT NULL AND id IN (SELECT message_id FROM bridge_refold);
INSERT INTO content_words (message_id, words)
    SELECT message_id, bridge_words(payload) FROM outbox
    WHERE payload IS NOT NULL AND length(payload) > 0 AND message_id IN (SELECT message_id FROM bridge_refold);
DROP TABLE bridge_refold;
