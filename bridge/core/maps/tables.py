"""Lookup tables: CSV files in a map's folder, read once at start.

A map declares each table (``tables: {NAME: {file, key, columns, missing, default, reason}}``) so
that ``bridge check`` can say a file is absent or lacks a column before a message meets it, and so
that what happens to a code the table does not list is a decision written down, not an accident:

- ``missing: pass``: the value is left as it is;
- ``missing: hold``: the message is held for review (``reason`` says why, no value is quoted);
- ``missing: fail``: the message fails (replayable once the table is fixed);
- ``missing: default``: the ``default`` row (a mapping of column to value) is used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MISSING = ("pass", "hold", "fail", "default")
TABLE_KEYS = ("file", "key", "columns", "missing", "default", "reason")


class TableError(ValueError):
    """A table declaration or file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Table:
    name: str
    file: str
    key: str
    columns: tuple[str, ...]
    missing: str
    rows: Mapping[str, Mapping[str, str]] = field(repr=False, default_factory=dict)
    default: Mapping[str, str] | None = None
    reason: str = ""

    def find(self, code: str) -> Mapping[str, str] | None:
        """The row for ``code`` (or the default row when missing codes take it); None when absent."""
        row = self.rows.get(code.strip())
        if row is None and self.missing == "default":
            return self.default
        return row


def load_table(name: str, spec: Any, folder: Path) -> Table:
    """Read a declared table; raises TableError naming what is wrong."""
    if not isinstance(spec, Mapping):
        raise TableError(f"expected a mapping with {', '.join(TABLE_KEYS)}")
    unknown = sorted(set(spec) - set(TABLE_KEYS))
    if unknown:
        raise TableError(f"unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(TABLE_KEYS)})")
    for key in ("file", "key"):
        if not isinstance(spec.get(key), str) or not spec.get(key):
            raise TableError(f"{key}: is required (a {'CSV file name' if key == 'file' else 'column name'})")
    columns = spec.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise TableError("columns: expected a list of column names")
    missing = spec.get("missing", "fail")
    if missing not in MISSING:
        raise TableError(f"missing: expected one of {', '.join(MISSING)}, got {missing!r}")
    default = _default(spec.get("default"), missing, columns)
    path = folder / spec["file"]
    rows = _rows(path, spec["file"], spec["key"], tuple(columns))
    return Table(name, spec["file"], spec["key"], tuple(columns), missing, rows, default, str(spec.get("reason", "")))


def _default(value: Any, missing: str, columns: list[str]) -> dict[str, str] | None:
    if missing != "default":
        if value is not None:
            raise TableError("default: only used with missing: default")
        return None
    if not isinstance(value, Mapping) or set(value) != set(columns):
        raise TableError(f"default: with missing: default, give a value for each column ({', '.join(columns)})")
    return {str(k): str(v) for k, v in value.items()}


def _rows(path: Path, file: str, key: str, columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TableError(f"file {file!r} not found in the map's folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"file {file!r} cannot be read: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    absent = [c for c in (key, *columns) if c not in header]
    if absent:
        raise TableError(f"{file}: no column {', '.join(map(repr, absent))} in its header "
                         f"(it has: {', '.join(header) or 'nothing'})")
    rows: dict[str, dict[str, str]] = {}
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        code = row.get(key, "")
        if not code:
            raise TableError(f"{file} line {line}: empty {key!r}")
        if code in rows:
            raise TableError(f"{file} line {line}: {key} {code!r} is listed twice")
        rows[code] = {c: row.get(c, "") for c in columns}
    return rows
