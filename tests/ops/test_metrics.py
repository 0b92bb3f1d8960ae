"""/metrics text: parsed back by an independent reader of the exposition format."""

from __future__ import annotations

import re

from bridge.core import metrics
from bridge.core.store.sqlite import SQLiteStore
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import ScriptedDestinations, encounter_message

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse(text: str) -> dict[str, dict]:
    """Families by name: help, type and samples [(name, labels, value)]; checks the format's rules."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in families, f"family {name} appears twice"
            current = families[name] = {"help": help_text, "type": None, "samples": []}
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert current is families[name] and kind in ("counter", "gauge", "histogram")
            current["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value = match.groups()
            labels, rest = {}, labels_text or ""
            while rest:
                got = LABEL.match(rest)
                assert got, f"bad labels in {line!r}"
                labels[got.group(1)] = unescape(got.group(2))
                rest = rest[got.end():]
            base = re.sub(r"_(bucket|sum|count)$", "", name) if current["type"] == "histogram" else name
            assert current is families[base], f"sample {name} outside its family"
            current["samples"].append((name, labels, float(value)))
    return families


def values(family: dict, **want) -> list[float]:
    return [v for _, labels, v in family["samples"] if all(labels.get(k) == w for k, w in want.items())]


def test_store_counts_queue_depths_and_latency_render_in_the_text_format(tmp_path):
    scripted = ScriptedDestinations()
    plugins = plugin_manager(("scripted", scripted.plugin()), disabled=("telehealth_policy",))
    engine = engine_from_dict({
        "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr", "lab"]}],
                                "order": {"by": "none"}},
                     "quiet": {"source": "file://inbox2", "format": "bridge"}},
        "destinations": {"ehr": {"url": "script://ehr", "format": "bridge"},
                         "lab": {"url": "script://lab", "format": "bridge",
                                 "retry": {"max_attempts": 2, "initial_seconds": 3600}}},
    }, tmp_path, plugins)
    engine.open_destinations()
    scripted.script("lab", ["transient"] * 2 + ["permanent"])
    for n in range(3):
        engine.submit("visits", encounter_message(n))
    engine.submit("visits", b"{broken")
    engine.drain()
    engine.submit("visits", encounter_message(9))  # waiting for a worker

    families = parse(metrics.render(engine.store, engine))
    by_status = families["bridge_channel_messages"]
    assert families["bridge_channel_messages"]["type"] == "gauge"
    assert values(by_status, channel="visits", status="routed") == [2]
    assert values(by_status, channel="visits", status="dead") == [1]
    assert values(families["bridge_channel_messages_received"], channel="visits") == [5]
    assert values(families["bridge_channel_messages_received"], channel="quiet") == [0]
    assert values(families["bridge_channel_messages_failed"], channel="visits") == [1]
    assert values(families["bridge_channel_messages_dead_lettered"], channel="visits") == [1]
    assert values(families["bridge_channel_messages_held"], channel="visits") == [0]
    assert values(families["bridge_channel_queue_depth"], channel="visits") == [1]
    assert values(families["bridge_destination_queue_depth"], destination="lab") == [2]
    assert values(families["bridge_destination_queue_depth"], destination="ehr") == [0]
    assert values(families["bridge_destination_outbox_rows"], destination="ehr", status="delivered") == [3]

    latency = families["bridge_delivery_latency_seconds"]
    assert latency["type"] == "histogram"
    buckets = [(labels["le"], v) for name, labels, v in latency["samples"]
               if name.endswith("_bucket") and labels["destination"] == "ehr"]
    counts = [v for _, v in buckets]
    assert buckets[-1][0] == "+Inf" and counts == sorted(counts) and counts[-1] == 3
    assert values(latency, destination="ehr", channel="visits")[-1] == 3  # _count
    (total,) = [v for name, labels, v in latency["samples"] if name.endswith("_sum") and labels["destination"] == "ehr"]
    assert 0 <= total < 30


def test_job_runs_and_hostile_label_values_survive_the_round_trip(tmp_path):
    store = SQLiteStore(str(tmp_path / "bridge.db"))
    odd = 'we"ird\\job\nname'
    for slot, status in (("s1", "succeeded"), ("s2", "failed"), ("s3", "succeeded")):
        run = store.claim_job_slot(odd, slot, "me", 60)
        store.finish_job_slot(run["id"], "me", status, {})
    store.claim_job_slot("poll", "s1", "me", 60)
    text = metrics.render(store)
    families = parse(text)
    assert values(families["bridge_job_runs"], job=odd, status="succeeded") == [2]
    assert values(families["bridge_job_runs"], job=odd, status="failed") == [1]
    assert values(families["bridge_job_runs"], job="poll", status="running") == [1]
    assert len(values(families["bridge_job_last_success_timestamp_seconds"], job=odd)) == 1
    assert "bridge_delivery_latency_seconds" not in families  # no engine: no in-process histogram
    assert '\\"ird\\\\job\\nname' in text and all(f["type"] for f in families.values())


def test_help_text_and_special_values_are_escaped():
    family = metrics.Family("x_total", "counter", "a \\ b\nc")
    family.add({"k": 'v"'}, float("inf"))
    assert family.text() == '# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{k="v\\""} +Inf'
