"""Engine.reload and ConfigReloader in one process: routes, destinations and maps change for the next
message; what only a restart can change, and a destination that still has rows to send, are refused
with their key paths and change nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.core.reload import ConfigReloader, ReloadRefused
from bridge.testing import plugin_manager


def visit(n: int, status: str = "finished") -> bytes:
    return json.dumps({"schema": "telemed-bridge/1", "records": [{
        "kind": "Encounter", "id": f"ENC-{n}", "status": status, "modality": "video",
        "patient": {"identifiers": [{"value": f"MRN-{n}", "type": "MR"}]},
    }]}).encode()


def write(folder: Path, *, to: str = "a", channel_maps: str = "[]", destinations: str = "",
          dest_a: str = "out-a", order: str = "") -> str:
    path = folder / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          intake: {{source: "file://inbox", format: bridge, routes: [{{to: [{to}]}}], maps: {channel_maps}{order}}}
        destinations:
          a: {{url: "file://{dest_a}", format: bridge}}
          b: {{url: "file://out-b", format: bridge}}
          {destinations}
    """))
    return str(path)


def write_map(folder: Path, name: str, steps: str) -> None:
    (folder / "maps" / name).mkdir(parents=True, exist_ok=True)
    (folder / "maps" / name / "map.yaml").write_text(textwrap.dedent(steps))


def count(folder: Path) -> int:
    return len(list(folder.iterdir())) if folder.exists() else 0


@pytest.fixture
def engine(tmp_path):
    plugins = plugin_manager()
    built = Engine(load_config(write(tmp_path), plugins), plugins)
    built.open_destinations()
    yield built
    built.store.close()


def reload(engine, path: str):
    return engine.reload(load_config(path, engine.plugins))


def test_a_route_change_applies_to_the_next_message(engine, tmp_path):
    engine.submit("intake", visit(1))
    engine.drain()
    summary = reload(engine, write(tmp_path, to="b"))
    assert summary["channels"] == ["intake"]
    engine.submit("intake", visit(2))
    engine.drain()
    assert (count(tmp_path / "out-a"), count(tmp_path / "out-b")) == (1, 1)


def test_a_destination_whose_url_changes_gets_a_new_transport(engine, tmp_path):
    before = engine.destinations["a"]
    summary = reload(engine, write(tmp_path, dest_a="out-a2"))
    assert summary["changed"] == ["a"] and engine.destinations["a"] is not before
    assert engine.destinations["b"] is not None
    engine.submit("intake", visit(1))
    engine.drain()
    assert count(tmp_path / "out-a2") == 1 and count(tmp_path / "out-a") == 0


def test_maps_are_read_again_even_when_only_their_files_changed(engine, tmp_path):
    write_map(tmp_path, "cancelled-only", """
        steps:
          - id: drop-finished
            when: {equals: {encounter.status: finished}}
            drop: encounter
    """)
    config = write(tmp_path, channel_maps="[cancelled-only]")
    reload(engine, config)
    engine.submit("intake", visit(1))
    engine.drain()
    assert count(tmp_path / "out-a") == 0  # the map dropped the finished visit: nothing to send
    write_map(tmp_path, "cancelled-only", """
        steps:
          - id: drop-cancelled
            when: {equals: {encounter.status: cancelled}}
            drop: encounter
    """)
    reload(engine, config)  # the same bridge.yaml, a changed map
    engine.submit("intake", visit(2))
    engine.drain()
    assert count(tmp_path / "out-a") == 1


def test_removing_a_destination_with_rows_waiting_is_refused_until_they_are_sent(engine, tmp_path):
    reload(engine, write(tmp_path, to="c", destinations='c: {url: "file://out-c", format: bridge}'))
    engine.submit("intake", visit(1))
    engine.process_batch()  # routed to c, not delivered yet
    with pytest.raises(ReloadRefused) as refused:
        reload(engine, write(tmp_path, to="a"))
    assert [path for path, _ in refused.value.problems] == ["destinations.c"]
    assert "c" in engine.destinations  # nothing changed
    engine.drain()
    assert count(tmp_path / "out-c") == 1
    assert reload(engine, write(tmp_path, to="a"))["removed"] == ["c"]


@pytest.mark.parametrize("change, path", [
    ({"order": ", order: {by: channel}"}, "channels.intake.order_by"),
])
def test_what_only_a_restart_can_change_is_refused_with_its_key(engine, tmp_path, change, path):
    with pytest.raises(ReloadRefused) as refused:
        reload(engine, write(tmp_path, **change))
    assert [p for p, _ in refused.value.problems] == [path]
    engine.submit("intake", visit(1))
    engine.drain()
    assert count(tmp_path / "out-a") == 1


def test_the_reloader_refuses_a_config_that_fails_check_and_audits_both_outcomes(engine, tmp_path, caplog):
    path = str(tmp_path / "bridge.yaml")
    reloader = ConfigReloader(path, engine.plugins, engine, actor="test")
    seen = []
    reloader.on_reload.append(seen.append)
    (tmp_path / "bridge.yaml").write_text("channels: [not, a, mapping")
    assert reloader.reload() is False
    assert "configuration reload refused" in caplog.text and "invalid YAML" in caplog.text
    write(tmp_path, to="b")
    assert reloader.reload() is True and [c.channels["intake"].routes[0].to for c in seen] == [("b",)]
    actions = [e.action for e in reversed(engine.store.search_audit(action="config."))]
    assert actions == ["config.reload_refused", "config.reload"]


def test_an_unchanged_alerts_section_lets_a_reload_through_and_a_changed_one_needs_a_restart(tmp_path):
    from bridge.core.reload import restart_only_changes
    from tests.ops.test_alert_config import GOOD, parse

    assert restart_only_changes(parse(tmp_path, GOOD), parse(tmp_path, GOOD)) == []
    slower = {**GOOD, "evaluate_seconds": 60}
    assert [p for p, _ in restart_only_changes(parse(tmp_path, GOOD), parse(tmp_path, slower))] == ["alerts"]


def test_the_admin_app_and_the_alert_loop_see_the_reloaded_configuration(engine, tmp_path):
    """After a reload, the pages beside the engine list the new destination and the alert loop
    watches it (both keep the configuration object the engine runs, not the one they started with)."""
    from bridge.core.alerts import AlertMonitor
    from bridge.web import create_app

    app = create_app(engine.config, engine.plugins, engine.store, engine=engine)
    engine.alerts = AlertMonitor(engine.store, engine.config, engine=engine)  # as Engine.start makes it
    reload(engine, write(tmp_path, destinations='c: {url: "file://out-c", format: bridge}'))
    assert "c" in app.config["BRIDGE_CONFIG"].destinations
    assert app.config["BRIDGE_CONFIG"] is engine.config is engine.alerts.config
