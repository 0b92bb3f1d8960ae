"""The MLLP listener over real sockets on 127.0.0.1, with a real engine and SQLite store."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bridge import BridgeError, ConfigError
from bridge.errors import StoreError
from bridge.plugins.hl7v2.header import parse_msh

from tests.hl7v2.conftest_mllp import RawClient, adt, channel, listening, mllp, wait_until


def stored(engine, channel_name="adt"):
    return engine.store.search(channel=channel_name, limit=1000)


def test_ack_swaps_sender_and_receiver_and_comes_after_the_commit(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        assert source.port > 0
        client = RawClient(source.port)
        client.send_raw(mllp(adt("CTRL-1")))
        answer = client.read_frame()
        rows = stored(engine)  # read right after the ACK: the commit must already be visible
        assert [m.control_id for m in rows] == ["CTRL-1"]
        msh = parse_msh(answer)
        assert (msh.get(3), msh.get(4), msh.get(5), msh.get(6)) == ("BRIDGE", "TB", "SENDAPP", "SENDFAC")
        assert msh.get(9) == "ACK^A04^ACK"
        segments = answer.decode().split("\r")
        assert segments[1].split("|")[:3] == ["MSA", "AA", "CTRL-1"]
        assert rows[0].origin["transport"] == "mllp"
        assert rows[0].origin["peer"].startswith("127.0.0.1:")
        client.close()


def test_many_messages_over_four_concurrent_connections(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        results: dict[int, list[tuple[str, str, str]]] = {}

        def sender(n: int) -> None:
            client = RawClient(source.port)
            results[n] = [client.send(adt(f"C{n}-{i}", patient=f"P{n}")) for i in range(25)]
            client.close()

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for n in range(4):
            assert [(code, ctl) for code, ctl, _ in results[n]] == [("AA", f"C{n}-{i}") for i in range(25)]
        assert len(stored(engine)) == 100


def test_a_slow_commit_does_not_block_the_listener(bridge_engine, monkeypatch):
    """When the store cannot commit at once (another writer holds it), commits run off the event loop:
    while one is slow, new connections are served at once (here an empty frame is refused
    immediately), and frames that queued meanwhile share the next commit."""
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        monkeypatch.setattr(engine.store, "receive_now", lambda items: None)  # always busy
        real_receive_many = engine.store.receive_many
        batches: list[int] = []

        def slow_for_one(items):
            batches.append(len(items))
            if any(b"|SLOW|" in item[2] for item in items):
                time.sleep(1.5)
            return real_receive_many(items)

        monkeypatch.setattr(engine.store, "receive_many", slow_for_one)
        answers: dict[str, tuple] = {}

        def send(control: str) -> None:
            answers[control] = RawClient(source.port).send(adt(control))

        slow = threading.Thread(target=send, args=("SLOW",))
        slow.start()
        time.sleep(0.2)
        waiting = [threading.Thread(target=send, args=(f"Q{n}",)) for n in range(3)]
        for t in waiting:
            t.start()
        started = time.monotonic()
        code, _, text = RawClient(source.port).send(b"   ")
        assert code == "AR" and "empty" in text
        assert time.monotonic() - started < 1.0, "the listener was blocked by the slow commit (1.5 s)"
        for t in [slow, *waiting]:
            t.join(timeout=10)
        assert {c: a[:2] for c, a in answers.items()} == {c: ("AA", c) for c in ("SLOW", "Q0", "Q1", "Q2")}
        assert batches[0] == 1 and batches[1] == 3  # the three that queued behind it: one commit


class HeldFlush:
    """Wraps the store's WAL flush: holds it until released, or makes it fail (the disk refusing)."""

    def __init__(self, store) -> None:
        self.real = store._wal_sync._flush
        self.started = threading.Event()
        self.release = threading.Event()
        self.error: OSError | None = None
        store._wal_sync._flush = self

    def __call__(self, fd: int) -> None:
        self.started.set()
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        self.real(fd)


def test_the_ack_waits_for_the_disk_flush_and_the_loop_serves_others_meanwhile(bridge_engine):
    """Commits made on the listener's loop are answered only once a WAL flush begun after them is
    done; while the flush is slow the loop goes on (an empty frame is refused at once) and the
    commit is already visible in the store."""
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        held = HeldFlush(engine.store)
        client = RawClient(source.port)
        client.send_raw(mllp(adt("FLUSHED")))
        assert held.started.wait(5)
        client.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            client.read_frame()  # no ACK before the flush
        assert [m.control_id for m in stored(engine)] == ["FLUSHED"]
        started = time.monotonic()
        code, _, text = RawClient(source.port).send(b"   ")
        assert code == "AR" and "empty" in text and time.monotonic() - started < 1.0
        held.release.set()
        client.sock.settimeout(5)
        assert client.ack()[:2] == ("AA", "FLUSHED")
        assert source._commits.batches_now >= 1
        client.close()


def test_a_flush_the_disk_refuses_is_answered_with_an_error_not_an_ack(bridge_engine, caplog):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        held = HeldFlush(engine.store)
        held.error = OSError(5, "Input/output error")
        held.release.set()
        client = RawClient(source.port)
        code, control, text = client.send(adt("LOST-DISK", patient="Zebedee"))
        assert (code, control) == ("AE", "LOST-DISK") and "could not be stored" in text
        code, _, _ = client.send(adt("AFTER"))
        assert code == "AE"  # no later commit is acknowledged: the flush is not retried
        assert "Zebedee" not in caplog.text
        client.close()


def test_partial_reads_several_frames_per_read_and_garbage(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        client = RawClient(source.port)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        one = mllp(adt("PIECES"))
        for i in range(0, len(one), 7):  # one frame in many small writes
            client.send_raw(one[i:i + 7])
            time.sleep(0.005)
        assert client.ack()[:2] == ("AA", "PIECES")
        client.send_raw(b"\r\n\x00junk before the start byte" + b"".join(mllp(adt(f"B{i}")) for i in range(3)))
        assert [client.ack()[:2] for _ in range(3)] == [("AA", "B0"), ("AA", "B1"), ("AA", "B2")]
        assert sorted(m.control_id for m in stored(engine)) == ["B0", "B1", "B2", "PIECES"]


def test_oversized_frame_gets_ar_and_the_connection_goes_on(bridge_engine):
    config = {"channels": {"adt": channel(max_bytes=600)}}
    with listening(bridge_engine, config) as (engine, source):
        client = RawClient(source.port)
        big = mllp(adt("BIG", filler=50_000))
        for i in range(0, len(big), 4096):
            client.send_raw(big[i:i + 4096])
        answer = client.read_frame().decode()
        assert "MSA|AR|BIG|" in answer
        err = [s for s in answer.split("\r") if s.startswith("ERR|")]
        assert err and "exceeds the limit of 600 bytes" in err[0]
        assert client.send(adt("NEXT"))[:2] == ("AA", "NEXT")
        assert [m.control_id for m in stored(engine)] == ["NEXT"]


def test_unreadable_message_is_kept_and_answered_ar(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        client = RawClient(source.port)
        client.send_raw(mllp(b"PID|1||NOT-A-MESSAGE\r"))
        answer = client.read_frame().decode()
        assert answer.split("\r")[1].startswith("MSA|AR|")
        assert "does not start with an MSH segment" in answer
        [kept] = stored(engine)
        assert engine.store.get_raw(kept.id) == b"PID|1||NOT-A-MESSAGE\r"
        assert f"kept as message {kept.id}" in answer
        engine.drain()
        assert engine.store.get_message(kept.id).status == "failed"


def test_resend_is_acknowledged_but_stored_once(bridge_engine):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        first = RawClient(source.port).send(adt("DUP-1"))
        again = RawClient(source.port).send(adt("DUP-1"))
        other_facility = RawClient(source.port).send(adt("DUP-1", facility="OTHERFAC"))
        assert [first[0], again[0], other_facility[0]] == ["AA", "AA", "AA"]
        assert "duplicate" in again[2]
        rows = stored(engine)
        assert len(rows) == 2  # same app+facility+MSH-10 once; another facility is another message
        original = min(rows, key=lambda m: m.id)
        assert "duplicate" in [e.kind for e in engine.store.events(original.id)]
        engine.drain()
        assert engine.store.get_message(original.id).status in ("filtered", "routed")


def test_store_failure_gives_ae_and_a_resend_is_then_stored(bridge_engine, monkeypatch):
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        def broken(*args, **kwargs):
            raise StoreError("could not store message: disk I/O error")

        with monkeypatch.context() as patch:
            patch.setattr(engine.store, "receive_many", broken)
            patch.setattr(engine.store, "receive_now", lambda items: None)  # busy: the thread path fails
            code, control, text = RawClient(source.port).send(adt("AE-1"))
        assert (code, control) == ("AE", "AE-1")
        assert "could not be stored" in text
        assert stored(engine) == []
        assert RawClient(source.port).send(adt("AE-1"))[:2] == ("AA", "AE-1")
        assert len(stored(engine)) == 1


def test_enhanced_mode_and_commit_option_answer_with_commit_codes(bridge_engine):
    config = {"channels": {"adt": channel(max_bytes=2000),
                           "commit": channel(options={"ack_mode": "commit"})}}
    with listening(bridge_engine, config) as (engine, _):
        auto, commit = engine.sources
        client = RawClient(auto.port)
        assert client.send(adt("E-1", msh15="AL"))[:2] == ("CA", "E-1")
        assert client.send(adt("E-2"))[:2] == ("AA", "E-2")
        assert client.send(adt("E-3", msh15="AL", filler=5000))[:2] == ("CR", "E-3")
        assert RawClient(commit.port).send(adt("E-4"))[:2] == ("CA", "E-4")


def test_idle_connections_are_closed(bridge_engine):
    config = {"channels": {"adt": channel(options={"idle_timeout_seconds": 0.3})}}
    with listening(bridge_engine, config) as (_, source):
        client = RawClient(source.port)
        assert client.send(adt("IDLE"))[0] == "AA"
        started = time.monotonic()
        assert client.closed_by_peer(wait=5)
        assert time.monotonic() - started < 2


def test_connection_cap_refuses_extra_connections(bridge_engine):
    config = {"channels": {"adt": channel(options={"max_connections": 2})}}
    with listening(bridge_engine, config) as (_, source):
        first, second = RawClient(source.port), RawClient(source.port)
        assert first.send(adt("CAP-1"))[0] == "AA"
        assert second.send(adt("CAP-2"))[0] == "AA"
        third = RawClient(source.port)
        assert third.closed_by_peer(wait=5)
        assert first.send(adt("CAP-3"))[0] == "AA"
        first.close()
        assert wait_until(lambda: source.connections == 1)
        assert RawClient(source.port).send(adt("CAP-4"))[0] == "AA"


def test_a_port_in_use_is_a_clear_error(bridge_engine):
    blocker = socket.create_server(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(BridgeError, match=rf"channel adt: cannot listen on 127.0.0.1:{port}"):
            with listening(bridge_engine, {"channels": {"adt": channel(f"mllp://127.0.0.1:{port}")}}):
                pass
    finally:
        blocker.close()


@pytest.mark.parametrize("options, path, problem", [
    ({"ack_mode": "sometimes"}, "channels.adt.options.ack_mode", "expected one of auto, original, commit"),
    ({"max_connections": "ten"}, "channels.adt.options.max_connections", "expected a whole number"),
    ({"idle_timeout_seconds": -1}, "channels.adt.options.idle_timeout_seconds", "must be at least"),
])
def test_bad_options_name_the_option(bridge_engine, options, path, problem):
    with pytest.raises(ConfigError) as caught:
        with listening(bridge_engine, {"channels": {"adt": channel(options=options)}}):
            pass
    assert caught.value.problems[0][0] == path
    assert problem in caught.value.problems[0][1]


def test_frames_read_in_one_turn_share_a_batch_and_a_lone_frame_goes_at_once(tmp_path):
    """The committing thread gets every frame that arrived in the same turn of the event loop, or
    during the previous commit, as one batch (one transaction); a lone frame is committed at once,
    and results come back to each frame in order."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from bridge.plugins.hl7v2.mllp import _ThreadBatcher

    batches: list[list[int]] = []
    release = threading.Event()

    def run_many(items: list[int]) -> list[int]:
        batches.append(list(items))
        if items == [0]:
            release.wait(5)  # a slow first commit: the next frames queue behind it
        return [item * 10 for item in items]

    async def scenario() -> list[int]:
        pool = ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        batcher = _ThreadBatcher(loop, pool, run_many)
        results: list[int] = []
        finished = asyncio.Event()

        def done(result: int) -> None:
            results.append(result)
            if len(results) == 6:
                finished.set()

        batcher.add(0, done)  # alone in its turn: committed at once
        await asyncio.sleep(0.05)
        for n in (1, 2, 3):  # arrive during the slow commit
            batcher.add(n, done)
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.sleep(0.05)
        for n in (4, 5):  # the same turn
            batcher.add(n, done)
        await asyncio.wait_for(finished.wait(), 5)
        pool.shutdown()
        return results

    results = asyncio.run(scenario())
    assert batches == [[0], [1, 2, 3], [4, 5]]
    assert results == [0, 10, 20, 30, 40, 50]


def test_a_sender_that_pipelines_frames_gets_every_answer_in_order(bridge_engine):
    """Frames sent back to back without waiting are answered in their order, with reading paced."""
    with listening(bridge_engine, {"channels": {"adt": channel()}}) as (engine, source):
        client = RawClient(source.port)
        count = 150  # more than the frames a connection may have unanswered
        client.send_raw(b"".join(mllp(adt(f"PIPE-{i}", patient=f"P{i % 7}")) for i in range(count)))
        answers = [client.read_frame().decode().split("\r")[1].split("|")[:3] for _ in range(count)]
        assert answers == [["MSA", "AA", f"PIPE-{i}"] for i in range(count)]
        assert len(stored(engine)) == count
        client.close()
