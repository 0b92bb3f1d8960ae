"""Memory and connections (issue 16): the process stays bounded under floods of tiny frames, idle
connections and parallel maximum-size, deep XML bodies.

These run benchmarks/mllp_memory.py's listener (a real engine in a child process, SQLite store,
real sockets on loopback) and benchmarks/ncpdp_deep_bodies.py (the real NCPDP callback), with
smaller counts than the scripts' defaults so CI stays fast; the full figures are in
faults/results/memory.md. Bounds are several times what was measured, so a slow or busy machine
does not fail them, yet an unbounded path (a buffer per frame, a tree per body) would.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")


def benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mllp_memory = benchmark("mllp_memory")


@pytest.fixture
def listener(request):
    child = mllp_memory.Child(getattr(request, "param", {}))
    yield child
    child.close()


@pytest.mark.slow
def test_rss_stays_flat_under_tiny_frames(listener):
    """20,000 tiny frames (100,000 in faults/results/memory.md): every one stored and answered AA, and
    the second 15,000 add almost nothing to what the first 5,000 left (nothing kept per frame)."""
    start = listener.memory_mb()[0]
    accepted, _ = mllp_memory.send_frames(listener.port, 5_000)
    warm = listener.memory_mb()[0]
    accepted += mllp_memory.send_frames(listener.port, 15_000)[0]
    rss, peak = listener.memory_mb()
    assert accepted == 20_000
    assert rss - warm < 12, f"RSS grew {rss - warm:.1f} MB over 15,000 more frames ({start:.1f} -> {warm:.1f} -> {rss:.1f})"
    assert peak - start < 60, f"peak {peak:.1f} MB from {start:.1f} MB"


def test_500_idle_connections_from_one_address_hold_only_their_share(listener):
    """With the defaults, one address holds at most ``max_connections_per_peer`` (50) of the cap of 100,
    and the refused ones cost nothing: a legitimate sender still gets in."""
    before = listener.memory_mb()[0]
    socks = mllp_memory.open_idle(listener.port, 500)
    try:
        kept = mllp_memory.held(socks)
        rss = listener.memory_mb()[0]
        legit = mllp_memory.send_frames(listener.port, 40, connections=1, window=4)[0]
    finally:
        for sock in socks:
            sock.close()
    assert kept <= 50, f"one address holds {kept} connections"
    assert legit == 40, "a legitimate sender was locked out"
    assert rss - before < 10, f"RSS {before:.1f} -> {rss:.1f} MB"


@pytest.mark.parametrize("listener", [{"max_connections": 510, "max_connections_per_peer": 510}], indirect=True)
def test_500_held_idle_connections_cost_kilobytes_each(listener):
    before = listener.memory_mb()[0]
    socks = mllp_memory.open_idle(listener.port, 500)
    try:
        kept = mllp_memory.held(socks)
        rss = listener.memory_mb()[0]
    finally:
        for sock in socks:
            sock.close()
    assert kept == 500
    per_connection_kb = (rss - before) * 1024 / kept
    assert per_connection_kb < 20, f"{per_connection_kb:.1f} KB per idle connection ({before:.1f} -> {rss:.1f} MB)"


_NCPDP = re.compile(r"answers: \[(.*)\] x(\d+)\nRSS before (\d+) MB, peak (\d+) MB")


@pytest.mark.parametrize(("depth", "bound_mb"), [(140_000, 60)], ids=["1MiB-140000-deep"])
def test_eight_parallel_deep_ncpdp_bodies_stay_bounded(depth, bound_mb):
    """8 parallel 1 MiB, 140,000-deep bodies at the callback: each refused 400, and the peak stays near
    the bodies' own bytes (8 MiB) instead of a tree per body (321 MB before issue 16's fix)."""
    run = subprocess.run([sys.executable, str(BENCHMARKS / "ncpdp_deep_bodies.py"), "--clients", "8",
                          "--depth", str(depth)], capture_output=True, text=True, timeout=180)
    found = _NCPDP.search(run.stdout)
    assert run.returncode == 0 and found, run.stdout + run.stderr[-3000:]
    statuses, count, before, peak = found.group(1), int(found.group(2)), int(found.group(3)), int(found.group(4))
    assert count == 8 and "400" in statuses and "200" not in statuses, statuses
    assert peak - before < bound_mb, f"peak {peak} MB from {before} MB"
