"""The plugin test kit: what a plugin author needs to test a plugin against the real core.

It ships with the product (like pytest's ``pytester``) and is loaded as a pytest plugin through the
``pytest11`` entry point, so installing ``telemed-bridge`` gives every test suite these fixtures:

- ``bridge_plugins``: a fresh plugin manager with the built-ins (no entry points), per test;
- ``bridge_store``: a real SQLite store in the test's temporary folder;
- ``bridge_engine``: a factory that builds an :class:`~bridge.core.engine.Engine` from a config dict.

and these helpers: :func:`plugin_manager`, :func:`engine_from_dict`, :func:`assert_format_round_trip`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


__all__ = [
    "SQLiteStore",
    "assert_decode_error_is_clear",
    "assert_format_round_trip",
    "engine_from_dict",
    "plugin_manager",
]
