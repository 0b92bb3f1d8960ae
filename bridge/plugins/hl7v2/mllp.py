"""MLLP transports (``mllp://HOST:PORT`` and ``mllps://HOST:PORT`` with TLS): a listener and a sender.

MLLP wraps each HL7v2 message in a frame: a start byte 0x0B, the message, then 0x1C 0x0D. The
sender waits for an acknowledgement frame before it sends the next message on that connection.

Listener (channel ``source:``): an asyncio server in its own thread, because the engine is threaded.
Each connection is a protocol that frames its bytes incrementally, so partial reads, several frames
in one read and bytes before a start byte (skipped) are all handled without buffering more than the
channel's ``max_message_bytes``. Frames are committed on a committing thread, a batch at a time (a
SQLite commit blocks on fsync; one slow commit must not stall other connections, and one commit
serves every frame that arrived meanwhile), and only then answered: AA/CA when stored (or already
stored: a resend is a duplicate the intake recognises), AE/CE when the store failed, AR/CR when the
message cannot be read or is refused (too large, no MSH). A connection's answers go out in the order
of its frames, so per-sender ordering is preserved.

Sender (destination ``url:``): keeps its connections open across sends (a small pool, one by
default), waits for the ACK with a deadline and judges it: AA/CA delivered; AE/CE transient; AR/CR
permanent (or transient with ``ar: retry``). A timeout, reset or unreadable answer closes that
connection, so the next send starts on a fresh one; the deliverer's retry policy does the rest.

``bridge send --to mllp://HOST:PORT FILE…`` (module ``mllp_send``) is the same sender for people.
Options are documented in ``docs/mllp.md``; TLS options are read by ``mllp_tls``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge import (
    BridgeError,
    CommandSpec,
    ConfigError,
    DecodeError,
    Delivery,
    DestinationContext,
    MessageHeader,
    OptionSpec,
    PermanentDeliveryError,
    SourceContext,
    StoreError,
    TransientDeliveryError,
    TransportSpec,
)

from . import mllp_tls
from .ack import ack_code_of, make_ack
from .header import MSH, parse_msh
from .mllp_guard import ConnectionGuard

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_PORT = 2575  # the IANA port for HL7 over MLLP
HEADER_BYTES = 4096  # what is kept of an oversized frame to answer it with its own MSH-10
MAX_ACK_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024


def frame(payload: bytes) -> bytes:
    """Wrap one message in MLLP start and end blocks."""
    return START_BLOCK + payload + END_BLOCK


# --- framing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Oversized:
    """A frame longer than the limit: only its first bytes (for the ACK's MSA-2) and its size are kept."""

    size: int
    head: bytes


class FrameReader:
    """Incremental MLLP deframer: ``feed(bytes)`` returns the complete frames (or ``Oversized``) seen.

    Bytes outside a frame are skipped and counted in ``skipped``. A frame whose content exceeds
    ``max_bytes`` is never held whole: once it crosses the limit its bytes are dropped up to the next
    end block, and one ``Oversized`` item takes its place in the output.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.skipped = 0
        self._in_frame = False
        self._buffer = bytearray()
        self._scan_from = 0
        self._discarding = False
        self._carry = b""
        self._size = 0
        self._head = b""

    @property
    def pending(self) -> bool:
        """True while a frame has started but not ended."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Bytes held right now (bounded by the limit plus one read, whatever the peer sends)."""
        return len(self._buffer) + len(self._carry) + len(self._head)

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        pos = 0
        while pos < len(data):
            if not self._in_frame:
                pos = self._find_start(data, pos)
            elif self._discarding:
                pos = self._discard(data, pos, out)
            else:
                pos = self._collect(data, pos, out)
        return out

    def _find_start(self, data: bytes, pos: int) -> int:
        start = data.find(START_BLOCK, pos)
        if start < 0:
            self.skipped += len(data) - pos
            return len(data)
        self.skipped += start - pos
        self._in_frame, self._discarding = True, False
        self._buffer.clear()
        self._scan_from = 0
        return start + 1

    def _collect(self, data: bytes, pos: int, out: list[bytes | Oversized]) -> int:
        if not self._buffer:  # the usual case: the whole frame in this read, cut out with one copy
            end = data.find(END_BLOCK, pos)
            if end >= 0 and end - pos <= self.max_bytes:
                out.append(data[pos:end])
                self._in_frame = False
                return end + len(END_BLOCK)
        before = len(self._buffer)
        self._buffer += data[pos:]
        end = self._buffer.find(END_BLOCK, self._scan_from)
        if end >= 0:
            content = bytes(self._buffer[:end])
            out.append(content if len(content) <= self.max_bytes else Oversized(len(content), content[:HEADER_BYTES]))
            self._in_frame = False
            self._buffer.clear()
            return pos + (end + len(END_BLOCK) - before)
        self._scan_from = max(0, len(self._buffer) - 1)  # an end block may straddle two reads
        if len(self._buffer) > self.max_bytes + 1:
            self._start_discarding()
        return len(data)

    def _start_discarding(self) -> None:
        """Switch to dropping bytes: keep the head for the ACK and a trailing 0x1C that may begin the end."""
        keep = 1 if self._buffer.endswith(END_BLOCK[:1]) else 0
        self._size = len(self._buffer) - keep
        self._head = bytes(self._buffer[:min(HEADER_BYTES, self._size)])
        self._carry = bytes(self._buffer[len(self._buffer) - keep:])
        self._buffer.clear()
        self._discarding = True

    def _discard(self, data: bytes, pos: int, out: list[bytes | Oversized]) -> int:
        carried = len(self._carry)
        chunk = self._carry + data[pos:]
        end = chunk.find(END_BLOCK)
        if end < 0:
            keep = 1 if chunk.endswith(END_BLOCK[:1]) else 0
            self._size += len(chunk) - keep
            self._carry = chunk[len(chunk) - keep:]
            return len(data)
        self._size += end
        out.append(Oversized(self._size, self._head))
        self._in_frame = self._discarding = False
        self._carry, self._head = b"", b""
        return pos + end + len(END_BLOCK) - carried


# --- options ---------------------------------------------------------------------------------------


def parse_address(url: str, where: str, *, listening: bool) -> tuple[str, int]:
    """``mllp://HOST:PORT`` → (host, port). Port 0 (any free port) is allowed only for a listener."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError([(where, f"invalid MLLP URL {url!r}: {exc}")]) from None
    if parts.scheme.lower() not in ("mllp", "mllps") or not parts.hostname:
        raise ConfigError([(where, f"expected mllp://HOST:PORT or mllps://HOST:PORT, got {url!r}")])
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError([(where, f"an MLLP URL has no path or query: {url!r}")])
    if port is None:
        port = DEFAULT_PORT
    if port == 0 and not listening:
        raise ConfigError([(where, f"a sender needs a real port, got {url!r}")])
    return parts.hostname, port


def number_option(options: Mapping[str, Any], key: str, default: float, where: str, *,
                  minimum: float = 0.0, whole: bool = False) -> Any:
    """Read a numeric option with a clear error naming the option when it is not a number."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        kind = "a whole number" if whole else "a number"
        raise ConfigError([(f"{where}.options.{key}", f"expected {kind}, got {value!r}")])
    if value < minimum:
        raise ConfigError([(f"{where}.options.{key}", f"must be at least {minimum}, got {value!r}")])
    return value


def choice_option(options: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    value = options.get(key, choices[0])
    if value not in choices:
        raise ConfigError([(f"{where}.options.{key}", f"expected one of {', '.join(choices)}, got {value!r}")])
    return str(value)


# --- listener --------------------------------------------------------------------------------------

ORIGINAL = {"ok": "AA", "error": "AE", "reject": "AR", "blocked": "AR"}
# A policy block is an application reject even in enhanced mode: the message *was* committed (CR would
# say it was not), but the receiving application refuses it.
ENHANCED = {"ok": "CA", "error": "CE", "reject": "CR", "blocked": "AR"}
MAX_UNANSWERED = 64
"""Frames one connection may have waiting for their answers before the listener stops reading it (a
sender that does not wait for its ACKs): what a connection holds stays bounded."""


class MLLPSource:
    """The ``mllp``/``mllps`` channel source. ``port`` is the bound port once ``start()`` returned.

    Each connection is an asyncio protocol (:class:`_Connection`): frames are cut from the bytes as they
    arrive, committed in batches on the committing thread (group commit: one transaction, one fsync
    for every frame that arrived meanwhile) and answered in their connection's order. The per-frame
    work on the event loop is only the framing, the MSH read and the ACK, which is what lets one
    listener keep up with dozens of senders.
    """

    def __init__(self, ctx: SourceContext):
        self.ctx = ctx
        where = f"channels.{ctx.channel}"
        self.host, self.port = parse_address(ctx.url, f"{where}.source", listening=True)
        self.scheme = ctx.url.split(":", 1)[0].lower()
        opts = ctx.options
        self.ack_mode = choice_option(opts, "ack_mode", ("auto", "original", "commit"), where)
        self.idle_timeout = float(number_option(opts, "idle_timeout_seconds", 300, where, minimum=0.01))
        self.max_connections = int(number_option(opts, "max_connections", 100, where, minimum=1, whole=True))
        self.max_per_peer = int(number_option(opts, "max_connections_per_peer", 50, where, minimum=1, whole=True))
        self.frame_timeout = float(number_option(opts, "frame_timeout_seconds", 30, where, minimum=0.01))
        self.submit_threads = int(number_option(opts, "submit_threads", 1, where, minimum=1, whole=True))
        self.policy_ack = bool(opts.get("policy_ack", True))
        # several nodes on one host share the port (SO_REUSEPORT: the kernel spreads connections)
        self.reuse_port = bool(opts.get("reuse_port", False))
        self.handshake_timeout = float(number_option(opts, "handshake_timeout_seconds", 10, where, minimum=0.01))
        self.tls = mllp_tls.server_context(opts, ctx.config_dir, where) if self.scheme == "mllps" else None
        self.guard = ConnectionGuard(ctx.channel, self.max_connections, self.max_per_peer)
        self._open: set[_Connection] = set()
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._flusher: ThreadPoolExecutor | None = None
        self._policy_pool: ThreadPoolExecutor | None = None
        self._commits: _ThreadBatcher | None = None
        self._verdicts: _ThreadBatcher | None = None
        self._full_watch: asyncio.TimerHandle | None = None
        self._read_view = memoryview(bytearray(READ_CHUNK))  # every connection's reads (one loop thread)
        self.paused_full = 0  # how many times reading stopped because the intake was full (tests)

    # lifecycle -----------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether the port is open and accepting (alert rule ``listener_down`` and health read it)."""
        server, thread = self._server, self._thread
        return bool(server is not None and thread is not None and thread.is_alive() and server.is_serving())

    def start(self) -> None:
        """Bind and listen; returns once connections are accepted, or raises why it could not bind."""
        self._pool = ThreadPoolExecutor(self.submit_threads, thread_name_prefix=f"mllp-submit-{self.ctx.channel}")
        self._policy_pool = ThreadPoolExecutor(1, thread_name_prefix=f"mllp-policy-{self.ctx.channel}")
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix=f"mllp-flush-{self.ctx.channel}")
        self._thread = threading.Thread(target=self._run, name=f"mllp-{self.ctx.channel}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._pool.shutdown(wait=False)
            self._policy_pool.shutdown(wait=False)
            self._flusher.shutdown(wait=False)
            raise self._start_error
        log.info("channel %s: %s listening on %s:%d", self.ctx.channel, self.scheme, self.host, self.port)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        assert self._pool is not None and self._policy_pool is not None
        self._commits = _ThreadBatcher(loop, self._pool, self._submit_many, workers=self.submit_threads,
                                       run_now=self._submit_now if self.ctx.submit_now is not None else None,
                                       flusher=self._flusher)
        self._verdicts = _ThreadBatcher(loop, self._policy_pool, self._evaluate_many)
        accept: Callable[[], asyncio.Protocol] = (lambda: _Connection(self)) if self.tls is None \
            else (lambda: _HoldForHandshake(self))
        try:
            listen = loop.create_server(accept, self.host, self.port, reuse_port=self.reuse_port or None)
            self._server = loop.run_until_complete(listen)
        except OSError as exc:
            self._start_error = BridgeError(
                f"channel {self.ctx.channel}: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}")
            self._ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for commits already under way."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)
        if self._policy_pool is not None:
            self._policy_pool.shutdown(wait=True)
        log.info("channel %s: %s listener stopped", self.ctx.channel, self.scheme)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            connection.close()  # a frame not yet answered is sent again by its sender
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)

    # connections ---------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections holding a slot right now (a TLS one from the start of its handshake)."""
        return self.guard.total

    def _admit(self, host: str) -> bool:
        """Take a slot for a connection from ``host`` or refuse it (closed at once, never queued):
        the per-peer limit and the full cap's fairness are :class:`ConnectionGuard`'s."""
        return self.guard.admit(host, self._open)

    async def _serve_tls(self, transport: asyncio.Transport) -> None:
        """Handshake ourselves (asyncio would drop a failed handshake silently), then converse."""
        host = _peer_host(transport.get_extra_info("peername"))
        peer = _peer_text(transport.get_extra_info("peername"))
        if not self._admit(host):  # a connection in its handshake holds a slot from here on
            transport.abort()
            return
        connection = _Connection(self, counted=True)
        connection.host = host
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(transport, connection, self.tls, server_side=True,
                                          ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            secure = None
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.warning("channel %s: TLS handshake from %s failed: %s", self.ctx.channel, peer,
                        getattr(exc, "reason", None) or type(exc).__name__)
            secure = None
        if secure is None:  # failed, cancelled, or the peer went away during the handshake
            connection._release()  # once: asyncio may already have called connection_lost, which releases too
            transport.abort()
            return
        connection.connection_made(secure)

    # back-pressure -------------------------------------------------------------------------------

    def intake_full(self) -> bool:
        """The intake cannot take more now (an intake journal at its bound): stop reading every
        connection, and look again every 50 ms until it can."""
        full = self.ctx.intake_full
        if full is None or not full():
            return False
        if self._full_watch is None and self._loop is not None:
            self.paused_full += 1
            log.warning("channel %s: the intake journal is full; not reading until the mover catches up",
                        self.ctx.channel)
            self._full_watch = self._loop.call_later(0.05, self._check_full)
        return True

    def _check_full(self) -> None:
        self._full_watch = None
        full = self.ctx.intake_full
        if full is not None and full():
            assert self._loop is not None
            self._full_watch = self._loop.call_later(0.05, self._check_full)
            return
        log.info("channel %s: the intake journal has room again; reading", self.ctx.channel)
        for connection in list(self._open):
            if connection.transport is not None and not connection.closed:
                connection._pace()

    # frames --------------------------------------------------------------------------------------

    def _take(self, connection: _Connection, item: bytes | Oversized) -> _Frame:
        """Start one frame on its way: answered at once when it cannot be stored, else committed
        (and judged by the policy gates beside the commit, when one may apply)."""
        pending = _Frame(item)
        if isinstance(item, Oversized):
            log.warning("channel %s: refused a frame of at least %d bytes from %s (limit %d)",
                        self.ctx.channel, item.size, connection.peer, self.ctx.max_message_bytes)
            pending.answer = self._ack(item.head, "reject", f"message of at least {item.size} bytes exceeds the "
                                       f"limit of {self.ctx.max_message_bytes} bytes; it was not stored")
            return pending
        if not item.strip():
            pending.answer = self._ack(item, "reject", "empty MLLP frame; nothing was stored")
            return pending
        pending.msh, pending.problem = _read_msh(item)
        header = self.ctx.peek(item) if self.ctx.peek is not None and pending.problem is None else None
        assert self._commits is not None and self._verdicts is not None
        if self._judged(pending, header):
            pending.waiting += 1
            self._verdicts.add(item, lambda result: self._settle(connection, pending, "verdict", result))
        self._commits.add((item, connection.origin, header),
                          lambda result: self._settle(connection, pending, "receipt", result))
        return pending

    def _judged(self, pending: _Frame, header: MessageHeader | None) -> bool:
        """Whether a policy verdict is wanted before the ACK: never for an unreadable frame, and not
        when the header alone shows that no policy judges such a message (an ADT for a gate that
        judges prescriptions), which spares the policy thread a decode per frame."""
        if self.ctx.evaluate is None or not self.policy_ack or pending.problem is not None:
            return False
        return header is None or self.ctx.policy_applies is None or self.ctx.policy_applies(header)

    def _settle(self, connection: _Connection, pending: _Frame, what: str, result: Any) -> None:
        setattr(pending, what, result)
        pending.waiting -= 1
        if pending.waiting == 0:
            pending.answer = self._answer(pending, connection.peer)
            connection.flush()

    def _answer(self, pending: _Frame, peer: str) -> bytes:
        """The ACK frame for a frame whose commit (and verdict, if asked for) came back."""
        item, msh, receipt = pending.raw, pending.msh, pending.receipt
        assert isinstance(item, bytes)
        if isinstance(receipt, StoreError):
            log.error("channel %s: store failed; answering with an error ACK", self.ctx.channel)
            return self._ack(item, "error", "message could not be stored; send it again later", msh)
        if isinstance(receipt, BaseException):  # an intake bug must not kill the connection; the sender retries
            log.error("channel %s: submit raised %s", self.ctx.channel, type(receipt).__name__)
            return self._ack(item, "error", "internal error while storing the message; send it again later", msh)
        if not receipt.accepted:
            return self._ack(item, "reject", f"message refused: {receipt.error or 'not accepted'}", msh)
        if pending.problem is not None:
            log.warning("channel %s: message %s from %s has no readable MSH", self.ctx.channel,
                        receipt.message_id, peer)
            return self._ack(item, "reject", f"cannot read the message: {pending.problem} "
                                             f"(kept as message {receipt.message_id} for inspection)", msh)
        decision = pending.verdict
        if decision is not None and not isinstance(decision, BaseException) and decision.outcome == "BLOCK":
            log.info("channel %s: message %s blocked by policy; answered AR", self.ctx.channel, receipt.message_id)
            return self._ack(item, "blocked", f"{decision.explain()} (kept as message {receipt.message_id})", msh)
        return self._ack(item, "ok", "duplicate of a message already received" if receipt.duplicate else "", msh)

    def _submit_many(self, items: list[tuple[bytes, Mapping[str, Any], MessageHeader | None]]) -> list[Any]:
        """Commit a batch (the committing thread). Each result is a Receipt or that frame's exception."""
        if self.ctx.submit_many is not None:
            # the header goes along only when it came from ctx.peek (the engine's intake takes it)
            return self.ctx.submit_many([(raw, origin, None) if header is None else (raw, origin, None, header)
                                         for raw, origin, header in items])
        out: list[Any] = []
        for raw, origin, _ in items:
            try:
                out.append(self.ctx.submit(raw, origin))
            except Exception as exc:
                out.append(exc)
        return out

    def _submit_now(self, items: list[tuple[bytes, Mapping[str, Any], MessageHeader | None]]) -> Any:
        """Commit a batch on the loop itself when the store can at once (see ``_ThreadBatcher``)."""
        assert self.ctx.submit_now is not None
        return self.ctx.submit_now([(raw, origin, None) if header is None else (raw, origin, None, header)
                                    for raw, origin, header in items])

    def _evaluate_many(self, raws: list[bytes]) -> list[Any]:
        """Each frame's policy decision, or the exception its evaluation raised (that frame's alone)."""
        assert self.ctx.evaluate is not None
        out: list[Any] = []
        for raw in raws:
            try:
                out.append(self.ctx.evaluate(raw))
            except Exception as exc:
                out.append(exc)
        return out

    def _ack(self, raw: bytes, outcome: str, text: str, msh: MSH | None = None) -> bytes:
        codes = ENHANCED if self._enhanced(raw if msh is None else msh) else ORIGINAL
        return frame(make_ack(raw, codes[outcome], text or None, msh=msh).encode("utf-8"))

    def _enhanced(self, raw_or_msh: bytes | MSH) -> bool:
        """Commit (C*) codes when configured, or when the sender set MSH-15 (enhanced mode) in ``auto``."""
        if self.ack_mode != "auto":
            return self.ack_mode == "commit"
        msh = raw_or_msh if isinstance(raw_or_msh, MSH) else _read_msh(raw_or_msh)[0]
        return bool(msh and msh.get(15).strip())


class _Frame:
    """One received frame on its way to its answer: it waits for its receipt (and verdict)."""

    __slots__ = ("raw", "msh", "problem", "receipt", "verdict", "waiting", "answer", "arrived")

    def __init__(self, raw: bytes | Oversized):
        self.raw = raw
        self.arrived = time.monotonic()  # for the ACK latency the engine counts (SourceContext.observe_ack)
        self.msh: MSH | None = None
        self.problem: str | None = None
        self.receipt: Any = None
        self.verdict: Any = None
        self.waiting = 1
        self.answer: bytes | None = None


class _Connection(asyncio.BufferedProtocol):
    """One sender's connection: frames in, answers out in the same order.

    It reads into its listener's one read buffer (``get_buffer``/``buffer_updated``: the bytes are
    copied out at once, and all connections of a listener run on its one loop thread), not through
    ``data_received``: asyncio's plain protocol path allocates a 256 KiB bytes object per read and
    shrinks it, which cost ~8 µs per read here, more than the rest of a frame's framing.

    Reading stops while ``MAX_UNANSWERED`` frames wait for their answers or while the peer does not
    read its ACKs, so a sender that pipelines or never reads cannot make the listener buffer without
    bound. Time is counted in frames, not bytes (a peer dripping a byte a second must not hold its
    slot): a frame must end within ``frame_timeout_seconds`` of its start, and a connection that has
    completed no frame for ``idle_timeout_seconds`` (and has none started or waiting for our answer)
    is closed. Bytes outside frames reset neither clock.
    """

    def __init__(self, source: MLLPSource, *, counted: bool = False):
        self.source = source
        self.counted = counted  # a TLS connection took its slot before its handshake
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.host = "?"
        self.frames_completed = 0
        self.progress_at = 0.0  # loop time of the last completed frame, or of the connection's start
        self._frame_started: float | None = None  # loop time the frame now being received began
        self.origin: dict[str, Any] = {}
        self.framer = FrameReader(source.ctx.max_message_bytes)
        self.unanswered: collections.deque[_Frame] = collections.deque()
        self.closed = False
        self._eof = False
        self._reading = True
        self._writable = True
        self._idle: asyncio.TimerHandle | None = None
        # TLS: the secure transport may hand over bytes before start_tls returns to connection_made
        self._early: list[bytes] | None = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        source = self.source
        self.transport = transport
        self.peer = _peer_text(transport.get_extra_info("peername"))
        if not self.counted:
            self.host = _peer_host(transport.get_extra_info("peername"))
            if not source._admit(self.host):
                self.closed, self._early = True, None
                transport.close()
                return
            self.counted = True
        source._open.add(self)
        self.origin = {"transport": source.scheme, "peer": self.peer}
        client = mllp_tls.peer_name(transport.get_extra_info("ssl_object"))
        if client:
            self.origin["tls_client"] = client
        loop = asyncio.get_running_loop()
        self.progress_at = loop.time()
        self._idle = loop.call_later(source.idle_timeout, self._check_idle)
        early, self._early = self._early or [], None
        for data in early:
            self.data_received(data)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.source._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.source._read_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self._early is not None:  # not connected yet (a TLS handshake just finished): keep for later
            self._early.append(data)
            return
        if self.closed:
            return
        skipped = self.framer.skipped
        items = self.framer.feed(data)
        for item in items:
            self.unanswered.append(self.source._take(self, item))
        self._count_progress(len(items))
        if self.framer.skipped > skipped:
            log.warning("channel %s: skipped %d bytes outside MLLP frames from %s",
                        self.source.ctx.channel, self.framer.skipped - skipped, self.peer)
        self.flush()

    def _count_progress(self, completed: int) -> None:
        """Move the idle clock on completed frames only, and start the frame clock when a frame begins."""
        if completed:
            self.frames_completed += completed
            self.progress_at = self.source._loop.time() if self.source._loop else 0.0
            self._frame_started = None
        if not self.framer.pending:
            self._frame_started = None
        elif self._frame_started is None:
            loop = self.source._loop
            self._frame_started = now = loop.time() if loop else 0.0
            deadline = now + self.source.frame_timeout
            if loop is not None and (self._idle is None or self._idle.when() > deadline):
                if self._idle is not None:
                    self._idle.cancel()
                self._idle = loop.call_at(deadline, self._check_idle)

    @property
    def busy(self) -> bool:
        """A frame of this connection waits for its answer (the guard never evicts it)."""
        return bool(self.unanswered)

    def evict(self) -> None:
        """Give this connection's slot to a newcomer (:class:`ConnectionGuard`): freed at once."""
        self._release()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _release(self) -> None:
        if self.counted:
            self.source.guard.release(self.host)
            self.counted = False
        self.source._open.discard(self)

    def flush(self) -> None:
        """Write every answer that is ready at the head of the line (answers keep the frames' order)."""
        ready = []
        while self.unanswered and self.unanswered[0].answer is not None:
            ready.append(self.unanswered.popleft())
        if self.closed or self.transport is None:
            return
        if ready:
            self.transport.write(b"".join(frame.answer for frame in ready))  # type: ignore[misc]
            self._observe(ready)
        if self._eof and not self.unanswered:
            self.transport.close()
            return
        self._pace()

    def _observe(self, answered: list[_Frame]) -> None:
        """Report each answer's latency, from its frame's arrival to its ACK being written."""
        observe = self.source.ctx.observe_ack
        if observe is not None:
            now = time.monotonic()
            for frame in answered:
                observe(now - frame.arrived)

    def _pace(self) -> None:
        """Read while few frames wait and the peer reads its answers; stop reading otherwise."""
        assert self.transport is not None
        want = self._writable and len(self.unanswered) < MAX_UNANSWERED and not self._eof \
            and not self.source.intake_full()
        if want != self._reading:
            self._reading = want
            (self.transport.resume_reading if want else self.transport.pause_reading)()

    def pause_writing(self) -> None:
        self._writable = False
        self._pace()

    def resume_writing(self) -> None:
        self._writable = True
        self._pace()

    def eof_received(self) -> bool:
        """The peer finished sending: answer what it sent, then close (keep the transport open till then)."""
        self._eof = True
        return bool(self.unanswered)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self._release()
        if exc is not None:
            log.info("channel %s: connection from %s ended: %s", self.source.ctx.channel, self.peer,
                     type(exc).__name__)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _check_idle(self) -> None:
        """Close a connection whose frame outlived its deadline, or that completed none for too long."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        source = self.source
        if self._frame_started is not None:
            deadline = self._frame_started + source.frame_timeout
            if now >= deadline and self.unanswered and self._writable:
                deadline = now + min(source.frame_timeout, 1.0)  # reading paused for our slow commits: wait
            elif now >= deadline:
                log.warning("channel %s: closing the connection from %s: a frame was not completed within "
                            "%g s (%d bytes received of it)", source.ctx.channel, self.peer,
                            source.frame_timeout, self.framer.buffered)
                self.abort()
                return
        elif self.unanswered:  # waiting for our own answer is not the peer's idleness
            deadline = now + min(source.idle_timeout, 1.0)
        else:
            deadline = self.progress_at + source.idle_timeout
            if now >= deadline:
                log.info("channel %s: closing idle connection from %s (no complete frame for %g s)",
                         source.ctx.channel, self.peer, source.idle_timeout)
                self.close()
                return
        self._idle = loop.call_at(max(deadline, now + 0.01), self._check_idle)

    def abort(self) -> None:
        """Drop the connection at once (its unfinished frame is not answered; the sender resends)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()


class _ThreadBatcher:
    """Hands items to a pool thread a batch at a time and brings each result back to the event loop.

    The items that arrive while ``workers`` batches are running wait, and form the next batch, which
    starts as soon as a worker is free: a busy listener crosses threads once per batch rather than once
    per frame, and the store's group commit gets its groups (one transaction and fsync for all of them).
    A new batch starts at the end of the loop's turn, so the frames read in the same turn travel
    together. Results come back with one wake-up of the loop per batch: an exception in the result
    list is that item's alone; a call that raised is every item's.

    With ``run_now`` (the commits of a store that can commit without blocking), a batch is first
    offered to ``run_now`` on the loop itself when no batch of ours is on a thread (commits keep the
    frames' order): it returns None ("not now": the batch goes to the pool as above), or the results
    and a ``wait`` that the ``flusher`` thread runs until the commit is on the disk before the results
    come back. The loop then reads and commits the next frames while the disk flushes, and threads
    meet only once per flush: that is what lets many senders share each flush.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor,
                 run_many: Callable[[list[Any]], list[Any]], *, workers: int = 1,
                 run_now: Callable[[list[Any]], Any] | None = None, flusher: ThreadPoolExecutor | None = None):
        self._loop = loop
        self._pool = pool
        self._run_many = run_many
        self._run_now = run_now
        self._flusher = flusher
        self._workers = workers
        self._waiting: list[tuple[Any, Callable[[Any], None]]] = []
        self._running = 0
        self._scheduled = False
        self.batches = 0  # how many batches ran (tests and diagnostics)
        self.batches_now = 0  # of which committed on the loop

    def add(self, item: Any, done: Callable[[Any], None]) -> None:
        """Queue ``item``; ``done(result)`` is called on the loop when its batch comes back."""
        self._waiting.append((item, done))
        if not self._scheduled and self._running < self._workers:
            self._scheduled = True
            self._loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if not self._waiting or self._running >= self._workers:
            return
        batch, self._waiting = self._waiting, []
        self.batches += 1
        if self._running == 0 and self._now(batch):
            return
        self._running += 1
        self._pool.submit(self._run, batch)

    def _now(self, batch: list[tuple[Any, Callable[[Any], None]]]) -> bool:
        """Commit on the loop if the store can at once; False sends the batch to the pool."""
        if self._run_now is None or self._flusher is None:
            return False
        try:
            committed = self._run_now([item for item, _ in batch])
        except Exception:  # the careful path on the pool reports what went wrong, item by item
            return False
        if committed is None:
            return False
        results, wait = committed
        self.batches_now += 1
        if wait is None:
            self._deliver(batch, results)
        elif hasattr(wait, "when_durable"):  # an intake journal flushes on its own thread (SourceContext)
            wait.when_durable(self._loop, self._deliver, batch, results)
        else:
            self._flusher.submit(self._after_flush, batch, results, wait)
        return True

    def _after_flush(self, batch: list[tuple[Any, Callable[[Any], None]]], results: list[Any],
                     wait: Callable[[], None]) -> None:
        """On the flusher thread: once the commit is on the disk, hand the results to the loop; if
        the disk refused it, every stored item's sender gets that error instead."""
        try:
            wait()
        except Exception as exc:
            results = [result if isinstance(result, BaseException) else exc for result in results]
        try:
            self._loop.call_soon_threadsafe(self._deliver, batch, results)
        except RuntimeError:  # the listener stopped meanwhile: these senders get no answer and resend
            pass

    def _run(self, batch: list[tuple[Any, Callable[[Any], None]]]) -> None:
        """On the pool thread: run the batch, then hand the results to the loop."""
        try:
            results = list(self._run_many([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except Exception as exc:  # the whole batch failed: every item gets the error
            results = [exc] * len(batch)
        try:
            self._loop.call_soon_threadsafe(self._finish, batch, results)
        except RuntimeError:  # the listener stopped meanwhile: these senders get no answer and resend
            pass

    def _finish(self, batch: list[tuple[Any, Callable[[Any], None]]], results: list[Any]) -> None:
        self._running -= 1
        if self._waiting:  # the next batch first, so its commit overlaps the writing of these answers
            self._start()
        self._deliver(batch, results)

    @staticmethod
    def _deliver(batch: list[tuple[Any, Callable[[Any], None]]], results: list[Any]) -> None:
        for (_, done), result in zip(batch, results):
            done(result)


class _HoldForHandshake(asyncio.Protocol):
    """A fresh TCP connection on a TLS listener: reading is paused at once, so no byte of the
    ClientHello is consumed before ``start_tls`` takes the connection over."""

    def __init__(self, source: MLLPSource):
        self.source = source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self.source._serve_tls(transport))
        self.source._handshakes.add(task)
        task.add_done_callback(self.source._handshakes.discard)


def _read_msh(raw: bytes) -> tuple[MSH | None, str | None]:
    try:
        return parse_msh(raw[:HEADER_BYTES]), None
    except DecodeError as exc:
        return None, str(exc)


def _peer_host(peer: Any) -> str:
    """The source address a peer is counted by (its port changes with every connection)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


# --- sender ----------------------------------------------------------------------------------------


class _ClosedBeforeAck(TransientDeliveryError):
    """The peer closed a connection before sending any ACK byte (a reused connection may be stale)."""


class MLLPClient:
    """One blocking MLLP connection, opened on first use and reopened after any failure.

    Not thread-safe by itself: :class:`MLLPDestination` lends each client to one thread at a time.
    """

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, connect_timeout: float = 10.0,
                 ack_timeout: float = 30.0):
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.tls = tls
        self.server_hostname = server_hostname or host
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self._sock: socket.socket | None = None

    def exchange(self, payload: bytes) -> bytes:
        """Send one message and return the content of the ACK frame; raises TransientDeliveryError."""
        reused = self._usable()
        if not reused:
            self.close()
            self._connect()
        try:
            return self._round_trip(payload)
        except _ClosedBeforeAck:
            self.close()
            if not reused:
                raise
        except BaseException:
            self.close()
            raise
        log.info("MLLP peer %s closed an idle connection; sending again on a new one", self.address)
        self._connect()
        try:
            return self._round_trip(payload)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _usable(self) -> bool:
        """Is the kept-open connection still there? An idle socket that turns readable was closed
        by the peer (or holds stray bytes); a TLS socket may only hold a session ticket."""
        sock = self._sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        sock.setblocking(False)
        try:
            sock.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.ack_timeout)
        return False

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError:
            raise TransientDeliveryError(
                f"cannot connect to {self.address}: no answer within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise TransientDeliveryError(f"cannot connect to {self.address}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self._handshake(sock)
        self._sock = sock

    def _handshake(self, sock: socket.socket) -> socket.socket:
        assert self.tls is not None
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.server_hostname)
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            sock.close()
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
            raise TransientDeliveryError(f"TLS handshake with {self.address} failed: {reason}") from None

    def _round_trip(self, payload: bytes) -> bytes:
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + self.ack_timeout
        try:
            sock.settimeout(self.ack_timeout)
            sock.sendall(frame(payload))
        except TimeoutError:
            raise TransientDeliveryError(f"sending to {self.address} timed out after {self.ack_timeout:g} s") from None
        except OSError as exc:
            raise _ClosedBeforeAck(f"connection to {self.address} failed while sending: "
                                   f"{exc.strerror or type(exc).__name__}") from None
        return self._read_ack(sock, deadline)

    def _read_ack(self, sock: socket.socket, deadline: float) -> bytes:
        reader = FrameReader(MAX_ACK_BYTES)
        received = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientDeliveryError(f"no ACK from {self.address} within {self.ack_timeout:g} s")
            try:
                sock.settimeout(remaining)
                data = sock.recv(READ_CHUNK)
            except TimeoutError:
                raise TransientDeliveryError(f"no ACK from {self.address} within {self.ack_timeout:g} s") from None
            except OSError as exc:
                error = _ClosedBeforeAck if received == 0 else TransientDeliveryError
                raise error(f"connection to {self.address} failed while waiting for the ACK: "
                            f"{exc.strerror or type(exc).__name__}") from None
            if not data:
                error = _ClosedBeforeAck if received == 0 else TransientDeliveryError
                raise error(f"{self.address} closed the connection without a complete ACK")
            received += len(data)
            items = reader.feed(data)
            if items:
                if len(items) > 1 or reader.pending:
                    self.close()  # more than one answer: out of step, start clean next time
                if isinstance(items[0], Oversized):
                    raise TransientDeliveryError(f"ACK from {self.address} is larger than {MAX_ACK_BYTES} bytes")
                return items[0]


class MLLPDestination:
    """The ``mllp``/``mllps`` destination: a small pool of kept-open connections, ACKs judged."""

    def __init__(self, ctx: DestinationContext):
        where = f"destinations.{ctx.name}"
        self.host, self.port = parse_address(ctx.url, f"{where}.url", listening=False)
        self.address = f"{self.host}:{self.port}"
        opts = ctx.options
        self.ar_policy = choice_option(opts, "ar", ("dead", "retry"), where)
        connect_timeout = float(number_option(opts, "connect_timeout_seconds", 10, where, minimum=0.01))
        ack_timeout = float(number_option(opts, "ack_timeout_seconds", 30, where, minimum=0.01))
        size = int(number_option(opts, "max_connections", 1, where, minimum=1, whole=True))
        self.wait_seconds = connect_timeout + ack_timeout
        tls = None
        if ctx.url.split(":", 1)[0].lower() == "mllps":
            tls = mllp_tls.client_context(opts, ctx.config_dir, where)
        self._idle: queue.LifoQueue[MLLPClient] = queue.LifoQueue()
        self._all = [MLLPClient(self.host, self.port, tls=tls, server_hostname=opts.get("server_hostname"),
                                connect_timeout=connect_timeout, ack_timeout=ack_timeout) for _ in range(size)]
        for client in self._all:
            self._idle.put(client)

    def send(self, delivery: Delivery) -> str:
        expected = _control_id(delivery.payload)
        with self._borrow() as client:
            answer = client.exchange(delivery.payload)
            try:
                return self.judge(answer, expected)
            except TransientDeliveryError:
                client.close()  # an unreadable or mismatched answer: do not trust this connection
                raise

    def judge(self, answer: bytes, expected_control_id: str | None) -> str:
        """Turn an ACK into the timeline text, or the delivery error the deliverer acts on."""
        try:
            code, control_id, text = ack_code_of(answer)
        except DecodeError as exc:
            raise TransientDeliveryError(f"unreadable ACK from {self.address}: {exc}") from None
        if expected_control_id and control_id and control_id != expected_control_id:
            raise TransientDeliveryError(
                f"ACK from {self.address} acknowledges control id {control_id}, not {expected_control_id}")
        if code in ("AA", "CA"):
            return f"{code} from {self.address}"
        reason = f"{code} from {self.address}: {text or 'no reason given'}"
        if code in ("AR", "CR") and self.ar_policy == "dead":
            raise PermanentDeliveryError(reason)
        raise TransientDeliveryError(reason)

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[MLLPClient]:
        try:
            client = self._idle.get(timeout=self.wait_seconds)
        except queue.Empty:
            raise TransientDeliveryError(
                f"all {len(self._all)} connection(s) to {self.address} stayed busy for {self.wait_seconds:g} s") from None
        try:
            yield client
        finally:
            self._idle.put(client)

    def close(self) -> None:
        for client in self._all:
            client.close()


def _control_id(payload: bytes) -> str | None:
    try:
        return parse_msh(payload[:HEADER_BYTES]).control_id or None
    except DecodeError:
        return None


# --- registration ----------------------------------------------------------------------------------


def _configure_send(parser: Any) -> None:
    from .mllp_send import configure

    configure(parser)


def _run_send(args: Any) -> int:
    from .mllp_send import run

    return run(args)


_TLS_FILES = (
    OptionSpec("cert_file", "certificate, PEM (mllps; a listener's own, or a sender's client certificate)",
               kind="string"),
    OptionSpec("key_file", "private key, PEM (mllps)", kind="string"),
    OptionSpec("ca_file", "CA certificates, PEM (mllps: to verify the peer)", kind="string"),
)
SOURCE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("ack_mode", "ACK style: auto (as the message asks), original (AA/AE/AR) or commit (CA/CE/CR)",
               kind="string", default="auto", choices=("auto", "original", "commit")),
    OptionSpec("idle_timeout_seconds", "close a connection that has completed no frame for this long (bytes that"
               " complete no frame do not count)", kind="number", default=300),
    OptionSpec("handshake_timeout_seconds", "TLS handshake limit (mllps)", kind="number", default=10),
    OptionSpec("max_connections", "connections accepted at once; when full, a connection that has completed no"
               " frame, from the address holding the most, gives way to a newcomer from an address holding"
               " fewer", kind="integer", default=100),
    OptionSpec("max_connections_per_peer", "connections one source address may hold at once (more are refused)",
               kind="integer", default=50),
    OptionSpec("frame_timeout_seconds", "a frame must end within this long of its start byte, or the connection"
               " is closed", kind="number", default=30),
    OptionSpec("submit_threads", "threads committing received messages", kind="integer", default=1),
    OptionSpec("policy_ack", "answer AR with the reasons when a policy blocks the message", kind="boolean",
               default=True),
    OptionSpec("reuse_port", "let several bridge nodes on one host listen on this port (SO_REUSEPORT); the"
               " kernel spreads the connections among them", kind="boolean", default=False),
    *_TLS_FILES,
    OptionSpec("require_client_cert", "mutual TLS: refuse senders without a certificate signed by ca_file",
               kind="any", default=False),
)
DESTINATION_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("ar", "what an AR/CR answer means: dead (dead-letter now) or retry", kind="string", default="dead",
               choices=("dead", "retry")),
    OptionSpec("connect_timeout_seconds", "seconds to connect", kind="number", default=10),
    OptionSpec("ack_timeout_seconds", "seconds to wait for the ACK", kind="number", default=30),
    OptionSpec("max_connections", "kept-open connections to the receiver", kind="integer", default=1),
    OptionSpec("server_hostname", "name to check the receiver's certificate against (mllps)", kind="string"),
    *_TLS_FILES,
    OptionSpec("verify", "verify the receiver's certificate (mllps; never turn off in production)",
               kind="any", default=True),
)

TRANSPORTS: tuple[TransportSpec, ...] = (
    TransportSpec(scheme="mllp", source=MLLPSource, destination=MLLPDestination,
                  description="HL7v2 over MLLP: commit-ACK listener and ACK-judging sender",
                  source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
    TransportSpec(scheme="mllps", source=MLLPSource, destination=MLLPDestination,
                  description="HL7v2 over MLLP with TLS (optionally mutual TLS)",
                  source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
)

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(name="send", help="send HL7v2 messages over MLLP and print each ACK",
                configure=_configure_send, run=_run_send),
)
