"""How the process logs: plain text lines by default, JSON lines on request (``logging: {format: json}``).

A log collector (journald, Loki, Elasticsearch, a SIEM) reads one JSON object per line without
guessing at a text layout: which logger, which level, when (UTC), what, and a traceback as one field
rather than lines that a collector would split into separate entries. Redaction
(bridge.core.redaction) has already run when a record reaches the formatter, so a JSON line carries
exactly what a text line would.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ms), ``level``, ``logger``,
    ``message``, and ``exception`` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def level_from_environment() -> str:
    """``BRIDGE_LOG_LEVEL`` (default INFO), checked: a typo is an error naming the valid levels, not
    a crash inside ``logging``."""
    level = os.environ.get("BRIDGE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in LEVELS:
        raise ValueError(f"BRIDGE_LOG_LEVEL={level!r} is not a level (one of {', '.join(LEVELS)})")
    return level


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonLineFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def _ours(formatter: logging.Formatter | None) -> bool:
    """A formatter the CLI set up (not a test harness's or an embedding application's)."""
    return isinstance(formatter, JsonLineFormatter) or getattr(formatter, "_fmt", None) == TEXT_FORMAT


def use_format(log_format: str) -> None:
    """Give the root logger's handlers the CLI set up the formatter of ``log_format`` (idempotent)."""
    formatter = formatter_for(log_format)
    for handler in logging.getLogger().handlers:
        if _ours(handler.formatter):
            handler.setFormatter(formatter)


def announce(log_format: str, text: str) -> None:
    """A start-up line for the operator: printed as-is for text logs, a log record for JSON logs
    (so a collector reading the JSON lines of stderr never meets a line that is not JSON)."""
    if log_format == "json":
        logging.getLogger("bridge.cli").info("%s", text)
    else:
        print(text, file=sys.stderr, flush=True)
