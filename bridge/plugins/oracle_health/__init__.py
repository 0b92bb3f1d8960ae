"""Oracle Health (Cerner Millennium) plugin: the ``oracle_health`` profile and the ``oracle-poll`` job.

Modules: ``destination`` (the profile: lookups, idempotency, Millennium's error answers), ``bodies``
(each request body as its Oracle page documents it), ``docs`` (the pages cited) and ``jobs``. Shared plumbing comes from
``bridge.plugins.fhir.vendorkit`` and the FHIR plugin. See ``docs/vendors.md``.
"""

from __future__ import annotations

from bridge import DestinationProfile, JobType, OptionSpec, hookimpl


@hookimpl
def bridge_destination_profiles() -> list[DestinationProfile]:
    from bridge.plugins.fhir.vendorkit import vendor_options

    from .destination import OracleHealthDestination

    options = vendor_options(
        ("private_key_jwt", "client_secret_basic"),
        OptionSpec("tenant", "the Millennium tenant GUID", kind="string", required=True),
        OptionSpec("encounter_types", "code set 71 encounter type per modality, e.g. {video: '2560523697'}",
                   kind="mapping", required=True),
        OptionSpec("modality_attribute", "custom attribute carrying the modality: {id: 'ENCNTR:<code>', name: …}",
                   kind="mapping"),
        OptionSpec("code_set_base", "base of code set URLs", kind="string", default="https://fhir.cerner.com"),
        OptionSpec("service_provider", "Organization id for Encounter.serviceProvider (this or location)",
                   kind="string"),
        OptionSpec("location", "Location id for Encounter.location (this or service_provider)", kind="string"))
    return [DestinationProfile(name="oracle_health", make_destination=OracleHealthDestination, format="bridge",
                               description="Oracle Health Millennium FHIR R4: Encounter create/patch by type, "
                                           "notes, documented medications (tenant in the base URL)",
                               options=options, needs_timezone=True)]


@hookimpl
def bridge_job_types() -> list[JobType]:
    from .jobs import ORACLE_POLL

    return [ORACLE_POLL]
