"""The store: one interface (:mod:`.base`), one backend per URL scheme."""

from __future__ import annotations

from bridge.errors import ConfigError

from .base import Store


def open_store(url: str) -> Store:
    """Open the store named by a URL (``sqlite:///path``); migrations are applied on open."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    raise ConfigError([("store", f"unsupported store URL {url!r} (supported: sqlite:///path)")])


__all__ = ["Store", "open_store"]
