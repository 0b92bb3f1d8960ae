"""What ships for Prometheus and Grafana (deploy/): the alerting rules pass `promtool check rules` and
their unit tests (`promtool test rules`); every Grafana query is valid PromQL (checked by promtool as
a recording rule) and names only metrics that /metrics of a real engine serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from bridge.core import metrics
from tests.ops.promtool import check_metrics, check_rules, test_rules
from tests.ops.test_metrics import parse
from tests.web.conftest import build_site

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_NAME = re.compile(r"\b(bridge_[a-z0-9_]+)")


def served_families(tmp_path) -> set[str]:
    site = build_site(tmp_path)
    try:
        text = metrics.render(site.store, site.engine)
    finally:
        site.store.close()
    checked = check_metrics(text)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    return set(parse(text))


def base_name(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_alerting_rules_pass_promtool_and_their_unit_tests():
    checked = check_rules(str(DEPLOY / "prometheus" / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = test_rules(str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_alerts_and_grafana_queries_use_only_served_metrics(tmp_path):
    served = served_families(tmp_path)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alert_exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "telemed-bridge.json").read_text())
    grafana_exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(grafana_exprs) >= 10 and dashboard["uid"] == "telemed-bridge"
    for expr in alert_exprs + grafana_exprs:
        unknown = {base_name(n) for n in METRIC_NAME.findall(expr)} - served
        assert not unknown, f"{expr!r} names metrics /metrics does not serve: {sorted(unknown)}"

    recording = {"groups": [{"name": "grafana", "rules": [
        {"record": f"grafana:panel_{n}", "expr": expr} for n, expr in enumerate(grafana_exprs)]}]}
    path = tmp_path / "grafana-queries.yml"
    path.write_text(yaml.safe_dump(recording), encoding="utf-8")
    checked = check_rules(str(path))  # promtool parses every query as PromQL
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_missing_promtool_skips_with_the_reason_but_fails_where_required(monkeypatch):
    import pytest

    from tests.ops import promtool

    monkeypatch.setattr(promtool.shutil, "which", lambda name: None)
    monkeypatch.delenv("BRIDGE_REQUIRE_PROMTOOL", raising=False)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        promtool.promtool()
    monkeypatch.setenv("BRIDGE_REQUIRE_PROMTOOL", "1")
    with pytest.raises(pytest.fail.Exception, match="required here"):
        promtool.promtool()
