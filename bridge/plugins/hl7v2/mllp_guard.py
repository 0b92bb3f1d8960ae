"""Who may hold an MLLP listener's connections (issue 16, defect 3).

One peer used to be able to lock every sender out: a hundred connections that never finish a frame,
or five hundred that say nothing, took the whole ``max_connections`` cap for the idle timeout. The
guard decides admissions so that cannot happen:

- **Per peer:** no source address holds more than ``max_connections_per_peer`` connections; the
  next one from it is refused at once.
- **When the cap is full:** a newcomer may take the slot of a connection that has not yet delivered
  a single complete frame (idle since it connected, or dripping a frame), chosen from the address
  holding the most connections, oldest first, but only if that address holds more connections than
  the newcomer's. So the peer that already holds many is the one refused, and a sender that has
  delivered a frame (an established sender) is never the one evicted.

Refusals and evictions are logged with the address and counts only (never bytes of a frame), and at
most once per address per ``LOG_EVERY_SECONDS`` with the number refused meanwhile, so a flood of
connections cannot flood the log either.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import Protocol

log = logging.getLogger("bridge.plugins.hl7v2.mllp")

LOG_EVERY_SECONDS = 10.0
MAX_LOGGED_ADDRESSES = 4096  # bounds the refusal-log memory when refusals come from many addresses


class Guarded(Protocol):
    """What the guard reads of an open connection."""

    host: str
    frames_completed: int
    progress_at: float

    @property
    def busy(self) -> bool:  # a frame of it waits for our answer: never evicted
        ...

    def evict(self) -> None:
        ...


class ConnectionGuard:
    """Counts connections per source address and decides each admission (see the module text)."""

    def __init__(self, channel: str, max_connections: int, max_per_peer: int):
        self.channel = channel
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.total = 0
        self.per_host: collections.Counter[str] = collections.Counter()
        self.refused = 0
        self.evicted = 0
        self._last_logged: dict[str, tuple[float, int]] = {}

    def admit(self, host: str, open_connections: Iterable[Guarded]) -> bool:
        """Take a slot for a new connection from ``host``, evicting one if fairness says so."""
        held = self.per_host[host]
        if held >= self.max_per_peer:
            self._refuse(host, f"{held} connections from this address already open "
                               f"(max_connections_per_peer {self.max_per_peer})")
            return False
        if self.total >= self.max_connections:
            victim = self._victim(open_connections)
            if victim is None or self.per_host[victim.host] <= held:
                self._refuse(host, f"{self.total} connections already open (max_connections "
                                   f"{self.max_connections}) and none may give way")
                return False
            self.evicted += 1
            log.warning("channel %s: cap of %d connections reached; closed a connection from %s that had "
                        "completed no frame (that address holds %d) to admit one from %s",
                        self.channel, self.max_connections, victim.host, self.per_host[victim.host], host)
            victim.evict()  # releases its slot before returning
        self.total += 1
        self.per_host[host] += 1
        return True

    def release(self, host: str) -> None:
        """A counted connection ended (or was evicted): free its slot."""
        self.total -= 1
        self.per_host[host] -= 1
        if self.per_host[host] <= 0:
            del self.per_host[host]

    def _victim(self, open_connections: Iterable[Guarded]) -> Guarded | None:
        """The connection that gives way: never one that completed a frame or awaits our answer;
        among the rest, the address holding most connections first, then the oldest progress."""
        candidates = [c for c in open_connections if c.frames_completed == 0 and not c.busy]
        if not candidates:
            return None
        return min(candidates, key=lambda c: (-self.per_host[c.host], c.progress_at))

    def _refuse(self, host: str, why: str) -> None:
        """Log a refusal at most once per address per LOG_EVERY_SECONDS, with how many were refused."""
        self.refused += 1
        now = time.monotonic()
        last, suppressed = self._last_logged.get(host, (float("-inf"), 0))
        if now - last < LOG_EVERY_SECONDS:
            self._last_logged[host] = (last, suppressed + 1)
            return
        if len(self._last_logged) >= MAX_LOGGED_ADDRESSES:
            self._last_logged.clear()
        self._last_logged[host] = (now, 0)
        more = f" ({suppressed} more refused since the last message)" if suppressed else ""
        log.warning("channel %s: refused a connection from %s: %s%s", self.channel, host, why, more)
