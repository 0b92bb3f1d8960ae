"""pytest fixtures of the plugin test kit (registered through the ``pytest11`` entry point).

Installing ``telemed-bridge`` makes these available to every test suite, with no conftest:

- ``bridge_plugins``: a fresh plugin manager (built-ins only, no entry points) for this test;
- ``bridge_register``: ``bridge_register(plugin, name=None)`` adds a plugin to this test's manager
  and returns the manager — the registration ends with the test;
- ``bridge_store``: a real SQLite store in the test's temporary folder;
- ``bridge_engine``: ``bridge_engine(config_dict, plugins=None)`` builds an engine rooted in
  ``tmp_path`` (with this test's ``bridge_plugins`` unless told otherwise);
- ``fake_fhir_server``, ``fake_mllp_peer``, ``fake_token_endpoint``: the loopback fakes, started
  for the test and stopped after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from bridge.core.engine import Engine
from bridge.core.plugin_manager import PluginManager
from bridge.core.store.sqlite import SQLiteStore

from . import engine_from_dict, plugin_manager
from .fakes.fhir_server import FakeFhirServer
from .fakes.mllp_peer import FakeMllpPeer
from .fakes.token_endpoint import FakeTokenEndpoint


@pytest.fixture
def bridge_plugins() -> PluginManager:
    """A fresh plugin manager with the built-in plugins only (entry points are not loaded)."""
    return plugin_manager()


@pytest.fixture
def bridge_register(bridge_plugins: PluginManager) -> Callable[..., PluginManager]:
    """Register a plugin for this test only: ``bridge_register(acme_bridge, "acme")`` → the manager."""

    def register(plugin: object, name: str | None = None, *, distribution: str = "test",
                 version: str = "0") -> PluginManager:
        bridge_plugins.register(plugin, name or getattr(plugin, "__name__", type(plugin).__name__),
                                distribution, version)
        bridge_plugins.check_pending()
        return bridge_plugins

    return register


@pytest.fixture
def bridge_store(tmp_path) -> Iterator[SQLiteStore]:
    """A real SQLite store in this test's temporary folder."""
    store = SQLiteStore(str(tmp_path / "bridge-test.db"))
    yield store
    store.close()


@pytest.fixture
def bridge_engine(tmp_path, bridge_plugins: PluginManager) -> Iterator[Callable[..., Engine]]:
    """Factory: ``bridge_engine(config_dict, plugins=None)`` → an Engine rooted in ``tmp_path``."""
    engines: list[Engine] = []

    def make(data: Mapping[str, Any], plugins: PluginManager | None = None) -> Engine:
        engine = engine_from_dict(data, tmp_path, plugins or bridge_plugins)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.store.close()


@pytest.fixture
def fake_fhir_server() -> Iterator[FakeFhirServer]:
    """A FHIR R4 server on loopback (``.base``); validation needs ``telemed-bridge[test]``."""
    with FakeFhirServer() as server:
        yield server


@pytest.fixture
def fake_mllp_peer() -> Iterator[FakeMllpPeer]:
    """An MLLP receiver on loopback (``.url``) answering AA unless scripted (``.script("AE")``)."""
    with FakeMllpPeer() as peer:
        yield peer


@pytest.fixture
def fake_token_endpoint() -> Iterator[FakeTokenEndpoint]:
    """An OAuth2 token endpoint on loopback accepting client ``bridge-test`` with secret ``s3cret``;
    set ``.public_key`` (and ``.kid``) to accept signed client assertions too."""
    with FakeTokenEndpoint(client_id="bridge-test", client_secret="s3cret") as endpoint:
        yield endpoint
