"""Epic plugin: the ``epic`` destination profile and the ``epic-poll`` sync job.

Modules: ``destination`` (visit note, vitals and prescription summary around Epic's read-only
encounter) and ``jobs`` (``epic-poll``: FHIR search paging with a watermark). What the three vendor
plugins share (options, vendor-judged session, search-before-create, the visit note) is
``bridge.plugins.fhir.vendorkit``. See ``docs/vendors.md``.
"""

from __future__ import annotations

from bridge import DestinationProfile, JobType, OptionSpec, hookimpl


@hookimpl
def bridge_destination_profiles() -> list[DestinationProfile]:
    from bridge.plugins.fhir.vendorkit import vendor_options

    from .destination import EpicDestination

    options = vendor_options(
        ("private_key_jwt",),
        OptionSpec("note_type", "the visit note's type: {code, display} (default LOINC 11506-3)", kind="mapping"),
        OptionSpec("write_vitals", "also file the visit's vital signs as Observations", kind="boolean",
                   default=True),
        OptionSpec("doc_status", "the notes' docStatus: final (signed by the provider found with "
                                 "provider_id_system, which it then requires) or preliminary", kind="string",
                   default="final", choices=("final", "preliminary")))
    return [DestinationProfile(name="epic", make_destination=EpicDestination, format="bridge",
                               description="Epic: visit note, prescription-summary note and vitals "
                                           "against the Epic encounter (SMART backend services)",
                               options=options, needs_timezone=True)]


@hookimpl
def bridge_job_types() -> list[JobType]:
    from .jobs import EPIC_POLL

    return [EPIC_POLL]
