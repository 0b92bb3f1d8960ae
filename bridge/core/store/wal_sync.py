"""Durable intake commits whose disk flush does not hold SQLite's write lock.

With ``synchronous=FULL`` SQLite flushes the WAL inside COMMIT, while it holds the database's one
write lock, so nothing else can be written during the flush (about a millisecond on a virtual disk,
more on a busy one). A listener that commits on its event loop (:meth:`SQLiteStore.receive_now`)
would also stop reading its sockets for that long.

Such a commit therefore uses ``synchronous=NORMAL`` (SQLite writes the WAL frames but does not flush
them), and its sender is answered only after this module has flushed the WAL file with ``fdatasync``
in a flush that *began after the commit returned*, on another thread. Meanwhile the loop reads and
commits the next frames, and one flush makes every commit before it durable (the WAL is one file,
written in order).

Why this is as durable as ``FULL``: a commit's frames are in the WAL file when COMMIT returns, and the
flush puts them on the disk. In WAL mode ``NORMAL`` still flushes the WAL before a checkpoint copies
frames into the database, and the database before the WAL is restarted, so frames a checkpoint moved
are durable in the database file by the time the WAL is overwritten. If the WAL file is gone (the last
connection closed; SQLite checkpointed and deleted it) the database file is flushed instead. The first
flush of a new WAL file also flushes its directory, so the file itself survives a power cut.

A failed flush is not retried: after a write error Linux may drop the dirty pages and report the next
flush as a success, so the commits waiting, and every later one, fail with a StoreError (the sender
gets an error answer and sends again) until the engine is restarted.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from bridge.errors import StoreError

log = logging.getLogger(__name__)


class WalSync:
    """Shares one WAL flush among every commit that finished before the flush began."""

    def __init__(self, database_path: str, *, checkpoint: Callable[[], None] | None = None,
                 checkpoint_bytes: int = 0, flush: Callable[[int], None] = os.fdatasync):
        self.database_path = database_path
        self._checkpoint = checkpoint
        self._checkpoint_bytes = checkpoint_bytes
        self.wal_path = database_path + "-wal"
        self._flush = flush
        self._lock = threading.Condition()
        self._committed = 0  # number of the last commit that returned
        self._durable = 0  # every commit numbered up to this one is on the disk
        self._flushing = False
        self._failure: StoreError | None = None
        self._wal_inode: int | None = None
        self._size_at_checkpoint = 0
        self.flushes = 0  # how many flushes ran (tests and diagnostics)

    def check(self) -> None:
        """Raise the StoreError of an earlier failed flush: after one, no commit may be acknowledged."""
        if self._failure is not None:
            raise self._failure

    def committed(self) -> int:
        """Call right after COMMIT returned: the commit's number, to pass to :meth:`wait`."""
        with self._lock:
            self.check()
            self._committed += 1
            return self._committed

    def wait(self, commit: int) -> None:
        """Return once commit number ``commit`` is on the disk; raise StoreError if it cannot be."""
        while True:
            with self._lock:
                while self._durable < commit and self._flushing and self._failure is None:
                    self._lock.wait()
                if self._failure is not None:
                    raise self._failure
                if self._durable >= commit:
                    return
                self._flushing = True  # this caller flushes for every commit made so far
                target = self._committed
            try:
                self._flush_files()
            except OSError as exc:
                with self._lock:
                    self._failure = StoreError(
                        f"the disk refused to write the store's log ({exc.strerror or type(exc).__name__}); "
                        "messages are not being stored: restart the engine once the disk is healthy")
                    self._flushing = False
                    self._lock.notify_all()
                raise self._failure from exc
            with self._lock:
                self._durable = max(self._durable, target)
                self._flushing = False
                self.flushes += 1
                self._lock.notify_all()

    def _flush_files(self) -> None:
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed into the database and deleted: flush the database
            self._flush_path(self.database_path)
            return
        try:
            status = os.fstat(fd)
            self._flush(fd)
        finally:
            os.close(fd)
        if status.st_ino != self._wal_inode:  # a new WAL file: its directory entry must survive too
            self._flush_path(os.path.dirname(os.path.abspath(self.wal_path)))
            self._wal_inode = status.st_ino
        if self._wants_checkpoint(status.st_size):
            self._checkpoint_quietly()
            self._size_at_checkpoint = status.st_size

    def _wants_checkpoint(self, size: int) -> bool:
        """When the WAL file has grown past the threshold, or past its size at the last checkpoint.
        (After a checkpoint SQLite writes the WAL from its start again without shrinking the file, so
        its size only grows again once that much more was written: about one checkpoint per
        threshold's worth of commits.)"""
        return self._checkpoint is not None and size > max(self._checkpoint_bytes, self._size_at_checkpoint)

    def _checkpoint_quietly(self) -> None:
        """Commits made without waiting for the disk never checkpoint (a checkpoint would stop the
        listener's loop); the flusher does it, without blocking writers, once the WAL has grown.
        A checkpoint that fails is tried again after the next flush: the data is safe in the WAL."""
        assert self._checkpoint is not None
        try:
            self._checkpoint()
        except Exception as exc:  # never the sender's problem: its commit is durable already
            log.warning("store checkpoint after a WAL flush failed: %s", type(exc).__name__)

    def _flush_path(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self._flush(fd)
        finally:
            os.close(fd)
