"""Keep PHI out of application logs.

Names, birth dates and record numbers cannot be recognised in general, so the first line of defence
is a rule for our own code: log calls pass types, ids, counts and channel names, never values from
a message (see docs/jobs.md, "Logging"). This module is the second line, for what slips through —
a third-party library logging a payload, a peer echoing a message in an error:

- :func:`scrub` rewrites text that *looks like* payload: HL7v2 segments (``PID|…``), JSON or
  Python-dict members named like demographics (``"family": …``, ``'birth_date': …``), NCPDP SCRIPT
  elements (``<LastName>…</LastName>``), SSN-like and phone-like digit groups;
- exception messages in tracebacks are withheld unless the exception is of a kind whose text is
  about the system (OS, store, config), because a decoder's error may quote the field it choked on;
- :func:`install` puts this on every log record the process creates, through the log-record
  factory: a handler filter would miss handlers added later (pytest's, a web server's), and a
  logger filter does not see records propagated from child loggers.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import traceback
from types import TracebackType
from typing import Any

from bridge.errors import BridgeError, ConfigError, LeaseLost, PluginError, StoreError

REDACTED = "[redacted]"
HL7_SEGMENTS = ("MSH", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "GT1", "IN1", "IN2", "DG1", "AL1", "OBX", "OBR",
                "NTE", "ORC", "RXO", "RXE", "RXA", "RXD", "RXR", "RXC", "TQ1", "SCH", "AIP", "AIL", "AIG", "ARQ",
                "MRG", "TXA", "SPM", "PRD", "CTD", "PRT", "RF1", "RXG", "IAM", "ACC")
PHI_KEYS = ("family", "given", "prefix", "suffix", "name", "names", "birthDate", "birth_date", "dob",
            "date_of_birth", "gender", "sex", "line", "lines", "city", "postalCode", "postal_code", "zip",
            "address", "addresses", "telecom", "phone", "phones", "email", "ssn", "mrn", "identifier",
            "identifiers", "value", "text", "display", "note", "notes", "sig", "patient")
SCRIPT_ELEMENTS = ("LastName", "FirstName", "MiddleName", "Suffix", "Prefix", "DateOfBirth", "Gender",
                   "AddressLine1", "AddressLine2", "City", "StateProvince", "PostalCode", "Number", "Extension",
                   "ElectronicMail", "Identification", "MedicalRecordIdentificationNumberEHR", "SocialSecurity",
                   "PatientAccountNumber", "Note", "Sig", "SigText", "DrugDescription")

_KEYS = "|".join(re.escape(k) for k in PHI_KEYS)
_QUOTED_DOUBLE = r'"(?:[^"\\]|\\.)*"'
_QUOTED_SINGLE = r"'(?:[^'\\]|\\.)*'"
_JSON_VALUE = rf"(?:{_QUOTED_DOUBLE}|{_QUOTED_SINGLE}|\[[^\]]*\]?|\{{[^{{}}]*\}}?|[-+\d.]+|true|false|null)"

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # an HL7v2 segment: everything after the segment id to the end of the line or segment
    (re.compile(rf"(?<![A-Za-z0-9])({'|'.join(HL7_SEGMENTS)}|Z[A-Z0-9]{{2}})\|[^\r\n]*"), rf"\1|{REDACTED}"),
    # JSON / Python-dict members named like demographics
    (re.compile(rf'(["\'])({_KEYS})\1(\s*:\s*){_JSON_VALUE}'), rf'\1\2\1\3"{REDACTED}"'),
    # key=value pairs named like demographics (``family=Doe``)
    (re.compile(rf"(?<![A-Za-z0-9_])({_KEYS})=(?:{_QUOTED_DOUBLE}|{_QUOTED_SINGLE}|[^\s,;&]+)"), rf"\1={REDACTED}"),
    # NCPDP SCRIPT (XML) elements carrying demographics, with any namespace prefix
    (re.compile(rf"<((?:\w+:)?(?:{'|'.join(SCRIPT_ELEMENTS)}))(\s[^>]*)?>.*?</\1>", re.S), rf"<\1>{REDACTED}</\1>"),
    # SSN-like
    (re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), "[redacted-ssn]"),
    # phone-like (NANP with separators, optional +1)
    (re.compile(r"(?<![\d.])(?:\+?1[-. ])?(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\d])"), "[redacted-phone]"),
)

# Exceptions whose text describes the system, not a message: their text is kept (scrubbed) in logs.
SYSTEM_EXCEPTIONS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, StoreError, ConfigError, PluginError,
                                                      LeaseLost, TimeoutError, ImportError, MemoryError)


def scrub(text: str) -> str:
    """``text`` with everything that looks like payload replaced by ``[redacted]``."""
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def exception_text(exc: BaseException) -> str:
    """``Type: message`` for a log or a stored error: the message scrubbed for system errors and
    withheld for the rest (a decoder's error may quote the value it could not read)."""
    name = type(exc).__name__
    if isinstance(exc, SYSTEM_EXCEPTIONS):
        return f"{name}: {scrub(str(exc))}"
    return f"{name} (message withheld from logs: it may quote message content)"


PEER_TEXT_SEPARATOR = " — "  # our errors put what a peer said after this (see DeliveryError, FhirSession)


def safe_error(exc: BaseException, limit: int = 500) -> str:
    """An error for an operator to read where PHI must not go (a job run's history).

    Our own errors (``BridgeError``) and system errors keep their message, cut before any text a
    peer sent (after " — ", the house convention) and scrubbed; any other exception — a plugin bug
    whose message could quote anything — shows its type only.
    """
    if not isinstance(exc, (BridgeError, *SYSTEM_EXCEPTIONS)):
        return exception_text(exc)
    message = str(exc)
    if PEER_TEXT_SEPARATOR in message:
        message = message.split(PEER_TEXT_SEPARATOR, 1)[0] + PEER_TEXT_SEPARATOR + "[peer text withheld]"
    text = f"{type(exc).__name__}: {scrub(message)}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_exception(exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> str:
    """A traceback (frames and the chain of causes) whose exception lines are :func:`exception_text`."""
    if exc is None:
        return ""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__ if current is not exc else tb))
        parts.append(f"Traceback (most recent call last):\n{frames}{exception_text(current)}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nDuring handling of, or caused by, the above:\n".join(reversed(parts))


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Freeze the record's message scrubbed (args merged in) and its traceback made safe."""
    if getattr(record, "_bridge_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the template only, never the arguments
        message = str(record.msg)
    record.msg, record.args = scrub(message), ()
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = scrub(format_exception(*record.exc_info))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._bridge_redacted = True  # type: ignore[attr-defined]
    return record


class RedactingFilter(logging.Filter):
    """The same redaction as a filter, for a handler that must be safe on its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_lock = threading.Lock()
_previous_factory: Any = None


def install() -> None:
    """Redact every log record created in this process from now on (idempotent)."""
    global _previous_factory
    with _lock:
        if _previous_factory is not None:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        _previous_factory = previous
        logging.setLogRecordFactory(factory)


def installed() -> bool:
    return _previous_factory is not None


def uninstall() -> None:
    """Restore the record factory found by :func:`install` (tests)."""
    global _previous_factory
    with _lock:
        if _previous_factory is not None:
            logging.setLogRecordFactory(_previous_factory)
            _previous_factory = None
