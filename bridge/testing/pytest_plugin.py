"""pytest fixtures of the plugin test kit (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from bridge.core.engine import Engine
from bridge.core.plugin_manager import PluginManager
from bridge.core.store.sqlite import SQLiteStore

from . import engine_from_dict, plugin_manager


@pytest.fixture
def bridge_plugins() -> PluginManager:
    """A fresh plugin manager with the built-in plugins only (entry points are not loaded)."""
    return plugin_manager()


@pytest.fixture
def bridge_store(tmp_path) -> Iterator[SQLiteStore]:
    """A real SQLite store in this test's temporary folder."""
    store = SQLiteStore(str(tmp_path / "bridge-test.db"))
    yield store
    store.close()


@pytest.fixture
def bridge_engine(tmp_path) -> Iterator[Callable[..., Engine]]:
    """Factory: ``bridge_engine(config_dict, plugins=None)`` → an Engine rooted in ``tmp_path``."""
    engines: list[Engine] = []

    def make(data: Mapping[str, Any], plugins: PluginManager | None = None) -> Engine:
        engine = engine_from_dict(data, tmp_path, plugins)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.store.close()
