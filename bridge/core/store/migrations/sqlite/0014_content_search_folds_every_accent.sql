-- content search: a letter with two accents folds too (remove_diacritics 2), as on PostgreSQL
-- FTS5's unicode61 tokenizer drops diacritics from a letter that carries one (ü, é, ñ) by default,
-- but left a letter with two as it was (Vietnamese ễ, ấ: "Nguyen" did not find "Nguyễn"), where
-- PostgreSQL's words (its migration 15) fold every combining mark. 'remove_diacritics 2' folds
-- them all. A contentless index cannot be rebuilt from itself: the two indexes start again empty and
-- the engine's content indexer fills them from the stored rows in batches after the upgrade (tens of
-- thousands of rows a second); a content search meanwhile first waits for it to catch up.
DROP TABLE message_text;
DROP TABLE outbox_text;
CREATE VIRTUAL TABLE message_text USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE outbox_text USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2');
UPDATE content_index SET last_id = 0;
