"""The deliverer: claimed outbox row → destination.send → delivered, retry later, or dead letter.

A send happens outside any store transaction (it may take seconds); its outcome is written with
the claim's fencing token, so a deliverer whose lease expired cannot overwrite a newer attempt.
Delivery is at-least-once: a crash after a send but before the outcome is written sends again,
which is why destinations are idempotent (stable names, control ids, conditional creates).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence

from bridge.core.config import RetryPolicy
from bridge.core.store.base import DeliveryOutcome, OutboxClaim, Store
from bridge.errors import DeliveryError, LeaseLost
from bridge.plugin_types import Delivery, Destination, SendResult

log = logging.getLogger(__name__)


def reply_channel(destination: str) -> str:
    """The implicit channel holding a destination's synchronous replies (see SendResult)."""
    return f"{destination}.replies"


class Deliverer:
    def __init__(self, store: Store, destinations: Mapping[str, Destination],
                 retry: Mapping[str, RetryPolicy], rand: random.Random | None = None,
                 formats: Mapping[str, str] | None = None):
        self.store = store
        self.formats = dict(formats or {})
        self.destinations = destinations
        self.retry = retry
        self.rand = rand or random.Random()

    def deliver(self, claim: OutboxClaim) -> str:
        """Send one claimed row and record the outcome; returns ``delivered``, ``retry`` or ``dead``."""
        return self.settle([self.attempt(claim)])[0]

    def settle(self, outcomes: Sequence[DeliveryOutcome]) -> list[str]:
        """Record a batch of outcomes in one transaction; each is its outcome, or ``lease_lost``.
        Destinations that share a flush between their sends (``begin_batch``/``flush``, see
        :class:`~bridge.plugin_types.Destination`) are flushed first: nothing is recorded as delivered
        before it is durable at its destination."""
        if not outcomes:
            return []
        outcomes = self._flushed(outcomes)
        results = self.store.finish_deliveries(outcomes)
        settled = []
        for outcome, result in zip(outcomes, results):
            if isinstance(result, LeaseLost):
                log.warning("outbox row %s: lease lost; another deliverer owns it now", outcome.claim.row.id)
                settled.append("lease_lost")
            else:
                settled.append(outcome.outcome)
        return settled

    def _flushed(self, outcomes: Sequence[DeliveryOutcome]) -> list[DeliveryOutcome]:
        """Flush each destination these sends went to (when it has ``flush``); a destination whose
        flush failed has its delivered outcomes turned into retries (its files may not be on the disk)."""
        failed: dict[str, str] = {}
        for name in sorted({o.claim.row.destination for o in outcomes}):  # (each send began a batch)
            flush = getattr(self.destinations.get(name), "flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as exc:  # OSError, a DeliveryError, a plugin bug: the sends are not known durable
                log.error("destination %s: flushing its sends failed (%s); they are retried", name,
                          type(exc).__name__)
                failed[name] = f"the send could not be made durable: {type(exc).__name__}: {exc}"
        if not failed:
            return list(outcomes)
        return [self._retry(o.claim, self.retry.get(o.claim.row.destination, RetryPolicy()),
                            failed[o.claim.row.destination], None)
                if o.outcome == "delivered" and o.claim.row.destination in failed else o for o in outcomes]

    def attempt(self, claim: OutboxClaim) -> DeliveryOutcome:
        """Send one claimed row and judge the answer, writing nothing: the outcome to settle."""
        row = claim.row
        destination = self.destinations.get(row.destination)
        if destination is None:
            return self._finish(claim, "dead", f"destination {row.destination!r} is not in the running configuration")
        original_message, original_outbox = row.original_message_id or row.message_id, row.original_outbox_id or row.id
        delivery = Delivery(
            outbox_id=row.id, message_id=row.message_id, destination=row.destination, payload=claim.payload,
            media_type=row.media_type, file_extension=row.file_extension, attempt=row.attempts,
            trace_id=claim.trace_id, idempotency_key=f"tb-{original_message}-{original_outbox}",
            original_message_id=original_message, original_outbox_id=original_outbox,
        )
        policy = self.retry.get(row.destination, RetryPolicy())
        if row.attempts > policy.max_attempts:
            return self._finish(claim, "dead", f"gave up: attempt {row.attempts} would exceed max_attempts"
                                f" {policy.max_attempts} (an earlier attempt's lease ended before its outcome"
                                " was written)")
        begin_batch = getattr(destination, "begin_batch", None)
        if begin_batch is not None:  # this outcome is settled (and the destination flushed) by settle()
            begin_batch()
        try:
            answer = destination.send(delivery)
        except DeliveryError as exc:
            detail = str(exc) if not exc.detail else f"{exc} — {exc.detail}"
            if not exc.transient:
                return self._finish(claim, "dead", f"permanent failure: {detail}")
            return self._retry(claim, policy, detail, exc.retry_after)
        except Exception as exc:  # unknown failure: assume it may pass, within the retry bound
            log.error("destination %s raised %s", row.destination, type(exc).__name__)
            return self._retry(claim, policy, f"unexpected {type(exc).__name__}: {exc}", None)
        if isinstance(answer, SendResult):
            reply = None
            if answer.reply:
                reply = (reply_channel(row.destination), self.formats.get(row.destination, ""), answer.reply)
            return self._finish(claim, "delivered", answer.detail or "sent", reply=reply)
        return self._finish(claim, "delivered", answer or "sent")

    def _retry(self, claim: OutboxClaim, policy: RetryPolicy, detail: str,
               retry_after: float | None) -> DeliveryOutcome:
        attempt = claim.row.attempts
        if attempt >= policy.max_attempts:
            return self._finish(claim, "dead", f"gave up after {attempt} attempts: {detail}")
        delay = policy.delay(attempt, self.rand.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return self._finish(claim, "retry", detail, time.time() + delay)

    @staticmethod
    def _finish(claim: OutboxClaim, outcome: str, detail: str, next_at: float | None = None,
                reply: tuple[str, str, bytes] | None = None) -> DeliveryOutcome:
        return DeliveryOutcome(claim, outcome, detail, next_at, reply)
