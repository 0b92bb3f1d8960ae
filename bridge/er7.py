"""HL7v2 ER7 reading and escaping, public for plugins and for the maps' field-position paths.

The built-in ``hl7v2`` format has its own fast reader (separators from MSH-1/2, segments split on
the field separator, escapes expanded only where a value is read). Maps edit outbound HL7v2
messages by field position, and an external plugin may need the same reading; neither may import
``bridge.plugins.hl7v2`` internals, so what they need is named here and kept stable: the reader,
the escapes of a message's own encoding characters, and HL7 DTM ↔ ISO 8601 dates.
"""

from __future__ import annotations

from bridge.plugins.hl7v2.datatypes import read_datetime, write_datetime
from bridge.plugins.hl7v2.header import Separators
from bridge.plugins.hl7v2.reader import NULL, Message, Segment, escape, read_messages, text

__all__ = ["NULL", "Message", "Segment", "Separators", "escape", "read_datetime", "read_messages", "text",
           "write_datetime"]
