"""The intake journal (bridge.core.journal, docs/mllp.md): ACK after the journal's flush, the mover
moves entries into the store once each, the ACKs stay what the channel sends without it, a torn tail
is cut, a damaged record in the middle is reported, and the listener stops reading when it is full.
Real loopback sockets, real SQLite files; the mover is called in-process here (the kill -9 tests with
real processes are in test_intake_journal_crash.py)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from bridge.core import journal
from bridge.core.store.sqlite import SQLiteStore
from bridge.testing import listening_engine

SB, EB = b"\x0b", b"\x1c\x0d"


def adt(control_id: str, *, app: str = "SENDAPP") -> bytes:
    msh = f"MSH|^~\\&|{app}|SENDFAC|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5"
    return (msh + "\rEVN|A04|20240102030405\rPID|1||P1^^^TB^MR||Testpatient^Alex\r").encode()


class Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, payload: bytes) -> str:
        self.sock.sendall(SB + payload + EB)
        data = b""
        while not data.endswith(EB):
            chunk = self.sock.recv(65536)
            assert chunk, "the listener closed the connection"
            data += chunk
        return data[1:-2].decode()

    def close(self) -> None:
        self.sock.close()


def config(tmp_path: Path, **journal_settings) -> dict:
    setting = {"dir": "var/journal", **journal_settings} if journal_settings else "var/journal"
    return {"store": "sqlite:///var/bridge.db",
            "channels": {"adt": {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "intake_journal": setting}}}


def msa(ack: str) -> list[str]:
    return next(seg for seg in ack.split("\r") if seg.startswith("MSA")).split("|")


def stored(store: SQLiteStore) -> list[tuple[int, str]]:
    return [(row[0], row[1]) for row in store._read("SELECT id, control_id FROM messages ORDER BY id")]


def move(engine) -> int:
    ch = engine.config.channels["adt"]
    return journal.move_all(engine.store, "adt", lambda entries: engine.intake.journal_rows(ch, entries),
                            ch.intake_journal.directory)


def test_ack_after_the_journal_then_the_mover_stores_each_message_once(tmp_path):
    with listening_engine(config(tmp_path), tmp_path) as engine:
        client = Client(engine.sources[0].port)
        answers = [client.send(adt(f"C{n}")) for n in range(20)]
        assert all(msa(a)[1] == "AA" and msa(a)[2] == f"C{n}" for n, a in enumerate(answers))
        assert stored(engine.store) == []  # acknowledged from the journal, not yet in the store
        directory = Path(engine.config.channels["adt"].intake_journal.directory)
        assert directory == tmp_path / "var" / "journal" / "adt"
        assert journal.segments(str(directory))
        assert move(engine) == 20
        assert [c for _, c in stored(engine.store)] == [f"C{n}" for n in range(20)]  # arrival order
        assert move(engine) == 0  # moved once
        row = engine.store._read("SELECT status, dedupe_key, received_at, origin FROM messages LIMIT 1")[0]
        assert row["status"] == "received" and row["dedupe_key"] == "adt|SENDAPP|SENDFAC|C0"
        assert '"transport":"mllp"' in row["origin"]
        client.close()
        engine.journals["adt"].close()


def test_acks_are_the_same_as_without_the_journal(tmp_path):
    """Duplicates (of an unmoved entry and of a moved one), an oversized frame, an empty frame and a
    frame without MSH get the answers docs/mllp.md lists; the no-MSH frame is stored directly, after
    everything journaled before it, so its ACK can name its message id."""
    data = config(tmp_path)
    data["channels"]["adt"]["max_message_bytes"] = 2000
    with listening_engine(data, tmp_path) as engine:
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("D1")))[1:3] == ["AA", "D1"]
        again = msa(client.send(adt("D1")))  # a resend before the mover ran: known from the journal
        assert again[1:4] == ["AA", "D1", "duplicate of a message already received"]
        assert move(engine) == 2
        after = msa(client.send(adt("D1")))  # a resend of a moved message: known from the store
        assert after[1:4] == ["AA", "D1", "duplicate of a message already received"]
        big = client.send(adt("BIG") + b"NTE|1||" + b"x" * 3000 + b"\r")
        assert msa(big)[1] == "AR" and "exceeds the limit of 2000 bytes; it was not stored" in big
        empty = client.send(b"  ")
        assert msa(empty)[1] == "AR" and "empty MLLP frame" in empty
        assert msa(client.send(adt("D2")))[1] == "AA"  # journaled, not yet moved
        bad = client.send(b"XYZ|not a message\r")
        assert msa(bad)[1] == "AR" and "kept as message" in bad
        kept = int(bad.split("kept as message ")[1].split(" ")[0].rstrip(")"))
        rows = stored(engine.store)
        assert [c for _, c in rows] == ["D1", "D2", None]  # D2 moved before the direct row: order kept
        assert rows[-1][0] == kept
        assert move(engine) == 0  # the third D1 (a duplicate) was moved with D2, without a second row
        assert len(stored(engine.store)) == 3
        events = engine.store._read("SELECT COUNT(*) FROM events WHERE kind='duplicate'")[0][0]
        assert events == 2  # both resends recorded on the first message, as without the journal
        client.close()
        engine.journals["adt"].close()


def write_entries(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    journal.journal_id(str(directory), create=True)
    path = Path(journal.segment_path(str(directory), 1))
    with open(path, "wb") as handle:
        for n in range(count):
            handle.write(journal.encode_record(time.time(), f"adt|SENDAPP|SENDFAC|T{n}",
                                               b'{"transport":"mllp"}', adt(f"T{n}")))
    return path


def test_a_torn_tail_is_cut_at_start_and_the_entries_before_it_are_moved(tmp_path):
    directory = tmp_path / "var" / "journal" / "adt"
    path = write_entries(directory, 5)
    whole = path.stat().st_size
    with open(path, "ab") as handle:  # a batch whose write the crash cut short (never acknowledged)
        handle.write(journal.encode_record(time.time(), "adt|SENDAPP|SENDFAC|T5", b"{}", adt("T5"))[:-7])
    with listening_engine(config(tmp_path), tmp_path) as engine:
        assert path.stat().st_size == whole  # truncated back to the last whole record
        assert engine.journals["adt"].unmoved_entries == 5
        assert move(engine) == 5
        assert [c for _, c in stored(engine.store)] == [f"T{n}" for n in range(5)]
        assert not path.exists()  # fully moved, and the listener writes a newer segment: deleted
        engine.journals["adt"].close()


def test_a_damaged_record_in_the_middle_is_reported_not_skipped(tmp_path):
    directory = tmp_path / "j"
    path = write_entries(directory, 3)
    data = bytearray(path.read_bytes())
    first = journal.RECORD.size + journal.RECORD.unpack_from(data, 0)[1]
    data[first + 40] ^= 0xFF  # a bit flipped inside the second record
    path.write_bytes(bytes(data))
    with pytest.raises(journal.JournalCorrupt, match="damaged record at byte"):
        journal.read_unmoved(str(directory), journal.Position())
    store = SQLiteStore(str(tmp_path / "s.db"))
    moved = []
    # the mover does not judge the segment a listener may be writing (a read can race a write) ...
    assert journal.move_all(store, "adt", lambda entries: moved.extend(entries) or [], str(directory)) == 1
    # ... but once a later segment exists the damage is reported, and nothing past it is moved
    Path(journal.segment_path(str(directory), 2)).write_bytes(b"")
    with pytest.raises(journal.JournalCorrupt, match="damaged record at byte"):
        journal.move_all(store, "adt", lambda entries: pytest.fail("nothing more is moved"), str(directory))
    assert len(moved) == 1
    store.close()


def test_a_read_racing_a_write_is_not_taken_for_damage(tmp_path):
    """A mover's read of the live segment can see a page of a batch still zero and the next one
    written: it stops there and reads again later, it does not report corruption."""
    directory = tmp_path / "j"
    path = write_entries(directory, 3)
    data = bytearray(path.read_bytes())
    first = journal.RECORD.size + journal.RECORD.unpack_from(data, 0)[1]
    data[first + 20:first + 60] = bytes(40)  # a stretch of the second record not yet visible
    path.write_bytes(bytes(data))
    entries, position, torn = journal.read_unmoved(str(directory), journal.Position(), live=True)
    assert len(entries) == 1 and position.offset == first and torn is None


def test_a_failed_write_leaves_no_torn_record_in_the_middle(tmp_path):
    """A short write (disk full) is cut back, so the next batch does not follow garbage."""
    directory = tmp_path / "j"
    path = write_entries(directory, 2)
    size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"TJ\x99\x00")  # what a failed write may leave
    with open(path, "r+b") as handle:
        handle.truncate(size)  # what JournalWriter._write_all does after it
    entries, position, torn = journal.read_unmoved(str(directory), journal.Position())
    assert len(entries) == 2 and torn is None and position.offset == size


def test_the_listener_stops_reading_while_the_journal_is_full(tmp_path):
    with listening_engine(config(tmp_path), tmp_path) as engine:
        writer = engine.journals["adt"]
        writer.max_bytes = 1  # any unmoved byte fills it
        writer.refresh_seconds = 0.05
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("F1")))[1] == "AA"
        client.sock.sendall(SB + adt("F2") + EB)
        client.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # not read, so not answered, while full
            client.sock.recv(100)
        assert engine.sources[0].paused_full >= 1
        assert writer.full
        move(engine)  # the mover catches up: the listener reads again
        client.sock.settimeout(10)
        data = b""
        while not data.endswith(EB):
            data += client.sock.recv(4096)
        assert msa(data[1:-2].decode())[1:3] == ["AA", "F2"]
        client.close()
        writer.close()


def test_config_refuses_a_journal_on_a_non_mllp_channel(tmp_path):
    from bridge.errors import ConfigError
    from bridge.testing import engine_from_dict

    with pytest.raises(ConfigError, match="intake journal is for MLLP"):
        engine_from_dict({"channels": {"f": {"source": "file://in", "format": "hl7v2",
                                             "intake_journal": "var/j"}}}, tmp_path)
    with pytest.raises(ConfigError, match="max_bytes"):
        engine_from_dict({"channels": {"f": {"source": "mllp://127.0.0.1:0", "format": "hl7v2",
                                             "intake_journal": {"dir": "var/j", "max_bytes": 10}}}}, tmp_path)


def test_a_restarted_listener_still_answers_a_resend_of_a_moved_message_as_a_duplicate(tmp_path):
    """The filter of possible resends is filled from the store at start."""
    with listening_engine(config(tmp_path), tmp_path) as engine:
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("R1")))[1] == "AA"
        client.close()
        assert move(engine) == 1
        engine.journals["adt"].close()
    with listening_engine(config(tmp_path), tmp_path) as engine:
        client = Client(engine.sources[0].port)
        assert msa(client.send(adt("R1")))[3] == "duplicate of a message already received"
        assert msa(client.send(adt("R2")))[1:4] == ["AA", "R2", ""]
        client.close()
        assert move(engine) == 2
        assert [c for _, c in stored(engine.store)] == ["R1", "R2"]
        engine.journals["adt"].close()


def test_the_mover_in_another_process_and_the_listener_never_move_an_entry_twice(tmp_path):
    """Two movers racing (the mover process and the listener's own move before a message that needs
    its id): the position check in the store transaction lets only one of them move each batch."""
    directory = tmp_path / "j"
    write_entries(directory, 50)
    store_a = SQLiteStore(str(tmp_path / "s.db"))
    store_b = SQLiteStore(str(tmp_path / "s.db"))
    from bridge.core.intake import Intake
    from bridge.core.config import ChannelConfig
    from bridge.testing import plugin_manager

    channel = ChannelConfig(name="adt", source="mllp://x:1", format="hl7v2")
    intake = Intake(store_a, plugin_manager().formats())
    rows = lambda entries: intake.journal_rows(channel, entries)  # noqa: E731
    jid = journal.journal_id(str(directory), create=False)
    position = store_a.journal_position(jid)
    entries, new, _ = journal.read_unmoved(str(directory), position, max_entries=20)
    assert len(store_a.move_journal(jid, "adt", position, new, rows(entries))) == 20
    assert store_b.move_journal(jid, "adt", position, new, rows(entries)) is None  # stale: refused
    assert journal.move_all(store_b, "adt", rows, str(directory)) == 30
    assert len(stored(store_a)) == 50
    store_a.close()
    store_b.close()


def test_two_listeners_cannot_share_a_journal_directory(tmp_path):
    from bridge.errors import BridgeError

    with listening_engine(config(tmp_path), tmp_path) as engine:
        with pytest.raises(BridgeError, match="in use by another listener"):
            with listening_engine(config(tmp_path), tmp_path):
                pass
        engine.journals["adt"].close()


def test_journal_depth_is_a_metric(tmp_path):
    from bridge.core.metrics import journal_families

    with listening_engine(config(tmp_path), tmp_path) as engine:
        client = Client(engine.sources[0].port)
        for n in range(3):
            client.send(adt(f"M{n}"))
        client.close()
        writer = engine.journals["adt"]
        writer._refresh()
        text = "\n".join(f.text() for f in journal_families(engine))
        assert 'bridge_intake_journal_entries{channel="adt"} 3' in text
        assert 'bridge_intake_journal_full{channel="adt"} 0' in text
        move(engine)
        writer._refresh()
        text = "\n".join(f.text() for f in journal_families(engine))
        assert 'bridge_intake_journal_entries{channel="adt"} 0' in text
        assert 'bridge_intake_journal_bytes{channel="adt"} 0' in text
        writer.close()


def test_bridge_journal_status_and_drain(tmp_path, capsys):
    import yaml

    from bridge.cli import main

    data = config(tmp_path)
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(data))
    with listening_engine(data, tmp_path) as engine:
        client = Client(engine.sources[0].port)
        for n in range(4):
            client.send(adt(f"J{n}"))
        client.close()
        engine.journals["adt"].close()  # a node that stopped before its mover moved anything
    assert main(["journal", "status", "-c", str(tmp_path / "bridge.yaml")]) == 0
    assert "       4 entries" in capsys.readouterr().out
    assert main(["journal", "drain", "-c", str(tmp_path / "bridge.yaml")]) == 0
    assert "adt: moved 4 entries" in capsys.readouterr().out
    store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
    assert [c for _, c in stored(store)] == ["J0", "J1", "J2", "J3"]
    store.close()
    assert main(["journal", "status", "-c", str(tmp_path / "bridge.yaml")]) == 0
    assert "       0 entries" in capsys.readouterr().out
