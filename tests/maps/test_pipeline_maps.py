"""Maps in the worker: a channel map's failure fails the message, a destination map's only its
destination; `route` adds a destination; a destination map that drops everything sends nothing
there; the application log never carries a value a map read."""

from __future__ import annotations

import json
import logging
import textwrap

from bridge.core.model.codec import record_from_dict
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message


def write(tmp_path, name: str, text: str) -> None:
    folder = tmp_path / "maps" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.yaml").write_text(textwrap.dedent(text))


def make_engine(tmp_path, channel_maps=(), ehr_maps=(), archive_maps=()):
    config = {
        "channels": {"visits": {"source": "file://inbox", "format": "bridge", "policies": [],
                                "maps": list(channel_maps), "routes": [{"to": ["ehr"]}]}},
        "destinations": {
            "ehr": {"url": "file://out/ehr", "format": "bridge", "maps": list(ehr_maps)},
            "archive": {"url": "file://out/archive", "format": "bridge", "maps": list(archive_maps)},
            "audit": {"url": "file://out/audit", "format": "bridge"},
        },
    }
    engine = engine_from_dict(config, tmp_path, plugin_manager(disabled=("telehealth_policy",)))
    engine.open_destinations()
    return engine


def delivered(tmp_path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / name).glob("*.json"))]


def test_a_channel_map_failure_fails_the_message_with_step_and_path_but_no_value(tmp_path, caplog):
    write(tmp_path, "bad-mode", """
        steps:
          - {id: modality, copy: {from: encounter.extra.json.mode, to: encounter.modality}}
    """)
    engine = make_engine(tmp_path, channel_maps=["bad-mode"])
    with caplog.at_level(logging.DEBUG):
        message_id = engine.submit("visits", encounter_message(1, mode="telepathy")).message_id
        engine.drain()
    message = engine.store.get_message(message_id)
    assert message.status == "failed"
    assert message.error == ("map bad-mode step modality: encounter.modality: the value does not fit the field "
                             "(expected one of video, audio_only, async, in_person)")
    kinds = [e.kind for e in engine.store.events(message_id)]
    assert "mapped" in kinds and "map_failed" in kinds
    assert "telepathy" not in caplog.text and "Testpatient" not in caplog.text


def test_a_destination_map_failure_dead_letters_only_that_destination(tmp_path):
    write(tmp_path, "strict-table", """
        tables: {known: {file: known.csv, key: id, missing: fail}}
        steps:
          - {id: known-visits, lookup: {table: known, key: encounter.id}}
    """)
    (tmp_path / "maps" / "strict-table" / "known.csv").write_text("id\nENC-9\n")
    write(tmp_path, "also-archive", "steps:\n  - {id: archive, route: [archive]}\n")
    engine = make_engine(tmp_path, channel_maps=["also-archive"], archive_maps=["strict-table"])
    message_id = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    rows = {r.destination: r for r in engine.store.outbox_rows(message_id=message_id)}
    assert rows["ehr"].status == "delivered"
    assert rows["archive"].status == "dead"
    assert rows["archive"].last_error == "map strict-table step known-visits: table known has no row for the code " \
                                         "at encounter.id"
    assert engine.store.get_message(message_id).status == "dead"


def test_route_adds_a_destination_with_the_kinds_it_names_and_destination_copies_are_their_own(tmp_path):
    write(tmp_path, "to-audit", """
        steps:
          - {id: video-to-audit, when: {equals: {encounter.modality: video}}, route: {to: [audit], records: encounter}}
    """)
    write(tmp_path, "ehr-authority", """
        steps:
          - id: authority
            set: {"patient.identifiers[type=MR].assigner": EHR-AUTH}
    """)
    engine = make_engine(tmp_path, channel_maps=["to-audit"], ehr_maps=["ehr-authority"])
    video = engine.submit("visits", encounter_message(1)).message_id
    audio = engine.submit("visits", encounter_message(2, modality="audio_only")).message_id
    engine.drain()
    assert {engine.store.get_message(m).status for m in (video, audio)} == {"delivered"}
    (audited,) = delivered(tmp_path, "audit")
    assert audited["records"][0]["id"] == "ENC-1"
    assert audited["records"][0]["patient"]["identifiers"][0].get("assigner") is None  # not the ehr's copy
    ehr = delivered(tmp_path, "ehr")
    assert [d["records"][0]["patient"]["identifiers"][0]["assigner"] for d in ehr] == ["EHR-AUTH", "EHR-AUTH"]
    record = record_from_dict(engine.store.get_message(video).records[0])
    assert record.patient.identifiers[0].assigner is None  # the stored message keeps the channel's records


def test_a_destination_map_that_drops_everything_sends_nothing_there(tmp_path):
    write(tmp_path, "no-audio", """
        steps:
          - {id: audio, when: {equals: {encounter.modality: audio_only}}, drop: encounter}
    """)
    engine = make_engine(tmp_path, ehr_maps=["no-audio"])
    message_id = engine.submit("visits", encounter_message(2, modality="audio_only")).message_id
    engine.drain()
    assert engine.store.outbox_rows(message_id=message_id) == []
    assert engine.store.get_message(message_id).status == "filtered"
    details = [e.detail for e in engine.store.events(message_id) if e.kind == "filtered"]
    assert {"destination": "ehr", "reason": "the destination's maps dropped every record"} in details


def test_a_viewer_sees_which_map_versions_touched_a_message(tmp_path):
    from bridge.web.auth import Principal
    from bridge.web.present import event_view

    write(tmp_path, "video", "steps:\n  - {id: video, set: {encounter.modality: video}}\n")
    engine = make_engine(tmp_path, channel_maps=["video"])
    message_id = engine.submit("visits", encounter_message(1, modality="audio_only")).message_id
    engine.drain()
    viewer = Principal("v", "viewer", "user")
    (mapped,) = [event_view(e, viewer) for e in engine.store.events(message_id) if e.kind == "mapped"]
    assert mapped["detail"] == {"map": "video", "version": engine.config.maps["video"].version, "stage": "channel",
                                "steps": [{"id": "video", "action": "set", "paths": ["encounter.modality"],
                                           "applied": 1, "changed": 1}]}
