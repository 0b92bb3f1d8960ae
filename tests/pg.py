"""PostgreSQL for tests: a throw-away database per test, on the server named by BRIDGE_TEST_POSTGRES.

The server defaults to 127.0.0.1:5432 as user postgres (these machines' set-up). Each test gets a
database of its own (unique name), dropped afterwards. Where no server answers the test is skipped
with the reason — except in CI (``CI=true``) or with ``BRIDGE_REQUIRE_POSTGRES=1``, where a missing
server fails the test: the PostgreSQL backend must never pass CI by being silently skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER = os.environ.get("BRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def postgres_required() -> bool:
    return os.environ.get("BRIDGE_REQUIRE_POSTGRES") == "1" or os.environ.get("CI", "").lower() == "true"


def _admin_connection():
    import psycopg

    return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3)


def server_problem() -> str | None:
    """Why no PostgreSQL server can be used, or None when one answers."""
    try:
        with _admin_connection() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect is a reason to skip (or, in CI, to fail)
        return f"no PostgreSQL server at {SERVER}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
    return None


def require_server() -> None:
    problem = server_problem()
    if problem is None:
        return
    if postgres_required():
        pytest.fail(f"{problem} (PostgreSQL is required here: CI=true or BRIDGE_REQUIRE_POSTGRES=1)")
    pytest.skip(problem)


@contextmanager
def database() -> Iterator[str]:
    """A fresh, empty database; yields its URL and drops it (and any connection still on it) at the end."""
    require_server()
    name = f"bridge_test_{uuid.uuid4().hex[:16]}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with database() as url:
        yield url


@contextmanager
def backend_stores(kind: str, tmp_path, count: int = 1) -> Iterator[list]:
    """``count`` stores on one database of backend ``kind`` (``sqlite`` or ``postgresql``), each with
    its own connections, as separate processes or nodes have; closed (and the database dropped) after."""
    from bridge.core.store import open_store

    if kind == "sqlite":
        stores = [open_store(f"sqlite:///{tmp_path}/bridge.db") for _ in range(count)]
        try:
            yield stores
        finally:
            for s in stores:
                s.close()
        return
    with database() as url:
        stores = [open_store(url) for _ in range(count)]
        try:
            yield stores
        finally:
            for s in stores:
                s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> Iterator[str | None]:
    """For engine-level tests, the store every engine of the test shares: None (the default SQLite file
    in tmp_path) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with database() as url:
        yield url
