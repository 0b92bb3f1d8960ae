"""Canonical records and their JSON form."""

from .codec import record_from_dict, record_to_dict
from .keys import KEY_NAMES, BusinessKeys, keys_of
from .records import *  # noqa: F401,F403 - the record classes are this package's API
from .records import RECORD_TYPES, SCHEMA_VERSION, Record

__all__ = [
    "KEY_NAMES",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "BusinessKeys",
    "Record",
    "keys_of",
    "record_from_dict",
    "record_to_dict",
]
