"""Issue 16 defect 6: hold reasons (which name the drug) stay hidden below analyst on the timeline too."""

from __future__ import annotations

import pytest

RULE_KEYS_FOR_VIEWERS = {"id", "outcome", "basis"}


def _reason_texts(site) -> list[str]:
    (hold,) = [h for h in site.store.holds(None) if h.message_id == site.ids["rx1"]]
    texts = [str(r["reason"]) for r in hold.reasons if r.get("reason")]
    assert texts, "the held prescription's rules carry reasons"
    return texts


def _rules_of(detail: dict, kind: str) -> list[dict]:
    return [rule for event in detail["timeline"] if event["kind"] == kind for rule in event["detail"].get("rules", [])]


def test_a_viewer_gets_the_rules_ids_but_not_their_reasons_in_the_api(site):
    reasons = _reason_texts(site)
    response = site.api("viewer").get(f"/api/v1/messages/{site.ids['rx1']}")
    detail = response.get_json()
    for kind in ("policy", "held"):
        rules = _rules_of(detail, kind)
        assert rules and all(set(rule) <= RULE_KEYS_FOR_VIEWERS for rule in rules), (kind, rules)
        assert "R25" in {rule["id"] for rule in rules}
    assert not any(text in response.get_data(as_text=True) for text in reasons)


@pytest.mark.parametrize("role", ["analyst", "operator", "admin"])
def test_an_analyst_and_above_read_the_reasons(site, role):
    reasons = _reason_texts(site)
    detail = site.api(role).get(f"/api/v1/messages/{site.ids['rx1']}").get_json()
    for kind in ("policy", "held"):
        assert {rule.get("reason") for rule in _rules_of(detail, kind)} & set(reasons), kind


def test_the_dashboards_timeline_hides_the_reasons_from_a_viewer_only(site):
    reasons = _reason_texts(site)
    page = site.login("viewer").get(f"/messages/{site.ids['rx1']}")
    assert page.status_code == 200 and "R25" in page.get_data(as_text=True)
    assert not any(text in page.get_data(as_text=True) for text in reasons)
    analyst_page = site.login("analyst").get(f"/messages/{site.ids['rx1']}").get_data(as_text=True)
    assert any(text[:60] in analyst_page for text in reasons)
