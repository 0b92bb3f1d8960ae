"""Prometheus' own checker for the tests: ``promtool`` (Debian's ``prometheus`` package).

Without it the tests that need it are skipped with the reason, except where it is required
(``BRIDGE_REQUIRE_PROMTOOL=1``, which ``.ci/run`` sets after installing it, or ``CI=true``): there
a missing promtool fails the test, so CI can never pass by skipping the checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool_required() -> bool:
    return os.environ.get("BRIDGE_REQUIRE_PROMTOOL") == "1" or os.environ.get("CI", "").lower() == "true"


def promtool() -> str:
    """The path of promtool, or skip (fail where it is required) saying why."""
    path = shutil.which("promtool")
    if path:
        return path
    problem = "promtool is not installed (Debian: apt-get install prometheus)"
    if promtool_required():
        pytest.fail(f"{problem}; it is required here (BRIDGE_REQUIRE_PROMTOOL=1 or CI=true)")
    pytest.skip(problem)


def check_metrics(text: str) -> subprocess.CompletedProcess:
    """``promtool check metrics`` on an exposition: exit 0 and no lint output when it is clean."""
    return subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def check_rules(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), "check", "rules", path], capture_output=True, text=True, timeout=60)


def test_rules(path: str) -> subprocess.CompletedProcess:
    """``promtool test rules`` on a unit-test file of alerting rules."""
    return subprocess.run([promtool(), "test", "rules", path], capture_output=True, text=True, timeout=120)


test_rules.__test__ = False  # a helper, not a pytest test
