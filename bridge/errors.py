"""Error classes shared by the core and plugins.

Every error the engine reports to a person derives from :class:`BridgeError` and carries a
message fit to show as-is (no traceback, no PHI). Delivery errors say whether a retry can help,
because the deliverer's decision (retry with backoff versus dead letter) depends only on that.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class: a problem with a clear message for an operator."""


class ConfigError(BridgeError):
    """The configuration is invalid. ``problems`` lists ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]] | str):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))


class PluginError(BridgeError):
    """A plugin could not be loaded or registered something invalid (e.g. a duplicate name)."""


class ReplayRefused(BridgeError):
    """A replay that would send something twice or open a second hold; the message says what to do instead."""


class DecodeError(BridgeError):
    """Bytes could not be turned into records. ``path`` points at the offending part when known."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class EncodeError(BridgeError):
    """Records could not be written in the requested format (missing data, refused change)."""


class MessageTooLarge(DecodeError):
    """An input exceeded its configured size limit; nothing of it was decoded."""


class StoreError(BridgeError):
    """The store could not commit or read; callers must not acknowledge what was not committed."""


class LeaseLost(StoreError):
    """Another worker took over a claimed item (its lease expired); the work must be abandoned."""


class DeliveryError(BridgeError):
    """Base for delivery failures judged by a destination."""

    transient = False

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None):
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """The send may succeed later (timeout, reset, 5xx, AE, 429): retry with backoff."""

    transient = True


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (4xx validation, AR, SCRIPT Error 900): dead letter at once."""

    transient = False
