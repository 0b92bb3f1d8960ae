"""athenahealth plugin: the ``athena`` profile (v1 writes) and the ``athena-poll`` job (FHIR reads).

Modules: ``destination`` (encounter documents under the practice id, form-encoded; patient lookup
through FHIR with ``ah-practice``) and ``jobs``. Shared plumbing comes from
``bridge.plugins.fhir.vendorkit`` and the FHIR plugin. See ``docs/vendors.md``.
"""

from __future__ import annotations

from bridge import DestinationProfile, JobType, OptionSpec, hookimpl


@hookimpl
def bridge_destination_profiles() -> list[DestinationProfile]:
    from bridge.plugins.fhir.vendorkit import vendor_options

    from .destination import AthenaDestination

    options = vendor_options(
        ("client_secret_basic", "private_key_jwt"),
        OptionSpec("practice_id", "athenaNet practice id (digits)", kind="any", required=True),
        OptionSpec("department_id", "athenaNet department id (digits)", kind="any", required=True),
        OptionSpec("document_subclass", "encounter document subclass", kind="string", default="PROGRESSNOTE"),
        OptionSpec("encounter_id_system", "identifier system of athena encounter ids in our records",
                   kind="string"))
    return [DestinationProfile(name="athena", make_destination=AthenaDestination, format="bridge",
                               description="athenahealth athenaOne: encounter documents through the v1 API "
                                           "(form-encoded), patients read through FHIR R4 with ah-practice",
                               options=options)]


@hookimpl
def bridge_job_types() -> list[JobType]:
    from .jobs import ATHENA_POLL

    return [ATHENA_POLL]
