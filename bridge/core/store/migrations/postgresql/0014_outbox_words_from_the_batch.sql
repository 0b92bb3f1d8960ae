-- a worker's batch writes its outbox payloads' search words itself; the trigger indexes every other insert
-- Migration 13's statement trigger split every outbox payload (a ~16 KB FHIR bundle) with a regular
-- expression on the server: about 0.5 ms of server CPU per payload, a third of the server's CPU per
-- message in benchmarks/pipeline_postgres.py. A worker's batch (PostgresStore._insert_outbox) now
-- splits an ASCII payload itself (a byte translation and a split in C: about 0.06 ms), sends each
-- payload's distinct words with its row, and inserts its content_words rows in the same statement;
-- the server only builds the tsvector (about 0.05 ms). A payload that is not plain ASCII (or holds a
-- NUL byte) still gets bridge_words on the server, in that statement, so the words are the same in
-- every case. While that statement runs, the transaction-local setting bridge.outbox_words is
-- 'given' and the trigger leaves the rows to it; every other insert (bridge store copy, anything
-- written by hand) is still indexed by the trigger, as before.
CREATE OR REPLACE FUNCTION bridge_index_outbox_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('bridge.outbox_words', true) = 'given' THEN
        RETURN NULL;  -- the inserting statement wrote these rows' words itself
    END IF;
    INSERT INTO content_words (message_id, words)
        SELECT message_id, bridge_words(payload) FROM new_rows
        WHERE payload IS NOT NULL AND length(payload) > 0;
    RETURN NULL;
END $$;
