"""The intake journal's flush process: ``fdatasync`` for a listener, in a process of its own.

A listener's event loop must not wait for the disk, and handing each flush to a thread of its own
process cost the loop a GIL hand-off per flush (~13 µs of the loop's CPU per message with 32
senders, docs/mllp.md). So the journal (:class:`bridge.core.journal.JournalWriter`) starts this tiny
program as a child and asks it over a Unix socket: each request carries the file descriptors to
flush (``SCM_RIGHTS``: the segments written since the last flush, and the journal's directory after
a new segment), the child flushes them and answers with the request's number and ``errno`` (0: all
of them are on the disk). The loop reads the answer when its socket is readable and only then
writes the ACKs.

It imports nothing of the engine (``python -I -S`` runs this file: it starts in milliseconds), holds
no state between requests, ignores SIGINT and SIGTERM (a Ctrl-C or ``systemctl stop`` stops the
parent, and the parent's end of the socket closing ends it), and exits when its parent is gone (the
socket's end of file, or ``getppid`` changing while it waits). If it dies, the journal flushes
through its own descriptors before it answers anyone (see ``JournalWriter._flusher_died``).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import time

REQUEST = struct.Struct("<QI")  # request number; bit i set: descriptor i is a directory (fsync, not fdatasync)
REPLY = struct.Struct("<Qid")  # request number, errno (0: every descriptor flushed), seconds spent flushing
MAX_FDS = 64


def serve(sock: socket.socket, parent: int) -> None:
    """Answer flush requests on ``sock`` until it closes or ``parent`` is no longer our parent."""
    sock.settimeout(1.0)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, REQUEST.size, MAX_FDS)
        except TimeoutError:
            if os.getppid() != parent:
                return
            continue
        except OSError:
            return
        if len(data) < REQUEST.size:
            for fd in fds:
                os.close(fd)
            return  # the parent closed its end (or sent nonsense): nothing more to flush for it
        number, dirs = REQUEST.unpack(data)
        error = 0
        started = time.perf_counter()
        for i, fd in enumerate(fds):
            if not error:
                try:
                    (os.fsync if dirs >> i & 1 else os.fdatasync)(fd)
                except OSError as exc:
                    error = exc.errno or 5  # EIO
            os.close(fd)
        try:
            sock.sendall(REPLY.pack(number, error, time.perf_counter() - started))
        except OSError:
            return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, parent = int(argv[1]), int(argv[2])
    if os.getppid() != parent:
        return 0
    serve(socket.socket(fileno=fd), parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
