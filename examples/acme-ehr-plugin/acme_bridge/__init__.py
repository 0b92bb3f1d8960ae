"""Telemed Bridge plugin for Acme EHR (a fictional vendor, used as the plugin developer kit's example).

It registers two things, through the public API only (``from bridge import …``):

- the format ``acme-json``: Acme's visit JSON ↔ Encounter and ClinicalNote records (:mod:`.visit_json`);
- the destination profile ``acme``: posts visits to Acme's REST API with OAuth2 client credentials,
  mapping Acme's answers to delivered / retry / dead letter (:mod:`.api`).
"""

from __future__ import annotations

from bridge import DestinationProfile, FormatSpec, hookimpl

from .api import OPTIONS, AcmeVisitsDestination
from .visit_json import FORMAT_NAME, MEDIA_TYPE, decode, detect, encode

__version__ = "0.3.0"


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    return [FormatSpec(name=FORMAT_NAME, media_type=MEDIA_TYPE, decode=decode, encode=encode, detect=detect,
                       file_extension="json", description="Acme EHR visit JSON (visit/1)",
                       decode_options=(), encode_options=())]  # the visit JSON has no options


@hookimpl
def bridge_destination_profiles() -> list[DestinationProfile]:
    return [DestinationProfile(name="acme", make_destination=AcmeVisitsDestination, format=FORMAT_NAME,
                               description="Acme EHR visits API (POST /api/v1/practices/{practice}/visits)",
                               options=OPTIONS)]
