"""The rules themselves: one Prescription, one rule-set, one day → a trail of checks and a decision.

Every rule reads its parameters from the rule-set (``config/policy``); nothing here holds a date, a
look-back or a state. The trail records every rule looked at — fired, passed or skipped, with why —
because an analyst asking "why was this allowed?" needs the passes as much as the blocks. Unknown or
missing inputs give REVIEW, never ALLOW; rules are judged by the written date, not the wall clock.
Reasons name fields and rule parameters, never patient values, so they are safe to store and show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from bridge import REMOTE_MODALITIES, PolicyDecision, Prescription, RuleResult

from .dates import add_months, end_of_day, hours_between, parse_day, parse_instant
from .digest import DIGEST_PREFIX, signed_digest
from .ruleset import Pathway, PdmpRow, Restriction, RuleSet
from .schedules import DrugFacts, classify, registration_schedule

SEVERITY = {"ALLOW": 0, "REVIEW": 1, "BLOCK": 2}
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Check:
    """One rule looked at: ``status`` is fired, passed, skipped or not in force."""

    id: str
    status: str
    outcome: str | None
    reason: str
    basis: str


@dataclass
class Trail:
    """The checks made for one prescription, in order, plus the day it was judged on."""

    ruleset: RuleSet
    judged_on: date | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def fired(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fired"]

    @property
    def outcome(self) -> str:
        return max((c.outcome or "ALLOW" for c in self.fired), key=SEVERITY.__getitem__, default="ALLOW")


@dataclass
class Context:
    """What every rule function reads; built once per prescription."""

    rx: Prescription
    rs: RuleSet
    trail: Trail
    day: date
    at: datetime
    state: str | None
    drug: DrugFacts
    flags: Mapping[str, Any]
    state_from_facility: bool = False

    def _record(self, rule_id: str, status: str, outcome: str | None, reason: str, basis: str | None = None) -> bool:
        rule = self.rs.rules[rule_id]
        if not rule.effective.covers(self.day):
            self.trail.checks.append(Check(rule_id, "not in force", None,
                                           f"rule in force {rule.effective.describe()}", rule.basis))
            return False
        self.trail.checks.append(Check(rule_id, status, outcome, reason, basis or rule.basis))
        return status == "fired"

    def fire(self, rule_id: str, reason: str, outcome: str | None = None, basis: str | None = None) -> bool:
        return self._record(rule_id, "fired", outcome or self.rs.rules[rule_id].outcome, reason, basis)

    def review(self, rule_id: str, reason: str, basis: str | None = None) -> bool:
        return self.fire(rule_id, reason, "REVIEW", basis)

    def passed(self, rule_id: str, note: str, basis: str | None = None) -> None:
        self._record(rule_id, "passed", None, note, basis)

    def skip(self, rule_id: str, note: str) -> None:
        self.trail.checks.append(Check(rule_id, "skipped", None, note, self.rs.rules[rule_id].basis))

    @property
    def modality(self) -> str | None:
        """The encounter's modality; a hospital stay or emergency visit without one is in person."""
        return _modality(self.rx, self.rs)

    @property
    def telemedicine(self) -> bool:
        return self.modality in REMOTE_MODALITIES

    @property
    def prior_in_person(self) -> date | None:
        """The last in-person evaluation on or before the judged day, if the encounter says so."""
        seen = parse_day(self.rx.encounter.last_in_person_visit) if self.rx.encounter else None
        return seen if seen and seen <= self.day else None

    @property
    def oud_drug(self) -> bool:
        """A narcotic FDA-approved for opioid use disorder, not sent as prescribed for something else."""
        row = self.drug.row
        return bool(row and row.narcotic and row.oud_treatment) and self.flags.get("oud_treatment") is not False


# --- entry points --------------------------------------------------------------------------------


def evaluate_prescription(rx: Prescription, ruleset: RuleSet, at: date | None = None, *,
                          facility_state: str | None = None) -> Trail:
    """Judge one prescription; ``at`` replaces the written date (for "what if" questions).
    ``facility_state`` is where the channel's facility is: an in-person patient's location."""
    trail = Trail(ruleset)
    day = at or _written_day(rx)
    if _not_a_prescription(trail, rx, day):
        return trail
    if day is None:
        _fire_unbound(trail, "R25", "the written date is missing or not a full date (YYYY-MM-DD); "
                      "no other rule can be judged without it")
        return trail
    trail.judged_on = day
    ctx = _context(rx, ruleset, trail, day, facility_state)
    if _outside_us(ctx):
        return trail
    _judge(ctx)
    return trail


def decide(prescriptions: list[Prescription], ruleset: RuleSet, at: date | None = None, *,
           facility_state: str | None = None) -> PolicyDecision:
    """The decision for a message: ALLOW with no rules when it carries no prescription."""
    results: list[RuleResult] = []
    outcome = "ALLOW"
    for n, rx in enumerate(prescriptions, 1):
        trail = evaluate_prescription(rx, ruleset, at, facility_state=facility_state)
        prefix = f"prescription {n} of {len(prescriptions)}: " if len(prescriptions) > 1 else ""
        results += [RuleResult(c.id, c.outcome or "REVIEW", prefix + c.reason, c.basis) for c in trail.fired]
        outcome = max(outcome, trail.outcome, key=SEVERITY.__getitem__)
    return PolicyDecision(outcome, tuple(results), ruleset.label)


def _written_day(rx: Prescription) -> date | None:
    text = rx.written_date
    return parse_day(text) if isinstance(text, str) and _FULL_DATE.match(text) else None


def _fire_unbound(trail: Trail, rule_id: str, reason: str) -> None:
    rule = trail.ruleset.rules[rule_id]
    trail.checks.append(Check(rule_id, "fired", rule.outcome, reason, rule.basis))


def _context(rx: Prescription, rs: RuleSet, trail: Trail, day: date, facility_state: str | None = None) -> Context:
    location = rx.encounter.patient_location if rx.encounter else None
    state = _state_code(location.state if location else None)
    from_facility = state is None and _modality(rx, rs) == "in_person" and _state_code(facility_state) is not None
    if from_facility:
        state = _state_code(facility_state)
    flags = rx.extra.get("policy") if isinstance(rx.extra.get("policy"), Mapping) else {}
    return Context(rx, rs, trail, day, _prescribed_at(rx, day), state, classify(rs, rx.medication, state), flags,
                   from_facility)


def _state_code(value: str | None) -> str | None:
    state = (value or "").strip().upper()
    return state if re.fullmatch(r"[A-Z]{2}", state) else None


def _encounter_class(rx: Prescription) -> str:
    return (rx.encounter.encounter_class or "").strip().upper() if rx.encounter else ""


def _modality(rx: Prescription, rs: RuleSet) -> str | None:
    """The encounter's modality; a stay or emergency visit (class IMP, EMER…) without one is in person."""
    modality = rx.encounter.modality if rx.encounter else None
    if modality is None and _encounter_class(rx) in rs.stay_classes:
        return "in_person"
    return modality


# --- what the gate judges: prescriptions, not orders for immediate administration ---------------------


def _not_a_prescription(trail: Trail, rx: Prescription, day: date | None) -> bool:
    """R28: an inpatient or emergency order for immediate administration is not a prescription
    (21 CFR 1300.01(b)), so no prescribing rule applies to it. The decision table is in docs/policy.md;
    anything that leaves with the patient, is telehealth or goes to a retail pharmacy is judged."""
    rs = trail.ruleset
    rule = rs.rules["R28"]
    if day is not None and not rule.effective.covers(day):
        return False
    category, klass = rx.category, _encounter_class(rx)
    marked = category in rs.stay_order_categories
    if category is not None and not marked:
        return False  # discharge, outpatient, community: it leaves with the patient
    if klass and klass not in rs.stay_classes:
        return False  # an ambulatory or virtual visit, whatever the order says
    if not (marked or klass):
        return False  # nothing says this is a stay
    modality = rx.encounter.modality if rx.encounter else None
    if modality in REMOTE_MODALITIES:
        return False
    if rx.pharmacy is not None and rx.pharmacy.ncpdp_id:
        return False  # a retail pharmacy dispenses prescriptions, not medication orders
    why = f"order category {category}" if marked else f"encounter class {klass}"
    trail.checks.append(Check("R28", "fired", rule.outcome,
                              f"an order for immediate administration ({why}, no telehealth modality, no retail "
                              "pharmacy) is not a prescription; the prescribing rules do not apply", rule.basis))
    return True


def _prescribed_at(rx: Prescription, day: date) -> datetime:
    """The instant PDMP look-backs are measured from: signing, else written, else visit end, else end of day."""
    candidates = [rx.signature.signed_at if rx.signature else None, rx.written_date,
                  rx.encounter.period.end if rx.encounter and rx.encounter.period else None]
    for value in candidates:
        instant = parse_instant(value)
        if instant:
            return instant
    return end_of_day(day)


# --- the order of judgement ------------------------------------------------------------------------


def _outside_us(ctx: Context) -> bool:
    location = ctx.rx.encounter.patient_location if ctx.rx.encounter else None
    country = (location.country or "").strip().upper() if location else ""
    if country and country not in ctx.rs.us_codes:
        ctx.fire("R22", "the patient was outside the United States at the visit; US rules cannot judge it "
                 "(no jurisdiction plugin for other countries)")
        return True
    ctx.passed("R22", "patient in the US" if country else "no country given; judged as US by the state")
    return False


def _judge(ctx: Context) -> None:
    _location(ctx)
    if not _drug(ctx):
        _licensure(ctx)
        return
    for rule in (_dea_registration, _required_elements, _signature, _refills, _licensure, _pharmacy,
                 _telemedicine, _state_pdmp, _state_restrictions):
        rule(ctx)


def _location(ctx: Context) -> None:
    if ctx.state is None:
        ctx.fire("R2", "the patient's state at the visit (encounter.patient_location.state) is missing; "
                 "registration, licensure and state rules depend on it")
    elif ctx.state_from_facility:
        ctx.passed("R2", f"in-person visit: patient at the facility in {ctx.state} (channel facility_state)")
    else:
        ctx.passed("R2", f"patient located in {ctx.state}")


def _drug(ctx: Context) -> bool:
    """Classify the drug; True when it is controlled and the controlled-substance rules apply."""
    drug = ctx.drug
    if ctx.rx.medication is None or (drug.row is None and drug.carried is None):
        ctx.fire("R24", "the drug is not in the schedule table and the prescription carries no DEA schedule")
        return False
    if drug.mismatch:
        ctx.fire("R23", f"the prescription says {drug.carried} but the schedule table says {drug.table} for "
                 f"{drug.row.key} (matched by {drug.matched_by}); judged as {drug.schedule}")
    else:
        ctx.passed("R23", "schedule on the prescription agrees with the table" if drug.row and drug.carried
                   else "nothing to cross-check (only one source of the schedule)")
    if drug.controlled:
        ctx.passed("R1", _controlled_note(drug, ctx.state))
        return True
    if drug.row is None and ctx.rs.carried_none_outcome != "ALLOW":
        ctx.fire("R24", "the drug is not in the schedule table; the prescription's 'none' is not trusted by this site")
        return False
    where = f" or in {ctx.state}" if ctx.state else ""
    source = f"schedule table ({drug.row.key})" if drug.row else "the prescription (drug not in the table)"
    ctx.fire("R1", f"not controlled federally{where}, per {source}; other rules still apply")
    return False


def _controlled_note(drug: DrugFacts, state: str | None) -> str:
    if drug.state_override and drug.state_override == drug.schedule and drug.table != drug.schedule:
        return (f"controlled in {state} as {drug.schedule} (state schedule; federally {drug.table}): "
                "controlled-substance rules apply")
    return f"controlled ({drug.schedule}): the controlled-substance rules below apply"


# --- DEA registration, prescription content, signature, refills ---------------------------------------


def _dea_registration(ctx: Context) -> None:
    if ctx.state is None:
        for rule_id in ("R3", "R4"):
            ctx.skip(rule_id, "patient state unknown (see R2)")
        return
    everywhere = ctx.rx.prescriber.dea_registrations if ctx.rx.prescriber else []
    registrations = [r for r in everywhere if (r.state or "").upper() == ctx.state]
    if not registrations and _registration_elsewhere(ctx, everywhere):
        return
    if not registrations:
        ctx.fire("R3", f"the prescriber has no DEA registration in {ctx.state}, where the patient was")
        ctx.skip("R4", "no registration to check (see R3)")
        return
    active = [r for r in registrations if _active(r.expires, ctx.day)]
    if not active and _registration_elsewhere(ctx, [r for r in everywhere if r not in registrations],
                                              lapsed_here=True):
        return
    if not active:
        unknown = any(r.expires is None for r in registrations)
        if unknown:
            ctx.review("R3", f"the DEA registration in {ctx.state} has no expiry date; cannot tell it is active")
        else:
            ctx.fire("R3", f"the prescriber's DEA registration in {ctx.state} expired before {ctx.day}")
        ctx.skip("R4", "no active registration to check (see R3)")
        return
    ctx.passed("R3", f"active DEA registration in {ctx.state}")
    _schedule_covered(ctx, active, ctx.state)


def _registration_elsewhere(ctx: Context, registrations: list, *, lapsed_here: bool = False) -> bool:
    """Inside the ``registration_in_any_state`` window (DEA-DC-018, continued by the temporary rules),
    an active registration in another state suffices when the patient's state authorises the
    prescriber (an active licence there), whether or not one in the patient's state has lapsed. True
    when this decided R3 and R4; with ``lapsed_here`` only a pass decides (the lapsed registration's
    own finding is the clearer reason otherwise)."""
    window = ctx.rs.windows.get("registration_in_any_state")
    if window is None or not window.effective.covers(ctx.day):
        return False
    active = [r for r in registrations if _active(r.expires, ctx.day)]
    if not active:
        return False
    licensed = any((lic.state or "").upper() == ctx.state and _active(lic.expires, ctx.day)
                   for lic in (ctx.rx.prescriber.licenses if ctx.rx.prescriber else []))
    where = ", ".join(sorted({(r.state or "?").upper() for r in active}))
    if not licensed and lapsed_here:
        return False
    if not licensed:
        ctx.fire("R3", f"no DEA registration in {ctx.state}; the registration in {where} counts there only "
                 f"when {ctx.state} authorises the prescriber, and no active licence in {ctx.state} is on record",
                 basis=window.basis)
        ctx.skip("R4", "no usable registration to check (see R3)")
        return True
    ctx.passed("R3", f"no active DEA registration in {ctx.state}, but an active one in {where} and a licence in "
               f"{ctx.state}: no second registration is needed within {window.effective.describe()}",
               basis=window.basis)
    _schedule_covered(ctx, active, where)
    return True


def _active(expires: str | None, day: date) -> bool:
    ends = parse_day(expires, end=True) if expires else None
    return ends is not None and ends >= day


def _schedule_covered(ctx: Context, registrations: list, where: str) -> None:
    """R4: the drug's schedule must be on the registration; the sub-schedules 2N and 3N cover only
    the non-narcotic drugs of Schedule II and III."""
    full, non_narcotic = set(), set()
    for schedule, narcotics in (registration_schedule(s) for r in registrations for s in r.schedules):
        if schedule:
            (full if narcotics else non_narcotic).add(schedule)
    wanted = ctx.drug.schedule
    listed = ", ".join(sorted(full) + sorted(f"{s}N (non-narcotic)" for s in non_narcotic - full))
    narcotic = ctx.drug.row.narcotic if ctx.drug.row else None
    if not full and not non_narcotic:
        ctx.review("R4", f"the DEA registration in {where} lists no schedules")
    elif wanted in full:
        ctx.passed("R4", f"{wanted} covered by the registration")
    elif wanted in non_narcotic and narcotic is False:
        ctx.passed("R4", f"{wanted} non-narcotic drug covered by the registration's {wanted}N sub-schedule")
    elif wanted in non_narcotic and narcotic is None:
        ctx.review("R4", f"the registration in {where} covers only non-narcotic {wanted} ({wanted}N) and this "
                   "drug is not in the schedule table, so whether it is a narcotic is unknown")
    else:
        ctx.fire("R4", f"the DEA registration in {where} covers {listed}, not {wanted}"
                 + (" narcotics" if wanted in non_narcotic else ""))


def _required_elements(ctx: Context) -> None:
    missing = [name for name, present in _elements(ctx) if not present]
    if missing:
        ctx.fire("R11", "missing required element(s): " + ", ".join(missing))
    else:
        ctx.passed("R11", "all 21 CFR 1306.05 elements present")


def _elements(ctx: Context) -> list[tuple[str, bool]]:
    rx, med = ctx.rx, ctx.rx.medication
    patient, prescriber = rx.patient, rx.prescriber
    registrations = prescriber.dea_registrations if prescriber else []
    if ctx.state:
        registrations = [r for r in registrations if (r.state or "").upper() == ctx.state] or registrations
    described = bool(med and med.description)
    return [
        ("patient name", bool(patient and patient.name and patient.name.family)),
        ("patient address", bool(patient and any(a.lines for a in patient.addresses))),
        ("prescriber name", bool(prescriber and prescriber.name and prescriber.name.family)),
        ("prescriber address", bool(prescriber and any(a.lines for a in prescriber.addresses))),
        ("prescriber DEA number", any(r.number for r in registrations)),
        ("drug name", bool(med and (med.description or med.rxnorm or med.ndc))),
        ("strength", bool(med and (med.strength or described))),
        ("dosage form", bool(med and (med.form or described))),
        ("quantity", rx.quantity is not None),
        ("directions (sig)", bool(rx.sig and rx.sig.strip())),
        ("number of refills", rx.refills is not None),
        ("date of issue", bool(rx.written_date)),
    ]


def _signature(ctx: Context) -> None:
    signature = ctx.rx.signature
    if signature is None or not (signature.value or "").strip():
        ctx.fire("R10", "no EPCS signature evidence: a controlled prescription is not transmitted unsigned")
        ctx.skip("R21", "nothing signed to verify (see R10)")
        return
    ctx.passed("R10", "EPCS signature evidence present")
    digest = (signature.digest or "").strip()
    if not digest:
        ctx.review("R21", "the signature carries no digest, so an alteration after signing cannot be ruled out")
    elif not digest.startswith(DIGEST_PREFIX):
        ctx.review("R21", f"the signature digest uses a scheme this gate cannot verify (expected {DIGEST_PREFIX}…)")
    elif digest != signed_digest(ctx.rx):
        ctx.fire("R21", "the signed content (drug, quantity, sig, refills, patient, date or prescriber) differs "
                 "from what was signed: the digest does not match; a new signature is needed")
    else:
        ctx.passed("R21", "signed content unchanged (digest matches)")


def _refills(ctx: Context) -> None:
    schedule, refills, limits = ctx.drug.schedule, ctx.rx.refills, ctx.rs.limits
    if schedule == "CII":
        if refills is not None and refills > limits["cii_max_refills"]:
            ctx.fire("R12", f"a Schedule II prescription cannot be refilled ({refills} refills requested)")
        else:
            ctx.passed("R12", "no refills" if refills is not None else "refills missing (see R11)")
        _cii_serial(ctx)
    else:
        ctx.skip("R12", f"not Schedule II ({schedule})")
        ctx.skip("R13", f"not Schedule II ({schedule})")
    if schedule in ("CIII", "CIV") and refills is not None and refills > limits["ciii_civ_max_refills"]:
        ctx.fire("R14", f"{refills} refills requested; at most {limits['ciii_civ_max_refills']} are allowed "
                 f"for {schedule}")
    elif schedule in ("CIII", "CIV"):
        ctx.passed("R14", f"refills within the {schedule} limit")
    else:
        ctx.skip("R14", f"not Schedule III-IV ({schedule})")


def _cii_serial(ctx: Context) -> None:
    limit = ctx.rs.limits["cii_serial_max_days"]
    total = ctx.flags.get("cii_serial_total_days", ctx.rx.days_supply)
    if not isinstance(total, int) or isinstance(total, bool):
        ctx.review("R13", "days supply unknown, so the Schedule II 90-day total cannot be checked")
    elif total > limit:
        ctx.fire("R13", f"Schedule II prescriptions covering {total} days in total; at most {limit} are allowed")
    else:
        ctx.passed("R13", f"{total} days within the {limit}-day Schedule II total")


# --- licensure and pharmacy --------------------------------------------------------------------------


def _licensure(ctx: Context) -> None:
    if not ctx.drug.controlled and not ctx.rs.licensure_all_drugs:
        ctx.skip("R15", "licensure checked for controlled drugs only at this site")
        return
    if not ctx.rs.licensure_effective.covers(ctx.day):
        ctx.skip("R15", "licensure row not in force")
        return
    if ctx.state is None:
        ctx.skip("R15", "patient state unknown (see R2)")
        return
    licences = [lic for lic in (ctx.rx.prescriber.licenses if ctx.rx.prescriber else [])
                if (lic.state or "").upper() == ctx.state]
    if any(_active(lic.expires, ctx.day) for lic in licences):
        ctx.passed("R15", f"licensed in {ctx.state}")
    elif any(lic.expires is None for lic in licences):
        ctx.review("R15", f"the licence in {ctx.state} has no expiry date; cannot tell it is active")
    elif licences:
        ctx.fire("R15", f"the prescriber's licence in {ctx.state} expired before {ctx.day}")
    else:
        ctx.fire("R15", f"the prescriber has no licence (or compact privilege) in {ctx.state}, where the patient was")


def _pharmacy(ctx: Context) -> None:
    pharmacy = ctx.rx.pharmacy
    if pharmacy is None:
        ctx.review("R19", "no target pharmacy on the prescription; EPCS capability unknown")
    elif pharmacy.epcs_capable is None:
        ctx.review("R19", "the target pharmacy's EPCS capability is not stated")
    elif not pharmacy.epcs_capable:
        ctx.fire("R19", "the target pharmacy cannot receive electronic controlled-substance prescriptions (EPCS); "
                 "route to an EPCS-capable pharmacy")
    else:
        ctx.passed("R19", "target pharmacy is EPCS capable")


# --- telemedicine: Ryan Haight, the flexibility window, pathways -------------------------------------


def _telemedicine(ctx: Context) -> None:
    modality = ctx.modality
    if modality is None:
        ctx.fire("R26", "no encounter or no modality (video, audio_only, async, in_person) on the prescription")
        return
    if not ctx.telemedicine:
        ctx.passed("R7", "in-person encounter: the in-person evaluation requirement is met")
        return
    if ctx.prior_in_person:
        ctx.passed("R7", f"prior in-person evaluation on {ctx.prior_in_person}")
        return
    window = ctx.rs.windows["telemedicine_flexibilities"]
    if window.effective.covers(ctx.day):
        _within_window(ctx, window.audio_only_schedules, window.basis)
        return
    if _buprenorphine_pathway(ctx) or _special_registration_pathway(ctx):
        return
    ctx.fire("R7", f"{modality} telemedicine without a prior in-person evaluation, on {ctx.day}, outside the "
             f"flexibility window ({window.effective.describe()}) and no enabled pathway applies")


def _within_window(ctx: Context, audio_schedules: tuple[str, ...], basis: str) -> None:
    if ctx.modality == "video":
        ctx.fire("R5", "audio-video telemedicine without a prior in-person evaluation, within the DEA "
                 "flexibility window", basis=basis)
    elif ctx.modality == "audio_only" and ctx.oud_drug and ctx.drug.schedule in audio_schedules:
        ctx.fire("R5", f"audio-only telemedicine for a {ctx.drug.schedule} narcotic approved for opioid use "
                 "disorder, within the DEA flexibility window", basis=basis)
    elif ctx.modality == "audio_only":
        ctx.fire("R6", f"audio-only telemedicine is allowed only for Schedule III-V narcotics approved for opioid "
                 f"use disorder; this drug is {ctx.drug.schedule}")
    else:
        ctx.fire("R6", "asynchronous (store-and-forward) telemedicine is not an audio-video evaluation")


def _buprenorphine_pathway(ctx: Context) -> bool:
    pathway = ctx.rs.pathway_on("buprenorphine", ctx.day)
    if not (pathway and ctx.oud_drug and ctx.drug.schedule in pathway.params.get("schedules", ())):
        return False
    if ctx.modality not in pathway.params.get("modalities", ()):
        ctx.fire("R8", f"the buprenorphine pathway does not cover {ctx.modality} telemedicine", basis=pathway.basis)
        return True
    _buprenorphine_course(ctx, pathway)
    _buprenorphine_pdmp(ctx, pathway)
    return True


def _buprenorphine_course(ctx: Context, pathway: Pathway) -> None:
    months = int(pathway.params.get("max_course_months", 6))
    start = parse_day(ctx.flags.get("buprenorphine_course_start"))
    if start is None:
        ctx.review("R8", "extra.policy.buprenorphine_course_start is missing, so the 6-month course limit "
                   "cannot be checked", basis=pathway.basis)
        return
    supply = ctx.rx.days_supply
    last_day = ctx.day + timedelta(days=supply) if isinstance(supply, int) else ctx.day
    if last_day > add_months(start, months):
        ctx.fire("R8", f"the telemedicine course would run past {months} calendar months from its start "
                 f"without an in-person evaluation", basis=pathway.basis)


def _buprenorphine_pdmp(ctx: Context, pathway: Pathway) -> None:
    if ctx.state is None:
        ctx.review("R8", "patient state unknown: cannot tell which PDMP must be reviewed", basis=pathway.basis)
        return
    hours = float(pathway.params.get("pdmp_check_max_age_hours", 24))
    if _find_check(ctx, ctx.state, hours, ctx.rs.pdmp_reviewed):
        ctx.fire("R8", f"buprenorphine pathway: PDMP of {ctx.state} reviewed before prescribing",
                 outcome="ALLOW", basis=pathway.basis)
        return
    limit = int(pathway.params.get("outage_max_days_supply", 7))
    outage = _find_check(ctx, ctx.state, hours, ctx.rs.pdmp_unavailable, outage=True)
    supply = ctx.rx.days_supply
    if outage and isinstance(supply, int) and supply <= limit:
        ctx.fire("R8", f"FLAG: PDMP of {ctx.state} unavailable (attempt documented); allowed for at most a "
                 f"{limit}-day supply", outcome="ALLOW", basis=pathway.basis)
    elif outage:
        ctx.fire("R8", f"PDMP unavailable: only a supply of at most {limit} days is allowed "
                 f"(days supply {supply if supply is not None else 'missing'})", basis=pathway.basis)
    else:
        ctx.fire("R8", f"no review of the {ctx.state} PDMP within {hours:g} h before prescribing", basis=pathway.basis)


def _special_registration_pathway(ctx: Context) -> bool:
    pathway = ctx.rs.pathway_on("special_registration", ctx.day)
    registration = (ctx.rx.prescriber.extra.get("policy") or {}).get("special_registration") \
        if ctx.rx.prescriber and isinstance(ctx.rx.prescriber.extra.get("policy"), Mapping) else None
    if not (pathway and registration):
        return False
    params = pathway.params
    practitioner_state = (ctx.rx.encounter.practitioner_state or "").upper() if ctx.rx.encounter else ""
    if ctx.modality not in params.get("modalities", ()):
        ctx.fire("R27", f"the special registration pathway does not cover {ctx.modality} telemedicine",
                 basis=pathway.basis)
    elif ctx.drug.schedule == "CII" and params.get("cii_requires_same_state") and \
            (ctx.state is None or practitioner_state != ctx.state):
        ctx.fire("R27", "Schedule II under special registration needs prescriber and patient in the same state",
                 basis=pathway.basis)
    elif ctx.state is None or not _find_check(ctx, ctx.state, float(params.get("pdmp_check_max_age_hours", 24)),
                                              ctx.rs.pdmp_reviewed):
        ctx.fire("R27", "special registration needs a PDMP review of the patient's state before prescribing",
                 basis=pathway.basis)
    else:
        ctx.fire("R27", "special registration pathway conditions met", outcome="ALLOW", basis=pathway.basis)
    return True


# --- PDMP checks -------------------------------------------------------------------------------------


def _check_states(check: Mapping[str, Any]) -> set[str]:
    states = check.get("states") if isinstance(check.get("states"), list) else []
    single = [check["state"]] if isinstance(check.get("state"), str) else []
    return {str(s).upper() for s in [*states, *single]}


def _find_check(ctx: Context, state: str, max_age_hours: float, outcomes: tuple[str, ...], *,
                outage: bool = False) -> Mapping[str, Any] | None:
    """The newest check of ``state`` with one of ``outcomes`` made at most ``max_age_hours`` before prescribing."""
    best, best_at = None, None
    for check in ctx.rx.pdmp_checks:
        if not isinstance(check, Mapping) or state not in _check_states(check):
            continue
        if check.get("outcome") not in outcomes or (outage and check.get("outage_documented") is not True):
            continue
        checked_at = parse_instant(check.get("checked_at"))
        if checked_at is None or checked_at > ctx.at or hours_between(checked_at, ctx.at) > max_age_hours:
            continue
        if best_at is None or checked_at > best_at:
            best, best_at = check, checked_at
    return best


def _latest_age(ctx: Context, state: str) -> str:
    ages = [hours_between(t, ctx.at) for c in ctx.rx.pdmp_checks if isinstance(c, Mapping)
            and state in _check_states(c) and c.get("outcome") in ctx.rs.pdmp_reviewed
            and (t := parse_instant(c.get("checked_at"))) and t <= ctx.at]
    return f"; the latest review was {min(ages):.1f} h before prescribing" if ages else "; no review on record"


def _state_pdmp(ctx: Context) -> None:
    if ctx.state is None:
        ctx.skip("R16", "patient state unknown (see R2)")
        return
    rows = [r for r in ctx.rs.pdmp if r.state == ctx.state and r.effective.covers(ctx.day)]
    if not rows:
        ctx.passed("R16", f"no PDMP mandate row for {ctx.state} in force")
    for row in rows:
        _pdmp_row(ctx, row)


def _pdmp_row(ctx: Context, row: PdmpRow) -> None:
    triggered = ctx.drug.schedule in row.schedules
    if not triggered and row.classes:
        known = [ctx.drug.has_class(c) for c in row.classes]
        if None in known:
            ctx.review("R16", f"{row.program} ({row.state}) applies to {', '.join(row.classes)}; this drug's class "
                       "is unknown (not in the schedule table)", basis=row.basis)
            return
        triggered = any(known)
    if not triggered:
        ctx.passed("R16", f"{row.program} ({row.state}) not triggered by this drug", basis=row.basis)
        return
    hours, label = _lookback(ctx, row)
    if _find_check(ctx, row.state, hours, ctx.rs.pdmp_reviewed):
        ctx.passed("R16", f"{row.program} reviewed within {label}", basis=row.basis)
        return
    outage = _find_check(ctx, row.state, hours, ctx.rs.pdmp_unavailable, outage=True)
    if outage and row.outage_outcome:
        _pdmp_outage(ctx, row)
        return
    ctx.fire("R16", f"{row.program} ({row.state}) must be checked within {label} before prescribing "
             f"{ctx.drug.schedule}{_latest_age(ctx, row.state)}", basis=row.basis)


def _lookback(ctx: Context, row: PdmpRow) -> tuple[float, str]:
    if row.lookback_hours:
        return row.lookback_hours, f"{row.lookback_hours:g} h"
    new_course = ctx.flags.get("new_course")
    if row.new_course_lookback_hours and (new_course is not False or not row.lookback_days):
        why = "start of a new course" if new_course else "new course (extra.policy.new_course not false)"
        return row.new_course_lookback_hours, f"{row.new_course_lookback_hours:g} h ({why})"
    return float(row.lookback_days or 0) * 24, f"{row.lookback_days:g} days (continuing course)"


def _pdmp_outage(ctx: Context, row: PdmpRow) -> None:
    limit, supply = row.outage_max_days_supply, ctx.rx.days_supply
    if limit is not None and not (isinstance(supply, int) and supply <= limit):
        ctx.fire("R16", f"{row.program} unavailable (documented), but the outage exception allows at most a "
                 f"{limit:g}-day supply", basis=row.basis)
    else:
        ctx.fire("R16", f"{row.program} unavailable (documented); outage exception applies — confirm",
                 outcome=row.outage_outcome, basis=row.basis)


# --- state telehealth restrictions ---------------------------------------------------------------------


def _state_restrictions(ctx: Context) -> None:
    if ctx.state is None:
        ctx.skip("R17", "patient state unknown (see R2)")
        return
    rows = [r for r in ctx.rs.restrictions if r.state == ctx.state and r.effective.covers(ctx.day)]
    if not rows:
        ctx.passed("R17", f"no telehealth restriction row for {ctx.state} in force")
    for row in rows:
        if not ctx.telemedicine:
            ctx.passed("R17", f"{row.state} {row.kind}: not a telemedicine encounter", basis=row.basis)
        elif row.kind == "chronic_pain_recent_visit":
            _chronic_pain(ctx, row)
        else:
            _opioid_in_person(ctx, row)


def _chronic_pain(ctx: Context, row: Restriction) -> None:
    chronic = ctx.flags.get("chronic_pain")
    days = int(row.params.get("days", 90))
    if chronic is None:
        ctx.review("R17", f"{row.state} restricts telemedicine prescribing for chronic pain; "
                   "extra.policy.chronic_pain is not sent", basis=row.basis)
        return
    if chronic is False:
        ctx.passed("R17", f"{row.state} chronic-pain restriction: not chronic pain", basis=row.basis)
        return
    last_seen = _last_seen(ctx)
    if ctx.flags.get("established_patient") is not True:
        ctx.fire("R17", f"{row.state}: chronic pain treated with a scheduled drug by telemedicine needs an "
                 "established patient (extra.policy.established_patient)", outcome=row.outcome, basis=row.basis)
    elif last_seen is None or (ctx.day - last_seen).days > days:
        since = f"{(ctx.day - last_seen).days} days ago" if last_seen else "never on record"
        ctx.fire("R17", f"{row.state}: chronic pain by telemedicine needs an in-person or audio-video visit within "
                 f"{days} days; last seen {since}", outcome=row.outcome, basis=row.basis)
    else:
        ctx.passed("R17", f"{row.state}: seen within {days} days", basis=row.basis)


def _last_seen(ctx: Context) -> date | None:
    seen = [d for d in (ctx.prior_in_person, parse_day(ctx.flags.get("last_audio_video_visit"))) if d and d <= ctx.day]
    return max(seen) if seen else None


def _opioid_in_person(ctx: Context, row: Restriction) -> None:
    opioid = ctx.drug.has_class("opioid")
    if opioid is None:
        ctx.review("R17", f"{row.state} restricts opioids by telehealth; this drug's class is unknown", basis=row.basis)
    elif not opioid or ctx.prior_in_person:
        why = "not an opioid" if not opioid else "prior in-person exam"
        ctx.passed("R17", f"{row.state} opioid restriction: {why}", basis=row.basis)
    elif ctx.oud_drug:
        ctx.passed("R17", f"{row.state} opioid restriction: FDA-approved OUD treatment is excepted", basis=row.basis)
    else:
        ctx.fire("R17", f"{row.state}: no opioid by telehealth without a prior in-person exam, except OUD treatment",
                 outcome=row.outcome, basis=row.basis)
