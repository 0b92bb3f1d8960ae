"""The intake: the only way bytes enter the engine.

It does the least that must happen before a sender may be acknowledged: a size check, a cheap
header read (the format's ``peek``), a dedupe key, and one durable commit. Decoding waits for a
worker, so a slow or broken decoder can never delay or lose an acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict
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


class Intake:
    def __init__(self, store: Store, formats: Mapping[str, FormatSpec], wake: threading.Event | None = None):
        self.store = store
        self.formats = formats
        self.wake = wake or threading.Event()

    def submit(self, channel: ChannelConfig, raw: bytes, origin: Mapping[str, Any] | None = None,
               error: str | None = None) -> Receipt:
        """Commit ``raw`` for ``channel``. Raises StoreError when the commit failed (answer AE, never AA).

        With ``error`` the bytes are kept as a ``failed`` message (refused by the source, visible to
        analysts, replayable) and the receipt says ``accepted=False``.
        """
        origin = dict(origin or {})
        if len(raw) > channel.max_message_bytes:
            return Receipt(None, accepted=False,
                           error=f"message is {len(raw)} bytes, over the channel limit of {channel.max_message_bytes}")
        fmt = self.formats[channel.format]
        try:
            header = fmt.peek(raw)
        except Exception as exc:  # a peek must not fail, but a buggy plugin's must not lose the message
            log.warning("channel %s: %s peek failed (%s); the worker will report the decode error",
                        channel.name, fmt.name, type(exc).__name__)
            header = MessageHeader()
        key = dedupe_key_for(channel.name, header, origin)
        origin.pop("dedupe_key", None)
        try:
            message_id, duplicate = self.store.receive(
                channel.name, fmt.name, raw, dedupe_key=None if error else key, header=asdict(header),
                origin=origin, error=error,
            )
        except StoreError:
            log.error("channel %s: store commit failed; the sender must not be acknowledged", channel.name)
            raise
        if error:
            return Receipt(message_id, accepted=False, error=error, header=header)
        self.wake.set()
        return Receipt(message_id, accepted=True, duplicate=duplicate, header=header)
