"""Small helpers the end-to-end tests share: waiting for a condition, a free loopback port, the
bridge CLI as a process, the admin API, the default config on free ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0):
    """Poll ``predicate`` until it returns something truthy (returned); OSError counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def bridge_cli(*args: str, cwd, env, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``bridge ARGS`` as its own process, as an analyst would; by default it must succeed."""
    result = subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=60, input=stdin)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def api_call(base: str, token: str, path: str, method: str = "GET", body: Any = None) -> Any:
    """One admin API request with a bearer token; the JSON answer."""
    request = urllib.request.Request(f"{base}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def default_site(tmp_path: Path) -> tuple[Path, int, int]:
    """The shipped default config copied under ``tmp_path/config`` with free MLLP and web ports (so the
    test runs beside anything else), and the pharmacy directory it names; (config, mllp port, web port)."""
    (tmp_path / "config").mkdir()
    mllp, web = free_port(), free_port()
    text = (ROOT / "config" / "bridge.yaml").read_text()
    text = text.replace("127.0.0.1:2575", f"127.0.0.1:{mllp}").replace("127.0.0.1:8080", f"127.0.0.1:{web}")
    config = tmp_path / "config" / "bridge.yaml"
    config.write_text(text)
    shutil.copytree(ROOT / "examples" / "ncpdp", tmp_path / "examples" / "ncpdp")
    return config, mllp, web
