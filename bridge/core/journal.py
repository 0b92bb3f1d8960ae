"""The intake journal: an opt-in intake for high-volume listeners (``channels.NAME.intake_journal``).

Without it, a listener acknowledges a message after the store committed it (an INSERT into
``messages`` with its indexes, and a WAL flush). With it, the listener appends each accepted frame
to an append-only segment file, flushes the file (``fdatasync``, one flush for every frame written
before it began: group commit), and then acknowledges; a separate **mover** process
(``bridge run`` starts it next to the workers, at a lower CPU priority) moves the entries into the
store's ``messages`` table in large batches, de-duplicating them there as the intake does, and records
how far it got (``journal_positions``) in the same store transaction. A crash of either process
therefore never loses or doubles a message: what the position covers is in the store, what it does
not is still in a segment file, and nothing is in both.

Layout of a journal directory (one per channel and node: ``DIR/CHANNEL``)::

    journal.id                 a random id, the key of this journal's row in journal_positions
    0000000000000001.seg       segments, numbered; the listener starts a new one at every start
    0000000000000002.seg       and when one reaches ``segment_bytes``; fully moved ones are deleted

A segment is a sequence of records: ``b"TJ"``, the body's length (4 bytes, little-endian), the
body's CRC-32 (4 bytes), then the body: the time received (8-byte float), the lengths of the dedupe
key and of the origin's JSON (2 bytes each), the key, the origin and the raw message bytes. The
mover reads each message's header with the channel format's ``peek``, as the intake does.

Reading rules (:func:`read_segment`): a record cut short or failing its CRC at the end of the last
segment is a **torn tail** (the write of a batch whose frames were never acknowledged: the flush had
not returned); the listener truncates it at start. A bad record followed by a good one, or a bad
record at the end of a segment that is not the last, is **corruption**: :class:`JournalCorrupt`,
reported to the operator (the mover stops there, logs it, and ``bridge journal status`` shows it),
never skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bridge.errors import BridgeError, StoreError
from bridge.plugin_types import Receipt

from . import journal_flusher
from .fsync import fsync_path

log = logging.getLogger(__name__)

MAGIC = b"TJ"
RECORD = struct.Struct("<2sII")  # magic, body length, CRC-32 of the body
SEGMENT_SUFFIX = ".seg"
ID_FILE = "journal.id"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB unmoved: beyond it the listener stops reading (back-pressure)
DEFAULT_SEGMENT_BYTES = 64 << 20
MOVE_ENTRIES = 2000  # entries per mover transaction
MOVE_BYTES = 8 << 20
JOURNALED = Receipt(None, accepted=True)  # an ACK needs no more than this (the id comes with the move)
JOURNALED_DUPLICATE = Receipt(None, accepted=True, duplicate=True)


class JournalCorrupt(BridgeError):
    """A damaged record that is not a torn tail: the journal cannot be read past it."""


@dataclass(frozen=True)
class Entry:
    segment: int
    offset: int  # where the record starts
    end: int  # where the next record starts
    received_at: float
    dedupe_key: str | None
    origin: dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class Position:
    """How far a journal has been moved into the store: every record before (segment, offset)."""

    segment: int = 0
    offset: int = 0
    moved: int = 0  # entries moved since the journal was created (a counter for status and metrics)


BODY = struct.Struct("<dHH")  # received_at, length of the dedupe key, length of the origin's JSON


def encode_record(received_at: float, dedupe_key: str | None, origin_json: bytes, raw: bytes) -> bytes:
    """One record: the time the journal took the message, its dedupe key (empty: none), its origin
    as JSON bytes, and the raw message. The mover reads the header again with the format's peek
    (what the intake would store); the key is kept for the listener's resend check after a restart."""
    key = dedupe_key.encode() if dedupe_key else b""
    body = b"".join((BODY.pack(received_at, len(key), len(origin_json)), key, origin_json, raw))
    return RECORD.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _decode_body(segment: int, offset: int, end: int, body: bytes) -> Entry:
    received_at, key_len, origin_len = BODY.unpack_from(body)
    at = BODY.size
    key = body[at:at + key_len].decode() or None
    origin = json.loads(body[at + key_len:at + key_len + origin_len]) if origin_len else {}
    return Entry(segment, offset, end, received_at, key, origin, body[at + key_len + origin_len:])


def _valid_at(data: bytes, at: int) -> bool:
    """Whether a whole record with a good CRC starts at ``at``."""
    if at + RECORD.size > len(data):
        return False
    magic, length, crc = RECORD.unpack_from(data, at)
    start = at + RECORD.size
    return magic == MAGIC and start + length <= len(data) and zlib.crc32(data[start:start + length]) == crc


def _good_record_after(data: bytes, at: int) -> int | None:
    """The offset of the first intact record after a bad one at ``at`` (None: nothing intact follows)."""
    at = data.find(MAGIC, at + 1)
    while at >= 0:
        if _valid_at(data, at):
            return at
        at = data.find(MAGIC, at + 1)
    return None


ZERO_HEADER = bytes(RECORD.size)
READ_WINDOW = 1 << 20
FIRST_READ = 64 << 10  # a mover's look at a live segment usually finds less than this that is new
NEXT_FILE = "next.zero"  # the next segment, zeroed in advance (see JournalWriter._prepare_loop)


def _read_rest(path: str, at: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(at)
        return handle.read()


def read_segment(path: str, segment: int, start: int, *, last: bool, max_entries: int = 1 << 62,
                 max_bytes: int = 1 << 62, live: bool = False) -> tuple[list[Entry], int, int | None, bool]:
    """The entries of one segment file from ``start``: ``(entries, next_offset, torn_at, at_end)``.

    ``next_offset`` is where reading stopped (the end of the last entry returned). Segments are
    written into space zeroed in advance, so the data ends at the first all-zero record header (in
    a segment that is not the last one, only if no intact record follows: else JournalCorrupt).
    ``torn_at`` is set when the segment ends in a torn tail at that offset (only allowed in the
    ``last`` segment, the one the listener writes: elsewhere, and for a bad record followed by a
    good one, JournalCorrupt). ``live``: the ``last`` segment may be written meanwhile (the mover
    beside a running listener), so a bad record there is a write in progress, never judged: a read
    racing a write can see a page of it still zero and the next one written. The listener judges it
    at its next start, and the mover once a later segment exists. ``at_end``: the data's end was
    reached (not a limit). Reads in
    windows, so a mover's look at a live segment costs what is new in it, not the zeroed space after it."""
    entries: list[Entry] = []
    size = 0
    at_end = False
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(FIRST_READ)
        base = start  # file offset of data[0]
        pos = 0
        while len(entries) < max_entries and size < max_bytes:
            if len(data) - pos < RECORD.size or (
                    data[pos:pos + 2] == MAGIC
                    and pos + RECORD.size + RECORD.unpack_from(data, pos)[1] > len(data)):
                more = handle.read(max(READ_WINDOW, RECORD.size + (RECORD.unpack_from(data, pos)[1]
                                                                    if len(data) - pos >= RECORD.size else 0)))
                if more:
                    data, base, pos = data[pos:] + more, base + pos, 0
                    continue
            if pos >= len(data):
                at_end = True
                break
            if data[pos:pos + RECORD.size] == ZERO_HEADER or (len(data) - pos < RECORD.size
                                                            and not data[pos:].strip(b"\0")):
                if not last and _good_record_after(_read_rest(path, base + pos), 0) is not None:
                    raise JournalCorrupt(f"journal segment {path}: zeroed record header at byte {base + pos} with"
                                         " intact records after it; it is not moved (see docs/mllp.md)")
                at_end = True
                break  # the end of what was written
            if not _valid_at(data, pos):
                if live and last:
                    return entries, base + pos, None, True  # a write in progress: look again later
                rest = _read_rest(path, base + pos)
                if _good_record_after(rest, 0) is not None:
                    raise JournalCorrupt(f"journal segment {path}: damaged record at byte {base + pos} with intact"
                                         " records after it; it is not moved (inspect it, see docs/mllp.md)")
                if not last:
                    raise JournalCorrupt(f"journal segment {path}: damaged or cut-short record at byte"
                                         f" {base + pos}, and a later segment exists (see docs/mllp.md)")
                return entries, base + pos, base + pos, True
            _, length, _ = RECORD.unpack_from(data, pos)
            end = pos + RECORD.size + length
            try:
                entries.append(_decode_body(segment, base + pos, base + end, data[pos + RECORD.size:end]))
            except (ValueError, struct.error) as exc:
                raise JournalCorrupt(f"journal segment {path}: unreadable entry at byte {base + pos}: {exc}") from None
            size += length
            pos = end
    return entries, base + pos, None, at_end


def segment_path(directory: str, number: int) -> str:
    return os.path.join(directory, f"{number:016d}{SEGMENT_SUFFIX}")


def segments(directory: str) -> list[int]:
    """The segment numbers present, in order."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-len(SEGMENT_SUFFIX)]) for n in names
                  if n.endswith(SEGMENT_SUFFIX) and n[:-len(SEGMENT_SUFFIX)].isdigit())


def journal_id(directory: str, *, create: bool) -> str | None:
    path = os.path.join(directory, ID_FILE)
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    os.makedirs(directory, exist_ok=True)
    new = uuid.uuid4().hex
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(new + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(directory)
    return new



def read_unmoved(directory: str, position: Position, *, max_entries: int = 1 << 62,
                 max_bytes: int = 1 << 62, live: bool = False) -> tuple[list[Entry], Position, int | None]:
    """Entries after ``position`` across segments: ``(entries, new_position, torn_at)``. The new
    position passes to the next segment once a segment is read to its end and a later one exists."""
    numbers = [n for n in segments(directory) if n >= position.segment]
    entries: list[Entry] = []
    seg, offset = position.segment, position.offset
    torn = None
    for i, number in enumerate(numbers):
        last = i == len(numbers) - 1
        start = offset if number == position.segment else 0
        path = segment_path(directory, number)
        if os.path.getsize(path) < start:  # moved past a tail a power cut took back: fully moved
            start = os.path.getsize(path)
        got, end, torn, at_end = read_segment(path, number, start, last=last, live=live,
                                              max_entries=max_entries - len(entries), max_bytes=max_bytes)
        entries.extend(got)
        seg, offset = number, end
        if last or not at_end or len(entries) >= max_entries:
            break
        seg, offset = numbers[i + 1], 0
    return entries, Position(seg, offset, position.moved + len(entries)), torn


RowsFor = Callable[[Sequence[Entry]], list[tuple[Any, ...]]]
"""Store rows (``receive_many``'s items plus ``received_at``) for journal entries:
:meth:`bridge.core.intake.Intake.journal_rows` (the format's peek, the dedupe and lane keys)."""


def move_once(store: Any, channel: str, rows_for: RowsFor, directory: str, jid: str, *,
              extra: Sequence[tuple[Any, ...]] = (), max_entries: int = MOVE_ENTRIES,
              max_bytes: int = MOVE_BYTES, live: bool = True,
              on_moved: Callable[[str, list[Any]], None] | None = None) -> tuple[int, list[Any]]:
    """Move one batch of unmoved entries into the store (and ``extra`` rows after them, in the same
    transaction: the listener's way to store a message that needs its id before its ACK without
    overtaking what was journaled before it). Returns (entries moved, results of ``extra``).
    Fully moved segments are deleted after the commit."""
    while True:
        position = store.journal_position(jid)
        entries, new, _ = read_unmoved(directory, position, max_entries=max_entries, max_bytes=max_bytes, live=live)
        if not entries and new == position and not extra:
            _delete_moved(directory, position, store)
            return 0, []
        rows = rows_for(entries)
        results = store.move_journal(jid, channel, position, new, rows, list(extra))
        if results is None:  # another mover got there first: read again from where it stopped
            continue
        if on_moved is not None and rows:
            on_moved(channel, results[:len(rows)])  # the metrics: received and duplicate counts
        _delete_moved(directory, new, store)
        return len(entries), results[len(rows):]


def _delete_moved(directory: str, position: Position, store: Any = None) -> None:
    """Delete the segments before ``position`` (fully moved), once the moves are on the disk."""
    flushed = False
    for number in segments(directory):
        if number >= position.segment:
            break
        if not flushed and store is not None:
            store.journal_durable()
            flushed = True
        try:
            os.unlink(segment_path(directory, number))
        except FileNotFoundError:
            pass


# --- the listener's side -------------------------------------------------------------------------


class _Ticket:
    """What :meth:`JournalWriter.submit_now` returns as its ``wait``: callable on any thread (waits
    for the flush), or handed to :meth:`JournalWriter.when_durable` by a listener's event loop."""

    __slots__ = ("journal", "results", "number", "lookup")

    def __init__(self, journal: JournalWriter, results: list[Any], number: int, lookup: Any):
        self.journal, self.results, self.number, self.lookup = journal, results, number, lookup

    def __call__(self) -> None:
        self.journal._settle(self.results, self.number, self.lookup)

    def when_durable(self, loop: Any, deliver: Callable[[Any, list[Any]], None], batch: Any,
                     results: list[Any]) -> None:
        self.journal.when_durable(loop, deliver, batch, results, self.number, self.lookup)


class KeyFilter:
    """A Bloom filter of dedupe keys (two bits per key): "certainly not stored" or "perhaps".

    The listener fills it at start with the channel's stored keys and adds every key it journals or
    stores, so a key it does not hold was never stored for the channel by this listener's process,
    and its frame needs no store look-up before the ACK. "Perhaps" (a resend, or a false positive of
    a few per cent once it holds one key per 16 bits) costs one indexed look-up off the loop.
    """

    def __init__(self, expected: int = 0):
        bits = 1 << 23  # 1 MiB
        while bits < expected * 16:
            bits <<= 1
        self.mask = bits - 1
        self.bits = bytearray(bits >> 3)

    def add(self, key: str) -> None:
        h = hash(key)
        a, b = h & self.mask, (h >> 32) & self.mask
        self.bits[a >> 3] |= 1 << (a & 7)
        self.bits[b >> 3] |= 1 << (b & 7)

    def held_or_add(self, key: str) -> bool:
        """``key in self``, and when it is not, ``add(key)``: one hash for both (the listener's write)."""
        h = hash(key)
        a, b = h & self.mask, (h >> 32) & self.mask
        bits = self.bits
        bit_a, bit_b = 1 << (a & 7), 1 << (b & 7)
        if bits[a >> 3] & bit_a and bits[b >> 3] & bit_b:
            return True
        bits[a >> 3] |= bit_a
        bits[b >> 3] |= bit_b
        return False

    def __contains__(self, key: str) -> bool:
        h = hash(key)
        a, b = h & self.mask, (h >> 32) & self.mask
        return bool(self.bits[a >> 3] & (1 << (a & 7))) and bool(self.bits[b >> 3] & (1 << (b & 7)))


class JournalWriter:
    """One channel's journal in the listening process: the intake's ``submit_now``/``submit_many``
    for that channel (see :meth:`bridge.core.intake.Intake.submit_now`), recovery at start, and the
    back-pressure bound."""

    def __init__(self, directory: str, store: Any, channel: Any, fmt: Any, *,
                 needs_id: Callable[[Any], bool], direct: Callable[[Sequence[tuple[Any, ...]]], list[Any]],
                 make_row: Callable[[tuple[Any, ...]], tuple[Any, ...] | Any], rows_for: RowsFor,
                 max_bytes: int = DEFAULT_MAX_BYTES, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 on_moved: Callable[[], None] | None = None, refresh_seconds: float = 0.1):
        self.directory = directory
        self.store = store
        self.channel = channel
        self.fmt = fmt
        self.needs_id = needs_id
        self.direct = direct  # receipts for items stored directly (used when the journal cannot serve)
        self.make_row = make_row  # item -> (dedupe_key, origin, raw) or a Receipt (refused)
        self.rows_for = rows_for
        self._origins: dict[int, tuple[Any, bytes]] = {}  # id(origin) -> (origin, its JSON): one per connection
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.on_moved = on_moved
        self.on_stored: Callable[[str, list[Any]], None] | None = None  # the engine's metrics.received
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._keys: dict[str, int] = {}  # dedupe keys journaled and perhaps not yet moved -> segment
        self._filter = KeyFilter()  # every key stored or journaled: a resend is possible only if held
        self._key_order: deque[tuple[int, int, str]] = deque()  # (segment, end, key) in write order
        self._fd = -1
        self._lock_fd = -1
        self._ends: dict[int, int] = {}  # segment -> end of its data, for the unmoved bytes
        self._prepared = False  # NEXT_FILE is ready: zeroed, flushed
        self._prezeroed = False  # the current segment was (its flushes change no file size)
        self._prep_kick = threading.Event()
        self._preparer: threading.Thread | None = None
        self._segment = 0
        self._size = 0
        self._sync_fd = -1  # the segment opened again, read-only: what the flush process flushes
        self._old: list[tuple[int, int]] = []  # (write fd, sync fd) of earlier segments not yet flushed
        self._dir_fd = -1
        self._dir_dirty = False
        self._written = 0  # write number of the last write
        self._durable = 0  # every write up to this number is on the disk
        self._failure: StoreError | None = None
        self.position = Position()
        self.unmoved_bytes = 0
        self.unmoved_entries = 0
        self._entries_written = 0  # lifetime entries (moved + unmoved) as far as this process knows
        self.corrupt: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.jid = ""
        self._lookups = ThreadPoolExecutor(1, thread_name_prefix=f"journal-lookup-{channel.name}")
        # the flush process and what the listener's loop waits for (see when_durable); loop thread only
        self._flusher: _FlushProcess | None = None
        self._flusher_started = -1e9  # monotonic time of its last start (a restart waits a second)
        self._loop: Any = None  # the event loop reading the flush process's answers
        self._pending: list[tuple[Any, ...]] = []  # (deliver, batch, results, number, lookup) to answer
        self._inflight: tuple[int, int, list[tuple[int, int]], bool] | None = None  # request, target, old, dir
        self._requests = 0
        self._sent_segment = -1  # the segment whose descriptor the flush process keeps
        self.flusher_restarts = 0
        self.flushes = 0  # diagnostics: flushes run, and seconds spent in them and in the dedupe look-ups
        self.flush_seconds = 0.0
        self.lookup_seconds = 0.0

    # lifecycle -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Recover (truncate a torn tail, remember the unmoved entries' dedupe keys) and start a new segment."""
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, "listener.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise BridgeError(f"channel {self.channel.name}: the intake journal {self.directory} is in use by another"
                              " listener; give each node its own intake_journal.dir") from None
        self.jid = journal_id(self.directory, create=True) or ""
        self._dir_fd = os.open(self.directory, os.O_RDONLY)
        self.position = self.store.journal_position(self.jid)
        try:
            entries, _, torn = read_unmoved(self.directory, self.position)
        except JournalCorrupt as exc:
            self.corrupt = str(exc)
            log.error("channel %s: %s", self.channel.name, exc)
            entries, torn = [], None
        existing = segments(self.directory)
        if torn is not None and existing:
            path = segment_path(self.directory, existing[-1])
            cut = os.path.getsize(path) - torn
            with open(path, "r+b") as handle:
                handle.truncate(torn)
                os.fsync(handle.fileno())
            log.warning("channel %s: journal %s ended in a torn write of %d bytes (never acknowledged): truncated",
                        self.channel.name, os.path.basename(path), cut)
        stored_keys = list(self.store.channel_dedupe_keys(self.channel.name))
        self._filter = KeyFilter(len(stored_keys) + len(entries))
        for key in stored_keys:
            self._filter.add(key)
        for entry in entries:
            self._ends[entry.segment] = entry.end
            if entry.dedupe_key:
                self._remember(entry.dedupe_key, entry.segment, entry.end)
                self._filter.add(entry.dedupe_key)
        self._entries_written = self.position.moved + len(entries)
        if entries:
            log.info("channel %s: journal holds %d entries not yet moved into the store", self.channel.name,
                     len(entries))
        for leftover in (NEXT_FILE, NEXT_FILE + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, leftover))
        self._new_segment(max([self.position.segment, *existing]) + 1)
        self._preparer = threading.Thread(target=self._prepare_loop, name=f"journal-prepare-{self.channel.name}",
                                          daemon=True)
        self._preparer.start()
        self._prep_kick.set()
        self._refresh()
        self._thread = threading.Thread(target=self._follow, name=f"journal-{self.channel.name}", daemon=True)
        self._thread.start()
        self._start_flusher()

    def close(self) -> None:
        self._stop.set()
        self._prep_kick.set()
        if self._preparer is not None:
            self._preparer.join(timeout=10)
        loop, flusher = self._loop, self._flusher
        self._flusher = self._loop = None
        if flusher is not None:
            if loop is not None and not loop.is_closed():  # the listener's loop still runs: let it forget us
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.remove_reader, flusher.fileno)
            flusher.stop()
        self._lookups.shutdown(wait=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._flush_lock:
            for write_fd, sync_fd in (*self._old, (self._fd, self._sync_fd)):
                if write_fd >= 0:
                    try:
                        os.fdatasync(write_fd)
                    except OSError:
                        pass
                    os.close(write_fd)
                if sync_fd >= 0:
                    os.close(sync_fd)
            self._old, self._fd, self._sync_fd = [], -1, -1
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
                self._dir_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the listener's lock
            self._lock_fd = -1

    def _new_segment(self, number: int) -> None:
        """Switch to segment ``number``: the zeroed file prepared in advance when it is ready (its
        flushes then write data blocks only; appending to a file also changes its size, which made
        each ``fdatasync`` two to three times slower here), else a new empty file."""
        path = segment_path(self.directory, number)
        if self._prepared:
            os.rename(os.path.join(self.directory, NEXT_FILE), path)
            self._prepared, prezeroed = False, True
            fd, size = os.open(path, os.O_WRONLY), 0
            self._prep_kick.set()
        else:
            prezeroed = False
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            size = os.fstat(fd).st_size
        sync_fd = os.open(path, os.O_RDONLY)
        with self._flush_lock:  # one switch, as the loop's flush requests and a thread's flush see it
            if self._fd >= 0:
                self._old.append((self._fd, self._sync_fd))
            self._segment, self._fd, self._sync_fd, self._size, self._prezeroed = number, fd, sync_fd, size, prezeroed
            self._ends[number] = size
            self._dir_dirty = True

    def _prepare_loop(self) -> None:
        """Zero the next segment's file in advance, off the loop (a file of ``segment_bytes``)."""
        while True:
            self._prep_kick.wait()
            self._prep_kick.clear()
            if self._stop.is_set():
                return
            if self._prepared:
                continue
            tmp = os.path.join(self.directory, NEXT_FILE + ".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    zeros = bytes(min(self.segment_bytes, 1 << 20))
                    left = self.segment_bytes
                    while left > 0 and not self._stop.is_set():
                        left -= os.write(fd, zeros[:left])
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if self._stop.is_set():
                    return
                os.rename(tmp, os.path.join(self.directory, NEXT_FILE))
                fsync_path(self.directory)
                self._prepared = True
            except OSError as exc:  # the listener goes on appending to plain files
                log.warning("channel %s: could not prepare the next journal segment: %s", self.channel.name,
                            exc.strerror or exc)

    # back-pressure and depth ---------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Unmoved bytes beyond ``max_bytes``: the listener stops reading until the mover catches up."""
        return self.unmoved_bytes >= self.max_bytes

    def _follow(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self._refresh()
            except Exception as exc:  # a store hiccup: the next refresh tries again
                log.warning("channel %s: journal position not read: %s", self.channel.name, exc)

    def _refresh(self) -> None:
        position = self.store.journal_position(self.jid)
        moved = position != self.position
        self.position = position
        with self._lock:
            while self._key_order and (self._key_order[0][0], self._key_order[0][1]) <= (position.segment,
                                                                                           position.offset):
                _, _, key = self._key_order.popleft()
                self._keys.pop(key, None)
        ends = list(self._ends.items())
        self.unmoved_bytes = sum(end - (position.offset if seg == position.segment else 0)
                                 for seg, end in ends if seg >= position.segment)
        for seg, _ in ends:
            if seg < position.segment:
                self._ends.pop(seg, None)
        self.unmoved_entries = max(0, self._entries_written - position.moved)
        if moved and self.on_moved is not None:
            self.on_moved()

    def _remember(self, key: str, segment: int, end: int) -> None:
        self._keys[key] = segment
        self._key_order.append((segment, end, key))

    # the intake ----------------------------------------------------------------------------------

    def submit_now(self, items: Sequence[tuple[Any, ...]]) -> Any:
        """On the loop: journal the batch (one write) and return ``(results, wait)``; None when an
        item needs its store id before its ACK (the careful path on a thread then stores it)."""
        if self._failure is not None:
            raise self._failure
        prepared = self._prepare(items)
        if prepared is None:
            return None
        results, number, lookup = self._journal(prepared)
        return results, _Ticket(self, results, number, lookup)

    def submit_many(self, items: Sequence[tuple[Any, ...]]) -> list[Any]:
        """On a thread: as :meth:`submit_now`, waiting for the flush; a batch with an item that needs
        its id is stored directly, after the journal is moved up to it (in one transaction, so no
        message overtakes one journaled before it)."""
        try:
            if self._failure is not None:
                raise self._failure
            prepared = self._prepare(items)
            if prepared is None:
                return self._store_directly(items)
            results, number, lookup = self._journal(prepared)
            self._settle(results, number, lookup)
            return results
        except StoreError as exc:
            return [exc] * len(items)
        except OSError as exc:
            return [StoreError(f"journal write failed: {exc.strerror or exc}")] * len(items)

    def _journal(self, prepared: list[Any]) -> tuple[list[Any], int, Any]:
        """Write the prepared rows (one write) and start the store look-up of keys that may be resends
        of stored messages, which runs on its own thread while the flusher flushes."""
        results, number, keys, now = self._write(prepared)
        fresh = [(i, key) for i, key, duplicate in keys if key is not None and not duplicate]
        return results, number, self._lookups.submit(self._lookup, fresh, now) if fresh else None

    def _prepare(self, items: Sequence[tuple[Any, ...]]) -> list[Any] | None:
        out = []
        for item in items:
            header = item[3] if len(item) > 3 else None
            if item[2] is not None or header is None or self.needs_id(header):
                return None
            out.append(self.make_row(item))
        return out

    def _store_directly(self, items: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Move every unmoved entry, then commit ``items`` after them in the same transaction."""
        rows, where = self.direct(items)
        if not rows:
            return where
        for row in rows:
            if row[3]:
                self._filter.add(row[3])
        _, results = move_once(self.store, self.channel.name, self.rows_for, self.directory, self.jid,
                               extra=rows, max_entries=1 << 62, max_bytes=1 << 62, on_moved=self.on_stored)
        self._refresh()
        return where(results)

    def _origin_json(self, origin: Any) -> bytes:
        cached = self._origins.get(id(origin))
        if cached is None or cached[0] is not origin:
            if len(self._origins) >= 4096:
                self._origins.clear()
            cached = self._origins[id(origin)] = (origin, json.dumps(origin, separators=(",", ":")).encode())
        return cached[1]

    def _write(self, prepared: list[Any]) -> tuple[list[Any], int, list[tuple[int, str | None, bool]], float]:
        now = time.time()
        chunks: list[bytes] = []
        results: list[Any] = []
        keys: list[tuple[int, str | None, bool]] = []
        with self._lock:
            seen = self._keys
            for row in prepared:
                if isinstance(row, Receipt):  # refused before the journal (too large)
                    results.append(row)
                    continue
                key, origin, raw = row
                duplicate = key is not None and key in seen
                record = encode_record(now, key, self._origin_json(origin), raw)
                self._size += len(record)
                if key is not None and not duplicate:
                    self._remember(key, self._segment, self._size)
                    if self._filter.held_or_add(key):  # perhaps stored already: the look-up says
                        keys.append((len(results), key, False))
                chunks.append(record)
                results.append(JOURNALED_DUPLICATE if duplicate else JOURNALED)
        data = b"".join(chunks)
        if data:
            self._write_all(data)
            self._written += 1
            self._entries_written += len(chunks)
            self.unmoved_bytes += len(data)
            self.unmoved_entries += len(chunks)
        number = self._written
        self._ends[self._segment] = self._size
        if self._size >= self.segment_bytes or (self._prepared and not self._prezeroed):
            self._new_segment(self._segment + 1)
        return results, number if data else 0, keys, now

    def _write_all(self, data: bytes) -> None:
        """Write ``data`` at the end of the segment's data; on a failed write undo it (zeros back, or
        the file cut back), so no torn record stays in the middle."""
        before = self._size - len(data)
        try:
            view, at = memoryview(data), before
            while view:
                written = os.pwrite(self._fd, view, at)
                view, at = view[written:], at + written
        except OSError as exc:
            self._size = before
            try:
                if self._prezeroed:
                    os.pwrite(self._fd, bytes(len(data)), before)
                else:
                    os.ftruncate(self._fd, before)
            except OSError:
                self._failure = StoreError("journal write failed and could not be undone; restart the engine")
            raise StoreError(f"journal write failed: {exc.strerror or exc}") from None

    # the flush, for the listener's event loop ---------------------------------------------------

    def when_durable(self, loop: Any, deliver: Callable[[Any, list[Any]], None], batch: Any, results: list[Any],
                     number: int, lookup: Any) -> None:
        """On the loop: have ``deliver(batch, results)`` called on ``loop`` once write ``number`` is on
        the disk (and the resends are known). The flush process flushes (one request in flight: every
        batch written meanwhile shares the next one) and its answer wakes the loop through a socket,
        so the loop never waits for the disk and never hands the GIL to a thread to flush."""
        if loop is not self._loop:
            self._attach(loop)
        self._pending.append((deliver, batch, results, number, lookup))
        if self._inflight is None:
            self._request()

    def _attach(self, loop: Any) -> None:
        """Read the flush process's answers on ``loop`` (a listener started again has a new loop;
        what the old one waited for belongs to its closed connections: those senders resend)."""
        old, self._loop, self._pending = self._loop, loop, []
        if self._flusher is not None:
            if old is not None and not old.is_closed():
                with contextlib.suppress(RuntimeError):
                    old.remove_reader(self._flusher.fileno)
            loop.add_reader(self._flusher.fileno, self._on_answer)

    def _start_flusher(self) -> bool:
        """Start the flush process (at open, and after it died: at most once a second)."""
        now = time.monotonic()
        if now - self._flusher_started < 1.0 or self._stop.is_set():
            return False
        self._flusher_started = now
        try:
            self._flusher = _FlushProcess(self.channel.name)
        except OSError as exc:
            log.error("channel %s: could not start the journal's flush process (%s); the listener flushes"
                      " itself meanwhile", self.channel.name, exc.strerror or exc)
            return False
        self._sent_segment = -1  # a new process keeps nothing yet
        if self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(self._flusher.fileno, self._on_answer)
        return True

    def _request(self) -> None:
        """Ask the flush process to flush everything written so far (on the loop; none in flight)."""
        with self._flush_lock:
            failure, target = self._failure, self._written
            if failure is None and self._durable < target:
                old = list(self._old)
                keep = int(self._sent_segment != self._segment)  # the flush process keeps the segment's fd
                fds = ([self._sync_fd] if keep else []) + [sync for _, sync in old]
                with_dir, self._dir_dirty = self._dir_dirty, False
                if with_dir:
                    fds.append(self._dir_fd)
        if failure is not None or self._durable >= target:
            self._complete(failure)
            return
        if self._flusher is None and not self._start_flusher():
            self._flush_here(target, with_dir)
            return
        assert self._flusher is not None
        self._requests += 1
        self._inflight = (self._requests, target, old, with_dir)
        try:
            self._flusher.send(self._requests, fds, (1 << (len(fds) - 1)) if with_dir else 0, keep)
        except OSError:
            self._flusher_died()
            return
        self._sent_segment = self._segment

    def _on_answer(self) -> None:
        """The flush process answered (or its end of the socket closed: it died)."""
        flusher = self._flusher
        if flusher is None:
            return
        try:
            answer = flusher.receive()
        except BlockingIOError:
            return
        except OSError:
            answer = None
        if answer is None:
            self._flusher_died()
            return
        number, error, seconds = answer
        inflight = self._inflight
        if inflight is None or inflight[0] != number:
            return  # not ours to judge (an answer left from before a restart)
        self._inflight = None
        failure = None
        with self._flush_lock:
            if error:
                if self._failure is None:
                    self._failure = StoreError(f"journal flush failed ({os.strerror(error)}); nothing more is"
                                               " acknowledged until the engine is restarted")
                failure = self._failure
            else:
                self._durable = max(self._durable, inflight[1])
                self._retire(inflight[2])
                self.flushes += 1
                self.flush_seconds += seconds
        if failure is not None:
            log.error("channel %s: %s", self.channel.name, failure)
        self._complete(failure)

    def _flusher_died(self) -> None:
        """The flush process is gone. Whatever it was flushing is flushed here, through the writing
        descriptors (a file description of their own: they report a write-back error even if the
        dead process's flush already saw it), before anyone is answered; it is started again at the
        next flush (at most once a second; meanwhile the loop flushes itself)."""
        flusher, self._flusher = self._flusher, None
        code = None
        if flusher is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(flusher.fileno)
            code = flusher.stop()
        self.flusher_restarts += 1
        log.error("channel %s: the journal's flush process ended (exit status %s); flushing on the listener"
                  " until it is restarted", self.channel.name, code)
        inflight, self._inflight = self._inflight, None
        if inflight is not None and inflight[3]:
            with self._flush_lock:
                self._dir_dirty = True
        self._flush_here(self._written, False)

    def _flush_here(self, target: int, with_dir: bool) -> None:
        """Flush on the loop itself (no flush process: it died, or could not start)."""
        if with_dir:
            with self._flush_lock:
                self._dir_dirty = True
        failure = None
        try:
            self._wait(target)
        except StoreError as exc:
            failure = exc
            log.error("channel %s: %s", self.channel.name, exc)
        self._complete(failure)

    def _complete(self, failure: StoreError | None = None) -> None:
        """Answer every batch now on the disk (all of them with ``failure``), and ask for the next flush
        first when some wait for a later write, so the disk works while the loop writes the ACKs."""
        durable = self._durable
        done = [item for item in self._pending if failure is not None or item[3] <= durable]
        if len(done) < len(self._pending):
            self._pending = [item for item in self._pending if item[3] > durable]
            if self._inflight is None:
                self._request()
        else:
            self._pending = []
        for deliver, batch, results, _, lookup in done:
            if failure is not None:
                deliver(batch, [r if isinstance(r, BaseException) or not r.accepted else failure for r in results])
            elif lookup is None:
                deliver(batch, results)
            elif lookup.done():
                deliver(batch, _resends(results, lookup))
            else:  # the store look-up of possible resends is still running: answer when it is known
                loop = self._loop
                lookup.add_done_callback(lambda _, _d=deliver, _b=batch, _r=results, _l=lookup: _call_soon(
                    loop, lambda: _d(_b, _resends(_r, _l))))

    def _lookup(self, fresh: list[tuple[int, str]], written_at: float) -> list[int]:
        """Which of the fresh keys (index, key) belong to messages already in the store: resends,
        whose ACK says so, as without the journal. Only rows received before this write count: the
        mover may already have moved this very entry. The memory of journaled keys was consulted
        first (in ``_write``), so a key moved meanwhile is found here."""
        started = time.perf_counter()
        known = self.store.known_dedupe_keys([key for _, key in fresh], before=written_at)
        self.lookup_seconds += time.perf_counter() - started
        return [i for i, key in fresh if key in known]

    def _retire(self, flushed: list[tuple[int, int]]) -> None:
        """Close earlier segments' descriptors once a flush covered them (under ``_flush_lock``)."""
        for pair in flushed:
            if any(pair is held for held in self._old):
                self._old = [held for held in self._old if held is not pair]
                os.close(pair[0])
                os.close(pair[1])

    def _settle(self, results: list[Any], number: int, lookup: Any) -> None:
        """On a thread: wait until the write is on the disk and the resends are known."""
        if number:
            self._wait(number)
        if lookup is not None:
            for i in lookup.result():
                results[i] = JOURNALED_DUPLICATE

    def _wait(self, number: int) -> None:
        with self._flush_lock:
            if self._failure is not None:
                raise self._failure
            if self._durable >= number:
                return
            target = self._written
            old = list(self._old)
            started = time.perf_counter()
            try:
                for fd in [*(write for write, _ in old), self._fd]:
                    os.fdatasync(fd)
                if self._dir_dirty:
                    self._dir_dirty = False
                    os.fsync(self._dir_fd)
            except OSError as exc:
                self._failure = StoreError(f"journal flush failed ({exc.strerror or exc}); nothing more is"
                                           " acknowledged until the engine is restarted")
                raise self._failure from None
            self._retire(old)
            self._durable = max(self._durable, target)
            self.flushes += 1
            self.flush_seconds += time.perf_counter() - started

    def status(self) -> dict[str, Any]:
        return {"directory": self.directory, "unmoved_bytes": self.unmoved_bytes,
                "unmoved_entries": self.unmoved_entries, "max_bytes": self.max_bytes, "full": self.full,
                "moved": self.position.moved, "corrupt": self.corrupt}


def _resends(results: list[Any], lookup: Any) -> list[Any]:
    """``results`` with the resends the store look-up found marked as duplicates (or, when the store
    could not say, an error answer for every accepted one: those senders send again)."""
    try:
        for i in lookup.result():
            results[i] = JOURNALED_DUPLICATE
    except Exception as exc:
        return [r if isinstance(r, BaseException) or not r.accepted else StoreError(f"store read failed: {exc}")
                for r in results]
    return results


def _call_soon(loop: Any, callback: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except (RuntimeError, AttributeError):  # the listener stopped meanwhile: these senders get no answer
        pass


class _FlushProcess:
    """The parent's end of :mod:`bridge.core.journal_flusher`: the child process and its socket."""

    def __init__(self, channel: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", journal_flusher.__file__, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.socket = ours
        self.fileno = ours.fileno()
        log.debug("channel %s: journal flush process %d started", channel, self.process.pid)

    def send(self, number: int, fds: list[int], dirs: int, keep: int) -> None:
        """Ask for a flush: the kept descriptor (replaced by the first ``keep`` of ``fds``) and ``fds``
        (bit i of ``dirs``: ``fds[i]`` is a directory). A plain send when there is no descriptor."""
        request = journal_flusher.REQUEST.pack(number, dirs, keep)
        if fds:
            socket.send_fds(self.socket, [request], fds)
        else:
            self.socket.send(request)

    def receive(self) -> tuple[int, int, float] | None:
        """The answer ``(request, errno, seconds)``; None: the process is gone."""
        data = self.socket.recv(journal_flusher.REPLY.size)
        if len(data) < journal_flusher.REPLY.size:
            return None
        return journal_flusher.REPLY.unpack(data)

    def stop(self) -> int | None:
        """Close our end (the process ends on it) and reap it; its exit status."""
        self.socket.close()
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def iter_journals(config: Any) -> Iterator[tuple[Any, str]]:
    """(channel config, journal directory) of every enabled channel with an intake journal."""
    for ch in config.channels.values():
        if ch.enabled and ch.intake_journal is not None:
            yield ch, ch.intake_journal.directory


# --- the mover -----------------------------------------------------------------------------------

MOVER_NICENESS = 10
"""The mover defers to the listener (nice 10, below the workers' 5): during a burst the intake gets
the CPU and the mover catches up after."""


def mover_command(config_path: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "bridge.cli", "run", "-c", os.path.abspath(config_path), "--role", "journal-mover"]


def move_all(store: Any, channel: str, rows_for: RowsFor, directory: str) -> int:
    """Move every entry of one journal directory (``bridge journal drain``); returns how many."""
    jid = journal_id(directory, create=False)
    if jid is None:
        return 0
    total = 0
    while True:
        moved, _ = move_once(store, channel, rows_for, directory, jid)
        if not moved:
            return total
        total += moved


def run_mover(config: Any, store: Any, intake: Any, stop: threading.Event, *, idle_seconds: float = 0.02,
              on_moved: Callable[[str, list[Any]], None] | None = None) -> None:
    """The mover process's loop: every channel's journal, a batch at a time, until ``stop``."""
    reported: dict[str, float] = {}
    while not stop.is_set():
        moved_any = False
        for ch, directory in iter_journals(config):
            jid = journal_id(directory, create=False)
            if jid is None:
                continue
            try:
                moved, _ = move_once(store, ch.name, lambda entries, _ch=ch: intake.journal_rows(_ch, entries),
                                     directory, jid, on_moved=on_moved)
                moved_any = moved_any or moved > 0
            except (JournalCorrupt, StoreError, OSError) as exc:
                now = time.monotonic()
                if now - reported.get(ch.name, -1e9) >= 60:  # said once a minute while it lasts
                    reported[ch.name] = now
                    log.error("channel %s: the journal mover is stuck: %s", ch.name, exc)
        if not moved_any:
            stop.wait(idle_seconds)


def mover_main(config: Any, plugins: Any, stop: threading.Event) -> None:
    """``bridge run --role journal-mover``: a child of ``bridge run`` (exits when its parent is gone)."""
    from bridge.core.intake import Intake
    from bridge.core.store import open_store
    from bridge.core.workers import watch_parent

    watch_parent(stop)
    try:
        os.nice(MOVER_NICENESS)
    except OSError as exc:
        log.warning("journal mover could not lower its priority: %s", exc)
    idle = [ch.name for ch, _ in iter_journals(config) if ch.intake_journal.mover_priority == "idle"]
    if idle:  # one mover serves every channel: one channel asking for idle makes it idle
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            log.info("journal mover runs on idle CPU only (mover_priority: idle on %s)", ", ".join(idle))
        except (OSError, AttributeError) as exc:
            log.warning("journal mover could not switch to idle CPU scheduling: %s", exc)
    from bridge.core.telemetry import EngineMetrics

    store = open_store(config.store_url)
    metrics = EngineMetrics()  # counted as the intake counts a commit; shared with the parent's /metrics
    metrics.share_from_worker(stop)
    log.info("journal mover started for %d channel(s)", sum(1 for _ in iter_journals(config)))
    try:
        run_mover(config, store, Intake(store, plugins.formats()), stop, on_moved=metrics.received)
    finally:
        store.close()
        metrics.share_final()


def status(config: Any, store: Any) -> list[dict[str, Any]]:
    """What ``bridge journal status`` prints: each journal's unmoved entries and bytes on this node."""
    out = []
    for ch, directory in iter_journals(config):
        jid = journal_id(directory, create=False)
        row: dict[str, Any] = {"channel": ch.name, "directory": directory, "unmoved_entries": 0,
                               "unmoved_bytes": 0, "moved": 0, "problem": None}
        if jid is not None:
            position = store.journal_position(jid)
            row["moved"] = position.moved
            try:
                entries = read_unmoved(directory, position, live=True)[0]
                row["unmoved_entries"] = len(entries)
                row["unmoved_bytes"] = sum(e.end - e.offset for e in entries)
            except JournalCorrupt as exc:
                row["problem"] = str(exc)
        out.append(row)
    return out
