"""The intake journal's flush process (bridge.core.journal_flusher, docs/mllp.md): the listener's
loop acknowledges a journaled frame only once the flush process said its write is on the disk; a
flush process that dies (kill -9) mid-flush costs no acknowledgement of unflushed data (the listener
flushes through its own descriptors first) and is replaced; a failed flush answers AE from then on;
and the flush process ends with its parent. Real loopback sockets, real processes, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bridge.core import journal
from bridge.testing import listening_engine

from .test_intake_journal import Client, adt, config, move, msa, stored


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_acks_wait_for_the_flush_process_and_a_killed_one_is_replaced(tmp_path, monkeypatch):
    with listening_engine(config(tmp_path), tmp_path) as engine:
        writer = engine.journals["adt"]
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("K1")))[1] == "AA"
        assert writer.flushes >= 1  # answered by the flush process, not by a flush of the listener's
        first = writer._flusher.process.pid

        # the flush process takes the request but cannot answer: no ACK without the flush
        os.kill(first, signal.SIGSTOP)
        client.sock.sendall(b"\x0b" + adt("K2") + b"\x1c\r")
        client.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.sock.recv(4096)
        client.sock.settimeout(10)

        # it dies with that flush in flight: the listener flushes the write itself, then answers
        flushed_here = []
        real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed_here.append(fd), real(fd))[1])
        os.kill(first, signal.SIGKILL)
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            answer += client.sock.recv(4096)
        assert msa(answer[1:-2].decode())[1:3] == ["AA", "K2"]
        assert writer._fd in flushed_here and writer.flusher_restarts == 1
        assert not alive(first)  # reaped

        # the next flushes go to a new flush process (started at most once a second)
        time.sleep(1.1)
        assert msa(client.send(adt("K3")))[1] == "AA"
        assert writer._flusher is not None and writer._flusher.process.pid != first
        assert msa(client.send(adt("K4")))[1] == "AA"
        assert move(engine) == 4
        assert [c for _, c in stored(engine.store)] == ["K1", "K2", "K3", "K4"]
        client.close()


def test_a_failed_flush_answers_ae_and_nothing_more_is_acknowledged(tmp_path):
    """The flush process's fdatasync fails (here on a pipe, where Linux refuses it: EINVAL, as a disk
    answers EIO): that sender gets AE, and so does every later one until the engine restarts."""
    with listening_engine(config(tmp_path), tmp_path) as engine:
        writer = engine.journals["adt"]
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("F1")))[1] == "AA"
        read_end, write_end = os.pipe()
        real_sync_fd, writer._sync_fd = writer._sync_fd, read_end
        writer._sent_segment = -1  # sent again with the next request (as after a new segment)
        try:
            failed = client.send(adt("F2"))
            assert msa(failed)[1:3] == ["AE", "F2"] and "could not be stored" in failed
            assert writer._failure is not None and "journal flush failed" in str(writer._failure)
            assert msa(client.send(adt("F3")))[1] == "AE"  # a later flush's success could not be trusted
            assert writer.flusher_restarts == 0  # the process reported it; it did not die
        finally:
            writer._sync_fd = real_sync_fd
            os.close(write_end)
        client.close()
        engine.journals["adt"].close()
    os.close(read_end)


def test_the_flush_process_ends_with_its_parent(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from bridge.core.journal import _FlushProcess
        flusher = _FlushProcess("test")
        print(flusher.process.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(child), timeout=5)  # the socket's end of file ends it
    finally:
        parent.kill()


def test_the_flush_process_answers_each_request_with_its_errno(tmp_path):
    """The protocol itself: each request's descriptors flushed, its number answered, errno on failure."""
    flusher = journal._FlushProcess("test")
    try:
        path = tmp_path / "f"
        path.write_bytes(b"x")
        fd = os.open(path, os.O_RDONLY)
        read_end, write_end = os.pipe()
        flusher.socket.setblocking(True)
        directory = os.open(tmp_path, os.O_RDONLY)
        flusher.send(7, [fd, directory], 0b10, 1)  # the file kept, the directory flushed once
        number, error, seconds = flusher.receive()
        assert (number, error) == (7, 0) and seconds >= 0
        flusher.send(8, [], 0, 0)  # the kept file again, no descriptor sent
        assert flusher.receive()[:2] == (8, 0)
        flusher.send(9, [read_end], 0, 0)  # the kept file and a pipe, which Linux cannot flush
        assert flusher.receive()[:2] == (9, 22)  # EINVAL
        flusher.send(10, [read_end], 0, 1)  # the pipe is kept now: every request fails
        assert flusher.receive()[:2] == (10, 22)
        flusher.send(11, [], 0, 0)
        assert flusher.receive()[:2] == (11, 22)
        os.close(directory)
        os.close(fd)
        os.close(read_end)
        os.close(write_end)
    finally:
        assert flusher.stop() == 0


def test_the_flush_process_follows_the_segments(tmp_path):
    """Segments roll (64 KiB here): each new one is handed to the flush process, which then holds the
    segment being written (and nothing older once a flush covered the switch)."""
    with listening_engine(config(tmp_path, segment_bytes=65536), tmp_path) as engine:
        writer = engine.journals["adt"]
        client = Client(engine.sources[0].port)
        first = writer._segment
        for n in range(400):  # ~200 bytes a record: several segments
            assert msa(client.send(adt(f"S{n}")))[1] == "AA"
        assert writer._segment >= first + 2 and writer._sent_segment == writer._segment
        held = {os.readlink(f"/proc/{writer._flusher.process.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{writer._flusher.process.pid}/fd")}
        segments = {p for p in held if p.endswith(journal.SEGMENT_SUFFIX)}
        assert segments == {journal.segment_path(writer.directory, writer._segment)}
        assert writer._old == []  # earlier segments' descriptors closed once flushed
        assert move(engine) == 400
        client.close()
