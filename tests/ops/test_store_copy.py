"""`bridge store copy --from sqlite:///… --to postgresql://…`: every table in id order, the audit chain
intact (`bridge audit verify` passes on the copy), the queue still works, a non-empty target refused."""

from __future__ import annotations

import sqlite3
import textwrap
import time

from bridge.cli import main
from bridge.core.store import open_store
from bridge.core.store.base import DeliveryOutcome, NewOutbox, ProcessingResult
from bridge.core.store.sqlite import SQLiteStore
from tests.pg import pg_url  # noqa: F401  (fixture)

COMPARED = {  # table: columns both backends have (lane markers are each backend's own)
    "messages": "id, channel, format, status, received_at, updated_at, raw, sha256, size, origin, dedupe_key,"
                " control_id, patient_id, trace_id, records, error, replay_of, replay_root, policy_override,"
                " order_key, lease_token",
    "events": "id, message_id, at, kind, detail",
    "outbox": "id, message_id, destination, status, payload, order_key, order_mode, attempts, next_attempt_at,"
              " delivered_at, last_error, control_id",
    "holds": "id, message_id, status, created_at, reasons, resolved_at, resolved_by, resolution",
    "audit_log": "id, at, actor, action, target, detail, prev_hash, hash",
    "users": "name, password_hash, role, created_at, disabled, session_epoch",
    "api_tokens": "name, token_sha256, role, created_at, revoked_at",
    "job_runs": "id, job, slot, status, owner, started_at, finished_at, detail, attempts",
    "watermarks": "name, value, updated_at",
    "channel_state": "channel, paused, updated_at, updated_by, reason",
}


def busy_sqlite_store(path) -> SQLiteStore:
    """A store with a bit of everything: processed, delivered, dead, held, waiting, replayed, admin rows."""
    store = SQLiteStore(str(path))
    for n in range(6):
        store.receive("visits", "bridge", f"msg {n}".encode(), dedupe_key=f"k{n}",
                      header={"control_id": f"C{n}", "order_key": f"P{n % 2}"}, origin={"file": f"f{n}"})
    first, second = store.claim_messages("w", 30, 2)
    store.finish_processing(first, ProcessingResult(
        status="routed", keys={"patient_id": "P0"}, records=[{"kind": "Patient"}], trace_id="t1",
        outbox=[NewOutbox(d, b"payload", "text/plain", "txt", "P0", "strict") for d in ("ehr", "lab")]))
    store.finish_processing(second, ProcessingResult(status="held", hold_reasons=[{"rule": "R1"}],
                                                     keys={"prescription_number": "RX1"}))
    ehr, lab = store.claim_deliveries("d", 30, 2)
    store.finish_deliveries([DeliveryOutcome(ehr, "delivered", "ok"), DeliveryOutcome(lab, "dead", "refused")])
    store.replay(first.id, reason="lab was down", actor="alice")
    store.resolve_hold(second.id, "reject", reason="not ours", actor="bob")
    store.create_user("carol", "scrypt$x", "operator", actor="admin")
    store.create_token("ci", "ab" * 32, "viewer", actor="admin")
    store.set_channel_paused("visits", True, reason="maintenance", actor="admin")
    store.set_channel_paused("visits", False, reason="done", actor="admin")
    store.set_watermark("ehr-encounters", "2026-12-01T00:00:00Z")
    run = store.claim_job_slot("prune", "2026-12-05T02:15", "node-1", 60)
    store.finish_job_slot(run["id"], "node-1", "succeeded", {"pruned": 0})
    for n in range(5):
        store.audit("dave", "message.view", f"message:{n}", {"at": time.time(), "n": n})
    return store


def rows(conn, table, placeholder_ok=True):
    order = "id" if COMPARED[table].startswith("id") else COMPARED[table].split(",")[0]
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in conn.execute(f"SELECT {COMPARED[table]} FROM {table} ORDER BY {order}").fetchall()]


def config_for(tmp_path, url):
    path = tmp_path / "pg.yaml"
    path.write_text(textwrap.dedent(f"""
        store: {url}
        channels:
          visits: {{source: file://inbox, format: bridge}}
    """))
    return str(path)


def test_copy_moves_every_table_with_the_audit_chain_and_lanes(tmp_path, pg_url, capsys):  # noqa: F811
    busy_sqlite_store(tmp_path / "bridge.db").close()
    assert main(["store", "copy", "--from", f"sqlite:///{tmp_path / 'bridge.db'}", "--to", pg_url]) == 0
    assert "audit_log: 11 row(s)" in capsys.readouterr().out

    source = sqlite3.connect(tmp_path / "bridge.db")
    target = open_store(pg_url)
    with target._tx() as conn:
        for table in COMPARED:
            assert rows(conn, table) == rows(source, table), table
    assert main(["audit", "verify", "-c", config_for(tmp_path, pg_url)]) == 0
    assert "audit log intact" in capsys.readouterr().err

    # the queue goes on where the source left it: waiting messages in their lanes, new ids after the old
    waiting = [m.id for m in target.search(status="received", limit=100)]
    claimed = target.claim_messages("pg-worker", 30, 10)
    assert sorted(c.id for c in claimed) == sorted(waiting)[:2]  # lane heads of P0 and P1 (the replay waits in P0)
    new_id, _ = target.receive("visits", "bridge", b"after the move", dedupe_key=None, header={}, origin={})
    assert new_id > max(r[0] for r in rows(source, "messages"))
    target.close()


def test_copy_refuses_a_target_that_is_not_empty(tmp_path, pg_url, capsys):  # noqa: F811
    busy_sqlite_store(tmp_path / "bridge.db").close()
    source = f"sqlite:///{tmp_path / 'bridge.db'}"
    assert main(["store", "copy", "--from", source, "--to", pg_url]) == 0
    capsys.readouterr()
    assert main(["store", "copy", "--from", source, "--to", pg_url]) == 1
    assert "is not empty (rows in messages, events, outbox" in capsys.readouterr().err
    target = open_store(pg_url)
    assert sum(sum(c.values()) for c in target.counts().values()) == 7  # nothing copied twice
    target.close()


def test_copy_names_a_wrong_url(tmp_path, capsys):
    assert main(["store", "copy", "--from", f"sqlite:///{tmp_path / 'missing.db'}",
                 "--to", "postgresql://u@127.0.0.1:1/x"]) == 2
    assert "no store at" in capsys.readouterr().err
    SQLiteStore(str(tmp_path / "a.db")).close()
    assert main(["store", "copy", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", "sqlite:///b.db"]) == 1
    assert "--to must be a PostgreSQL store URL" in capsys.readouterr().err
