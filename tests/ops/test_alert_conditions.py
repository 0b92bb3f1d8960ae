"""Each alert condition against a real store (and, for listeners and certificates, a real listener and
real certificate files): when it fires, what it says (names and numbers only), when it resolves; and two
monitors on one store (two nodes) sending each notice once."""

from __future__ import annotations

import datetime
import time

import pytest

from bridge.core.alerts import AlertMonitor
from bridge.core.alerts.conditions import earliest_expiry
from bridge.core.config import parse_config
from bridge.core.engine import Engine
from bridge.core.store.base import ProcessingResult
from tests import pg
from tests.hl7v2.conftest_mllp import channel, make_pki, mllp_plugins
from tests.ops.helpers import ScriptedJobs

HOUR = 3600.0
RAW = {"store": "sqlite:///bridge.db",
       "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}]}},
       "destinations": {"out": {"url": "file://outbox", "format": "bridge"}}}


class Recorder:
    """Stands in for the webhook/email receivers (tested for real in test_alert_notify and the e2e test)."""

    name = "webhook"

    def __init__(self) -> None:
        self.notices = []

    def send(self, notice) -> None:
        self.notices.append(notice)


def make_config(tmp_path, rules, *, store="sqlite:///bridge.db", **extra):
    data = {**RAW, "store": store,
            "alerts": {"notify": {"webhook": {"url": "http://127.0.0.1:9/hook"}}, "rules": rules}, **extra}
    return parse_config(data, config_dir=str(tmp_path), plugins=ScriptedJobs().plugins())


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, tmp_path):
    with pg.backend_stores(request.param, tmp_path, count=2) as pair:
        yield pair


def monitor(store, config, recorder=None, node="node-a", engine=None):
    return AlertMonitor(store, config, engine=engine, notifiers={"webhook": recorder or Recorder()}, node=node)


def receive(store, n, channel="in"):
    return [store.receive(channel, "bridge", f"m{i}".encode(), dedupe_key=None, header={"order_key": f"k{i}"},
                          origin={})[0] for i in range(n)]


def settle(store, statuses):
    claims = sorted(store.claim_messages("w", 60, len(statuses)), key=lambda c: c.id)
    store.finish_processing_many([
        (c, ProcessingResult(s, error="bad" if s == "failed" else None,
                             hold_reasons=[{"id": "R2"}] if s == "held" else None))
        for c, s in zip(claims, statuses)])


def test_two_nodes_evaluating_the_same_rules_send_each_notice_once(tmp_path, stores):
    config = make_config(tmp_path, {"stuck": {"when": "backlog", "channel": "in", "minutes": 5}})
    a, b = Recorder(), Recorder()
    node_a, node_b = monitor(stores[0], config, a, "a"), monitor(stores[1], config, b, "b")
    receive(stores[0], 2)
    now = time.time() + 10 * 60
    for offset in (0, 1, 2):
        node_a.evaluate_once(now=now + offset)
        node_b.evaluate_once(now=now + offset)
    assert [(n.kind, n.subject) for n in a.notices + b.notices] == [("firing", "channel:in")]
    assert "2 waiting" in (a.notices + b.notices)[0].summary
    settle(stores[0], ["delivered", "delivered"])
    node_b.evaluate_once(now=now + 3)
    node_a.evaluate_once(now=now + 4)
    assert [n.kind for n in a.notices + b.notices] == ["firing", "resolved"]


def test_channel_error_rate_fires_over_the_threshold_with_enough_messages(tmp_path, stores):
    store = stores[0]
    config = make_config(tmp_path, {"errors": {"when": "channel_error_rate", "percent": 50, "minutes": 10,
                                               "min_messages": 4}})
    recorder = Recorder()
    receive(store, 3)
    settle(store, ["failed", "failed", "delivered"])
    monitor(store, config, recorder).evaluate_once()
    assert recorder.notices == []  # 3 messages: fewer than min_messages
    receive(store, 1)
    settle(store, ["failed"])
    monitor(store, config, recorder).evaluate_once()
    [notice] = recorder.notices
    assert notice.subject == "channel:in" and notice.facts == {"channel": "in", "errors": 3, "received": 4,
                                                                "percent": 75.0, "window_minutes": 10.0}


def test_hold_waiting_counts_holds_older_than_the_limit(tmp_path, stores):
    store = stores[0]
    config = make_config(tmp_path, {"holds": {"when": "hold_waiting", "hours": 4}})
    recorder = Recorder()
    receive(store, 2)
    settle(store, ["held", "held"])
    watcher = monitor(store, config, recorder)
    watcher.evaluate_once(now=time.time() + 3 * HOUR)
    assert recorder.notices == []
    watcher.evaluate_once(now=time.time() + 5 * HOUR)
    [notice] = recorder.notices
    assert notice.subject == "holds" and notice.facts["waiting"] == 2 and 4.9 < notice.facts["oldest_hours"] < 5.1
    for hold in store.holds("open"):
        store.resolve_hold(hold.message_id, "reject", reason="test", actor="tester")
    watcher.evaluate_once(now=time.time() + 5 * HOUR)
    assert [n.kind for n in recorder.notices] == ["firing", "resolved"]


def test_job_failing_after_the_configured_number_of_failed_runs(tmp_path, stores):
    store = stores[0]
    jobs = {"nightly": {"type": "scripted", "trigger": {"interval_seconds": 3600}}}
    config = make_config(tmp_path, {"job": {"when": "job_failing", "job": "nightly", "runs": 2}}, jobs=jobs)
    recorder = Recorder()

    def run(slot, status):
        claimed = store.claim_job_slot("nightly", slot, "o", 60)
        store.finish_job_slot(claimed["id"], "o", status, {"error": "EHR said 500"})

    run("2026-01-01T00:00:00.000Z", "failed")
    monitor(store, config, recorder).evaluate_once()
    assert recorder.notices == []
    run("2026-01-01T01:00:00.000Z", "failed")
    monitor(store, config, recorder).evaluate_once()
    assert [(n.subject, n.facts["last_slot"]) for n in recorder.notices] == [("job:nightly",
                                                                               "2026-01-01T01:00:00.000Z")]
    assert "500" not in recorder.notices[0].summary  # the run's error text stays in the job history
    run("2026-01-01T02:00:00.000Z", "succeeded")
    monitor(store, config, recorder).evaluate_once()
    assert [n.kind for n in recorder.notices] == ["firing", "resolved"]


def test_destination_failing_needs_waiting_work_and_no_recent_delivery(tmp_path):
    config = make_config(tmp_path, {"down": {"when": "destination_failing", "minutes": 5}})
    with pg.backend_stores("sqlite", tmp_path) as [store]:
        recorder = Recorder()
        receive(store, 1)
        claims = store.claim_messages("w", 60, 1)
        from bridge.core.store.base import NewOutbox

        store.finish_processing_many([(claims[0], ProcessingResult("routed", outbox=[
            NewOutbox("out", b"p", "text/plain", "txt", "k", "strict")]))])
        monitor(store, config, recorder).evaluate_once(now=time.time() + 60)
        assert recorder.notices == []  # waiting one minute
        monitor(store, config, recorder).evaluate_once(now=time.time() + 6 * 60)
        [notice] = recorder.notices
        assert notice.subject == "destination:out" and notice.facts["pending"] == 1


def test_certificates_the_config_names_expiring_within_the_window(tmp_path):
    pki = make_pki(tmp_path)  # valid for one day
    (tmp_path / "broken.pem").write_text("not a certificate")
    config = make_config(tmp_path, {"certs": {"when": "certificate_expiring", "days": 30}},
                         web={"tls": {"cert_file": pki.server_cert.name, "key_file": pki.server_key.name}})
    with pg.backend_stores("sqlite", tmp_path) as [store]:
        recorder = Recorder()
        monitor(store, config, recorder).evaluate_once()
        [notice] = recorder.notices
        assert notice.subject == "certificate:web.tls.cert_file"
        assert 0.9 < notice.facts["days_left"] <= 1.0 and "expires in" in notice.summary
    short = make_config(tmp_path, {"certs": {"when": "certificate_expiring", "days": 0.5}},
                        web={"tls": {"cert_file": "broken.pem", "key_file": pki.server_key.name}})
    with pg.backend_stores("sqlite", tmp_path / "2") as [store]:
        recorder = Recorder()
        monitor(store, short, recorder).evaluate_once()
        [notice] = recorder.notices
        assert notice.facts == {"config_key": "web.tls.cert_file", "readable": False}


def test_earliest_expiry_of_a_chain_is_its_first_to_expire(tmp_path):
    pki = make_pki(tmp_path)
    chain = pki.server_cert.read_bytes() + pki.ca.read_bytes()
    expected = min(earliest_expiry(pki.server_cert.read_bytes()), earliest_expiry(pki.ca.read_bytes()))
    assert earliest_expiry(chain) == expected
    assert expected - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=1, minutes=1)


def test_listener_down_is_this_nodes_listener_and_resolves_when_it_listens_again(tmp_path):
    plugins = mllp_plugins()
    data = {"store": "sqlite:///bridge.db", "channels": {"lab": channel()}, "destinations": {},
            "alerts": {"notify": {"webhook": {"url": "http://127.0.0.1:9/hook"}},
                       "rules": {"listener": {"when": "listener_down"}}}}
    config = parse_config(data, config_dir=str(tmp_path), plugins=plugins)
    engine = Engine(config, plugins)
    engine.open_sources()
    engine.sources[0].start()
    recorder = Recorder()
    watcher = monitor(engine.store, config, recorder, node="node-a", engine=engine)
    try:
        watcher.evaluate_once()
        assert recorder.notices == []
        engine.sources[0].stop()
        watcher.evaluate_once()
        [notice] = recorder.notices
        assert notice.subject == "listener:lab@node-a"
        other_node = monitor(engine.store, config, Recorder(), node="node-b", engine=None)
        other_node.evaluate_once()  # node b has no such listener: it does not resolve node a's alert
        assert engine.store.alert_states()[0].state == "firing"
        engine.sources[:] = [engine._make_source(config.channels["lab"])]
        engine.sources[0].start()
        watcher.evaluate_once()
        assert [n.kind for n in recorder.notices] == ["firing", "resolved"]
    finally:
        for source in engine.sources:
            source.stop()
        engine.store.close()


def test_a_rule_whose_check_fails_changes_nothing(tmp_path, monkeypatch):
    config = make_config(tmp_path, {"stuck": {"when": "backlog", "minutes": 5}})
    with pg.backend_stores("sqlite", tmp_path) as [store]:
        recorder = Recorder()
        receive(store, 1)
        watcher = monitor(store, config, recorder)
        watcher.evaluate_once(now=time.time() + 600)
        assert [n.kind for n in recorder.notices] == ["firing"]

        def unreachable():
            raise OSError("store unreachable")

        monkeypatch.setattr(store, "channel_backlog", unreachable)
        watcher.evaluate_once(now=time.time() + 700)
        assert [n.kind for n in recorder.notices] == ["firing"]  # an outage does not resolve anything
        assert store.alert_states()[0].state == "firing"


def test_the_engine_runs_the_alert_loop_on_its_interval(tmp_path):
    config = parse_config({**RAW, "alerts": {"evaluate_seconds": 0.1,
                                                     "notify": {"webhook": {"url": "http://127.0.0.1:9/h"}},
                                                     "rules": {"stuck": {"when": "backlog", "minutes": 0.1}}}},
                          config_dir=str(tmp_path), plugins=ScriptedJobs().plugins())
    engine = Engine(config, ScriptedJobs().plugins())
    engine.store.set_channel_paused("in", True, reason="test", actor="tester")  # its message waits
    receive(engine.store, 1)
    engine.start()
    try:
        deadline = time.monotonic() + 15
        while not engine.store.alert_states() and time.monotonic() < deadline:
            time.sleep(0.1)
        [state] = engine.store.alert_states()
        assert (state.rule, state.subject, state.state) == ("stuck", "channel:in", "firing")
        deadline = time.monotonic() + 15  # the webhook port refuses: the notice stays due with its reason
        while not engine.store.alert_states()[0].last_error and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.store.alert_states()[0].last_error == "webhook: ConnectionError"
        assert engine.store.alert_states()[0].notified_at is None
    finally:
        engine.stop()

