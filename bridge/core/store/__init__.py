"""The store: one interface (:mod:`.base`), one backend per URL scheme."""

from __future__ import annotations

from bridge.errors import ConfigError

from .base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(url: str) -> Store:
    """Open the store named by a URL (``sqlite:///path`` or ``postgresql://user@host:port/db``);
    migrations are applied on open."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError([("store", f"unsupported store URL {url!r}"
                                 " (supported: sqlite:///path, postgresql://user@host:port/database)")])


__all__ = ["Store", "open_store"]
