"""The ``bridge`` format: canonical records as JSON.

It is the engine's own lingua franca and the simplest way for a telemedicine platform to submit
encounters and prescriptions without speaking HL7v2 or FHIR. A message is an envelope::

    {"schema": "telemed-bridge/1", "message_id": "visit-123", "trace_id": "…",
     "records": [{"kind": "Encounter", …}, …]}

or a single record with the ``schema`` field beside its ``kind``. ``message_id`` (optional) is the
sender's id for the message: resubmitting the same id is recognised as a duplicate. See
``docs/records.md`` and ``examples/messages/``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bridge import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    DecodeError,
    EncodeError,
    FormatSpec,
    MessageHeader,
    OptionSpec,
    Record,
    hookimpl,
    keys_of,
    record_from_dict,
    record_to_dict,
)

SCHEMA = f"telemed-bridge/{SCHEMA_VERSION}"
MEDIA_TYPE = "application/vnd.telemed-bridge+json"


ENVELOPE_KEYS = ("schema", "message_id", "trace_id", "records")


def _no_constants(name: str) -> Any:
    raise DecodeError(f"invalid JSON: {name} is not a number JSON allows")


def _load(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _record_fields(kind: Any) -> frozenset[str]:
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    return frozenset(f.name for f in dataclasses.fields(cls)) if cls else frozenset()


def _envelope_value(doc: dict[str, Any], key: str) -> str | None:
    """An envelope id: a string, or DecodeError. In the single-record form a record field wins."""
    if "records" not in doc and key in _record_fields(doc.get("kind")):
        return None
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError("expected a string", key)
    return value


def _check_schema(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise DecodeError("expected a JSON object with a 'schema' field")
    schema = doc.get("schema")
    if schema is None:
        raise DecodeError(f"missing 'schema' field (expected {SCHEMA!r})")
    if not isinstance(schema, str) or not schema.startswith("telemed-bridge/"):
        raise DecodeError(f"unknown schema {schema!r} (expected {SCHEMA!r})", "schema")
    if schema != SCHEMA:
        raise DecodeError(f"unsupported schema version {schema!r} (this engine reads {SCHEMA!r})", "schema")


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    doc = _load(raw)
    _check_schema(doc)
    for key in ("message_id", "trace_id"):
        _envelope_value(doc, key)
    if "records" in doc:
        unknown = sorted(k for k in doc if k not in ENVELOPE_KEYS)
        if unknown:
            raise DecodeError(f"unknown envelope key(s) {', '.join(unknown)} (allowed: {', '.join(ENVELOPE_KEYS)})")
        items = doc["records"]
        if not isinstance(items, list) or not items:
            raise DecodeError("expected a non-empty list of records", "records")
        return [record_from_dict(item, f"records[{i}]") for i, item in enumerate(items)]
    if "kind" in doc:
        own = _record_fields(doc.get("kind"))
        body = {k: v for k, v in doc.items() if k != "schema" and (k in own or k not in ENVELOPE_KEYS)}
        return [record_from_dict(body, "record")]
    raise DecodeError("expected 'records' (a list) or a single record with 'kind'")


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    if not records:
        raise EncodeError("nothing to encode: no records")
    options = options or {}
    doc: dict[str, Any] = {"schema": SCHEMA}
    if options.get("message_control_id"):
        doc["message_id"] = options["message_control_id"]
    if options.get("trace_id"):
        doc["trace_id"] = options["trace_id"]
    doc["records"] = [record_to_dict(r) for r in records]
    indent = options.get("indent", 2)
    try:
        text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise EncodeError(f"cannot write JSON: {exc}") from None
    return (text + "\n").encode("utf-8")


def peek(raw: bytes) -> MessageHeader:
    """Read the sender's message id and trace id; never raises (decode reports problems later)."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return MessageHeader()
    if not isinstance(doc, dict):
        return MessageHeader()
    try:
        message_id = _envelope_value(doc, "message_id")
        trace_id = _envelope_value(doc, "trace_id")
    except DecodeError:
        message_id = trace_id = None
    kinds = [r.get("kind") for r in doc.get("records", []) if isinstance(r, dict)] if isinstance(
        doc.get("records"), list) else [doc.get("kind")]
    keys = _order_keys(doc)
    return MessageHeader(
        control_id=message_id,
        message_type="+".join(k for k in kinds if isinstance(k, str)) or None,
        dedupe_key=f"bridge:{message_id}" if message_id else None,
        trace_id=trace_id,
        patient_id=keys.patient_id, encounter_id=keys.encounter_id, prescription_number=keys.prescription_number,
        keys_read=True,
    )


def _order_keys(doc: dict[str, Any]) -> Any:
    """The business keys the worker will find (the same ``keys_of``), for the message's lane. A
    message that will not decode has none: the worker fails it, and it waits for nothing."""
    items = doc["records"] if isinstance(doc.get("records"), list) else [
        {k: v for k, v in doc.items() if k not in ("schema", "message_id", "trace_id")}]
    try:
        return keys_of([record_from_dict(item, "record") for item in items])
    except Exception:  # DecodeError, or any surprise in bad input: peek never raises
        return keys_of([])


def detect(raw: bytes) -> bool:
    head = raw[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b"telemed-bridge/" in raw[:4096]


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    return [
        FormatSpec(
            name="bridge",
            media_type=MEDIA_TYPE,
            decode=decode,
            encode=encode,
            peek=peek,
            detect=detect,
            file_extension="json",
            description="Canonical records as JSON (schema telemed-bridge/1)",
            decode_options=(),
            encode_options=(OptionSpec("indent", "JSON indentation (null: one line)", kind="any", default=2),),
        )
    ]
