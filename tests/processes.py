"""`bridge run` as a process, and what /proc tells about it: shared by the crash tests, the node tests
and the fault suite's crash script (faults/crash.py).

A kill -9 test needs the engine in a process of its own (a thread cannot be killed like that), and to
know which process listens on, or accepted, a loopback port; /proc answers both without extra tools.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

MLLP_END = b"\x1c\r"


def start_engine(config: Path, stderr: int | IO | None = subprocess.PIPE, text: bool = False) -> subprocess.Popen:
    """``bridge run -c CONFIG`` in the config's folder, warnings and worse on stderr (a pipe by default:
    a long run should pass a file, since nobody reads the pipe until the end)."""
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=stderr, text=text,
                            env={**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"})


def read_mllp_frame(conn: socket.socket) -> bytes:
    """One MLLP answer frame; ConnectionResetError when the peer closes first (e.g. it was killed)."""
    data = b""
    while not data.endswith(MLLP_END):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionResetError("the node closed the connection")
        data += chunk
    return data


def listening_pids(port: int, pids: list[int]) -> dict[int, int]:
    """Which of ``pids`` hold a listening socket on ``port`` (pid: count), read from /proc."""
    inodes = {inode for state, local, _, inode in _tcp_sockets() if state == "0A" and local == port}
    return {pid: n for pid in pids if (n := len(_socket_inodes(pid) & inodes))}


def accepting_pid(port: int, client_port: int, pids: list[int]) -> int | None:
    """The process that accepted the connection from ``client_port`` to ``port``."""
    inodes = {inode for state, local, remote, inode in _tcp_sockets()
              if state == "01" and local == port and remote == client_port}
    return next((pid for pid in pids if _socket_inodes(pid) & inodes), None)


def _tcp_sockets() -> list[tuple[str, int, int, str]]:
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        rows.append((fields[3], int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), fields[9]))
    return rows


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
    except OSError:
        pass
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float) -> bool:
    """Whether ``predicate()`` became true within ``timeout`` seconds (looked at every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
