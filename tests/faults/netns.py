"""A network namespace joined to this one by a veth pair, for network-fault tests (issue 16).

``Link`` creates a namespace ``tbf…`` and a veth pair: one end in this (the root) namespace with
``10.A.B.1/30``, the other in the new namespace with ``10.A.B.2/30``. A listening socket created while
the calling thread has joined the namespace (:meth:`Link.inside`, Linux ``setns`` on this thread only)
stays there, so an in-process fake peer (``FakeMllpPeer(host=link.far)``) is reached over the veth
pair, not loopback, and faults applied to the pair hit exactly that path:

- :meth:`Link.partition`: the far end goes down; the near end loses carrier and what the engine sends
  is dropped silently (a blackhole: connections and ACKs time out, as across a failed switch);
- :meth:`Link.netem`: ``tc qdisc … netem`` (latency, loss) on both ends, when the kernel has sch_netem.

:func:`unavailable` says why these tests cannot run here (not root, no ``ip``/``tc``, no netns, no
veth, no netem), with the exact error, so a skip names its reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_setns_lock = threading.Lock()


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


class Link:
    """``with Link() as link:`` — ``link.far`` is the address inside the namespace."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000:04d}{random.randrange(1000):03d}"
        self.ns = f"tbf{tag}"
        self.near_dev, self.far_dev = f"tbn{tag}", f"tbx{tag}"
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
        self.near, self.far = f"{self.subnet}.1", f"{self.subnet}.2"

    def __enter__(self) -> Link:
        try:
            sh("ip", "netns", "add", self.ns)
            sh("ip", "link", "add", self.near_dev, "type", "veth", "peer", "name", self.far_dev)
            sh("ip", "link", "set", self.far_dev, "netns", self.ns)
            sh("ip", "addr", "add", f"{self.near}/30", "dev", self.near_dev)
            sh("ip", "link", "set", self.near_dev, "up")
            self.in_ns("ip", "addr", "add", f"{self.far}/30", "dev", self.far_dev)
            self.in_ns("ip", "link", "set", self.far_dev, "up")
            self.in_ns("ip", "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        sh("ip", "link", "del", self.near_dev, check=False)  # takes the far end with it
        sh("ip", "netns", "del", self.ns, check=False)

    def in_ns(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns, *args, check=check)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block with this thread in the namespace (sockets made here stay there)."""
        with _setns_lock, open(f"/proc/self/task/{threading.get_native_id()}/ns/net") as home, \
                open(f"/run/netns/{self.ns}") as target:
            _setns(target.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def partition(self, down: bool = True) -> None:
        """Cut (or restore) the link: the far end goes down, so the near end's packets vanish."""
        self.in_ns("ip", "link", "set", self.far_dev, "down" if down else "up")

    def netem(self, *spec: str) -> None:
        """Apply ``tc … netem SPEC`` (e.g. ``delay 100ms``, ``loss 20%``) to both ends; no spec clears it."""
        for runner, dev in ((sh, self.near_dev), (self.in_ns, self.far_dev)):
            runner("tc", "qdisc", "del", "dev", dev, "root", check=False)
            if spec:
                runner("tc", "qdisc", "add", "dev", dev, "root", "netem", *spec)


def unavailable(need_netem: bool = False) -> str | None:
    """Why namespace tests cannot run here (None when they can): the exact missing piece or error."""
    if os.geteuid() != 0:
        return "network-fault tests need root (ip netns, veth pairs, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian's iproute2 package)"
    probe = f"tbfprobe{os.getpid() % 100000}"
    try:
        made = sh("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
        veth = sh("ip", "link", "add", f"{probe[:10]}a", "type", "veth", "peer", "name", f"{probe[:10]}b",
                  check=False)
        if veth.returncode != 0:
            return f"cannot create a veth pair: {veth.stderr.strip()}"
        sh("ip", "link", "del", f"{probe[:10]}a", check=False)
        if need_netem:
            sh("ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up", check=False)
            netem = sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                       "1ms", check=False)
            if netem.returncode != 0:
                return (f"tc netem is not available here (the kernel lacks sch_netem): `tc qdisc add dev lo root "
                        f"netem delay 1ms` in a namespace says: {netem.stderr.strip()}")
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


class Forwarder:
    """A TCP forwarder whose listening socket lives in ``link``'s namespace (``far:port``) and whose
    outbound connections go from here to ``target``: a client in this namespace reaching ``target``
    through it crosses the veth pair, so :meth:`Link.partition` cuts it (the engine from its PostgreSQL)."""

    def __init__(self, link: Link, target: tuple[str, int]) -> None:
        self.link, self.target = link, target
        self.connections = 0
        self._stopping = threading.Event()
        self._open: list[socket.socket] = []
        with link.inside():
            self._sock = socket.create_server((link.far, 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="forwarder", daemon=True).start()

    def close(self) -> None:
        self._stopping.set()
        self._sock.close()
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.connections += 1
            self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
