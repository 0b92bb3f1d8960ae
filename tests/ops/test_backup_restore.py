"""`bridge backup` and `bridge restore`: a backup taken while the engine works is whole, a restored
store passes `bridge audit verify`, and the engine resumes on it — a message received before the
backup, not yet delivered, is delivered after the restore."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import threading
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.core.store import open_store
from bridge.testing import plugin_manager
from tests.pg import pg_url  # noqa: F401  (fixture)


def visit(n: int) -> bytes:
    return json.dumps({"schema": "telemed-bridge/1", "records": [{
        "kind": "Encounter", "id": f"ENC-{n}", "status": "finished", "modality": "video",
        "patient": {"identifiers": [{"value": f"MRN-{n}", "type": "MR"}]},
    }]}).encode()


def write_config(folder: Path, store: str = "sqlite:///var/bridge.db") -> str:
    path = folder / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        store: {store}
        channels:
          intake: {{source: "file://inbox", format: bridge, routes: [{{to: [ehr]}}]}}
        destinations:
          ehr: {{url: "file://outbox", format: bridge}}
    """))
    return str(path)


def engine_on(config_path: str) -> Engine:
    plugins = plugin_manager()
    return Engine(load_config(config_path, plugins), plugins)


def test_a_message_received_before_the_backup_is_delivered_after_the_restore(tmp_path, capsys):
    config = write_config(tmp_path)
    engine = engine_on(config)
    waiting = engine.submit("intake", visit(1)).message_id  # received and committed, not yet processed
    engine.store.close()
    backup = str(tmp_path / "backups/bridge-1.db")
    os.makedirs(os.path.dirname(backup))
    assert main(["backup", "-c", config, backup]) == 0
    assert "1 message(s)" in capsys.readouterr().err
    for suffix in ("", "-wal", "-shm"):  # the disk is lost
        Path(f"{tmp_path}/var/bridge.db{suffix}").unlink(missing_ok=True)

    assert main(["restore", "-c", config, backup]) == 0
    assert main(["audit", "verify", "-c", config]) == 0
    assert "audit log intact" in capsys.readouterr().err

    engine = engine_on(config)
    try:
        engine.open_destinations()
        engine.drain()
        assert engine.store.get_message(waiting).status == "delivered"
        actions = [e.action for e in engine.store.search_audit(action="store.")]
        assert actions == ["store.restore"]  # the backup was audited in the store it copied, after the copy
    finally:
        engine.store.close()
    delivered = list((tmp_path / "outbox").iterdir())
    assert len(delivered) == 1 and b"ENC-1" in delivered[0].read_bytes()


def test_a_backup_taken_while_messages_arrive_is_whole(tmp_path, capsys):
    config = write_config(tmp_path)
    engine = engine_on(config)
    for n in range(50):
        engine.submit("intake", visit(n))
    stop = threading.Event()

    def keep_receiving() -> None:
        n = 1000
        while not stop.is_set():
            engine.submit("intake", visit(n))
            n += 1

    writer = threading.Thread(target=keep_receiving)
    writer.start()
    try:
        assert main(["backup", "-c", config, str(tmp_path / "during.db")]) == 0
    finally:
        stop.set()
        writer.join(10)
    received = len(engine.store.search(limit=100000))
    engine.store.close()
    copy = sqlite3.connect(tmp_path / "during.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    in_backup = copy.execute("SELECT count(*) FROM messages").fetchone()[0]
    copy.close()
    assert not (tmp_path / "during.db-wal").exists()
    assert 50 <= in_backup <= received


def test_restore_keeps_the_store_it_replaces_and_refuses_without_replace(tmp_path, capsys):
    config = write_config(tmp_path)
    engine = engine_on(config)
    engine.submit("intake", visit(1))
    assert main(["backup", "-c", config, str(tmp_path / "one.db")]) == 0
    engine.submit("intake", visit(2))  # after the backup: only in the live store (and its WAL)
    engine.store.close()
    assert main(["backup", "-c", config, str(tmp_path / "one.db")]) == 2  # never overwrites
    assert "never overwrites" in capsys.readouterr().err
    assert main(["restore", "-c", config, str(tmp_path / "one.db")]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["restore", "-c", config, str(tmp_path / "one.db"), "--replace"]) == 0
    aside = [p for p in (tmp_path / "var").iterdir() if ".before-restore-" in p.name and p.name.endswith("Z")]
    assert len(aside) == 1
    kept = open_store(f"sqlite:///{aside[0]}")
    restored = open_store(f"sqlite:///{tmp_path}/var/bridge.db")
    try:
        assert len(kept.search(limit=10)) == 2  # nothing lost: the replaced store is whole
        assert len(restored.search(limit=10)) == 1
    finally:
        kept.close()
        restored.close()


def test_a_file_that_is_no_backup_or_a_tampered_one_is_refused_and_the_store_untouched(tmp_path, capsys):
    config = write_config(tmp_path)
    engine = engine_on(config)
    engine.submit("intake", visit(1))
    engine.store.audit("test", "note", "x", {"n": 1})
    engine.store.close()
    (tmp_path / "notes.txt").write_text("not a database")
    assert main(["restore", "-c", config, str(tmp_path / "notes.txt"), "--replace"]) == 2
    assert "not a SQLite store backup" in capsys.readouterr().err
    assert main(["backup", "-c", config, str(tmp_path / "b.db")]) == 0
    tamper = sqlite3.connect(tmp_path / "b.db")
    tamper.execute("DROP TRIGGER audit_log_no_update")  # as someone with the file and sqlite3 could
    tamper.execute("UPDATE audit_log SET actor = 'someone-else' WHERE action = 'note'")
    tamper.commit()
    tamper.close()
    before = (tmp_path / "var/bridge.db").stat().st_ino
    assert main(["restore", "-c", config, str(tmp_path / "b.db"), "--replace"]) == 2
    assert "audit log is broken" in capsys.readouterr().err
    assert (tmp_path / "var/bridge.db").stat().st_ino == before
    assert not [p for p in (tmp_path / "var").iterdir() if "restor" in p.name]


def test_postgresql_backup_and_restore_with_pg_dump(tmp_path, capsys, pg_url):  # noqa: F811
    import shutil

    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("pg_dump and pg_restore are not installed (Debian: postgresql-client)")
    config = write_config(tmp_path, pg_url)
    engine = engine_on(config)
    waiting = engine.submit("intake", visit(7)).message_id
    engine.store.close()
    assert main(["backup", "-c", config, str(tmp_path / "pg.dump")]) == 0
    from tests.pg import database

    with database() as fresh:
        (tmp_path / "restored").mkdir()
        restored_config = write_config(tmp_path / "restored", fresh)
        assert main(["restore", "-c", restored_config, str(tmp_path / "pg.dump")]) == 0
        assert main(["audit", "verify", "-c", restored_config]) == 0
        assert main(["restore", "-c", restored_config, str(tmp_path / "pg.dump")]) == 2  # not empty now
        assert "not empty" in capsys.readouterr().err
        engine = engine_on(restored_config)
        try:
            engine.open_destinations()
            engine.drain()
            assert engine.store.get_message(waiting).status == "delivered"
        finally:
            engine.store.close()
