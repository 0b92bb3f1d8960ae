"""Worker processes: ``engine: {processes: N}`` runs workers and deliverers in N child processes.

Why processes and not a pool: decoding and encoding are CPU-bound Python, so threads of one process
share one core (the GIL). A process pool would pickle each claimed message and each result across
a pipe, and the project allows no pickle. Instead each child is a whole ``bridge run --role worker``
on the same config and the same store: it claims its own batches, and the store's lanes, leases and
fencing tokens keep the children apart exactly as they keep several nodes apart on PostgreSQL.
SQLite in WAL mode is safe for several processes on one host. The parent keeps what must exist once
per host: the sources (listeners, inboxes: the intake) and the scheduler.

A child exits when its parent is gone (checked every second), so a ``kill -9`` of the parent does
not leave orphans working on; the parent restarts a child that died, with a growing pause. Children
run at a lower CPU priority (nice 5) than the parent, whose listeners' ACKs senders wait for.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = (1.0, 30.0)  # first pause before restarting a dead child, and the longest


def worker_command(config_path: str, role: str = "worker") -> list[str]:
    """The command line of one worker process: the same ``bridge run``, in the worker role (or the
    ``deliverer`` role of ``engine.delivery_processes``)."""
    return [sys.executable, "-m", "bridge.cli", "run", "-c", os.path.abspath(config_path), "--role", role]


class WorkerProcesses:
    """Starts, watches and stops the worker children of one ``bridge run``."""

    def __init__(self, config_path: str, count: int, env: dict[str, str] | None = None,
                 command: list[str] | None = None, label: str = "worker process"):
        self.command = command or worker_command(config_path)
        self.label = label
        self.count = count
        self.env = {**os.environ, **env} if env else None  # e.g. where the children share their metrics
        self.children: list[subprocess.Popen | None] = [None] * count
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        for slot in range(self.count):
            self.children[slot] = self._spawn(slot)
        self._watcher = threading.Thread(target=self._watch, name="worker-processes", daemon=True)
        self._watcher.start()

    def _spawn(self, slot: int) -> subprocess.Popen:
        # the child compares its parent with this pid: read at its start, getppid() would already say 1
        # when the parent was killed while the child was still starting up
        env = {**(self.env if self.env is not None else os.environ), PARENT_ENV: str(os.getpid())}
        child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=env)
        log.info("%s %d started (pid %d)", self.label, slot, child.pid)
        return child

    def _watch(self) -> None:
        pauses = [RESTART_PAUSE_SECONDS[0]] * self.count
        while not self._stop.wait(0.5):
            for slot, child in enumerate(self.children):
                if child is None or child.poll() is None:
                    continue
                log.error("%s %d (pid %d) exited with %s; restarting in %.0f s",
                          self.label, slot, child.pid, child.returncode, pauses[slot])
                if self._stop.wait(pauses[slot]):
                    return
                pauses[slot] = min(pauses[slot] * 2, RESTART_PAUSE_SECONDS[1])
                self.children[slot] = self._spawn(slot)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to every running child (SIGHUP: they reload the configuration themselves)."""
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child (each finishes its batch), then SIGKILL what is still running."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        alive = [c for c in self.children if c is not None and c.poll() is None]
        for child in alive:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in alive:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process pid %d did not stop; killing it", child.pid)
                child.kill()
                child.wait()

    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c is not None and c.poll() is None]


WORKER_NICENESS = 5
"""How much a worker process defers to its parent for CPU: the parent's intake commits what senders
wait for (their ACK), the workers' throughput can wait a moment. It matters only on a busy host."""


def lower_priority() -> None:
    """In a worker child: run at ``WORKER_NICENESS`` so the parent's listeners get the CPU first."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError as exc:  # not allowed here: the worker runs at normal priority
        log.warning("worker process could not lower its priority: %s", exc)


PARENT_ENV = "BRIDGE_PARENT_PID"


def watch_parent(stop: threading.Event) -> None:
    """In a worker child: set ``stop`` when the parent process is gone (it was killed, even with -9).
    The parent is the pid the parent put in ``BRIDGE_PARENT_PID`` (else the parent at this call)."""
    try:
        parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    except ValueError:
        parent = os.getppid()

    def loop() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("the parent bridge run is gone; this worker process stops")
                stop.set()

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
