"""Keeps a deliverer's leases alive while its sends are in flight.

A claim leases its rows for ``engine.lease_seconds``. A send can take longer (an MLLP peer that ACKs
late, within a longer ``ack_timeout_seconds``; a batch whose first sends are slow): were the lease
to expire mid-send, another deliverer would claim the row and send it again, concurrently, and the
first send's answer would be thrown away as "lease lost". So while a batch is being sent, its
unsettled claims are renewed once they are a third of the lease old, fenced by each claim's token
(a claim already taken over is not renewed). A deliverer that dies stops renewing, and its rows
become claimable one lease later, as before.

One :class:`DeliveryLeaseKeeper` thread per engine renews every deliverer's claims. A thread of its
own per batch (started and joined around every batch of a few rows) cost each deliverer about 4 % of
its time in thread start-up and joins under load, for renewals that almost never happen: a send is
usually done in milliseconds, long before a third of the lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from bridge.core.store.base import OutboxClaim, Store

log = logging.getLogger(__name__)


class _Kept:
    """One claim being kept: when it was last leased, for how long."""

    __slots__ = ("claim", "lease_seconds", "leased_at")

    def __init__(self, claim: OutboxClaim, lease_seconds: float, now: float) -> None:
        self.claim, self.lease_seconds, self.leased_at = claim, lease_seconds, now


class DeliveryLeaseKeeper:
    """Renews the leases of claims registered by :meth:`keep` until they are settled.

    The thread starts with the first batch kept and wakes every sixth of the shortest lease it was
    given; a claim is renewed once a third of its lease has passed since it was leased or last
    renewed, so it is renewed at the latest half way through its lease."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._kept: dict[int, _Kept] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._interval = float("inf")

    def keep(self, claims: Sequence[OutboxClaim], lease_seconds: float) -> DeliveryLeaseHeartbeat:
        """Context manager for one batch: its claims are kept until settled or the block ends."""
        return DeliveryLeaseHeartbeat(self, claims, lease_seconds)

    def _add(self, claims: Sequence[OutboxClaim], lease_seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            for claim in claims:
                self._kept[claim.row.id] = _Kept(claim, lease_seconds, now)
            if lease_seconds / 6 < self._interval:
                self._interval = lease_seconds / 6
                self._wake.set()  # a shorter lease than before: the thread sleeps less from now on
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="delivery-lease", daemon=True)
                self._thread.start()

    def settled(self, claims: Sequence[OutboxClaim]) -> None:
        """These claims' outcomes are being written (or their batch ended): no more renewal."""
        with self._lock:
            for claim in claims:
                kept = self._kept.get(claim.row.id)
                if kept is not None and kept.claim is claim:  # not a newer claim of the same row
                    del self._kept[claim.row.id]

    def close(self) -> None:
        with self._lock:
            self._closed, thread = True, self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            if not self._closed:
                self.beat()

    def beat(self) -> None:
        """Renew every kept claim a third of its lease old (one store call per lease length)."""
        now = time.monotonic()
        with self._lock:
            due = [k for k in self._kept.values() if now - k.leased_at >= k.lease_seconds / 3]
        for lease_seconds in sorted({k.lease_seconds for k in due}):
            self._renew([k for k in due if k.lease_seconds == lease_seconds], lease_seconds, now)

    def _renew(self, due: list[_Kept], lease_seconds: float, now: float) -> None:
        claims = [k.claim for k in due]
        try:
            renewed = self.store.renew_deliveries(claims, lease_seconds)
        except Exception as exc:  # a store hiccup: the next beat tries again, well inside the lease
            log.warning("delivery lease renewal failed (%s); retrying", type(exc).__name__)
            return
        for kept, ok in zip(due, renewed):
            if ok:
                kept.leased_at = now
            else:
                log.warning("outbox row %s: lease lost during its send; another deliverer owns it",
                            kept.claim.row.id)
        self.settled([k.claim for k, ok in zip(due, renewed) if not ok])


class DeliveryLeaseHeartbeat:
    """One batch's claims kept alive by a :class:`DeliveryLeaseKeeper` while the block runs."""

    def __init__(self, keeper: DeliveryLeaseKeeper, claims: Sequence[OutboxClaim], lease_seconds: float) -> None:
        self.keeper, self.claims, self.lease_seconds = keeper, list(claims), lease_seconds

    def settled(self, claims: Sequence[OutboxClaim]) -> None:
        """These claims' outcomes are being written: their leases need no more renewal."""
        self.keeper.settled(claims)

    def __enter__(self) -> DeliveryLeaseHeartbeat:
        self.keeper._add(self.claims, self.lease_seconds)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.keeper.settled(self.claims)
