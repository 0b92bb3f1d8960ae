"""The ``file`` transport: an inbox folder as a source and an outbox folder as a destination.

URLs: ``file:///absolute/path`` or ``file://relative/path`` (relative to the config file's folder).

Source: polls the folder, submits each file to the intake, and only after the durable commit moves
it to ``.processed/`` (or deletes it, ``after: delete``). A crash between commit and move means the
file is read again on restart; the intake recognises it as a duplicate (same name and content), so
nothing is queued twice and nothing is lost. Several nodes may share one inbox folder: only the node
holding the inbox's lock (``flock`` on ``.inbox.lock`` in the folder) reads it; the kernel drops the
lock when that process ends, even by kill -9, and another node takes over at its next poll. Files
whose names start with ``.`` or end in ``.tmp``
or ``.part`` are still being written and are skipped: writers should write then rename. A file
over the channel's size limit, or one the intake refuses outright, goes to ``.rejected/`` with a
``.reason.txt`` beside it.

Destination: writes each payload atomically (temporary file, fsync, rename) as
``{original_message_id}-{original_outbox_id}.{ext}`` unless ``options: {filename: …}`` says
otherwise, so a re-delivery — or a replay, which carries its original's ids — overwrites the same
file instead of making a second one. For a message that is not a replay these are its own ids.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from bridge import (
    ConfigError,
    Delivery,
    DestinationContext,
    OptionSpec,
    PermanentDeliveryError,
    SourceContext,
    TransientDeliveryError,
    TransportSpec,
    hookimpl,
)

log = logging.getLogger(__name__)

SKIP_SUFFIXES = (".tmp", ".part", ".reason.txt")


def path_from_url(url: str, config_dir: str) -> Path:
    """``file:///abs`` → ``/abs``; ``file://rel`` or ``file:rel`` → ``config_dir/rel``."""
    rest = url[len("file:"):]
    if rest.startswith("//"):
        rest = rest[2:]
    path = Path(rest)
    if not path.is_absolute():
        path = Path(config_dir) / path
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?P<thread>\d+)\.tmp$")
"""The temporary files :func:`atomic_write` makes: ``.<target name>.<pid>.<thread id>.tmp``."""
STALE_TEMP_SECONDS = 3600.0
"""A temporary file this old is no write in progress (one takes well under a second) but a crash's leftover."""


def atomic_write(path: Path, data: bytes, *, flush_folder: bool = True) -> None:
    """Write ``data`` to ``path`` so a reader never sees a half-written file, even after a crash.
    A write that fails removes its temporary file; one cut short by a crash leaves it for
    :func:`remove_stale_temp_files`.

    Plain ``os`` calls, one system call each (open, write, fsync, close, rename, then the folder's
    open, fsync, close): every system call lets go of the GIL, and a deliverer thread that lets go of
    it waits up to the interpreter's switch interval (5 ms) to get it back from a busy worker thread of
    the same process. ``open()`` with Python's buffered file objects added an fstat, an lseek and an
    ioctl per file."""
    _write_synced(path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"), path, data)
    if flush_folder:  # else the caller flushes the folder before it counts the file as written
        _fsync_dir(path.parent)


def _write_synced(tmp: Path, path: Path, data: bytes) -> None:
    """``data`` into ``tmp``, flushed to the disk, then renamed to ``path`` (not yet durable: the
    folder's flush makes the rename durable)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: Path, older_than_seconds: float, now: float | None = None) -> int:
    """Remove :func:`atomic_write`'s temporary files in ``folder`` older than ``older_than_seconds``
    (left by a process killed mid-write); returns how many. Nothing else is touched: files of other
    names, and younger temporary files, which may be another process's write in progress."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not TEMP_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > older_than_seconds:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # removed meanwhile (another node cleaning the same folder)
            continue
    return removed


class FolderSource:
    """Polls a folder; every file is one message."""

    def __init__(self, ctx: SourceContext):
        self.ctx = ctx
        self.folder = path_from_url(ctx.url, ctx.config_dir)
        opts = ctx.options
        self.poll_seconds = float(opts.get("poll_seconds", 0.5))
        self.min_age_seconds = float(opts.get("min_age_seconds", 0.0))
        self.after = opts.get("after", "move")
        self.processed = self.folder / ".processed"
        self.rejected = self.folder / ".rejected"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folders_ready = False
        self._lock_fd: int | None = None

    def _hold_inbox(self) -> bool:
        """True while this process holds the inbox (one reader at a time across nodes)."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.folder / ".inbox.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        log.info("file source %s: this node now reads the inbox", self.ctx.channel)
        return True

    def _release_inbox(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _ensure_folders(self) -> None:
        if not self._folders_ready:
            for folder in (self.folder, self.processed, self.rejected):
                folder.mkdir(parents=True, exist_ok=True)
            self._folders_ready = True

    def start(self) -> None:
        self._ensure_folders()
        self._thread = threading.Thread(target=self._run, name=f"file-source-{self.ctx.channel}", daemon=True)
        self._thread.start()

    @property
    def listening(self) -> bool:
        """Whether its polling thread runs (health: a source down fails /readyz)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._release_inbox()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling: one bad file or a store hiccup must not stop the source
                log.exception("file source %s: poll failed", self.ctx.channel)
            self._stop.wait(self.poll_seconds)

    def ready_files(self) -> list[Path]:
        now = time.time()
        files = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name.endswith(SKIP_SUFFIXES) or not entry.is_file():
                    continue
                if self.min_age_seconds and now - entry.stat().st_mtime < self.min_age_seconds:
                    continue
                files.append(Path(entry.path))
        return sorted(files)

    def poll_once(self) -> int:
        """Submit every ready file once; returns how many were taken in."""
        self._ensure_folders()
        if not self._hold_inbox():
            return 0  # another node reads this inbox now
        taken = 0
        for path in self.ready_files():
            if self._stop.is_set():
                break
            if self.take(path):
                taken += 1
        return taken

    def take(self, path: Path) -> bool:
        size = path.stat().st_size
        if size > self.ctx.max_message_bytes:
            self._reject(path, f"file is {size} bytes, over the channel limit of {self.ctx.max_message_bytes}")
            return False
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        receipt = self.ctx.submit(raw, {"file": path.name, "dedupe_key": f"file:{path.name}:{digest}"})
        if not receipt.accepted and receipt.message_id is None:
            self._reject(path, receipt.error or "refused by the intake")
            return False
        self._done(path)
        return True

    def _done(self, path: Path) -> None:
        if self.after == "delete":
            path.unlink(missing_ok=True)
        else:
            os.replace(path, self.processed / path.name)

    def _reject(self, path: Path, reason: str) -> None:
        log.warning("file source %s: rejected a file: %s", self.ctx.channel, reason)
        os.replace(path, self.rejected / path.name)
        (self.rejected / f"{path.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")


def _safe(text: str) -> str:
    """A file-name part: letters, digits, ``.``, ``_`` and ``-`` only, never ``..``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    return cleaned.replace("..", "__")


class FolderDestination:
    """Writes each delivery as one file."""

    def __init__(self, ctx: DestinationContext):
        self.folder = path_from_url(ctx.url, ctx.config_dir)
        self.template = ctx.options.get("filename", "{original_message_id}-{original_outbox_id}.{ext}")
        self._batch = threading.local()  # per deliverer thread: deferring the folder's flush, and owing one
        self._remove_crash_leftovers(ctx.options.get("stale_temp_seconds", STALE_TEMP_SECONDS))

    def _remove_crash_leftovers(self, older_than_seconds: Any) -> None:
        """At start: the temporary files of writes a crash cut short would otherwise pile up forever."""
        if isinstance(older_than_seconds, bool) or not isinstance(older_than_seconds, (int, float)) \
                or older_than_seconds < 1:
            raise ConfigError("stale_temp_seconds must be a number of seconds, at least 1"
                              f" (got {older_than_seconds!r})")
        try:
            removed = remove_stale_temp_files(self.folder, float(older_than_seconds))
        except OSError as exc:  # the folder is unreadable now: sends will say so; nothing to clean
            log.warning("outbox folder %s: stale temporary files not checked: %s", self.folder, exc.strerror or exc)
            return
        if removed:
            log.info("outbox folder %s: removed %d temporary files left by interrupted writes", self.folder, removed)

    def send(self, delivery: Delivery) -> str:
        name = self.template.format(
            message_id=delivery.message_id,
            outbox_id=delivery.outbox_id,
            original_message_id=delivery.original_message_id or delivery.message_id,
            original_outbox_id=delivery.original_outbox_id or delivery.outbox_id,
            ext=_safe(delivery.file_extension),
            destination=_safe(delivery.destination),
            trace_id=_safe(delivery.trace_id or ""),  # comes from the sender: never a path
        )
        # A name is a file of the outbox folder when it has no folder part and is not "." or "..":
        # checked on the string (resolving the target's path cost an lstat per path component on
        # every send). A symlink of that name is replaced by the rename, never written through.
        if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
            raise PermanentDeliveryError(f"file name {name!r} from the filename template leaves the outbox folder")
        target = self.folder / name
        deferred = getattr(self._batch, "deferred", False)
        try:
            try:
                atomic_write(target, delivery.payload, flush_folder=not deferred)
            except FileNotFoundError:  # the folder is not there (yet, or any more): make it, write again
                self.folder.mkdir(parents=True, exist_ok=True)
                atomic_write(target, delivery.payload, flush_folder=not deferred)
        except OSError as exc:
            raise TransientDeliveryError(f"could not write {target}: {exc.strerror or exc}") from exc
        if deferred:
            self._batch.owed = True
        return f"wrote {name} ({len(delivery.payload)} bytes)"

    def begin_batch(self) -> None:
        """The deliverer of this thread flushes (:meth:`flush`) before it records what it sends next:
        each file is still written to a temporary name, flushed and renamed, but the folder, which
        makes the renames durable, is flushed once for the batch (it was a second fsync per file)."""
        self._batch.deferred = True

    def flush(self) -> None:
        """Make this thread's renames since :meth:`begin_batch` durable (one fsync of the folder);
        raises ``OSError`` when it cannot. Later sends flush the folder themselves again until the
        next :meth:`begin_batch`."""
        self._batch.deferred = False
        if getattr(self._batch, "owed", False):
            _fsync_dir(self.folder)
            self._batch.owed = False

    def close(self) -> None:
        pass



@hookimpl
def bridge_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            scheme="file",
            source=FolderSource,
            destination=FolderDestination,
            description="Inbox folder source and atomic-write outbox folder destination",
            source_options=(
                OptionSpec("poll_seconds", "how often the folder is read", kind="number", default=0.5),
                OptionSpec("min_age_seconds", "skip files younger than this (still being written)", kind="number",
                           default=0.0),
                OptionSpec("after", "what happens to a file once committed", kind="string", default="move",
                           choices=("move", "delete")),
            ),
            destination_options=(
                OptionSpec("filename", "file name template: {original_message_id}, {original_outbox_id} (the same "
                           "on every replay), {message_id}, {outbox_id} (new on a replay), {ext}, {destination}",
                           kind="string", default="{original_message_id}-{original_outbox_id}.{ext}"),
                OptionSpec("stale_temp_seconds", "at start, remove this destination's temporary files (.<name>.<pid>."
                           "<thread>.tmp) older than this: writes a crash cut short", kind="number",
                           default=STALE_TEMP_SECONDS),
            ),
        )
    ]
