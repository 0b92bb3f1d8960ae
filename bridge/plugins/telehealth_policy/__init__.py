"""Telehealth prescribing policy gate: controlled-substance rules for every prescription.

Inpatient and emergency orders for immediate administration are not prescriptions (21 CFR 1300.01):
the gate records R28 and judges nothing else for them. Which channels it judges is the channel's
``policies:`` list (the core decides); an in-person patient is at the channel's ``facility_state``.

Registers the policy ``telehealth-controlled-substances`` (ALLOW, REVIEW or BLOCK with every rule
that fired, its reason, legal basis and the rule-set version), the ``policy:`` config section and
the ``bridge policy explain`` command. The rules are data in ``config/policy/`` (see
``docs/policy.md``); this package only knows what the data means.

Where the rules come from, first match wins: the request's ``settings`` (the ``policy:`` section,
once the core passes it to policies), then ``$BRIDGE_POLICY_RULES_DIR``, then the shipped
``config/policy``. Reference data, not legal advice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bridge import (
    CommandSpec,
    ConfigSection,
    PolicyDecision,
    PolicyRequest,
    PolicySpec,
    Prescription,
    hookimpl,
)

from .digest import signed_digest, signed_fields
from .evaluate import decide, evaluate_prescription
from .ruleset import RuleSet, load_ruleset
from .settings import SETTINGS, ruleset_for, validate_settings

POLICY_NAME = "telehealth-controlled-substances"
log = logging.getLogger(__name__)


def evaluate(request: PolicyRequest) -> PolicyDecision:
    """The gate: every Prescription in the message is judged; messages without one pass untouched."""
    prescriptions = [r for r in request.records if isinstance(r, Prescription)]
    if not prescriptions:
        return PolicyDecision("ALLOW")
    settings: Mapping[str, Any] | None = getattr(request, "settings", None)
    decision = decide(prescriptions, ruleset_for(settings), facility_state=getattr(request, "facility_state", None))
    log.info("message %s: %s (%s)", request.message_id, decision.outcome, ",".join(r.id for r in decision.rules))
    return decision


@hookimpl
def bridge_policies() -> list[PolicySpec]:
    return [PolicySpec(name=POLICY_NAME, evaluate=evaluate, record_kinds=("Prescription",), options=SETTINGS,
                       description="US telehealth controlled-substance prescribing rules (config/policy)")]


@hookimpl
def bridge_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name="policy", validate=validate_settings,
                          description="rules_dir, pathways {buprenorphine, special_registration}, schedule_overrides")]


@hookimpl
def bridge_commands() -> list[CommandSpec]:
    from .explain import configure, run

    return [CommandSpec(name="policy", help="explain how the telehealth policy judges a prescription",
                        configure=configure, run=run)]


__all__ = ["POLICY_NAME", "RuleSet", "decide", "evaluate", "evaluate_prescription", "load_ruleset",
           "ruleset_for", "signed_digest", "signed_fields", "validate_settings"]
