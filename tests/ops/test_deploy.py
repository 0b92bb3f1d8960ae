"""The service definitions in deploy/: the systemd unit checked by systemd itself (`systemd-analyze
verify`, and its offline security exposure), and the Dockerfile's shape against the unit's (it cannot
be built on these machines: no container runtime)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy/systemd/telemed-bridge.service"
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
INSTALL_PREFIX = "/opt/telemed-bridge/venv"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 is fully locked down, 10 is a root service with no limits

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (Debian: apt-get install systemd;"
                                                  " .ci/run installs it)")


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def installed_copy(tmp_path: Path) -> Path:
    """The unit with its install prefix pointing at this test's virtualenv, so the commands it runs
    exist (verify checks that ExecStart's program is executable)."""
    venv = Path(sys.executable).parent.parent
    assert (venv / "bin/bridge").exists(), "the bridge command is not installed in this virtualenv"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALL_PREFIX, str(venv)))
    return copy


@needs_systemd_analyze
def test_systemd_accepts_the_unit_without_a_single_complaint(tmp_path):
    result = subprocess.run(["systemd-analyze", "verify", str(installed_copy(tmp_path))], capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


@needs_systemd_analyze
def test_systemd_rejects_a_broken_copy(tmp_path):
    """The check above can fail: a misspelt value is reported."""
    copy = installed_copy(tmp_path)
    copy.write_text(copy.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert "sometimes" in result.stdout + result.stderr


@needs_systemd_analyze
def test_the_units_security_exposure_is_low(tmp_path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(installed_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip("this systemd-analyze has no --offline (systemd 252 or newer has)")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_runs_as_a_dedicated_user_with_secrets_from_a_file_and_reloads_with_sighup():
    settings = unit_settings(UNIT.read_text())
    assert settings["User"] == ["telemed-bridge"] and settings["Group"] == ["telemed-bridge"]
    assert settings["EnvironmentFile"] == ["/etc/telemed-bridge/environment"]
    assert settings["ExecStart"] == [f"{INSTALL_PREFIX}/bin/bridge run -c /etc/telemed-bridge/bridge.yaml"]
    assert settings["ExecStartPre"] == [f"{INSTALL_PREFIX}/bin/bridge check -c /etc/telemed-bridge/bridge.yaml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "RestrictAddressFamilies",
                      "SystemCallFilter", "CapabilityBoundingSet"):
        assert hardening in settings, hardening
    sysusers = (ROOT / "deploy/systemd/telemed-bridge.sysusers.conf").read_text()
    assert re.search(r"^u telemed-bridge\b", sysusers, re.M)


def test_the_dockerfile_has_the_units_shape():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    instructions = {line.split()[0] for line in lines}
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim", lines[0])
    assert "USER telemed-bridge" in lines and "useradd --system" in DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["bridge"]' in lines and 'CMD ["run", "-c", "/etc/telemed-bridge/bridge.yaml"]' in lines
    assert 'VOLUME ["/var/lib/telemed-bridge"]' in lines
    assert "ADD" not in instructions  # COPY only: nothing fetched at build time beyond pip
    unit = unit_settings(UNIT.read_text())
    rules_dir = next(v for v in unit["Environment"] if v.startswith("BRIDGE_POLICY_RULES_DIR="))
    assert rules_dir.split("=", 1)[1] in DOCKERFILE.read_text()
    for copied in re.findall(r"^COPY (.+) /", DOCKERFILE.read_text(), re.M):
        for source in copied.split():
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which the repository lacks"
