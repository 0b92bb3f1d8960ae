"""Oracle Health (Cerner Millennium) plugin: the ``oracle_health`` profile and the ``oracle-poll`` job.

Modules: ``destination`` (Encounter create with the tenant's code set 71 type, JSON Patch updates,
DocumentReference notes, documented MedicationRequests) and ``jobs``. Shared plumbing comes from
``bridge.plugins.fhir.vendorkit`` and the FHIR plugin. See ``docs/vendors.md``.
"""

from __future__ import annotations

from bridge import DestinationProfile, JobType, hookimpl


@hookimpl
def bridge_destination_profiles() -> list[DestinationProfile]:
    from .destination import OracleHealthDestination

    return [DestinationProfile(name="oracle_health", make_destination=OracleHealthDestination, format="bridge",
                               description="Oracle Health Millennium FHIR R4: Encounter create/patch by type, "
                                           "notes, documented medications (tenant in the base URL)")]


@hookimpl
def bridge_job_types() -> list[JobType]:
    from .jobs import ORACLE_POLL

    return [ORACLE_POLL]
