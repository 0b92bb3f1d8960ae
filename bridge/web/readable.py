"""Times and timeline details as an analyst reads them: in the site's zone, as labelled fields.

The store keeps every time as UTC epoch seconds and every event detail as a JSON object. A page that
printed them as they are showed ``next_attempt_at=1796483345.14`` and JSON dumps with ``\\u0027``
escapes. Here each time becomes a ``<time>`` element in the site's zone (``web.timezone``, default UTC)
with the UTC time on hover, and each detail becomes a list of labelled fields, where a message id
is a link and a nested object is flattened into dotted labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

DEFAULT_ZONE = "UTC"
# Detail keys whose value is another message's id: shown as a link to that message.
MESSAGE_ID_KEYS = frozenset({
    "as", "of", "replay_of", "reply_message", "reply_to_message", "by_message", "behind_message",
    "after_message", "message", "original", "resolved_by_message",
})
MAX_TEXT = 2000  # one field's text on a page; the API has the whole value


@dataclass(frozen=True)
class Field:
    """One labelled value of an event's detail: text, a time (epoch seconds) or a message id."""

    label: str
    text: str = ""
    at: float | None = None
    message_id: int | None = None


def to_epoch(value: float | str | None) -> float | None:
    """Epoch seconds from epoch seconds or an ISO 8601 text (``…Z`` or with an offset); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"a time without an offset cannot be placed: {value!r}")
    return moment.timestamp()


def time_html(value: float | str | None, zone_name: str = DEFAULT_ZONE) -> Markup:
    """``<time>`` in the site's zone with its abbreviation, the UTC time as the title (on hover)."""
    at = to_epoch(value)
    if at is None:
        return Markup("-")
    moment = datetime.fromtimestamp(at, timezone.utc)
    local = moment.astimezone(ZoneInfo(zone_name))
    utc_text = moment.isoformat(sep=" ", timespec="milliseconds").replace("+00:00", "") + " UTC"
    shown = local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or zone_name)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), utc_text, shown)


def pretty_json(value: Any) -> str:
    """Records as indented JSON for a ``<pre>``: plain text that the template escapes once. (Jinja's
    ``tojson`` is for embedding in a script: it writes ``'`` as ``\\u0027``, which a reader then sees.)"""
    return json.dumps(value, indent=2, ensure_ascii=False)


def label(key: str) -> str:
    """``next_attempt_at`` → ``next attempt at``."""
    return key.replace("_", " ").replace(".", " · ")


def detail_fields(detail: Mapping[str, Any], prefix: str = "") -> list[Field]:
    """Readable fields of an event's detail, in the order the event wrote them; empty values left out."""
    fields: list[Field] = []
    for key, value in detail.items():
        if value in (None, "", [], {}):
            continue
        name = f"{prefix}{key}"
        fields.extend(_fields_of(name, key, value))
    return fields


def _fields_of(name: str, key: str, value: Any) -> list[Field]:
    if isinstance(value, Mapping):
        return detail_fields(value, prefix=f"{name}.")
    if key in MESSAGE_ID_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return [Field(label(name), message_id=value)]
    if key.endswith("_at") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return [Field(label(name), at=float(value))]
    return [Field(label(name), text=_text(value))]


def _text(value: Any) -> str:
    """Plain words for a value: lists joined with commas, objects in a list as ``key value`` pairs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_item(v) for v in value)[:MAX_TEXT]
    return str(value)[:MAX_TEXT]


def _item(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k} {_text(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    return _text(value)


def fields_html(fields: list[Field], zone_name: str, message_url: Any) -> Markup:
    """The fields as a compact definition list (``message_url(id)`` gives a message's page)."""
    parts = []
    for f in fields:
        if f.at is not None:
            value = time_html(f.at, zone_name)
        elif f.message_id is not None:
            value = Markup('<a href="{}">message {}</a>').format(message_url(f.message_id), f.message_id)
        else:
            value = escape(f.text)
        parts.append(Markup('<span class="field"><span class="label">{}</span> {}</span>').format(f.label, value))
    return Markup("<span class=\"fields\">{}</span>").format(Markup(" ").join(parts))
