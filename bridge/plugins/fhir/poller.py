"""A reusable FHIR sync poller and the ``fhir-poll`` job type.

``poll`` searches ``Type?_lastUpdated=gt{watermark}&…``, follows ``Bundle.link[next]``, hands every
resource to the intake as its own message and, only when every page has been stored, moves the
watermark to the newest ``meta.lastUpdated`` it saw. The whole run is one batch on purpose: search
results need not be sorted, so a page's newest time says nothing about the pages after it, and a
watermark moved half-way could skip resources for ever. A failure anywhere leaves the watermark
where it was; the next run searches the same window again and the intake recognises what it already
stored (the dedupe key is the resource's type, id and version), so nothing is lost or doubled.

Vendor plugins reuse ``poll`` with their own :class:`~bridge.plugins.fhir.rest.FhirSession` (their
auth and base) and their own search parameters (e.g. athenahealth's ``ah-practice``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bridge import BridgeError, ConfigError, JobContext, JobType, Receipt

from .rest import FhirSession, same_origin

log = logging.getLogger(__name__)

Submit = Callable[[bytes, Mapping[str, Any]], Receipt]
"""The intake as the poller sees it: ``submit(raw_json_bytes, origin) -> Receipt`` (raises StoreError)."""
SetWatermark = Callable[[str], None]

DEFAULT_MAX_PAGES = 1000


class PollError(BridgeError):
    """A poll run stopped before the end; the watermark was not moved."""


@dataclass(frozen=True)
class PollResult:
    pages: int
    resources: int
    duplicates: int
    watermark: str | None


def instant(value: str) -> datetime.datetime | None:
    """A FHIR instant as an aware datetime (for comparison), or None if it is not one."""
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def later(current: str | None, candidate: str | None) -> str | None:
    """The later of two FHIR instants, keeping the server's own spelling of it."""
    new = instant(candidate) if candidate else None
    if new is None:
        return current
    old = instant(current) if current else None
    return candidate if old is None or new > old else current


def dedupe_key(resource: Mapping[str, Any], raw: bytes) -> str:
    """Type, id and version: the same version polled twice is one message, a new version another."""
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    version = meta.get("versionId") or meta.get("lastUpdated") or hashlib.sha256(raw).hexdigest()[:32]
    return f"fhir-poll:{resource.get('resourceType')}/{resource.get('id')}/{version}"


def search_path(resource_type: str, since: str | None, params: Mapping[str, Any]) -> str:
    query = dict(params)
    if since:
        query["_lastUpdated"] = f"gt{since}"
    return f"{resource_type}?{urlencode(query, doseq=True)}" if query else resource_type


def page_resources(doc: Any, page: int) -> list[dict[str, Any]]:
    """The resources of a searchset page (matches and includes; OperationOutcome notes are skipped)."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise PollError(f"page {page}: the search answer is not a Bundle")
    found = []
    for entry in doc.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        mode = (entry.get("search") or {}).get("mode", "match") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") and mode in ("match", "include"):
            found.append(resource)
    return found


def next_link(doc: Mapping[str, Any]) -> str | None:
    for link in doc.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def poll(session: FhirSession, resource_type: str, since: str | None, params: Mapping[str, Any],
         submit: Submit, set_watermark: SetWatermark, *, max_pages: int = DEFAULT_MAX_PAGES) -> PollResult:
    """One sync run; see the module docstring. Raises DeliveryError (HTTP) or PollError, watermark unmoved."""
    path: str | None = search_path(resource_type, since, params)
    newest, pages, stored, duplicates, seen = since, 0, 0, 0, set()
    while path:
        pages += 1
        if pages > max_pages:
            raise PollError(f"more than {max_pages} pages; raise max_pages or narrow the search")
        doc = session.call("GET", path, what=f"search {resource_type} page {pages}").json()
        for resource in page_resources(doc, pages):
            raw = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            name = f"{resource['resourceType']}/{resource.get('id')}"
            receipt = submit(raw, {"fhir_base": session.base, "resource": name,
                                   "dedupe_key": dedupe_key(resource, raw)})
            if receipt.message_id is None:
                raise PollError(f"page {pages}: the intake refused {name}: {receipt.error or 'no reason'}")
            stored += 1
            duplicates += bool(receipt.duplicate)
            newest = later(newest, (resource.get("meta") or {}).get("lastUpdated"))
        path = next_link(doc)
        if path and (path in seen or (path.startswith("http") and not same_origin(path, session.base))):
            raise PollError(f"page {pages}: the next link repeats or leaves the server; stopped")
        seen.add(path)
    if newest and newest != since:
        set_watermark(newest)
    log.info("fhir poll %s: %d page(s), %d resource(s) (%d already stored)", resource_type, pages, stored, duplicates)
    return PollResult(pages, stored, duplicates, newest)


# --- the job type --------------------------------------------------------------------------------

_sessions: dict[str, FhirSession] = {}
_sessions_lock = threading.Lock()


def session_for(ctx: JobContext) -> FhirSession:
    """One session per job and settings, kept between runs so its access token is reused."""
    settings = ctx.settings
    base = str(settings.get("base") or "")
    if not base:
        raise ConfigError([(f"jobs.{ctx.name}.base", "is required (the FHIR base URL)")])
    base = base[len("fhir+"):] if base.lower().startswith("fhir+") else base
    key = ctx.name + "\x00" + json.dumps(settings, sort_keys=True, default=str)
    with _sessions_lock:
        if key not in _sessions:
            config_dir = str(settings.get("config_dir") or getattr(ctx, "config_dir", None) or ".")
            _sessions[key] = FhirSession.from_options(base, settings, config_dir, where=f"jobs.{ctx.name}")
        return _sessions[key]


def run_fhir_poll(ctx: JobContext) -> PollResult:
    """``fhir-poll`` job: settings ``base``, ``resource_type``, ``channel``, ``params``, ``auth``, ``since``…"""
    settings = ctx.settings
    for required in ("resource_type", "channel"):
        if not settings.get(required):
            raise ConfigError([(f"jobs.{ctx.name}.{required}", "is required")])
    if ctx.submit is None or ctx.get_watermark is None or ctx.set_watermark is None:
        raise ConfigError([(f"jobs.{ctx.name}", "fhir-poll needs the engine's intake and watermarks")])
    channel = str(settings["channel"])
    watermark_name = str(settings.get("watermark") or ctx.name)
    since = ctx.get_watermark(watermark_name) or settings.get("since")
    params = settings.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError([(f"jobs.{ctx.name}.params", "must be a mapping of search parameters")])
    return poll(session_for(ctx), str(settings["resource_type"]), str(since) if since else None, params,
                submit=lambda raw, origin: ctx.submit(channel, raw, origin),
                set_watermark=lambda value: ctx.set_watermark(watermark_name, value),
                max_pages=int(settings.get("max_pages", DEFAULT_MAX_PAGES)))


FHIR_POLL = JobType(name="fhir-poll", run=run_fhir_poll,
                    description="Poll a FHIR server for resources updated since a watermark")
