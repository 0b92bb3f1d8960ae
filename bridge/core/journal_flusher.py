"""The intake journal's flush process: ``fdatasync`` for a listener, in a process of its own.

A listener's event loop must not wait for the disk, and handing each flush to a thread of its own
process cost the loop a GIL hand-off per flush (~13 µs of the loop's CPU per message with 32
senders, docs/mllp.md). So the journal (:class:`bridge.core.journal.JournalWriter`) starts this tiny
program as a child and asks it over a Unix socket: each request names what to flush: the segment being
written (its descriptor is sent once, with ``SCM_RIGHTS``, and kept), plus descriptors sent for this
request only (an earlier segment's last writes; the journal's directory after a new segment). The
child flushes them and answers with the request's number and ``errno`` (0: all of them are on the
disk). The loop reads the answer when its socket is readable and only then
writes the ACKs.

It imports nothing of the engine (``python -I -S`` runs this file: it starts in milliseconds), holds
nothing but the kept descriptor between requests, ignores SIGINT and SIGTERM (a Ctrl-C or ``systemctl stop`` stops the
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

REQUEST = struct.Struct("<QII")  # request number; bit i set: descriptor i is a directory; descriptors kept
REPLY = struct.Struct("<Qid")  # request number, errno (0: every descriptor flushed), seconds spent flushing
MAX_FDS = 64


def serve(sock: socket.socket, parent: int) -> None:
    """Answer flush requests on ``sock`` until it closes or ``parent`` is no longer our parent."""
    sock.settimeout(1.0)
    kept: list[int] = []  # the segment being written: sent once, flushed by every request after
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
        number, dirs, keep = REQUEST.unpack(data)
        targets = [(fd, dirs >> i & 1) for i, fd in enumerate(fds)]
        if keep:  # the first ``keep`` descriptors replace the kept ones (a new segment, a new process)
            for fd in kept:
                os.close(fd)
            kept = fds[:keep]
        else:
            targets = [(fd, 0) for fd in kept] + targets
        error = 0
        started = time.perf_counter()
        for fd, directory in targets:
            try:
                (os.fsync if directory else os.fdatasync)(fd)
            except OSError as exc:
                error = exc.errno or 5  # EIO
                break
        for fd in fds[keep:]:
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
