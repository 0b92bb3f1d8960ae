"""The intake: the only way bytes enter the engine.

It does the least that must happen before a sender may be acknowledged: a size check, a cheap
header read (the format's ``peek``), a dedupe key, and one durable commit. Decoding waits for a
worker, so a slow or broken decoder can never delay or lose an acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bridge.core.config import ChannelConfig
from bridge.core.store.base import Store
from bridge.errors import StoreError
from bridge.plugin_types import FormatSpec, MessageHeader, Receipt

log = logging.getLogger(__name__)


def dedupe_key_for(channel: str, header: MessageHeader, origin: Mapping[str, Any]) -> str | None:
    """The key that makes a resend a duplicate.

    In order: the format's own key (e.g. an NCPDP MessageID), then sending application + facility +
    control id (the HL7v2 rule), then a key the source supplies (a file's name and content hash).
    Keys are per channel: the same control id from two different feeds is two messages.
    """
    if header.dedupe_key:
        return f"{channel}|{header.dedupe_key}"
    if header.control_id and (header.sending_application or header.sending_facility):
        return f"{channel}|{header.sending_application or ''}|{header.sending_facility or ''}|{header.control_id}"
    if origin.get("dedupe_key"):
        return f"{channel}|{origin['dedupe_key']}"
    return None


_ORDER_FIELDS = {"patient": "patient_id", "encounter": "encounter_id", "prescription": "prescription_number"}


def order_key_for(channel: ChannelConfig, header: MessageHeader) -> str | None:
    """The message's lane key within its channel, from ``order.by`` and the format's header read.

    ``by: channel`` is one lane for the whole channel (``channel:NAME``); ``by: none`` gives every
    message a lane of its own (None). For patient, encounter or prescription the key is
    ``by:value``. When the format's peek did not look for keys (``keys_read`` False) the message
    falls back to the channel's lane: order is kept, only parallelism is lost. When it looked and
    found none, the message has nothing to be ordered by and is a lane of its own.
    """
    by = channel.order_by
    if by == "none":
        return None
    if by == "channel" or not header.keys_read:
        return f"channel:{channel.name}"
    value = getattr(header, _ORDER_FIELDS[by])
    return f"{by}:{value}" if value else None


class Intake:
    def __init__(self, store: Store, formats: Mapping[str, FormatSpec], wake: threading.Event | None = None,
                 on_stored: Callable[[str, Sequence[Any]], None] | None = None):
        self.store = store
        self.formats = formats
        self.wake = wake or threading.Event()
        self.on_stored = on_stored  # told each committed batch's outcomes (the engine counts them: telemetry)

    def submit(self, channel: ChannelConfig, raw: bytes, origin: Mapping[str, Any] | None = None,
               error: str | None = None) -> Receipt:
        """Commit ``raw`` for ``channel``. Raises StoreError when the commit failed (answer AE, never AA).

        With ``error`` the bytes are kept as a ``failed`` message (refused by the source, visible to
        analysts, replayable) and the receipt says ``accepted=False``.
        """
        (result,) = self.submit_many(channel, [(raw, origin, error)])
        if isinstance(result, BaseException):
            raise result
        return result

    def submit_many(self, channel: ChannelConfig, items: Sequence[tuple[Any, ...]]) -> list[Receipt | StoreError]:
        """Commit several messages of one channel in one transaction (group commit for busy listeners).

        Items are ``(raw, origin, error)``, or ``(raw, origin, error, header)`` with the header the
        source already read through the channel format's peek. Each result is a Receipt, or the
        StoreError for a message that was not stored: its sender must get an error answer, never an
        acknowledgement.
        """
        batch = _Batch(self, channel, items)
        if batch.rows:
            stored = self.store.receive_many(batch.rows)
            batch.settle(stored)
            self.wake.set()
            self._stored(channel, stored)
        return batch.results  # type: ignore[return-value]

    def submit_now(self, channel: ChannelConfig, items: Sequence[tuple[Any, ...]]) -> (
            tuple[list[Receipt | StoreError], Callable[[], None] | None] | None):
        """``submit_many`` for an event loop: commits only if the store can at once, and returns
        ``(results, wait)``; the senders may be answered once ``wait()`` (None: nothing to wait for)
        returned on another thread, or with an error if it raised StoreError. None: not now, use
        ``submit_many`` on a thread (see :meth:`Store.receive_now`)."""
        batch = _Batch(self, channel, items)
        if not batch.rows:
            return batch.results, None  # type: ignore[return-value]
        committed = self.store.receive_now(batch.rows)
        if committed is None:
            return None
        stored, wait = committed
        batch.settle(stored)
        self.wake.set()
        self._stored(channel, stored)
        return batch.results, wait  # type: ignore[return-value]

    def journal_row(self, channel: ChannelConfig, item: tuple[Any, ...]) -> Any:
        """What an intake journal writes for one item (``(raw, origin, None, header)``, the header from
        the listener's read): ``(dedupe_key, origin, raw)``, or the refusing Receipt of a message over
        the channel's size limit (as :meth:`submit_many` refuses it)."""
        raw, origin, header = item[0], item[1] or {}, item[3]
        if len(raw) > channel.max_message_bytes:
            return Receipt(None, accepted=False, error=(
                f"message is {len(raw)} bytes, over the channel limit of {channel.max_message_bytes}"))
        key = dedupe_key_for(channel.name, header, origin)
        if "dedupe_key" in origin:
            origin = {name: value for name, value in origin.items() if name != "dedupe_key"}
        return key, origin, raw

    def journal_rows(self, channel: ChannelConfig, entries: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Store rows for intake journal entries (the mover): the format's peek, the dedupe and lane
        keys exactly as :meth:`submit_many` makes them, plus the time the journal took each one."""
        fmt = self.formats[channel.format]
        rows = []
        for entry in entries:
            header = self.peek(fmt, channel.name, entry.raw)
            key = dedupe_key_for(channel.name, header, entry.origin)
            rows.append((channel.name, fmt.name, entry.raw, key,
                         _header_dict(header, order_key_for(channel, header)), entry.origin, None, entry.received_at))
        return rows

    def direct_rows(self, channel: ChannelConfig, items: Sequence[tuple[Any, ...]]) -> tuple[list[Any], Any]:
        """Store rows for items an intake journal stores directly, and the function that turns the
        store's results into their receipts (or, when no row is left, the receipts themselves)."""
        batch = _Batch(self, channel, items)
        if not batch.rows:
            return [], batch.results

        def settle(stored: Sequence[Any]) -> list[Any]:
            batch.settle(stored)
            self.wake.set()
            self._stored(channel, stored)
            return batch.results

        return batch.rows, settle

    def _stored(self, channel: ChannelConfig, stored: Sequence[Any]) -> None:
        if self.on_stored is not None:
            self.on_stored(channel.name, stored)

    @staticmethod
    def peek(fmt: FormatSpec, channel: str, raw: bytes) -> MessageHeader:
        """The format's header read, never failing: a plugin's broken peek costs only the header."""
        try:
            return fmt.peek(raw)
        except Exception as exc:  # a peek must not fail, but a buggy plugin's must not lose the message
            log.warning("channel %s: %s peek failed (%s); the worker will report the decode error",
                        channel, fmt.name, type(exc).__name__)
            return MessageHeader()


class _Batch:
    """Submitted items made into store rows (size check, header, dedupe and lane keys), and the
    receipts made from what the store answered for them."""

    def __init__(self, intake: Intake, channel: ChannelConfig, items: Sequence[tuple[Any, ...]]):
        self.channel = channel
        fmt = intake.formats[channel.format]
        self.results: list[Receipt | StoreError | None] = [None] * len(items)
        self.rows: list[tuple[Any, ...]] = []
        self._where: list[tuple[int, MessageHeader, str | None]] = []
        for index, item in enumerate(items):
            raw, origin, error = item[0], dict(item[1] or {}), item[2]
            if len(raw) > channel.max_message_bytes:
                self.results[index] = Receipt(None, accepted=False, error=(
                    f"message is {len(raw)} bytes, over the channel limit of {channel.max_message_bytes}"))
                continue
            header = item[3] if len(item) > 3 and item[3] is not None else intake.peek(fmt, channel.name, raw)
            key = None if error else dedupe_key_for(channel.name, header, origin)
            origin.pop("dedupe_key", None)
            self.rows.append((channel.name, fmt.name, raw, key,
                              _header_dict(header, order_key_for(channel, header)), origin, error))
            self._where.append((index, header, error))

    def settle(self, stored: Sequence[tuple[int, bool] | BaseException]) -> None:
        for (index, header, error), outcome in zip(self._where, stored):
            if isinstance(outcome, BaseException):
                log.error("channel %s: store commit failed; the sender must not be acknowledged", self.channel.name)
                self.results[index] = outcome if isinstance(outcome, StoreError) else StoreError(str(outcome))
            elif error:
                self.results[index] = Receipt(outcome[0], accepted=False, error=error, header=header)
            else:
                self.results[index] = Receipt(outcome[0], accepted=True, duplicate=outcome[1], header=header)


def _header_dict(header: MessageHeader, order_key: str | None) -> dict[str, Any]:
    """``asdict`` without its deep copy: the intake's hot path."""
    return {
        "control_id": header.control_id, "sending_application": header.sending_application,
        "sending_facility": header.sending_facility, "message_type": header.message_type,
        "trace_id": header.trace_id, "order_key": order_key,
    }
