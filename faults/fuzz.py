"""Coverage-guided fuzzing of every reader that takes bytes from outside (issue 16, "bad input").

Four targets, each run by atheris (libFuzzer for Python) in a child process of its own:

- ``hl7v2``  — the HL7v2 format: ``detect``, ``peek`` (never raises) and ``decode`` (records or DecodeError),
  and the public ER7 reader ``bridge.er7.read_messages``;
- ``mllp``   — the MLLP deframer: any byte stream, cut into reads of any size, gives the same frames as
  when fed whole, no frame over the limit, and the bytes held stay bounded; each frame's MSH read by
  the listener raises nothing but DecodeError;
- ``fhir``   — the FHIR R4 format: ``detect``, ``peek``, ``decode``;
- ``ncpdp``  — the NCPDP SCRIPT format: ``detect``, ``peek``, ``decode``.

The rule every target checks: any input either decodes or raises the project's documented error
(``DecodeError`` and its subclass ``MessageTooLarge``); any other exception is a finding, and so is an
input that uses more than ``--input-cpu-seconds`` of CPU (a hang; CPU time, because a shared machine
may pause the process) or a process over ``--rss-mb`` (memory).
Seeds are the project's fixtures (tests/fixtures) and, when present, the shared public corpus.

Usage::

    .venv/bin/python faults/fuzz.py --seconds 300              # every target, 5 minutes each
    .venv/bin/python faults/fuzz.py --seconds 10 --target mllp
    .venv/bin/python faults/fuzz.py --seconds 300 --results faults/results/fuzz.md

A finding is written to ``faults/results/findings/<target>-crash-<sha1>`` (libFuzzer's artifact); reproduce it
with ``.venv/bin/python faults/fuzz.py --reproduce <target> <file>``. The tests (tests/faults/test_fuzz.py)
run each target for a few seconds in CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_CORPUS = Path(os.environ.get("TB_SHARED_CORPUS", ROOT.parent / "shared" / "corpus"))
FINDINGS = ROOT / "faults" / "results" / "findings"
TARGETS = ("hl7v2", "mllp", "fhir", "ncpdp")
MAX_LEN = 64 * 1024  # the largest input tried: well past every seed, small enough for many runs a second
MLLP_LIMIT = 2048  # the deframer's limit in the harness: small, so the oversized path is reached often
SEEDS_PER_TARGET = 400  # enough for every message shape in the corpora, loaded in about a second


def atheris_missing() -> str | None:
    """Why the fuzzers cannot run here, or None. atheris ships wheels for CPython 3.11 on x86-64 Linux
    (pyproject installs it only there); elsewhere it would need clang to build."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return (f"atheris is not installed (its wheel exists for CPython 3.11 on x86-64 Linux; this is "
                f"{sys.implementation.name} {sys.version_info.major}.{sys.version_info.minor} on {sys.platform})")
    return None


# --- seeds -----------------------------------------------------------------------------------------


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def seed_files(target: str) -> list[Path]:
    """The seed inputs of a target: fixtures first, then the shared corpus when it is there."""
    if target in ("hl7v2", "mllp"):
        found = _files(FIXTURES / "hl7v2", (".hl7", ".txt")) + _files(SHARED_CORPUS, (".hl7",))
    elif target == "fhir":
        found = _files(FIXTURES / "fhir", (".json",)) + _files(SHARED_CORPUS / "fhir-r4-examples", (".json",))
    else:
        found = _files(FIXTURES / "ncpdp", (".xml",)) + _files(SHARED_CORPUS / "ncpdp-script", (".xml",))
    small = [p for p in found if p.stat().st_size <= MAX_LEN]
    return small[:SEEDS_PER_TARGET]


def seed_bytes(target: str, path: Path) -> bytes:
    """A seed as the target reads it: MLLP seeds are messages framed (two frames, one with noise before)."""
    data = path.read_bytes()
    if target != "mllp":
        return data
    message = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return b"\x0b" + message + b"\x1c\r" + b"noise\x0b" + message[:100] + b"\x1c\r"


def write_seed_corpus(target: str, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(seed_files(target)):
        (folder / f"seed-{index:04d}").write_bytes(seed_bytes(target, path))
    return len(list(folder.iterdir()))


# --- the targets (imported only in the child, under atheris's instrumentation) -----------------------------


def _hl7v2_target() -> Callable[[bytes], None]:
    from bridge.er7 import read_messages
    from bridge.errors import DecodeError
    from bridge.plugins.hl7v2 import codec
    from bridge.plugins.hl7v2.header import peek

    def one(data: bytes) -> None:
        codec.detect(data)
        peek(data)
        try:
            read_messages(data)
        except DecodeError:
            pass
        try:
            codec.decode(data, {})
        except DecodeError:
            pass

    return one


def _mllp_target() -> Callable[[bytes], None]:
    from bridge.errors import DecodeError
    from bridge.plugins.hl7v2.header import parse_msh
    from bridge.plugins.hl7v2.mllp import HEADER_BYTES, FrameReader, Oversized

    def frames(data: bytes, cuts: list[int]) -> tuple[list[bytes | Oversized], int]:
        reader, out, pos, most = FrameReader(MLLP_LIMIT), [], 0, 0
        for cut in cuts + [len(data)]:
            out.extend(comparable(item) for item in reader.feed(data[pos:cut]))
            most = max(most, reader.buffered)
            pos = cut
        return out, most

    def comparable(item: bytes | Oversized) -> bytes | Oversized:
        """An oversized frame keeps 'its first bytes' for the ACK: how many depends on the reads that
        crossed the limit, so only the first ``MLLP_LIMIT`` of them are compared."""
        return Oversized(item.size, item.head[:MLLP_LIMIT]) if isinstance(item, Oversized) else item

    def one(data: bytes) -> None:
        whole, _ = frames(data, [])
        step = 1 + (data[0] % 7 if data else 0)  # reads of 1..7 bytes: every boundary falls inside a read
        pieces, most = frames(data, list(range(step, len(data), step)))
        assert pieces == whole, "the frames depend on how the stream was cut into reads"
        assert most <= MLLP_LIMIT + 2 + step + HEADER_BYTES, f"the deframer held {most} bytes"
        for item in whole:
            if isinstance(item, Oversized):
                assert item.size > MLLP_LIMIT and len(item.head) <= HEADER_BYTES
                continue
            assert len(item) <= MLLP_LIMIT and b"\x1c\r" not in item
            try:
                parse_msh(item)
            except DecodeError:
                pass

    return one


def _fhir_target() -> Callable[[bytes], None]:
    from bridge.errors import DecodeError
    from bridge.plugins.fhir import codec

    def one(data: bytes) -> None:
        codec.detect(data)
        codec.peek(data)
        try:
            codec.decode(data, {})
        except DecodeError:
            pass

    return one


def _ncpdp_target() -> Callable[[bytes], None]:
    from bridge.errors import DecodeError
    from bridge.plugins.ncpdp import detect
    from bridge.plugins.ncpdp.decode import decode
    from bridge.plugins.ncpdp.header import peek

    def one(data: bytes) -> None:
        detect(data)
        peek(data)
        try:
            decode(data, {})
        except DecodeError:
            pass

    return one


def load_target(name: str) -> Callable[[bytes], None]:
    """The target's one-input function (bridge imported here, so atheris instruments it)."""
    return {"hl7v2": _hl7v2_target, "mllp": _mllp_target, "fhir": _fhir_target, "ncpdp": _ncpdp_target}[name]()


class InputHang(Exception):
    """One input used more CPU time than allowed: a hang (or a quadratic path) is a finding."""


def cpu_bounded(one: Callable[[bytes], None], cpu_seconds: float) -> Callable[[bytes], None]:
    """``one`` with a per-input bound on CPU time (ITIMER_PROF), not wall time: on a shared machine a
    process can be paused for minutes, and libFuzzer's wall-clock -timeout then reports hangs that
    are not (every one seen that way re-ran in under a second)."""
    import signal

    def expired(signum: int, frame: object) -> None:
        raise InputHang(f"one input used more than {cpu_seconds} s of CPU")

    signal.signal(signal.SIGPROF, expired)

    def bounded(data: bytes) -> None:
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
        try:
            one(data)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    return bounded


def child(target: str, libfuzzer_args: list[str]) -> None:
    """Run one target under atheris in this process (the parent reads what libFuzzer prints)."""
    import logging

    import atheris

    logging.disable(logging.WARNING)  # the decoders' warnings about odd input, thousands a second
    with atheris.instrument_imports(include=["bridge"]):
        one = load_target(target)
    sys.setrecursionlimit(10_000)  # as deep as a worker thread may go; RecursionError is still a finding
    one = cpu_bounded(one, float(os.environ.get("TB_FUZZ_CPU_SECONDS", "10")))
    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


# --- the parent: run, read, report ---------------------------------------------------------------------


@dataclass
class FuzzRun:
    target: str
    seconds: float
    execs: int
    coverage: int
    seeds: int
    corpus: int
    exit_code: int
    finding: str  # libFuzzer's and Python's report of the first finding, "" when none
    artifact: Path | None
    slowest: float = 0.0  # seconds, the slowest single input (libFuzzer's wall time)
    peak_rss_mb: int = 0

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.finding


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: \d+ corp: (\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_FINAL = re.compile(r"stat::(slowest_unit_time_sec|peak_rss_mb):\s+(\d+)")


def run_target(target: str, seconds: float, *, work: Path | None = None, input_cpu_seconds: float = 10,
               rss_mb: int = 1024, findings: Path = FINDINGS) -> FuzzRun:
    """Fuzz one target for ``seconds`` in a child process; findings are written under ``findings``."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
        corpus = Path(work or scratch) / "corpus"
        seeds = write_seed_corpus(target, corpus)
        findings.mkdir(parents=True, exist_ok=True)
        # the per-input bound is CPU time (cpu_bounded); libFuzzer's wall-clock -timeout is only a backstop
        args = [f"-max_total_time={max(1, int(seconds))}", "-timeout=900", "-report_slow_units=100000",
                f"-rss_limit_mb={rss_mb}", f"-max_len={MAX_LEN}", f"-artifact_prefix={findings}/{target}-",
                "-print_final_stats=1", str(corpus)]
        env = dict(os.environ, TB_FUZZ_CPU_SECONDS=str(input_cpu_seconds))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--child", target, "--", *args], capture_output=True,
                              text=True, errors="replace", cwd=ROOT, env=env, timeout=seconds + 1800)
        elapsed = time.monotonic() - started
        return _read_run(target, elapsed, seeds, corpus, proc.returncode, proc.stdout + proc.stderr)


def _read_run(target: str, elapsed: float, seeds: int, corpus: Path, code: int, output: str) -> FuzzRun:
    done = _DONE.search(output)
    stats = _STATS.findall(output)
    execs = int(done.group(1)) if done else int(stats[-1][0]) if stats else 0
    coverage = int(stats[-1][1]) if stats else 0
    artifact = _ARTIFACT.search(output)
    finding = ""
    if code != 0 or artifact:
        start = output.find("=== Uncaught Python exception")
        finding = output[start:] if start >= 0 else output[-4000:]
    final = dict(_FINAL.findall(output))
    return FuzzRun(target, elapsed, execs, coverage, seeds, len(list(corpus.iterdir())), code, finding[:6000],
                   Path(artifact.group(1)) if artifact else None, float(final.get("slowest_unit_time_sec", 0)),
                   int(final.get("peak_rss_mb", 0)))


def reproduce(target: str, path: Path) -> int:
    """Run one input through a target without the fuzzer: prints the exception, if any."""
    data = path.read_bytes()
    load_target(target)(data)
    print(f"{target}: {path} decoded or was refused with a DecodeError")
    return 0


def report(runs: list[FuzzRun]) -> str:
    lines = ["| target | seconds | executions | executions/s | coverage (edges) | seeds | corpus after | slowest input | "
             "peak RSS | findings |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in runs:
        rate = run.execs / run.seconds if run.seconds else 0
        found = "none" if run.clean else f"**{run.artifact.name if run.artifact else 'exit ' + str(run.exit_code)}**"
        lines.append(f"| {run.target} | {run.seconds:.0f} | {run.execs:,} | {rate:,.0f} | {run.coverage:,} | "
                     f"{run.seeds} | {run.corpus} | {run.slowest:.0f} s | {run.peak_rss_mb} MB | {found} |")
    return "\n".join(lines)


def _detail(runs: list[FuzzRun]) -> Iterator[str]:
    for run in runs:
        if not run.clean:
            yield f"\n### {run.target}\n\n```\n{run.finding[:3000]}\n```\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long each target runs")
    parser.add_argument("--target", action="append", choices=TARGETS, help="a target (default: all)")
    parser.add_argument("--input-cpu-seconds", type=float, default=10, help="CPU seconds one input may take")
    parser.add_argument("--rss-mb", type=int, default=1024, help="the fuzzing process's memory bound")
    parser.add_argument("--results", type=Path, help="append a table of the runs to this Markdown file")
    parser.add_argument("--reproduce", nargs=2, metavar=("TARGET", "FILE"), help="run one saved input")
    args = parser.parse_args(argv)
    if args.reproduce:
        return reproduce(args.reproduce[0], Path(args.reproduce[1]))
    missing = atheris_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    runs = []
    for target in args.target or TARGETS:
        run = run_target(target, args.seconds, input_cpu_seconds=args.input_cpu_seconds, rss_mb=args.rss_mb)
        print(f"{target}: {run.execs:,} executions in {run.seconds:.0f} s, coverage {run.coverage}, "
              f"{'clean' if run.clean else 'FINDING ' + str(run.artifact)}", flush=True)
        runs.append(run)
    table = report(runs)
    print(table, *_detail(runs), sep="\n")
    if args.results:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with args.results.open("a", encoding="utf-8") as out:
            out.write(f"\n## {when}: {args.seconds:.0f} s per target\n\n{table}\n" + "".join(_detail(runs)))
    if any(not run.clean for run in runs):
        return 1
    shutil.rmtree(FINDINGS, ignore_errors=True) if FINDINGS.is_dir() and not any(FINDINGS.iterdir()) else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
