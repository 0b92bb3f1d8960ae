"""The store's read-only queries, written once for both backends.

SQLite and PostgreSQL answer these reads with the same SQL except for the parameter placeholder
(``?`` against ``%s``), so the Python that builds the queries and turns rows into records lives
here, and each backend mixes it in and supplies two things: ``placeholder`` and ``_read(sql,
params)`` (one query outside any write transaction, rows indexable by position). Writes, claims and
the queue SQL stay in each backend, because there the two engines really differ.
"""

from __future__ import annotations

import abc
import json
import re
import unicodedata
from typing import Any, ClassVar, Sequence

from bridge.core.model.keys import KEY_NAMES
from bridge.errors import BridgeError

from .base import AuditEntry, Event, Hold, OutboxRow, PrescriptionState, StoredMessage

MESSAGE_FIELDS = (
    "id", "channel", "status", "format", "received_at", "updated_at", "sha256", "size", "control_id",
    "sending_application", "sending_facility", "message_type", "patient_id", "encounter_id", "prescription_number",
    "ncpdp_message_id", "trace_id", "error", "replay_of", "origin", "records", "policy_override", "replay_root",
    "replay_destinations",
)
MESSAGE_COLUMNS = ", ".join(MESSAGE_FIELDS)
OUTBOX_COLUMNS = (
    "id, message_id, destination, status, attempts, next_attempt_at, created_at, media_type, "
    "file_extension, order_key, order_mode, last_error, delivered_at, control_id, message_type, "
    "original_message_id, original_outbox_id, resolved_by, resolved_by_message"
)
_PRESCRIPTION_EVENT_FIELDS = ("id", "message_id", "number", "event_type", "matched_by", "from_state", "to_state", "at")
_AUDIT_COLUMNS = "id, at, actor, action, target, detail, prev_hash, hash"


MAX_CONTENT_TERMS = 8


def fold_accents(word: str) -> str:
    """``word`` without its accents (``müller`` -> ``muller``, ``nguyễn`` -> ``nguyen``): decomposed,
    its combining diacritical marks (U+0300 to U+036F) dropped, composed again. Letters of their own
    (``ø``, ``ł``, ``ß``) stay. The same fold as SQLite's tokenizer (``remove_diacritics 2``) and
    PostgreSQL's ``bridge_fold_accents`` (migration 15), so a search means the same on both."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not "\u0300" <= c <= "\u036f"))


def content_terms(text: str) -> list[tuple[str, bool]]:
    """The words of a content search, each with whether it ends in ``*`` (a prefix): letters, digits
    and ``_`` only, as both indexes split payloads into words; at most 8. A search with no word is an
    error, not a match of everything."""
    text = unicodedata.normalize("NFC", text)  # an accent typed as a combining mark is not a word break
    terms = [(m.group(1).lower(), bool(m.group(2))) for m in re.finditer(r"(\w+)(\*?)", text)]
    if not terms:
        raise BridgeError(f"content search: no word to look for in {text[:50]!r} (letters and digits; "
                          "a trailing * matches a prefix)")
    if len(terms) > MAX_CONTENT_TERMS:
        raise BridgeError(f"content search: at most {MAX_CONTENT_TERMS} words, got {len(terms)}")
    return terms


class StoreReads(abc.ABC):
    """Read-only half of the Store interface, shared by SQLiteStore and PostgresStore."""

    placeholder: ClassVar[str] = "?"  # the DB-API paramstyle marker: "?" (qmark) or "%s" (format)

    @abc.abstractmethod
    def _read(self, sql: str, params: Any = ()) -> list[Sequence[Any]]:
        """One query outside any write transaction; each backend reads in its own way (SQLite's busy
        retries, PostgreSQL's autocommit connection from the pool)."""

    def _q(self, sql: str) -> str:
        """The query in this backend's paramstyle: the SQL here is written with ``?`` for every
        parameter, and no statement in this module has a ``?`` anywhere else."""
        if self.placeholder == "?":
            return sql
        return sql.replace("%", "%%").replace("?", self.placeholder)  # (a literal % is %% in format style)

    def _x(self, conn: Any, sql: str, params: Any = ()) -> Any:
        """One statement on an open connection (a write transaction), in this backend's paramstyle."""
        return conn.execute(self._q(sql), params)

    def _select(self, sql: str, params: Any = ()) -> list[Sequence[Any]]:
        return self._read(self._q(sql), params)

    @staticmethod
    def _raw_bytes(value: Any) -> bytes:
        """Hook: a BLOB/bytea column as ``bytes`` (SQLite gives bytes, psycopg may give a memoryview)."""
        return bytes(value)

    @staticmethod
    def _message(row: Sequence[Any]) -> StoredMessage:
        data = dict(zip(MESSAGE_FIELDS, row))
        data["origin"] = json.loads(data["origin"] or "{}")
        data["records"] = json.loads(data["records"]) if data["records"] else None
        data["policy_override"] = bool(data["policy_override"])
        data["replay_destinations"] = json.loads(data["replay_destinations"]) if data["replay_destinations"] else None
        return StoredMessage(**data)

    # --- messages ------------------------------------------------------------------------------

    def get_message(self, message_id):
        rows = self._select(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id=?", (message_id,))
        return self._message(rows[0]) if rows else None

    def get_raw(self, message_id):
        rows = self._select("SELECT raw FROM messages WHERE id=?", (message_id,))
        return self._raw_bytes(rows[0][0]) if rows else None

    def events(self, message_id):
        head = self._select("SELECT received_at, channel, size, origin, replay_of FROM messages WHERE id=?",
                            (message_id,))
        if not head:
            return []
        at, channel, size, origin, replay_of = head[0]
        detail = {"channel": channel, "bytes": size, "origin": json.loads(origin or "{}")}
        if replay_of:
            detail["replay_of"] = replay_of
        received = Event(0, message_id, at, "received", detail)
        rows = self._select("SELECT id, message_id, at, kind, detail FROM events WHERE message_id=? ORDER BY id",
                            (message_id,))
        return [received] + [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def outbox_rows(self, message_id=None, status=None, limit=100):
        where, params = [], []
        for column, value in (("message_id", message_id), ("status", status)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._select(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [OutboxRow(*r) for r in rows]

    def outbox_payloads(self, message_id: int) -> dict[int, bytes]:
        """What each of a message's outbox rows sends (or sent), by outbox id: the encoded payload the
        dashboard shows per destination. An encode failure's row has an empty payload."""
        rows = self._select("SELECT id, payload FROM outbox WHERE message_id=? ORDER BY id", (message_id,))
        return {r[0]: self._raw_bytes(r[1]) for r in rows}

    def search(self, *, status=None, channel=None, keys=None, since=None, until=None, limit=50, before_id=None,
               message_type=None, destination=None, text=None):
        where, params = [], []
        for column, value in (("status", status), ("channel", channel), ("message_type", message_type)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if destination is not None:
            where.append("id IN (SELECT message_id FROM outbox WHERE destination=?)")
            params.append(destination)
        if text is not None:
            clause, values = self._content_clause(content_terms(text))
            where.append(clause)
            params.extend(values)
        for name, value in (keys or {}).items():
            if name not in KEY_NAMES:
                raise BridgeError(f"unknown key {name!r} (known: {', '.join(KEY_NAMES)})")
            where.append(f"{name}=?")
            params.append(value)
        for clause, value in (("received_at>=?", since), ("received_at<?", until), ("id<?", before_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._select(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [self._message(r) for r in rows]

    @abc.abstractmethod
    def _content_clause(self, terms: list[tuple[str, bool]]) -> tuple[str, list[Any]]:
        """A WHERE condition (with ``?`` parameters) true for messages whose raw input or one of whose
        outbox payloads holds every term (``(word, is_prefix)``), answered from the backend's index."""

    def message_types(self, limit: int = 200) -> list[str]:
        """The message types stored, for the search form's list (read from their index)."""
        rows = self._select("SELECT DISTINCT message_type FROM messages WHERE message_type IS NOT NULL"
                            " ORDER BY message_type LIMIT ?", (limit,))
        return [r[0] for r in rows]

    def counts(self):
        out: dict[str, dict[str, int]] = {}
        for channel, status, n in self._select("SELECT channel, status, COUNT(*) FROM messages GROUP BY 1, 2"):
            out.setdefault(channel, {})[status] = n
        return out

    def find_trace(self, keys):
        if keys.get("relates_to"):
            rows = self._select("SELECT m.trace_id FROM outbox o JOIN messages m ON m.id = o.message_id"
                                " WHERE o.control_id=? AND m.trace_id IS NOT NULL ORDER BY o.id LIMIT 1",
                                (keys["relates_to"],))
            if rows:
                return rows[0][0]
        for column in ("encounter_id", "prescription_number"):
            value = keys.get(column)
            if value:
                rows = self._select(f"SELECT trace_id FROM messages WHERE {column}=? AND trace_id IS NOT NULL"
                                    " ORDER BY id LIMIT 1", (value,))
                if rows:
                    return rows[0][0]
        return None

    # --- prescriptions and holds ---------------------------------------------------------------

    def prescription(self, number):
        rows = self._select("SELECT number, state, message_id, trace_id, open_task, created_at, updated_at"
                            " FROM prescriptions WHERE number=?", (number,))
        return PrescriptionState(*rows[0]) if rows else None

    def prescription_events(self, number=None, *, unmatched=False, limit=100):
        columns = ", ".join(_PRESCRIPTION_EVENT_FIELDS) + ", detail"
        if unmatched:
            rows = self._select(f"SELECT {columns} FROM prescription_events WHERE number IS NULL"
                                " ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._select(f"SELECT {columns} FROM prescription_events WHERE number=? ORDER BY id LIMIT ?",
                                (number, limit))
        return [{**dict(zip(_PRESCRIPTION_EVENT_FIELDS, r[:8])), "detail": json.loads(r[8])} for r in rows]

    def holds(self, status="open"):
        sql = "SELECT id, message_id, status, created_at, reasons, resolved_at, resolved_by, resolution FROM holds"
        rows = self._select(sql + (" WHERE status=? ORDER BY id" if status else " ORDER BY id"),
                            (status,) if status else ())
        return [Hold(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7]) for r in rows]

    # --- watermarks and audit ------------------------------------------------------------------

    def get_watermark(self, name):
        rows = self._select("SELECT value FROM watermarks WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def audit_entries(self, limit=100):
        rows = self._select(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify_audit(self):
        from .sqlite import GENESIS_HASH, audit_hash  # the chain's rules live with SQLite, which imports this module

        prev_hash = GENESIS_HASH
        for r in self._select(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id"):
            if r[6] != prev_hash or audit_hash(prev_hash, r[1], r[2], r[3], r[4], r[5]) != r[7]:
                return r[0]
            prev_hash = r[7]
        return None
