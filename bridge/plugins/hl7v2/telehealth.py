"""The telehealth convention: where a channel's HL7v2 marks a visit as virtual, and how.

HL7v2 has no standard telehealth field (table 0004 has no "virtual" class), so each site picks its
own: a patient type in PV1-18, a service in PV1-10, a Z-segment. The convention is read from the
format options (``options["telehealth"]``) per channel or destination and used both ways.

Default (documented in docs/hl7v2.md) is our own ``ZTH`` segment::

    ZTH|1|VIDEO|TX|US|Y|CA|Y|reported
        ZTH-2 modality code   ZTH-3 patient location state   ZTH-4 country   ZTH-5 at home (Y/N)
        ZTH-6 practitioner state   ZTH-7 consent captured (Y/N)   ZTH-8 where the location came from

Any field can be moved, e.g. ``{"modality_field": "PV1-18", "codes": {"TV": "video", "TA":
"audio_only", "TS": "async"}}``. ``home_address_fallback: true`` takes the patient location state
from the first PID-11 address when no location field is valued; the location's ``source`` then
says ``home-address-fallback`` so policies can treat it as a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import MODALITIES, ConfigError, PatientLocation

from .reader import Message, component, esc, parse_path, text

DEFAULT_CODES = {"VIDEO": "video", "AUDIO": "audio_only", "ASYNC": "async", "INPERSON": "in_person"}
FALLBACK_SOURCE = "home-address-fallback"
_FIELDS = ("modality_field", "location_state_field", "location_country_field", "at_home_field",
           "practitioner_state_field", "consent_field", "location_source_field")


@dataclass(frozen=True)
class Convention:
    """Paths (``SEG-n`` or ``SEG-n.c``) of each telehealth fact; None means "not carried"."""

    modality_field: str | None = "ZTH-2"
    codes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CODES))
    location_state_field: str | None = "ZTH-3"
    location_country_field: str | None = "ZTH-4"
    at_home_field: str | None = "ZTH-5"
    practitioner_state_field: str | None = "ZTH-6"
    consent_field: str | None = "ZTH-7"
    location_source_field: str | None = "ZTH-8"
    home_address_fallback: bool = False

    def paths(self) -> list[str]:
        return [p for p in (getattr(self, name) for name in _FIELDS) if p]

    def z_segments(self) -> set[str]:
        """Z-segments owned by the convention: consumed whole on decode, written on encode."""
        return {p[:3] for p in self.paths() if p.startswith("Z")}

    def mapped_fields(self) -> dict[str, set[int]]:
        """Standard-segment fields the convention reads (so they are not kept as raw fields)."""
        out: dict[str, set[int]] = {}
        for p in self.paths():
            seg, number, _ = parse_path(p)
            if not seg.startswith("Z"):
                out.setdefault(seg, set()).add(number)
        return out


DEFAULT = Convention()
_cache: dict[int, tuple[Any, Convention]] = {}


def convention_from(options: Mapping[str, Any]) -> Convention:
    """Build (and cache per options object) the convention; raises ConfigError naming the bad key."""
    raw = options.get("telehealth")
    if raw is None:
        return DEFAULT
    cached = _cache.get(id(raw))
    if cached and cached[0] is raw:
        return cached[1]
    convention = _build(raw)
    if len(_cache) > 256:  # options live per channel; a churn of ad-hoc dicts must not grow this
        _cache.clear()
    _cache[id(raw)] = (raw, convention)
    return convention


def _build(raw: Any) -> Convention:
    if raw is False:
        return Convention(**{name: None for name in _FIELDS}, codes={})
    if not isinstance(raw, Mapping):
        raise ConfigError([("options.telehealth", "expected a mapping or false")])
    problems = []
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _FIELDS:
            if value is not None:
                try:
                    parse_path(str(value))
                except ValueError as exc:
                    problems.append((f"options.telehealth.{key}", str(exc)))
            kwargs[key] = value
        elif key == "codes":
            bad = [m for m in dict(value).values() if m not in MODALITIES]
            if bad:
                problems.append(("options.telehealth.codes", f"unknown modality {bad[0]!r}"))
            kwargs[key] = dict(value)
        elif key == "home_address_fallback":
            kwargs[key] = bool(value)
        else:
            problems.append((f"options.telehealth.{key}", "unknown key"))
    if problems:
        raise ConfigError(problems)
    return Convention(**kwargs)


@dataclass
class Telehealth:
    """The telehealth facts read from one message."""

    modality: str | None = None
    location: PatientLocation | None = None
    practitioner_state: str | None = None
    consent: bool | None = None
    unknown_code: str | None = None


def _get(message: Message, path: str | None) -> str:
    if not path:
        return ""
    seg_name, number, comp_index = parse_path(path)
    seg = message.segment(seg_name)
    if seg is None:
        return ""
    value = seg.get(number)
    seps = message.separators
    return component(value, comp_index, seps) if comp_index else text(value.split(seps.repetition)[0], seps)


def _flag(value: str) -> bool | None:
    return {"Y": True, "N": False}.get(value.upper()) if value else None


def read(message: Message, convention: Convention, home_state: str | None = None) -> Telehealth:
    """Read the convention's fields from ``message``; ``home_state`` feeds the flagged fallback."""
    code = _get(message, convention.modality_field)
    modality = convention.codes.get(code) if code else None
    state = _get(message, convention.location_state_field) or None
    country = _get(message, convention.location_country_field) or None
    at_home = _flag(_get(message, convention.at_home_field))
    source = _get(message, convention.location_source_field) or None
    location = None
    if state or country or at_home is not None or source:
        location = PatientLocation(country=country, state=state, at_home=at_home, source=source)
    elif convention.home_address_fallback and home_state and modality not in (None, "in_person"):
        location = PatientLocation(state=home_state, source=FALLBACK_SOURCE)
    return Telehealth(modality=modality, location=location,
                      practitioner_state=_get(message, convention.practitioner_state_field) or None,
                      consent=_flag(_get(message, convention.consent_field)),
                      unknown_code=code if code and modality is None else None)


def values(facts: Telehealth, convention: Convention) -> dict[str, str]:
    """Path → escaped wire value for encode. A fallback location is not written (it is re-derived)."""
    out: dict[str, str] = {}
    reverse: dict[str, str] = {}
    for code, modality in convention.codes.items():
        reverse.setdefault(modality, code)

    def put(path: str | None, value: str | None) -> None:
        if path and value:
            out[path] = esc(value)

    put(convention.modality_field, reverse.get(facts.modality or ""))
    location = facts.location
    if location and location.source != FALLBACK_SOURCE:
        put(convention.location_state_field, location.state)
        put(convention.location_country_field, location.country)
        put(convention.at_home_field, None if location.at_home is None else "YN"[not location.at_home])
        put(convention.location_source_field, location.source)
    put(convention.practitioner_state_field, facts.practitioner_state)
    put(convention.consent_field, None if facts.consent is None else "YN"[not facts.consent])
    return out
