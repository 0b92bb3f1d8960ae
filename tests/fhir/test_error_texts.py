"""No Python object text in any error (issue 13): every fixture file (the public HL7v2 corpus, the
official FHIR examples, the NCPDP samples, vendor payloads) is decoded with every built-in format, and
what decodes is encoded with every format; every refusal must read as a sentence, never as a repr."""

from __future__ import annotations

import re
from pathlib import Path

from bridge import DecodeError, EncodeError, localize_records
from bridge.testing import plugin_manager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PYTHON_TEXT = re.compile(r"object at 0x|<bridge\.|<fhirclient\.|Segment\(|\b[A-Z]\w*\(\w+=")
"""A default object repr, one of our classes, an HL7v2 segment or a dataclass repr (``Patient(id=``)."""


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file() and not p.name.startswith("LICENSE"))


def test_the_pattern_catches_python_text():
    for text in ("on <fhirclient.models.x.Y object at 0x7f00>", "Segment(name='RXE')",
                 "got Patient(id='p1', identifiers=[])", "<bridge.core.model.records.Patient>"):
        assert PYTHON_TEXT.search(text), text
    assert not PYTHON_TEXT.search("ORC-1 (order control) is required; RXE missing (RDE^O11)")


def test_no_error_of_any_format_shows_python_text():
    manager = plugin_manager()
    formats = [manager.format(name) for name in manager.formats()]
    files = fixture_files()
    assert len(files) > 600
    errors: list[tuple[str, str]] = []
    for path in files:
        raw = path.read_bytes()
        for fmt in formats:
            try:
                records = fmt.decode(raw, {})
            except (DecodeError, EncodeError) as exc:
                errors.append((f"{path.name} ({fmt.name} decode)", str(exc)))
                continue
            localize_records(records, "America/Chicago")
            for out in formats:
                try:
                    out.encode(records, {})
                except (DecodeError, EncodeError) as exc:
                    errors.append((f"{path.name} ({fmt.name} → {out.name})", str(exc)))
    assert len(errors) > 2000  # most files are refused by most formats: every refusal is checked
    shown = [f"{where}: {text[:200]}" for where, text in errors if PYTHON_TEXT.search(text) or not text.strip()]
    assert shown == []
