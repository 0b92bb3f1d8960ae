"""Search by message type, destination and content (issue 15), on both backends: the content index
covers raw input and encoded outbox payloads, follows deletes, and refuses a search with no word."""

from __future__ import annotations

import pytest

from bridge.core.store.base import NewOutbox, ProcessingResult
from bridge.core.store.reads import content_terms
from bridge.core.store.sqlite import SQLiteStore
from bridge.errors import BridgeError
from tests import pg

ADT = b"MSH|^~\\&|EHR|CLINIC|BRIDGE|HOSP|20260301120000||ADT^A04|C1|P|2.5\rPID|1||MRN77^^^H||Testpatient^Jane\r"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(str(tmp_path / "store.db"))
        yield s
        s.close()
        return
    from bridge.core.store import open_store

    with pg.database() as url:
        s = open_store(url)
        yield s
        s.close()


def stored(store, raw: bytes, message_type: str, payloads: dict[str, bytes]) -> int:
    """A message received, claimed and routed to ``payloads`` (destination → encoded payload)."""
    message_id, _ = store.receive("ch", "hl7v2", raw, dedupe_key=None,
                                  header={"message_type": message_type, "order_key": None}, origin={})
    claim = store.claim_message("worker", 60)
    assert claim.id == message_id
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=[
        NewOutbox(name, payload, "text/plain", "txt", None, "strict") for name, payload in payloads.items()]))
    return message_id


def ids(messages) -> list[int]:
    return [m.id for m in messages]


def caught_up(store):
    """The store with its content index up to date (the engine's indexer, or the API before a search)."""
    while store.index_content():
        pass
    return store


def test_content_search_finds_words_in_raw_input_and_in_sent_payloads(store):
    adt = stored(store, ADT, "ADT^A04", {"ehr": b'{"resourceType": "Bundle", "id": "bundle-ehr-1"}'})
    other = stored(store, ADT.replace(b"Testpatient", b"Otherperson"), "ADT^A08",
                   {"lab": b"ORM payload with LABCODE-991"})
    caught_up(store)
    assert ids(store.search(text="testpatient")) == [adt]  # case does not matter
    assert ids(store.search(text="Testpatient Jane")) == [adt]  # every word is required
    assert ids(store.search(text="Testpatient Nobody")) == []
    assert ids(store.search(text="LABCODE")) == [other]  # a word of an outbox payload only
    assert ids(store.search(text="bundle-ehr-1")) == [adt]  # split into words like the payload
    assert ids(store.search(text="Testpat*")) == [adt]  # a prefix
    assert ids(store.search(text="MRN77")) == [other, adt]  # newest first
    assert set(ids(store.search(text="HOSP"))) == {adt, other}
    assert ids(store.search(text="HOSP", message_type="ADT^A08")) == [other]
    assert ids(store.search(text="HOSP", destination="ehr")) == [adt]


def test_filters_by_message_type_and_destination_and_lists_the_types(store):
    adt = stored(store, ADT, "ADT^A04", {"ehr": b"x", "archive": b"y"})
    oru = stored(store, ADT.replace(b"ADT^A04", b"ORU^R01"), "ORU^R01", {"archive": b"z"})
    assert ids(store.search(message_type="ORU^R01")) == [oru]  # no index needed for these
    assert ids(store.search(destination="ehr")) == [adt]
    assert ids(store.search(destination="archive")) == [oru, adt]
    assert store.message_types() == ["ADT^A04", "ORU^R01"]


def test_a_pruned_message_leaves_the_index_and_a_reused_id_is_indexed_again(store):
    stored(store, ADT, "ADT^A04", {"ehr": b"SENTWORD"})
    caught_up(store)
    claim = store.claim_delivery("d", 60)
    store.finish_delivery(claim, "delivered", "ok")
    pruned = store.prune_messages({"ch": (float("inf"), ("delivered",))}, actor="test")
    assert pruned["ch"]["messages"] == 1
    assert store.search(text="Testpatient") == [] and store.search(text="SENTWORD") == []
    again = stored(store, b"MSH|^~\\&|A|B|C|D|20260301||ADT^A04|C2|P|2.5\rPID|1||X||Newperson\r", "ADT^A04",
                   {"ehr": b"other"})  # SQLite gives it the pruned message's id
    caught_up(store)
    assert ids(store.search(text="Newperson")) == [again] and store.search(text="Testpatient") == []


def test_a_message_pruned_before_it_was_indexed_leaves_the_index_whole(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    first = stored(store, ADT, "ADT^A04", {"ehr": b"one"})
    caught_up(store)
    stored(store, ADT.replace(b"Testpatient", b"Laterperson"), "ADT^A04", {"ehr": b"two"})
    while claim := store.claim_delivery("d", 60):
        store.finish_delivery(claim, "delivered", "ok")
    assert store.prune_messages({"ch": (float("inf"), ("delivered",))}, actor="test")["ch"]["messages"] == 2
    assert store.get_message(first) is None
    caught_up(store)
    assert store.search(text="Laterperson") == [] and store.search(text="Testpatient") == []
    assert store._read("INSERT INTO message_text(message_text) VALUES ('integrity-check')") == []
    store.close()


def test_content_terms_are_words_and_a_search_without_one_is_refused():
    assert content_terms('Smith "John" MRN-1*') == [("smith", False), ("john", False), ("mrn", False), ("1", True)]
    with pytest.raises(BridgeError, match="no word"):
        content_terms('" * -')
    with pytest.raises(BridgeError, match="at most 8 words"):
        content_terms("a b c d e f g h i")


def test_words_are_runs_of_letters_and_digits_in_both_backends(store):
    """A date, a decimal, a host or an identifier with ``_`` is found by each of its parts (the
    PostgreSQL index splits like SQLite's, not like the text search parser, which kept '12.5' whole)."""
    adt = stored(store, ADT, "ADT^A04", {"ehr": b'{"valueQuantity": 12.5, "date": "2026-12-06",'
                                                b' "system": "http://x.example.org/ids", "code": "lab_991"}'})
    caught_up(store)
    for text in ("12", "5", "2026", "06", "example", "ids", "lab_991", "lab_9*", "LAB 991"):
        assert ids(store.search(text=text)) == [adt], text
    assert ids(store.search(text="lab_992")) == []


PAYLOADS = {  # destination -> payload: what the batch splits itself, and what it leaves to the server
    "json": b'{"resourceType": "Bundle", "id": "MRN-00012345", "v": 12.5, "url": "http://x.example.org/a_b"}',
    "upper": b"ABC def GHI-jkl\r\nZ9 z9 __x__ ~!@#$%^&*()+={}[]|\\:;\"'<>,.?/`",
    "words-only": b"plain",
    "punctuation-only": b"--- ... ///",
    "nul": b"before\x00after NUL",  # the server reads it as escaped text: '\\000after' gives '000after'
    "utf8": "Müller ÉLODIE straße 東京 naïve-test".encode(),
    "latin1": "Müller invalid utf8".encode("latin-1"),  # escaped text on the server too
    "long": b"x " * 131071 + b"abc" + b"def" * 10 + b" tail",  # 'abcdef...' cut to 'ab' at the 256 KiB limit
}


def test_the_batch_writes_the_same_words_as_the_server_and_each_payload_once(tmp_path):
    """PostgreSQL: a worker batch splits ASCII payloads itself (migration 14) and leaves the rest to
    bridge_words; every row's words are what the server's function gives for its payload, each outbox
    payload has one content_words row (the trigger does not index it again), and an outbox row written
    any other way (bridge store copy, by hand) is still indexed by the trigger."""
    from bridge.core.store import open_store

    with pg.database() as url:
        store = open_store(url)
        try:
            message = stored(store, ADT, "ADT^A04", PAYLOADS)
            with store._tx() as conn:
                rows = conn.execute(
                    "SELECT o.destination, o.payload, bridge_words(o.payload) FROM outbox o WHERE message_id = %s",
                    (message,)).fetchall()
                indexed = [r[0] for r in conn.execute(
                    "SELECT words FROM content_words WHERE message_id = %s", (message,)).fetchall()]
            assert len(rows) == len(PAYLOADS)
            expected = [words for _, _, words in rows] + [None]  # + the raw input's row
            with store._tx() as conn:
                (raw_words,) = conn.execute("SELECT bridge_words(raw) FROM messages WHERE id = %s",
                                            (message,)).fetchone()
            expected[-1] = raw_words
            assert sorted(map(str, indexed)) == sorted(map(str, expected))  # one row each, the server's words
            by_destination = {destination: str(words) for destination, _, words in rows}
            assert "'000after'" in by_destination["nul"] and "'muller'" in by_destination["utf8"]  # folded (migration 15)
            assert by_destination["punctuation-only"] == ""
            assert "'ab'" in by_destination["long"] and "'tail'" not in by_destination["long"]
            for text, found in (("resourcetype", True), ("00012345", True), ("a_b", True), ("Z9", True),
                                ("000after", True), ("Müller", True), ("東京", True), ("ab", True), ("abcdef", False), ("tail", False)):
                assert ids(store.search(text=text)) == ([message] if found else []), text
            with store._tx() as conn:  # any other insert: the trigger indexes it, as before
                conn.execute("INSERT INTO outbox (message_id, destination, status, payload, media_type,"
                             " file_extension, next_attempt_at, created_at) VALUES (%s, 'manual', 'delivered',"
                             " 'HANDWRITTEN payload', 'text/plain', 'txt', 0, 0)", (message,))
            assert ids(store.search(text="handwritten")) == [message]
        finally:
            store.close()


ACCENTED = {  # raw input name -> the searches that must find it (and, below, the ones that must not)
    "Müller": ("muller", "MULLER", "Müller", "MÜLLER", "mu\u0308ller", "mül*"),
    "Mu\u0308ller": ("muller", "Müller"),  # the same name with its accent as a combining mark
    "Peña^José": ("pena jose", "Peña José", "PENA"),
    "Nguyễn": ("nguyen", "Nguyễn", "nguy*"),  # two marks on one letter
    "Łódź": ("łodz", "Łódź"),  # ł is a letter of its own, ó and ź are accented
}


def test_accents_do_not_matter_on_either_backend(store):
    """An analyst types "Pena" for "Peña": both backends fold accents in what they store and in what
    is searched (SQLite's tokenizer with remove_diacritics 2, PostgreSQL's migration 15), the same way,
    in the raw input and in an outbox payload the server splits (not ASCII)."""
    found = {name: stored(store, ADT.replace(b"Testpatient^Jane", name.encode()), "ADT^A04", {})
             for name in ACCENTED}
    payload = stored(store, ADT.replace(b"Testpatient", b"Otherperson"), "ADT^A08",
                     {"ehr": '{"family": "Gonçalves", "given": ["Zoë"]}'.encode()})
    caught_up(store)
    both_mullers = sorted([found["Müller"], found["Mu\u0308ller"]])
    for name, searches in ACCENTED.items():
        for text in searches:
            expected = both_mullers if name in ("Müller", "Mu\u0308ller") else [found[name]]
            assert sorted(ids(store.search(text=text))) == expected, (name, text)
    for text in ("goncalves", "Gonçalves", "zoe", "ZOË"):
        assert ids(store.search(text=text)) == [payload], text
    for text in ("lodz", "mueller", "nguyenx"):  # no invented spellings: ł is not l, ü is not ue
        assert ids(store.search(text=text)) == [], text


def test_postgresql_upgrade_folds_the_words_indexed_before_it(tmp_path):
    """Migration 15 indexes again the rows whose words kept their accents under migration 13's
    bridge_words, so "muller" finds a message stored before the upgrade."""
    from pathlib import Path

    from bridge.core.store import open_store

    old_words = (Path(__file__).resolve().parents[2] / "bridge/core/store/migrations/postgresql"
                 / "0013_content_words_table.sql").read_text()
    old_function = old_words[old_words.index("CREATE FUNCTION bridge_words"):].split("$$;")[0] + "$$;"
    with pg.database() as url:
        store = open_store(url)
        try:
            message = stored(store, ADT.replace(b"Testpatient^Jane", "Müller^Zoë".encode()), "ADT^A04",
                             {"ehr": '{"family": "Müller"}'.encode(), "plain": b"ascii only"})
            with store._tx() as conn:  # back to the store as migration 14 left it
                conn.execute(old_function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
                conn.execute("DROP FUNCTION bridge_fold_accents(text)")
                conn.execute("DELETE FROM content_words")
                conn.execute("INSERT INTO content_words (message_id, words) SELECT id, bridge_words(raw) FROM messages")
                conn.execute("INSERT INTO content_words (message_id, words) SELECT message_id, bridge_words(payload)"
                             " FROM outbox")
                conn.execute("DELETE FROM schema_migrations WHERE version = 15")
            assert ids(store.search(text="muller")) == []
            assert ids(store.search(text="Müller Zoë")) == [message]  # the accented form is still asked for
        finally:
            store.close()
        store = open_store(url)  # migration 15 runs
        try:
            assert store.schema_version() >= 15
            for text in ("muller", "zoe", "Müller", "ascii"):
                assert ids(store.search(text=text)) == [message], text
            with store._tx() as conn:
                rows = conn.execute("SELECT count(*) FROM content_words WHERE message_id = %s", (message,)).fetchone()
            assert rows[0] == 3  # the raw input and two payloads, each once
        finally:
            store.close()


def test_sqlite_upgrade_indexes_every_row_again(tmp_path):
    """SQLite's migration 14 starts the two FTS5 indexes again empty (a contentless index cannot be
    rebuilt from itself); the indexer fills them from the stored rows, and a search then finds them."""
    path = str(tmp_path / "store.db")
    store = SQLiteStore(path)
    message = stored(store, ADT.replace(b"Testpatient^Jane", "Nguyễn^Zoë".encode()), "ADT^A04",
                     {"ehr": b'{"family": "payloadword"}'})
    caught_up(store)
    with store._tx() as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 14")
    store.close()
    store = SQLiteStore(path)  # migration 14 runs again: empty indexes, last_id 0
    try:
        assert [row[0] for row in store._read("SELECT last_id FROM content_index")] == [0, 0]
        caught_up(store)
        for text in ("nguyen", "zoe", "payloadword"):
            assert ids(store.search(text=text)) == [message], text
    finally:
        store.close()
