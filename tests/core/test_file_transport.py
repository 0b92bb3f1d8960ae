"""The file transport: inbox folder source and atomic outbox destination."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
import time

import pytest

from bridge import Delivery, DestinationContext, Receipt, SourceContext
from bridge.errors import StoreError
from bridge.plugins.file import FolderDestination, FolderSource, path_from_url
from bridge.testing import engine_from_dict
from tests.core.helpers import encounter_message
from tests.pg import store_url  # noqa: F401  (fixture: SQLite and PostgreSQL)


def test_paths_resolve_against_the_config_folder(tmp_path):
    assert path_from_url("file:///abs/inbox", str(tmp_path)) == __import__("pathlib").Path("/abs/inbox")
    assert path_from_url("file://rel/inbox", str(tmp_path)) == tmp_path / "rel" / "inbox"
    assert path_from_url("file:../x", str(tmp_path)) == tmp_path / ".." / "x"


def engine_with_inbox(tmp_path, **channel):
    config = {
        "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}], **channel}},
        "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
    }
    engine = engine_from_dict(config, tmp_path)
    engine.open_sources()
    (source,) = engine.sources
    for folder in (source.folder, source.processed, source.rejected):
        folder.mkdir(parents=True, exist_ok=True)
    return engine, source


def test_inbox_file_is_committed_then_moved(tmp_path):
    engine, source = engine_with_inbox(tmp_path)
    (source.folder / "a.json").write_bytes(encounter_message(1))
    (source.folder / "b.json.part").write_bytes(b"half written")
    (source.folder / ".hidden").write_bytes(b"x")
    assert source.poll_once() == 1
    assert (source.processed / "a.json").exists() and not (source.folder / "a.json").exists()
    assert (source.folder / "b.json.part").exists()
    (message,) = engine.store.search()
    assert message.origin == {"file": "a.json"}


def test_file_seen_again_after_a_crash_is_a_duplicate(tmp_path):
    engine, source = engine_with_inbox(tmp_path)
    (source.folder / "a.json").write_bytes(encounter_message(1))
    source.poll_once()
    shutil.copy(source.processed / "a.json", source.folder / "a.json")  # the move "did not happen"
    source.poll_once()
    assert len(engine.store.search()) == 1
    changed = encounter_message(2)
    (source.folder / "a.json").write_bytes(changed)  # same name, new content: a new message
    source.poll_once()
    assert len(engine.store.search()) == 2


def test_oversized_file_is_rejected_with_a_reason_and_kept(tmp_path):
    engine, source = engine_with_inbox(tmp_path, max_message_bytes=100)
    (source.folder / "big.json").write_bytes(b"x" * 500)
    source.poll_once()
    assert (source.rejected / "big.json").read_bytes() == b"x" * 500
    assert "over the channel limit of 100" in (source.rejected / "big.json.reason.txt").read_text()
    assert engine.store.search() == []


def test_store_failure_leaves_the_file_in_the_inbox(tmp_path):
    def failing_submit(raw, origin):
        raise StoreError("disk full")

    folder = tmp_path / "inbox"
    ctx = SourceContext(url="file://inbox", channel="c", options={}, submit=failing_submit,
                        config_dir=str(tmp_path), max_message_bytes=1000, format_name="bridge")
    source = FolderSource(ctx)
    folder.mkdir()
    (folder / "a.json").write_bytes(b"{}")
    with pytest.raises(StoreError):
        source.poll_once()
    assert (folder / "a.json").exists()


def test_min_age_waits_for_writers(tmp_path):
    seen = []
    ctx = SourceContext(url="file://inbox", channel="c", options={"min_age_seconds": 0.3},
                        submit=lambda raw, origin: seen.append(raw) or Receipt(1, True),
                        config_dir=str(tmp_path), max_message_bytes=1000, format_name="bridge")
    source = FolderSource(ctx)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a").write_bytes(b"1")
    assert source.poll_once() == 0
    old = time.time() - 5
    os.utime(tmp_path / "inbox" / "a", (old, old))
    assert source.poll_once() == 1 and seen == [b"1"]


def test_an_inbox_is_read_by_one_node_at_a_time(tmp_path):
    seen = {"a": [], "b": []}

    def node(name):
        ctx = SourceContext(url="file://inbox", channel="c", options={},
                            submit=lambda raw, origin: seen[name].append(raw) or Receipt(1, True),
                            config_dir=str(tmp_path), max_message_bytes=1000, format_name="bridge")
        return FolderSource(ctx)

    first, second = node("a"), node("b")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "one").write_bytes(b"1")
    assert first.poll_once() == 1
    (tmp_path / "inbox" / "two").write_bytes(b"2")
    assert second.poll_once() == 0 and (tmp_path / "inbox" / "two").exists()  # the first node holds the inbox
    first.stop()  # (a killed process drops its lock the same way: the kernel closes its files)
    assert second.poll_once() == 1
    assert seen == {"a": [b"1"], "b": [b"2"]}
    second.stop()


def test_destination_writes_atomically_and_redelivery_overwrites(tmp_path):
    dest = FolderDestination(DestinationContext(url="file://out", name="out", options={}, config_dir=str(tmp_path)))
    delivery = Delivery(outbox_id=7, message_id=3, destination="out", payload=b"{}", media_type="application/json",
                        file_extension="json", attempt=1)
    assert dest.send(delivery) == "wrote 3-7.json (2 bytes)"
    dest.send(delivery)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3-7.json"]


def test_destination_write_failure_is_transient(tmp_path):
    from bridge import TransientDeliveryError

    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should be")
    dest = FolderDestination(DestinationContext(url="file://out", name="out", options={}, config_dir=str(tmp_path)))
    delivery = Delivery(1, 1, "out", b"x", "text/plain", "txt", 1)
    with pytest.raises(TransientDeliveryError, match="could not write"):
        dest.send(delivery)


def test_sender_supplied_trace_id_cannot_escape_the_outbox(tmp_path):
    dest = FolderDestination(DestinationContext(url="file://out", name="out", config_dir=str(tmp_path),
                                                options={"filename": "{trace_id}.{ext}"}))
    hostile = Delivery(1, 1, "out", b"x", "text/plain", "json", 1, trace_id="../../escaped")
    dest.send(hostile)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["______escaped.json"]
    assert not (tmp_path / "escaped.json").exists()


def test_a_template_that_leaves_the_folder_is_refused(tmp_path):
    from bridge import PermanentDeliveryError

    dest = FolderDestination(DestinationContext(url="file://out", name="out", config_dir=str(tmp_path),
                                                options={"filename": "../{message_id}.{ext}"}))
    with pytest.raises(PermanentDeliveryError, match="leaves the outbox folder"):
        dest.send(Delivery(1, 1, "out", b"x", "text/plain", "json", 1))


def test_the_declared_filename_default_is_the_name_a_replay_keeps(tmp_path):
    """Review of issue 11: docs/options.md (generated from the declaration) said the default file name
    was {message_id}-{outbox_id}.{ext}, which changes on every replay; the destination uses the
    original's ids. A user copying the documented default would lose the stable name."""
    from bridge.plugins.file import bridge_transports

    (spec,) = [o for o in bridge_transports()[0].destination_options if o.name == "filename"]
    dest = FolderDestination(DestinationContext(url="file://out", name="out", options={}, config_dir=str(tmp_path)))
    replay = Delivery(outbox_id=9, message_id=7, destination="out", payload=b"{}", media_type="application/json",
                      file_extension="json", attempt=1, original_message_id=3, original_outbox_id=4)
    dest.send(replay)
    assert sorted(os.listdir(tmp_path / "out")) == ["3-4.json"]
    assert spec.default == dest.template
    assert "{original_message_id}" in spec.description and "{original_outbox_id}" in spec.description


def test_a_batch_flushes_the_folder_once_and_before_its_sends_count(tmp_path, monkeypatch):
    """The deliverer begins a batch before each send and flushes before it records them: the files
    are written and renamed at once, the folder (which makes the renames durable) is flushed once."""
    import bridge.plugins.file as file_transport

    flushed: list[Path] = []
    real = file_transport._fsync_dir
    monkeypatch.setattr(file_transport, "_fsync_dir", lambda path: (flushed.append(Path(path)), real(path)))
    dest = FolderDestination(DestinationContext(url="file://out", name="out", options={}, config_dir=str(tmp_path)))
    dest.send(Delivery(1, 1, "out", b"alone", "text/plain", "txt", 1))
    assert flushed == [tmp_path / "out"]  # a send outside a batch is durable by itself

    for n in (2, 3, 4):
        dest.begin_batch()
        dest.send(Delivery(n, n, "out", b"batched", "text/plain", "txt", 1))
    assert flushed == [tmp_path / "out"] and (tmp_path / "out" / "4-4.txt").read_bytes() == b"batched"
    dest.flush()
    assert flushed == [tmp_path / "out"] * 2
    dest.flush()  # nothing owed
    assert len(flushed) == 2
    dest.send(Delivery(5, 5, "out", b"alone again", "text/plain", "txt", 1))
    assert len(flushed) == 3


def test_the_folder_is_made_when_missing_and_names_with_a_folder_part_are_refused(tmp_path):
    from bridge import PermanentDeliveryError

    dest = FolderDestination(DestinationContext(url="file://a/b", name="out", options={}, config_dir=str(tmp_path)))
    dest.send(Delivery(1, 1, "out", b"x", "text/plain", "txt", 1))
    assert (tmp_path / "a" / "b" / "1-1.txt").read_bytes() == b"x"
    for template in ("sub/{message_id}.{ext}", "..", "."):
        dest = FolderDestination(DestinationContext(url="file://out", name="out", config_dir=str(tmp_path),
                                                    options={"filename": template}))
        with pytest.raises(PermanentDeliveryError, match="leaves the outbox folder"):
            dest.send(Delivery(1, 1, "out", b"x", "text/plain", "json", 1))


def test_a_failed_folder_flush_retries_the_batch_instead_of_recording_it(tmp_path, monkeypatch, store_url):
    """The engine's deliverer flushes the folder before it records a batch; when that flush fails the
    files may not be on the disk, so the batch's rows are retried (same file names), never delivered."""
    import bridge.plugins.file as file_transport

    config = {"channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}]}},
              "destinations": {"out": {"url": "file://out", "format": "bridge",
                                       "retry": {"max_attempts": 3, "initial_seconds": 0}}},
              **({"store": store_url} if store_url else {})}
    engine = engine_from_dict(config, tmp_path)
    engine.open_destinations()
    ids = [engine.submit("in", encounter_message(n, patient=f"MRN{n}")).message_id for n in (1, 2)]  # two lanes
    real, failures = file_transport._fsync_dir, []

    def failing_once(path):
        if not failures:
            failures.append(path)
            raise OSError(5, "Input/output error")
        real(path)

    monkeypatch.setattr(file_transport, "_fsync_dir", failing_once)
    while engine.process_batch():
        pass
    assert engine.deliver_batch() == 2  # one batch: both rows sent, then the flush before recording them fails
    rows = [row for message_id in ids for row in engine.store.outbox_rows(message_id)]
    assert [row.status for row in rows] == ["pending", "pending"] and len(failures) == 1
    assert all("could not be made durable" in row.last_error for row in rows)
    engine.drain()
    assert [engine.store.get_message(i).status for i in ids] == ["delivered", "delivered"]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"{i}-{row.id}.json" for i, row in zip(ids, rows))
    engine.stop()
