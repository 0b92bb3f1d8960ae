"""One test per condition kind, the combinators, the scope rule, and bad conditions."""

from __future__ import annotations

import pytest

from bridge.core.maps.conditions import ConditionError, Scope, compile_condition
from bridge.core.model.records import Coding, Condition, Encounter, Identifier, Observation, Patient, Period, Quantity


def encounter(cls: str = "AMB", start: str = "2026-03-15T09:00:00-05:00") -> Encounter:
    return Encounter(id="E1", encounter_class=cls, period=Period(start=start),
                     patient=Patient(identifiers=[Identifier("A1", type="MR"), Identifier("B2", type="PI")]))


def holds(spec, *records) -> bool:
    return compile_condition(spec)(Scope(list(records)))


def test_equals_compares_the_written_text():
    assert holds({"equals": {"encounter.class": "AMB"}}, encounter())
    assert not holds({"equals": {"encounter.class": "IMP"}}, encounter())
    assert holds({"equals": {"encounter.class": "AMB", "encounter.id": "E1"}}, encounter())  # several: all


def test_in_takes_a_list_of_values():
    assert holds({"in": {"encounter.class": ["AMB", "EMER"]}}, encounter())
    assert not holds({"in": {"encounter.class": ["IMP"]}}, encounter())


def test_not_all_any():
    amb, imp = {"equals": {"encounter.class": "AMB"}}, {"equals": {"encounter.class": "IMP"}}
    assert holds({"not": imp}, encounter())
    assert holds({"any": [imp, amb]}, encounter()) and not holds({"all": [imp, amb]}, encounter())


def test_pattern_must_match_the_whole_value():
    assert holds({"pattern": {"patient.identifiers[type=MR].value": "A\\d"}}, encounter())
    assert not holds({"pattern": {"patient.identifiers[type=MR].value": "\\d"}}, encounter())


def test_range_of_numbers_reads_quantities():
    obs = Observation(value_quantity=Quantity(7.5, "mmol/L"))
    assert holds({"range": {"observation.value_quantity": {"min": 5, "max": 10}}}, obs)
    assert not holds({"range": {"observation.value_quantity": {"max": 7}}}, obs)


def test_range_of_dates_at_the_precision_of_the_bound():
    visit = encounter(start="2026-03-31T23:30:00-05:00")
    assert holds({"range": {"encounter.period.start": {"min": "2026-03", "max": "2026-03"}}}, visit)
    assert holds({"range": {"encounter.period.start": {"max": "2026-03-31"}}}, visit)
    assert not holds({"range": {"encounter.period.start": {"min": "2026-04-01"}}}, visit)


def test_exists():
    assert holds({"exists": "encounter.period.start"}, encounter())
    assert not holds({"exists": "encounter.period.end"}, encounter())
    assert not holds({"exists": ["encounter.period.start", "encounter.reason"]}, encounter())


def test_a_path_of_the_steps_own_kind_reads_the_record_being_changed():
    first, second = encounter("AMB"), encounter("IMP")
    condition = compile_condition({"equals": {"encounter.class": "IMP"}})
    assert not condition(Scope([first, second], first, "Encounter"))
    assert condition(Scope([first, second], second, "Encounter"))
    dx = Condition(code=Coding("X"))
    assert condition(Scope([first, second, dx], dx, "Condition"))  # another kind: the whole message


@pytest.mark.parametrize("spec, message", [
    ({"equal": {"encounter.class": "AMB"}}, "unknown condition 'equal'"),
    ({"pattern": {"encounter.class": "A("}}, "bad regular expression 'A('"),
    ({"in": {"encounter.class": "AMB"}}, "expected a list of values"),
    ({"range": {"encounter.period.start": {"min": "March"}}}, "bounds must both be numbers or both ISO dates"),
    ({"range": {"encounter.period.start": {"from": 1}}}, "expected {min: ..., max: ...}"),
    ({"all": []}, "all: expected a list of conditions"),
    ({"equals": {"encounter.klass": "AMB"}}, "Encounter has no field 'klass'"),
    ({"equals": {"a": 1}, "in": {"b": [1]}}, "as the only key"),
])
def test_bad_conditions_say_what_is_wrong(spec, message):
    with pytest.raises(ConditionError) as caught:
        compile_condition(spec)
    assert message in str(caught.value)
