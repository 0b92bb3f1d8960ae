"""Shared helpers for the FHIR network tests: the test plugin, sample messages, engines, keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bridge.plugins.fhir
from bridge import hookimpl
from bridge.core.engine import Engine
from bridge.plugins.fhir.network import JOB_TYPES, TRANSPORTS
from bridge.testing import engine_from_dict, plugin_manager

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.1"
VISIT_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.2"


class NetPlugin:
    """Registers this work's transports and job types, as the FHIR plugin's hooks will."""

    @hookimpl
    def bridge_transports(self):
        return list(TRANSPORTS)

    @hookimpl
    def bridge_job_types(self):
        return list(JOB_TYPES)


def net_plugins(with_fhir_format: bool = True):
    """Built-ins plus what is not built in yet: the fhir format (if the built-ins lack it) and this
    work's transports and job types (until the FHIR plugin's hooks return them)."""
    builtins = plugin_manager()
    extra: list[tuple[str, object]] = []
    if with_fhir_format and "fhir" not in builtins.formats():
        extra.append(("fhir", bridge.plugins.fhir))
    if "fhir+http" not in builtins.transports():
        extra.append(("fhir-net", NetPlugin()))
    return plugin_manager(*extra)


def visit(n: int = 1, mrn: str = "MRN1", status: str = "finished") -> bytes:
    """A bridge-format telehealth visit whose patient and encounter carry identifier systems
    (so the FHIR encoder makes both writes conditional). Synthetic: no real person."""
    record = {
        "kind": "Encounter", "id": f"ENC-{n}", "status": status, "modality": "video",
        "identifiers": [{"value": f"V{n}", "system": VISIT_SYSTEM, "type": "VN"}],
        "patient": {"identifiers": [{"value": mrn, "type": "MR", "system": MRN_SYSTEM}],
                    "name": {"family": "Testpatient"}},
    }
    return json.dumps({"schema": "telemed-bridge/1", "records": [record]}).encode()


def engine_to(tmp_path: Path, url: str, *, fmt: str = "fhir", options: dict[str, Any] | None = None,
              retry: dict[str, Any] | None = None, with_fhir_format: bool = True) -> Engine:
    """An engine whose channel ``in`` routes everything to destination ``ehr`` at ``url``."""
    config = {
        "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr"]}],
                            "order": {"by": "none"}}},
        "destinations": {"ehr": {"url": url, "format": fmt, "options": options or {},
                                 "retry": retry or {"max_attempts": 3, "initial_seconds": 0.01}}},
    }
    engine = engine_from_dict(config, tmp_path, net_plugins(with_fhir_format))
    engine.open_destinations()
    return engine


def only_row(engine: Engine):
    (row,) = engine.store.outbox_rows()
    return row
