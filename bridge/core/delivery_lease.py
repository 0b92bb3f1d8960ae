"""Keeps a deliverer's leases alive while its sends are in flight.

A claim leases its rows for ``engine.lease_seconds``. A send can take longer (an MLLP peer that ACKs
late, within a longer ``ack_timeout_seconds``; a batch whose first sends are slow): were the lease
to expire mid-send, another deliverer would claim the row and send it again, concurrently, and the
first send's answer would be thrown away as "lease lost". So while a batch is being sent, this
heartbeat renews the leases of its unsettled claims every third of the lease, fenced by each claim's
token (a claim already taken over is not renewed). A deliverer that dies stops renewing, and its
rows become claimable one lease later, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from bridge.core.store.base import OutboxClaim, Store

log = logging.getLogger(__name__)


class DeliveryLeaseHeartbeat:
    """Context manager: renews the leases of ``claims`` until each is settled (``settled``) or the block ends."""

    def __init__(self, store: Store, claims: Sequence[OutboxClaim], lease_seconds: float) -> None:
        self.store, self.lease_seconds = store, lease_seconds
        self._unsettled = {claim.row.id: claim for claim in claims}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="delivery-lease", daemon=True)

    def settled(self, claims: Sequence[OutboxClaim]) -> None:
        """These claims' outcomes are being written: their leases need no more renewal."""
        with self._lock:
            for claim in claims:
                self._unsettled.pop(claim.row.id, None)

    def _beat(self) -> None:
        while not self._done.wait(self.lease_seconds / 3):
            with self._lock:
                claims = list(self._unsettled.values())
            if not claims:
                continue
            try:
                renewed = self.store.renew_deliveries(claims, self.lease_seconds)
            except Exception as exc:  # a store hiccup: the next beat tries again, well inside the lease
                log.warning("delivery lease renewal failed (%s); retrying", type(exc).__name__)
                continue
            lost = [claim for claim, ok in zip(claims, renewed) if not ok]
            for claim in lost:
                log.warning("outbox row %s: lease lost during its send; another deliverer owns it", claim.row.id)
            self.settled(lost)

    def __enter__(self) -> DeliveryLeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(timeout=5)
