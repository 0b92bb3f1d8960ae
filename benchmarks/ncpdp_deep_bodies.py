"""Peak memory of the NCPDP callback under 8 parallel 1 MiB, 140,000-deep XML bodies (issue 16 defect 4).

Starts a real callback endpoint on loopback in this process, sends the bodies from 8 threads over
raw sockets at once (authenticated, so they reach the parser), and prints the process's resident
memory before and its peak (VmHWM) after, with each answer's status. Run it on another tree with
``PYTHONPATH=that-tree`` for a before/after.

    .venv/bin/python benchmarks/ncpdp_deep_bodies.py [--clients 8] [--depth 140000] [--max-bytes 2097152]
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import tempfile
import threading

from bridge import Receipt, SourceContext
from bridge.plugins.ncpdp.transport import CallbackSource


def memory_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def post(port: int, body: bytes, statuses: list[str]) -> None:
    auth = base64.b64encode(b"bench:bench-password").decode()
    head = (f"POST /script HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        sock.settimeout(120)
        answer = b""
        while chunk := sock.recv(65536):  # read to the end: closing early would reset the server's write
            answer += chunk
        statuses.append(answer.split(b"\r\n")[0].decode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--depth", type=int, default=140_000)
    parser.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024,
                        help="the channel's max_message_bytes (the engine's default is 10 MiB)")
    args = parser.parse_args()
    os.environ["TB_BENCH_PASSWORD"] = "bench-password"
    ctx = SourceContext(url="ncpdp+http://127.0.0.1:0/script", channel="bench",
                        options={"username": "bench", "password_env": "TB_BENCH_PASSWORD"},
                        submit=lambda raw, origin=None, error=None: Receipt(1, True), config_dir=tempfile.gettempdir(),
                        max_message_bytes=args.max_bytes, format_name="ncpdp")
    source = CallbackSource(ctx)
    source.start()
    body = b"<a>" * args.depth + b"</a>" * args.depth
    before = memory_mb("VmRSS")
    statuses: list[str] = []
    threads = [threading.Thread(target=post, args=(source.port, body, statuses)) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    source.stop()
    print(f"{args.clients} parallel bodies of {len(body) / 2**20:.2f} MiB, {args.depth} deep; answers: "
          f"{sorted(set(statuses))} x{len(statuses)}")
    print(f"RSS before {before:.0f} MB, peak {memory_mb('VmHWM'):.0f} MB, after {memory_mb('VmRSS'):.0f} MB")


if __name__ == "__main__":
    main()
