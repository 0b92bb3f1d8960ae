"""The plugin test kit: what a plugin author needs to test a plugin against the real core.

It ships with the product (like pytest's ``pytester``) and is loaded as a pytest plugin through the
``pytest11`` entry point, so installing ``telemed-bridge`` gives every test suite its fixtures
(:mod:`bridge.testing.pytest_plugin`: ``bridge_plugins``, ``bridge_register``, ``bridge_store``,
``bridge_engine``, ``fake_fhir_server``, ``fake_mllp_peer``, ``fake_token_endpoint``). Also here:

- helpers: :func:`plugin_manager`, :func:`engine_from_dict`, :func:`assert_format_round_trip`,
  :func:`assert_decode_error_is_clear`;
- contract test classes to subclass (:mod:`bridge.testing.contracts`): ``FormatContract``,
  ``TransportContract``, ``ProfileContract``;
- fake PHI and the no-PHI-in-errors check (:mod:`bridge.testing.phi`);
- loopback fakes (:mod:`bridge.testing.fakes`);
- vendor simulators that answer as each vendor documents its API and refuse what it documents a
  tenant refuses (:mod:`bridge.testing.vendor_sims`): ``OracleHealthSimulator``, ``EpicSimulator``,
  ``AthenaSimulator``.

The contract classes and fakes are imported on first use, so ``import bridge.testing`` stays cheap
and does not need pytest.
"""

from __future__ import annotations

import importlib
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.core.config import parse_config
from bridge.core.engine import Engine
from bridge.core.model.codec import record_to_dict
from bridge.core.plugin_manager import PluginManager
from bridge.core.store.sqlite import SQLiteStore
from bridge.errors import DecodeError
from bridge.plugin_types import FormatSpec
from bridge.core.model.records import Record


def plugin_manager(*plugins: tuple[str, object] | object, builtins: bool = True,
                   disabled: Iterable[str] = ()) -> PluginManager:
    """A plugin manager with the built-ins plus ``plugins`` (objects, or ``(name, object)`` pairs)."""
    manager = PluginManager(disabled=disabled)
    if builtins:
        manager.load_builtins()
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
        manager.register(plugin, name, distribution="test", version="0")
    manager.check_pending()
    return manager


def engine_from_dict(data: Mapping[str, Any], folder: str | Path,
                     plugins: PluginManager | None = None) -> Engine:
    """Build an engine from a config mapping; relative paths resolve against ``folder``."""
    plugins = plugins or plugin_manager()
    data = {"store": "sqlite:///bridge.db", **data}
    config = parse_config(data, config_dir=str(folder), plugins=plugins)
    return Engine(config, plugins)


@contextlib.contextmanager
def listening_engine(data: Mapping[str, Any], folder: str | Path,
                     plugins: PluginManager | None = None) -> Iterator[Engine]:
    """An engine built from ``data`` with its destinations open and its sources listening (real
    sockets, real folders); the test drives the workers with ``engine.drain()``. On exit the sources
    stop, the destinations close and the store closes, even when the test failed."""
    engine = engine_from_dict(data, folder, plugins)
    engine.open_destinations()
    engine.open_sources()
    try:
        for source in engine.sources:
            source.start()
        yield engine
    finally:
        for source in engine.sources:
            source.stop()
        for destination in engine.destinations.values():
            destination.close()
        engine.store.close()


def assert_format_round_trip(spec: FormatSpec, records: Sequence[Record],
                             options: Mapping[str, Any] | None = None) -> list[Record]:
    """decode(encode(records)) must equal the records, and a second encode must be byte-stable."""
    options = dict(options or {})
    first = spec.encode(records, options)
    decoded = spec.decode(first, options)
    assert [record_to_dict(r) for r in decoded] == [record_to_dict(r) for r in records], (
        f"{spec.name}: decode(encode(records)) differs from the records")
    assert spec.encode(decoded, options) == first, f"{spec.name}: encode is not stable across a round trip"
    return decoded


def assert_decode_error_is_clear(spec: FormatSpec, raw: bytes) -> DecodeError:
    """Bad input must raise DecodeError (not a bare exception) with a non-empty message."""
    try:
        spec.decode(raw, {})
    except DecodeError as exc:
        assert str(exc).strip(), f"{spec.name}: DecodeError without a message"
        return exc
    raise AssertionError(f"{spec.name}: decoding {raw[:40]!r} did not raise DecodeError")


_LAZY = {
    "FormatContract": "contracts", "TransportContract": "contracts", "ProfileContract": "contracts",
    "DestinationContract": "contracts",
    "FAKE_PHI": "phi", "FakePHI": "phi", "fake_patient": "phi", "assert_no_phi": "phi",
    "phi_in_exception": "phi",
    "FakeFhirServer": "fakes", "FakeMllpPeer": "fakes", "FakeTokenEndpoint": "fakes", "FakeHttpServer": "fakes",
    "OracleHealthSimulator": "vendor_sims.oracle_health",
    "EpicSimulator": "vendor_sims.epic", "AthenaSimulator": "vendor_sims.athena",
}


def __getattr__(name: str) -> Any:
    """Import contracts, PHI helpers and fakes on first use (contracts need pytest)."""
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_LAZY,
    "SQLiteStore",
    "assert_decode_error_is_clear",
    "assert_format_round_trip",
    "engine_from_dict",
    "listening_engine",
    "plugin_manager",
]
