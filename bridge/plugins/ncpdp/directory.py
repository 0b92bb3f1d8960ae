"""The pharmacy directory: NCPDPID → name, address, NPI and whether the pharmacy accepts EPCS.

Loaded from a CSV named by the ``directory`` option (header row required; columns ``ncpdp_id``,
``name``, ``npi``, ``address_line``, ``city``, ``state``, ``postal_code``, ``phone``,
``epcs_capable`` — ``yes``/``no``/``true``/``false``/``1``/``0``). Every row is checked when the
file is read and all problems are reported at once with their line numbers. The file is re-read
when it changes (by modification time), so an operator can update it without a restart.
"""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge import Address, ConfigError, ContactPoint, Pharmacy

from .codes import NCPDPID, npi_is_valid

COLUMNS = ("ncpdp_id", "name", "npi", "address_line", "city", "state", "postal_code", "phone", "epcs_capable")
REQUIRED_COLUMNS = ("ncpdp_id", "name", "epcs_capable")
TRUE = ("yes", "true", "1", "y")
FALSE = ("no", "false", "0", "n", "")

_cache: dict[str, tuple[float, dict[str, Pharmacy]]] = {}
_lock = threading.Lock()


def resolve(path: str, options: Mapping[str, Any]) -> Path:
    """Absolute paths as given; relative ones against ``options['config_dir']`` (else the cwd)."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    base = options.get("config_dir") or options.get("_config_dir") or os.getcwd()
    return Path(base) / candidate


def load(path: Path) -> dict[str, Pharmacy]:
    """Read the directory (cached by modification time); ConfigError lists every bad row."""
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise ConfigError([("directory", f"cannot read pharmacy directory {path}: {exc.strerror or exc}")]) from None
    key = str(path)
    with _lock:
        cached = _cache.get(key)
        if cached and cached[0] == mtime:
            return cached[1]
    entries = _parse(path)
    with _lock:
        _cache[key] = (mtime, entries)
    return entries


def _parse(path: Path) -> dict[str, Pharmacy]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError([("directory", f"{path.name}: missing column(s) {', '.join(missing)} "
                                             f"(expected {', '.join(COLUMNS)})")])
        entries: dict[str, Pharmacy] = {}
        problems: list[tuple[str, str]] = []
        for row in reader:
            line = reader.line_num
            pharmacy, row_problems = _row(row)
            problems += [("directory", f"{path.name} line {line}: {p}") for p in row_problems]
            if pharmacy is not None:
                entries[pharmacy.ncpdp_id or ""] = pharmacy
    if problems:
        raise ConfigError(problems)
    return entries


def _row(row: Mapping[str, str | None]) -> tuple[Pharmacy | None, list[str]]:
    value = {c: (row.get(c) or "").strip() for c in COLUMNS}
    problems = []
    if not NCPDPID.match(value["ncpdp_id"]):
        problems.append(f"ncpdp_id {value['ncpdp_id']!r} is not 7 digits")
    if value["npi"] and not npi_is_valid(value["npi"]):
        problems.append(f"npi {value['npi']!r} is not a valid NPI")
    epcs = value["epcs_capable"].lower()
    if epcs not in TRUE + FALSE:
        problems.append(f"epcs_capable {value['epcs_capable']!r} is not yes or no")
    if problems:
        return None, problems
    address = None
    if value["address_line"] or value["city"]:
        address = Address(lines=[value["address_line"]] if value["address_line"] else [], city=value["city"] or None,
                          state=value["state"] or None, postal_code=value["postal_code"] or None)
    telecom = [ContactPoint(value=value["phone"], system="phone")] if value["phone"] else []
    return Pharmacy(ncpdp_id=value["ncpdp_id"], npi=value["npi"] or None, name=value["name"] or None,
                    address=address, telecom=telecom, epcs_capable=epcs in TRUE), []


def complete(pharmacy: Pharmacy, entry: Pharmacy) -> Pharmacy:
    """``pharmacy`` with missing details filled from the directory; EPCS capability from the directory."""
    return replace(
        pharmacy,
        npi=pharmacy.npi or entry.npi,
        name=pharmacy.name or entry.name,
        address=pharmacy.address or entry.address,
        telecom=pharmacy.telecom or list(entry.telecom),
        epcs_capable=entry.epcs_capable,
    )
