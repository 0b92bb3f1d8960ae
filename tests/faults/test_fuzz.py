"""Bad input (issue 16): the fuzzers run a few seconds per target, and what they found stays fixed.

Each target (faults/fuzz.py) feeds atheris-mutated bytes to a reader that takes input from outside;
any input must decode or raise DecodeError, never another exception, never hang, in bounded memory.
The saved findings in tests/fixtures/fuzz/<target>/ replay without atheris, so they guard every
platform; the fuzzing itself needs atheris's wheel (CPython 3.11, x86-64 Linux) and skips elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge import DecodeError, Encounter
from bridge.plugins.hl7v2 import codec as hl7v2
from bridge.plugins.hl7v2.mllp import FrameReader, Oversized
from bridge.plugins.ncpdp import detect as ncpdp_detect
from bridge.plugins.ncpdp.decode import decode as ncpdp_decode
from bridge.plugins.ncpdp.header import peek as ncpdp_peek
from faults import fuzz

SAVED = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz"
CI_SECONDS = 4  # per target: seeds first (about a second), then mutations


def saved_findings() -> list[tuple[str, Path]]:
    return [(target.name, path) for target in sorted(SAVED.iterdir()) for path in sorted(target.iterdir())]


@pytest.mark.parametrize(("target", "path"), saved_findings(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_each_saved_finding_now_decodes_or_is_refused_with_a_decode_error(target, path):
    fuzz.load_target(target)(path.read_bytes())  # raises (fails the test) on anything but DecodeError


def test_every_target_has_seeds_from_the_fixtures():
    for target in fuzz.TARGETS:
        seeds = fuzz.seed_files(target)
        assert any(fuzz.FIXTURES in p.parents for p in seeds), target


def atheris_or_skip() -> None:
    """Skip where atheris has no wheel; CI sets BRIDGE_REQUIRE_ATHERIS so it can never pass by skipping."""
    missing = fuzz.atheris_missing()
    if missing and os.environ.get("BRIDGE_REQUIRE_ATHERIS"):
        pytest.fail(f"BRIDGE_REQUIRE_ATHERIS is set but {missing}")
    if missing:
        pytest.skip(missing)


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzzing_a_target_for_a_few_seconds_finds_nothing(target, tmp_path):
    atheris_or_skip()
    run = fuzz.run_target(target, CI_SECONDS, work=tmp_path, findings=tmp_path / "findings")
    assert run.clean, f"{target}: a finding (saved as {run.artifact}):\n{run.finding}"
    assert run.execs > run.seeds, f"{target}: only {run.execs} executions for {run.seeds} seeds: did it fuzz?"
    assert run.coverage > 50


# --- the findings, as plain regression tests --------------------------------------------------------------


def test_a_bill_without_a_pid_segment_decodes_its_visit():
    """Fuzzer finding (hl7v2): a DFT naming a visit but carrying no PID read the first patient's group
    out of an empty list (IndexError) instead of decoding the visit."""
    raw = (b"MSH|^~\\&|APP|FAC|BR|HOSP|20260301100000||DFT^P03^DFT_P03|CTL-1|P|2.5.1\r"
           b"EVN|P03|20260301100000\rPV1|1|O|TELE^^^CLINIC||||||||||||||||V-1\rFT1|1|||20260301||CG|99213\r")
    try:
        records = hl7v2.decode(raw)
    except DecodeError:
        return  # refusing a bill that names no patient is as good as decoding its visit
    assert records and isinstance(records[0], Encounter)


def test_a_script_document_declaring_an_unknown_encoding_is_refused_clearly():
    """Fuzzer finding (ncpdp): expat's LookupError for encoding="UFT-8" escaped ``peek`` (documented never
    to raise, and called by ``detect``) and ``decode``."""
    raw = (SAVED / "ncpdp" / "unknown-encoding-a22cad5c").read_bytes()
    assert ncpdp_peek(raw).control_id is None
    assert ncpdp_detect(raw) is False
    with pytest.raises(DecodeError, match="unknown encoding"):
        ncpdp_decode(raw)


def test_an_oversized_frame_is_reported_the_same_whatever_the_reads():
    """Fuzzer finding (mllp, in the harness's own comparison): an oversized frame keeps a different number
    of head bytes depending on the reads, but its size, its place and its first bytes are the same."""
    payload = b"MSH|^~\\&|A|B|C|D|2026||ADT^A04|CTL-9|P|2.5.1\r" + b"X" * 3000
    stream = b"\x0b" + payload + b"\x1c\r\x0bMSH|small\x1c\r"
    whole = FrameReader(2048).feed(stream)
    reader, pieces = FrameReader(2048), []
    for start in range(0, len(stream), 5):
        pieces += reader.feed(stream[start:start + 5])
    assert [type(i) for i in whole] == [type(i) for i in pieces] == [Oversized, bytes]
    assert whole[0].size == pieces[0].size == len(payload) and whole[1] == pieces[1] == b"MSH|small"
    assert whole[0].head[:2048] == pieces[0].head[:2048] and b"CTL-9" in pieces[0].head
