"""HL7v2 plugin: the ``hl7v2`` format, the ``mllp``/``mllps`` transports and ``bridge send``.

Modules: ``header`` (cheap MSH read for the intake), ``ack`` (AA/AE/AR and CA/CE/CR),
``codec`` (decode to and encode from canonical records), ``mllp`` (asyncio listener and sender,
TLS). See ``docs/hl7v2.md``.
"""

from __future__ import annotations

from bridge import CommandSpec, FormatSpec, TransportSpec, hookimpl


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    from .codec import FORMAT

    return [FORMAT]


@hookimpl
def bridge_transports() -> list[TransportSpec]:
    from .mllp import TRANSPORTS

    return list(TRANSPORTS)


@hookimpl
def bridge_commands() -> list[CommandSpec]:
    from .mllp import COMMANDS

    return list(COMMANDS)
