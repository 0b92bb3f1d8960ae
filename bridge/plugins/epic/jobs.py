"""The ``epic-poll`` job: Epic FHIR searches paged with ``Bundle.link[next]`` and a watermark.

Settings are the destination's options (base URL, environment, client ids, key…) plus the poller's
(``resource_type``, ``channel``, ``params``, ``since``, ``watermark``, ``max_pages``).

The searches are Epic's ``{Type}.Search (R4)`` interactions (https://fhir.epic.com/Specifications);
most of them need a patient or an identifier besides ``_lastUpdated``: put it in ``params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import JobContext, JobType

from bridge.plugins.fhir import vendorkit as kit
from .destination import make_session, read_settings


def build_session(settings: Mapping[str, Any], config_dir: str, where: str) -> kit.VendorSession:
    opts = kit.Options(settings, where)
    epic, auth = read_settings(opts, writes=False)
    return make_session(opts, epic, auth, config_dir)


def run_epic_poll(ctx: JobContext) -> Any:
    return kit.run_poll_job(ctx, "epic-poll", build_session)


EPIC_POLL = JobType(name="epic-poll", run=run_epic_poll,
                    description="Poll Epic FHIR R4 for resources updated since a watermark")
