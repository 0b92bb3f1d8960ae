"""The signed-content digest (rule R21) is defined once, in the core model: see ``bridge.signed_digest``."""

from bridge import SIGNED_DIGEST_PREFIX as DIGEST_PREFIX
from bridge import signed_digest, signed_fields

__all__ = ["DIGEST_PREFIX", "signed_digest", "signed_fields"]
