"""The ``oracle-poll`` job: Millennium FHIR searches paged with ``Bundle.link[next]`` and a watermark.

Millennium requires ``patient`` or ``_id`` on most searches: put them in ``params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import JobContext, JobType
from bridge.plugins.fhir import vendorkit as kit

from .destination import make_session, read_settings


def build_session(settings: Mapping[str, Any], config_dir: str, where: str) -> kit.VendorSession:
    opts = kit.Options(settings, where)
    oracle, auth = read_settings(opts, writes=False)
    return make_session(opts, oracle, auth, config_dir)


def run_oracle_poll(ctx: JobContext) -> Any:
    return kit.run_poll_job(ctx, "oracle-poll", build_session)


ORACLE_POLL = JobType(name="oracle-poll", run=run_oracle_poll,
                      description="Poll Oracle Health Millennium FHIR R4 for resources updated since a watermark")
