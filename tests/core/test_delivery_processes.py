"""engine.delivery_processes: the deliverers in children of their own, the workers without them."""

from __future__ import annotations

import signal
from pathlib import Path

from bridge.core.store.sqlite import SQLiteStore
from tests.core.test_crash_recovery import delivered_ids, file_flow
from tests.processes import alive, children_of, wait_for
from tests.processes import start_engine as start


def role_of(pid: int) -> str | None:
    """The child's ``--role``; None while it is between fork and exec (its command line still the
    parent's) or already gone."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return args[args.index(b"--role") + 1].decode() if b"--role" in args else None


def roles(pid: int) -> list[str | None]:
    return sorted((role_of(child) for child in children_of(pid)), key=str)


def test_delivery_processes_deliver_what_worker_processes_process(tmp_path):
    count = 120
    config, outbox = file_flow(tmp_path, "{processes: 1, delivery_processes: 1, workers: 2, deliverers: 2,"
                                         " batch_size: 8, lease_seconds: 5, poll_seconds: 0.05}", count, patients=9)
    engine = start(config)
    try:
        assert wait_for(lambda: roles(engine.pid) == ["deliverer", "worker"], 60), \
            f"a worker and a delivery process, not {roles(engine.pid)}"
        children = children_of(engine.pid)
        assert wait_for(lambda: len(set(delivered_ids(outbox))) == count, 120), \
            f"only {len(set(delivered_ids(outbox)))} of {count} delivered"
        store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
        assert wait_for(lambda: store.counts()["flow"].get("delivered", 0) == count, 60), store.counts()
        store.close()
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=10)
    assert wait_for(lambda: not any(alive(pid) for pid in children), 30), "children outlived their parent"


def test_delivery_processes_is_checked(tmp_path):
    import pytest

    from bridge.errors import ConfigError
    from bridge.testing import engine_from_dict

    config = {"channels": {}, "destinations": {}, "engine": {"delivery_processes": -1}}
    with pytest.raises(ConfigError, match="engine.delivery_processes"):
        engine_from_dict(config, tmp_path)
