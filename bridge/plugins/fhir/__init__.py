"""FHIR plugin: the ``fhir`` format, the FHIR REST transports and the ``fhir-poll`` job.

Format modules: ``codec`` (the FormatSpec), ``encode`` (records → transaction Bundle with conditional,
idempotent entries), ``decode`` (resources and Bundles → records, resolving references),
``resources`` (the per-record mappings), ``datatypes``, ``reader`` (path-aware JSON access),
``keep`` (what we do not map, kept in ``extra["fhir"]``) and ``constants`` (systems and extension
URLs). See ``docs/fhir.md``.

Network modules: ``rest`` (the ``fhir+https``/``fhir+http`` destination and the inbound
``POST /fhir/r4`` source), ``auth`` (SMART Backend Services and client-secret basic, token cache),
``poller`` (search by ``_lastUpdated`` with paging and watermarks) and ``network`` (their
registrations). See ``docs/fhir-rest.md``.
"""

from __future__ import annotations

from bridge import FormatSpec, JobType, TransportSpec, hookimpl

# ``resources`` is the hub of the per-record mappings: the record modules (orders, immunization,
# places, pharmacy, …) import its helpers, and it imports their mappings at its end. Loading it with
# the package makes that cycle resolve the same way whichever module a caller imports first.
from . import resources as _resources  # noqa: F401,E402


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    from .codec import FORMAT

    return [FORMAT]


@hookimpl
def bridge_transports() -> list[TransportSpec]:
    from .network import TRANSPORTS

    return list(TRANSPORTS)


@hookimpl
def bridge_job_types() -> list[JobType]:
    from .network import JOB_TYPES

    return list(JOB_TYPES)
