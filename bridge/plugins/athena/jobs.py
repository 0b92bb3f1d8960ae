"""The ``athena-poll`` job: athenahealth FHIR R4 searches scoped with ``ah-practice``.

athenahealth pages with a vendor cursor inside ``Bundle.link[next]``; the FHIR plugin's poller
follows that link as it is (same origin only), and moves the watermark once every page is stored.
Settings: the destination's keys (practice_id, environment, client_ids, secret or key…) plus the
poller's (``resource_type``, ``channel``, ``params``, ``since``, ``watermark``, ``max_pages``) and
optionally ``department_id``.

Search parameters as athena's CapabilityStatement lists them
(https://api.platform.athenahealth.com/fhir/r4/metadata): ``ah-practice`` and ``_lastUpdated`` for
every resource we poll; ``ah-department`` **for Patient only** — an Encounter search takes
``ah-practice``, ``patient``, ``date``, ``location``, ``service-provider``, ``practitioner``, not a
department. So ``department_id`` narrows a Patient poll; an Encounter poll is practice-wide unless
``params`` names one of Encounter's own parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge import JobContext, JobType
from bridge.plugins.fhir import vendorkit as kit

from .destination import read_settings, sessions


def build_session(settings: Mapping[str, Any], config_dir: str, where: str) -> kit.VendorSession:
    opts = kit.Options(settings, where)
    athena, auth = read_settings(opts, writes=False)
    return sessions(opts, athena, auth, config_dir)[1]


DEPARTMENT_SCOPED = frozenset({"Patient"})
"""Resource types whose search athena's CapabilityStatement gives ``ah-department``."""


def tenancy(settings: Mapping[str, Any]) -> Sequence[tuple[str, str]]:
    """``ah-practice`` always; ``ah-department`` only where the CapabilityStatement lists it
    (https://api.platform.athenahealth.com/fhir/r4/metadata)."""
    params = [("ah-practice", f"Organization/a-1.Practice-{settings.get('practice_id')}")]
    if settings.get("department_id") and settings.get("resource_type") in DEPARTMENT_SCOPED:
        params.append(("ah-department", f"Organization/a-{settings['practice_id']}.Department-"
                                        f"{settings['department_id']}"))
    return params


def run_athena_poll(ctx: JobContext) -> Any:
    return kit.run_poll_job(ctx, "athena-poll", build_session, tenancy)


ATHENA_POLL = JobType(name="athena-poll", run=run_athena_poll,
                      description="Poll athenahealth FHIR R4 (ah-practice scoped, cursor paging) since a watermark")
