from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridge.plugins.fhir as fhir_plugin
from bridge.testing import plugin_manager

FIXTURES = Path(__file__).parent.parent / "fixtures" / "fhir"


@pytest.fixture(scope="session")
def fhir_format():
    """The FormatSpec as the plugin manager sees it (the plugin is not yet a built-in)."""
    return plugin_manager(("fhir", fhir_plugin)).format("fhir")


def load_example(name: str) -> dict:
    return json.loads((FIXTURES / "r4-examples" / name).read_text(encoding="utf-8"))


def example_bytes(name: str) -> bytes:
    return (FIXTURES / "r4-examples" / name).read_bytes()


def entries(raw: bytes) -> list[dict]:
    return json.loads(raw)["entry"]


def resources_of(raw: bytes, rtype: str) -> list[dict]:
    return [e["resource"] for e in entries(raw) if e["resource"]["resourceType"] == rtype]
