"""``bridge backup`` and ``bridge restore``: a store to one file and back.

SQLite: SQLite's online backup API copies the database page by page from one read transaction, so the
engine keeps receiving and delivering while it runs (in WAL mode a reader never blocks a writer). The
copy has everything committed when the backup began, the WAL included. It is checked
(``PRAGMA integrity_check``) and written as a single self-contained file (rollback journal, not WAL)
before it gets its final name, so a backup that exists is a whole one.

Restoring never destroys anything: the store it replaces is renamed aside with its WAL, and the
backup must pass the integrity check and the audit chain's verification before it is installed.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --single-transaction`` when they are
installed (docs/operations.md). The password is never put on a command line nor printed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bridge.errors import StoreError

from ..fsync import fsync_path
from .sqlite import SQLiteStore, sqlite_path

SQLITE_HEADER = b"SQLite format 3\x00"
PG_TIMEOUT_SECONDS = 3600


class BackupRefused(StoreError):
    """Bad input rather than a failure: a file that exists, a store to keep, a file that is no backup."""


@dataclass(frozen=True)
class BackupResult:
    path: str
    bytes: int
    messages: int
    seconds: float


def backup_store(url: str, dest: str) -> BackupResult:
    """Write a backup of the store at ``url`` to ``dest`` (a new file: an existing one is refused)."""
    if os.path.exists(dest):
        raise BackupRefused(f"{dest} exists; a backup never overwrites a file (choose a new name)")
    started = time.monotonic()
    if url.startswith("sqlite:///"):
        _backup_sqlite(sqlite_path(url), dest)
    else:
        _pg_dump(url, dest)
    messages = _count_messages(dest) if url.startswith("sqlite:///") else -1
    return BackupResult(dest, os.path.getsize(dest), messages, time.monotonic() - started)


def _backup_sqlite(path: str, dest: str) -> None:
    if not os.path.exists(path):
        raise StoreError(f"no store at {path}")
    partial = dest + ".part"
    source = sqlite3.connect(path, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)  # all pages in one step: one read transaction, so one consistent snapshot
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        _check_integrity(target, partial)
    except sqlite3.Error as exc:
        target.close()
        os.unlink(partial)
        raise StoreError(f"backup of {path} failed: {exc}") from None
    finally:
        source.close()
    target.close()
    fsync_path(partial)
    os.replace(partial, dest)
    fsync_path(os.path.dirname(os.path.abspath(dest)))


def _check_integrity(conn: sqlite3.Connection, where: str) -> None:
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise StoreError(f"{where} fails SQLite's integrity check: {'; '.join(problems[:3])}")


def _count_messages(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()



@dataclass(frozen=True)
class RestoreResult:
    path: str
    messages: int
    set_aside: str | None
    """Where the store that was replaced now is (with its WAL), or None when there was none."""


def restore_store(url: str, backup: str, *, replace: bool = False) -> RestoreResult:
    """Install ``backup`` as the store at ``url``. An existing store is refused unless ``replace``,
    and then renamed aside, not deleted. The engine must be stopped (docs/operations.md)."""
    if not os.path.isfile(backup):
        raise BackupRefused(f"no backup at {backup}")
    if not url.startswith("sqlite:///"):
        _pg_restore(url, backup)
        return RestoreResult(url, -1, None)
    path = sqlite_path(url)
    _check_backup(backup)
    if os.path.exists(path) and not replace:
        raise BackupRefused(f"a store exists at {path}; stop the engine, then restore with --replace"
                         " (the current store is kept beside it, renamed)")
    partial = path + ".restoring"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _remove_with_wal(partial)  # what an interrupted restore left
    shutil.copyfile(backup, partial)
    try:
        _verify_audit(partial)
    except StoreError:
        _remove_with_wal(partial)
        raise
    finally:
        if os.path.exists(partial + "-intake"):  # the store's lock side file, not data
            os.unlink(partial + "-intake")
    set_aside = _move_with_wal(path, _aside_name(path)) if os.path.exists(path) else None
    _move_with_wal(partial, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))
    return RestoreResult(path, _count_messages(path), set_aside)


def _check_backup(backup: str) -> None:
    """A backup to restore: a SQLite file, whole, holding a bridge store."""
    with open(backup, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BackupRefused(f"{backup} is not a SQLite store backup")
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        _check_integrity(conn, backup)
        conn.execute("SELECT count(*) FROM messages, audit_log WHERE 0").fetchone()
    except sqlite3.Error as exc:
        raise BackupRefused(f"{backup} is not a bridge store: {exc}") from None
    finally:
        conn.close()


def _verify_audit(path: str) -> None:
    """Open the copy as the engine would (bringing it to the current schema) and verify its audit chain."""
    store = SQLiteStore(path)
    try:
        broken = store.verify_audit()
    finally:
        store.close()
    if broken is not None:
        raise BackupRefused(f"the backup's audit log is broken at entry {broken}; not restored")


def _aside_name(path: str) -> str:
    return f"{path}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def _move_with_wal(source: str, target: str) -> str:
    """Rename a database with its WAL and shared-memory files: the WAL travels with its database, so
    nothing committed in it is lost. The WAL moves first, the database (which names the store) last."""
    for suffix in ("-wal", "-shm", ""):
        if os.path.exists(source + suffix):
            os.replace(source + suffix, target + suffix)
        elif os.path.exists(target + suffix):
            os.unlink(target + suffix)  # a stale WAL must not be applied to another database
    return target


def _remove_with_wal(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


# --- PostgreSQL ------------------------------------------------------------------------------------


def _pg_environment(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying it (PGPASSWORD): a password on a
    command line is visible to every user of the host in ``ps``."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        host = parts.hostname or ""
        netloc = (parts.username or "") + "@" + host + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts._replace(scheme="postgresql")), env


def _pg_tool(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        raise StoreError(f"{name} is not installed: back up a PostgreSQL store with PostgreSQL's own tools"
                         " (docs/operations.md, 'Backup and restore')")
    return tool


def _pg_run(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_SECONDS)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise StoreError(f"{what} failed (exit {result.returncode}): {last[:300]}")


def _pg_dump(url: str, dest: str) -> None:
    bare, env = _pg_environment(url)
    partial = dest + ".part"
    try:
        _pg_run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", partial, "--dbname", bare],
                env, "pg_dump")
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    os.replace(partial, dest)


def _pg_restore(url: str, backup: str) -> None:
    """Into an empty database only (as ``bridge store copy``): one transaction, so a failure leaves it empty."""
    from .postgres import redact_url

    bare, env = _pg_environment(url)
    import psycopg

    try:
        with psycopg.connect(bare, password=env.get("PGPASSWORD"), connect_timeout=10) as conn:
            tables = conn.execute("SELECT count(*) FROM information_schema.tables"
                                  " WHERE table_schema = 'public'").fetchone()[0]
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {redact_url(url)}: {type(exc).__name__}") from None
    if tables:
        raise BackupRefused(f"{redact_url(url)} is not empty ({tables} table(s)); restore into a new, empty"
                         " database (createdb), then point store: at it")
    _pg_run([_pg_tool("pg_restore"), "--no-owner", "--single-transaction", "--exit-on-error", "--dbname", bare,
             backup], env, "pg_restore")


def backup_size_text(n: int) -> str:
    return f"{n / 1_048_576:.1f} MiB" if n >= 1_048_576 else f"{n / 1024:.1f} KiB"

