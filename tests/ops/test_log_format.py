"""Logs as JSON lines (``logging: {format: json}``) and ``BRIDGE_LOG_LEVEL``: a collector reads every
line of a running engine as one JSON object, redacted like the text lines."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core import redaction
from bridge.core.config import parse_config
from bridge.core.logsetup import JsonLineFormatter
from bridge.errors import ConfigError, DecodeError

ROOT = Path(__file__).resolve().parents[2]


def record(message: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    made = logging.LogRecord("bridge.test", logging.ERROR, __file__, 1, message, args, exc_info)
    return redaction.redact_record(made)


def test_a_json_line_is_one_object_with_time_level_logger_message_and_a_redacted_traceback():
    quoted = "Testpatient^Alex"  # a variable: the traceback's frames show source lines, not values
    try:
        raise DecodeError(f"PID-5 {quoted!r} is not a name")
    except DecodeError as exc:
        line = JsonLineFormatter().format(record("decode failed for message %d: %s", 7, "PID|1||MRN9||Doe", exc=exc))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "bridge.test"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert entry["message"].startswith("decode failed for message 7: PID|[redacted]")
    assert "Traceback" in entry["exception"] and "DecodeError (message withheld" in entry["exception"]
    assert "Testpatient" not in line and "Doe" not in line and "MRN9" not in line


@pytest.mark.parametrize("section, problem", [
    ({"format": "xml"}, "logging.format"),
    ({"level": "DEBUG"}, "logging.level"),
    ("json", "logging"),
])
def test_a_bad_logging_section_is_refused_with_its_key(tmp_path, section, problem):
    with pytest.raises(ConfigError) as refused:
        parse_config({"logging": section}, config_dir=str(tmp_path))
    assert problem in [path for path, _ in refused.value.problems]


def test_the_format_defaults_to_text(tmp_path):
    assert parse_config({}, config_dir=str(tmp_path)).log_format == "text"
    assert parse_config({"logging": {"format": "json"}}, config_dir=str(tmp_path)).log_format == "json"


def test_the_level_is_read_in_any_case(monkeypatch):
    from bridge.core.logsetup import level_from_environment

    monkeypatch.setenv("BRIDGE_LOG_LEVEL", " debug")
    assert level_from_environment() == "DEBUG"
    monkeypatch.delenv("BRIDGE_LOG_LEVEL")
    assert level_from_environment() == "INFO"


def test_an_unknown_log_level_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("BRIDGE_LOG_LEVEL", "LOUD")
    assert main(["plugins"]) == 2
    assert "BRIDGE_LOG_LEVEL='LOUD' is not a level" in capsys.readouterr().err


def test_bridge_run_with_json_logs_writes_only_json_lines(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "bridge.yaml").write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        logging: {{format: json}}
        channels:
          intake: {{source: "file://inbox", format: bridge, routes: [{{to: [ehr]}}]}}
        destinations:
          ehr: {{url: "file://outbox", format: bridge}}
        web: {{listen: "127.0.0.1:{port}"}}
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BRIDGE_LOG_LEVEL": "debug"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", "bridge.yaml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?probe=1", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert engine.poll() is None, engine.stderr.read()
                assert time.monotonic() < deadline, "admin web did not come up"
                time.sleep(0.1)
    finally:
        engine.send_signal(signal.SIGTERM)
        out, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    entries = [json.loads(line) for line in err.splitlines()]  # every line is JSON, or this fails
    messages = {(e["logger"], e["message"]) for e in entries}
    assert ("bridge.web.access", '"GET /healthz" 200') in {(lg, m.rsplit(" ", 1)[0]) for lg, m in messages}
    assert any(lg == "bridge.cli" and m.startswith("bridge: admin web on") for lg, m in messages)
