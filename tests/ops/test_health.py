"""Destination state (bridge.core.health) on both stores, driven by a real engine and scripted peers,
and the counters that back /metrics summed across processes (bridge.core.telemetry)."""

from __future__ import annotations

import json
import time

import pytest

from bridge.core import health, telemetry
from bridge.core.config import RetryPolicy
from bridge.core.store.destination_reads import AttemptActivity, OutboxActivity
from bridge.testing import engine_from_dict, plugin_manager
from tests import pg
from tests.core.helpers import ScriptedDestinations, encounter_message

CONFIG = {
    "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr", "lab"]}],
                            "order": {"by": "none"}},
                 "quiet": {"source": "file://inbox2", "format": "bridge", "routes": [{"to": ["archive"]}]}},
    "destinations": {"ehr": {"url": "script://ehr", "format": "bridge"},
                     "lab": {"url": "script://lab", "format": "bridge",
                             "retry": {"max_attempts": 2, "initial_seconds": 0.01, "jitter": 0}},
                     "archive": {"url": "script://archive", "format": "bridge"}},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    scripted = ScriptedDestinations()
    plugins = plugin_manager(("scripted", scripted.plugin()), disabled=("telehealth_policy",))
    config = dict(CONFIG)
    if request.param == "postgresql":
        with pg.database() as url:
            built = engine_from_dict({**config, "store": url}, tmp_path, plugins)
            built.open_destinations()
            built.scripted = scripted
            yield built
            built.store.close()
        return
    built = engine_from_dict(config, tmp_path, plugins)
    built.open_destinations()
    built.scripted = scripted
    yield built
    built.store.close()


def drain_until_settled(engine, timeout: float = 10.0) -> None:
    """Drain, including retries scheduled a few milliseconds later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.drain()
        if not engine.store.destination_outbox_activity().get("lab", OutboxActivity()).backlog:
            return
        time.sleep(0.02)
    raise AssertionError("the lab rows never settled")


def states(engine, **options) -> dict[str, health.DestinationHealth]:
    return {d.name: d for d in health.destinations(engine.store, engine.config, **options)}


def test_a_destination_goes_failing_then_flowing_and_paused_when_its_feeds_are(engine):
    engine.scripted.script("lab", ["transient", "transient"])  # two failed sends: the row gives up
    engine.submit("visits", encounter_message(1))
    drain_until_settled(engine)
    lab, ehr, archive = (states(engine)[n] for n in ("lab", "ehr", "archive"))
    assert lab.state == "failing" and lab.dead_letters == 1 and lab.backlog == 0
    assert (lab.attempts_last_hour, lab.failures_last_hour) == (2, 2)
    assert lab.last_success_at is None and lab.failing_since is not None
    assert lab.last_error and "peer busy" in lab.last_error
    assert ehr.state == "flowing" and ehr.attempts_last_hour == 1 and ehr.last_success_at is not None
    assert archive.state == "flowing" and archive.attempts_last_hour == 0 and archive.feeding_channels == ("quiet",)

    engine.submit("visits", encounter_message(2))  # the lab answers again
    drain_until_settled(engine)
    lab = states(engine)["lab"]
    assert lab.state == "flowing" and lab.attempts_last_hour == 3 and lab.failures_last_hour == 2
    assert lab.last_success_at >= lab.last_failure_at and lab.failing_since is None

    engine.store.set_channel_paused("quiet", True, reason="feed maintenance", actor="test")
    assert states(engine)["archive"].state == "paused"
    assert states(engine)["lab"].state == "flowing"  # "visits" still feeds it


def test_a_failing_run_is_retrying_until_it_lasts(engine):
    engine.scripted.script("lab", ["transient"])
    engine.deliverer.retry["lab"] = RetryPolicy(max_attempts=5, initial_seconds=3600)  # the next try is far off
    engine.submit("visits", encounter_message(1))
    engine.drain()
    lab = states(engine)["lab"]
    assert lab.state == "retrying" and lab.backlog == 1 and lab.failing_rows == 1
    assert lab.oldest_waiting_at is not None
    assert states(engine, failing_after=0)["lab"].state == "failing"
    assert states(engine, now=time.time() + 301)["lab"].state == "failing"


def test_attempts_are_kept_per_minute_and_read_from_the_window(engine):
    for n in range(5):
        engine.submit("visits", encounter_message(n))
    engine.drain()
    assert engine.store.destination_attempts(time.time() + 120) == {}
    now = engine.store.destination_attempts(time.time() - 3600)
    assert now["ehr"].attempts == 5 and now["lab"].attempts == 5 and "archive" not in now
    assert now["ehr"].failures == 0 and now["ehr"].last_success_at <= time.time()
    rows = engine.store._select("SELECT destination, SUM(attempts), COUNT(*) FROM destination_minutes"
                                " GROUP BY destination ORDER BY destination")
    assert [(r[0], r[1]) for r in rows] == [("ehr", 5), ("lab", 5)]
    assert all(r[2] <= 2 for r in rows)  # one row per minute (the drain may cross a minute's end)


def test_minutes_older_than_a_day_are_dropped_when_the_next_outcome_is_written(engine):
    day_old = int(time.time() // 60) - 24 * 60 - 5
    with engine.store._tx() as conn:
        engine.store._x(conn, "INSERT INTO destination_minutes (destination, minute, attempts) VALUES (?,?,?)",
                        ("ehr", day_old, 7))
    engine.submit("visits", encounter_message(1))
    engine.drain()
    minutes = [r[0] for r in engine.store._select("SELECT minute FROM destination_minutes")]
    assert day_old not in minutes and minutes


def test_classify_follows_the_documented_order():
    now = 10_000.0
    idle = OutboxActivity()
    assert health.classify(idle, AttemptActivity(), False, now) == ("flowing", None)
    assert health.classify(idle, AttemptActivity(), True, now) == ("paused", None)
    failed = AttemptActivity(attempts=1, failures=1, last_failure_at=now - 10, first_failure_after_success_at=now - 10)
    assert health.classify(idle, failed, True, now) == ("retrying", now - 10)  # failing outranks paused
    assert health.classify(idle, failed, False, now, failing_after=5) == ("failing", now - 10)
    gave_up = AttemptActivity(attempts=1, failures=1, last_failure_at=now - 1, dead_since_success=1)
    assert health.classify(idle, gave_up, False, now)[0] == "failing"
    recovered = AttemptActivity(attempts=2, failures=1, last_failure_at=now - 10, last_success_at=now - 5)
    assert health.classify(idle, recovered, False, now) == ("flowing", None)
    waiting = OutboxActivity(backlog=3, failing_rows=1, oldest_failing_at=now - 50)
    assert health.classify(waiting, recovered, False, now) == ("retrying", now - 50)  # another lane still fails
    backing_off = OutboxActivity(backlog=1, failing_rows=1, oldest_failing_at=now - 7200)
    assert health.classify(backing_off, AttemptActivity(), False, now) == ("failing", now - 7200)


def test_counters_add_up_across_processes_and_never_fall(tmp_path):
    parent, worker = telemetry.EngineMetrics(), telemetry.EngineMetrics()
    parent.share_dir = str(tmp_path)
    worker.inc("bridge_delivery_attempts_total", "ehr", amount=3)
    worker.histograms["bridge_ack_latency_seconds"].observe(("adt",), 0.002)
    worker.write_snapshot(tmp_path / "worker-1.json")
    (tmp_path / "worker-2.json").write_text("{not json")  # a torn or foreign file is skipped, not fatal
    parent.inc("bridge_delivery_attempts_total", "ehr")
    parent.histograms["bridge_ack_latency_seconds"].observe(("adt",), 20.0)  # beyond the last bucket
    combined = parent.combined()
    assert combined["counters"]["bridge_delivery_attempts_total"][("ehr",)] == 4
    series = combined["histograms"]["bridge_ack_latency_seconds"][("adt",)]
    assert series[-1] == 2 and series[-2] == pytest.approx(20.002) and series[1] == 1 and series[-3] == 1
    with pytest.raises(ValueError):
        parent.inc("bridge_delivery_attempts_total", "ehr", amount=-1)
    json.loads((tmp_path / "worker-1.json").read_text())  # written whole (write, then rename)


def test_readyz_fails_with_the_reason_when_the_store_is_unreachable(tmp_path):
    from bridge.core.config import parse_config
    from bridge.core.store import open_store
    from bridge.web import create_app

    with pg.database() as url:
        plugins = plugin_manager()
        config = parse_config({"store": url, "channels": {}, "destinations": {}}, config_dir=str(tmp_path),
                              plugins=plugins)
        store = open_store(url)
        client = create_app(config, plugins, store).test_client()
        assert client.get("/readyz").status_code == 200
        with pg._admin_connection() as conn:  # the database goes away under the running app
            conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["problems"][0].startswith("store unreachable: ")
        store.close()


def test_received_per_minute_counts_each_channels_arrivals_by_minute_without_replays(engine):
    """The overview's throughput chart: per channel, messages received in each minute after ``since``
    (both backends: PostgreSQL floors where SQLite's CAST truncates)."""
    store = engine.store
    now = time.time()
    since = now - 600
    for control, at in (("A", since + 5), ("B", since + 65), ("C", since + 70), ("D", since + 599)):
        message_id, _ = store.receive("adt", "hl7v2", f"MSH|{control}".encode(), dedupe_key=f"adt|{control}",
                                      header={"control_id": control, "order_key": None}, origin={})
        _backdate(store, message_id, at)
    per = store.received_per_minute(since, 10)
    assert per == {"adt": [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]}
    assert store.received_per_minute(since, 5) == {"adt": [1, 2, 0, 0, 0]}  # later minutes left out


def _backdate(store, message_id: int, at: float) -> None:
    """Set a stored message's receipt time (tests only), through each backend's own connection."""
    placeholder = getattr(store, "placeholder", "?")
    with store._tx() as conn:
        conn.execute(f"UPDATE messages SET received_at = {placeholder} WHERE id = {placeholder}", (at, message_id))
