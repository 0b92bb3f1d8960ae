"""MLLP transports (``mllp://HOST:PORT`` and ``mllps://HOST:PORT`` with TLS): a listener and a sender.

MLLP wraps each HL7v2 message in a frame: a start byte 0x0B, the message, then 0x1C 0x0D. The
sender waits for an acknowledgement frame before it sends the next message on that connection.

Listener (channel ``source:``): an asyncio server in its own thread, because the engine is threaded.
Each connection is read in chunks and framed incrementally, so partial reads, several frames in one
read and bytes before a start byte (skipped) are all handled without buffering more than the
channel's ``max_message_bytes``. Each frame is committed through ``ctx.submit`` in a thread pool (a
SQLite commit blocks on fsync; one slow commit must not stall other connections), and only then
answered: AA/CA when stored (or already stored: a resend is a duplicate the intake recognises), AE/CE
when the store failed, AR/CR when the message cannot be read or is refused (too large, no MSH). A
connection's frames are answered in order, one at a time, so per-sender ordering is preserved.

Sender (destination ``url:``): keeps its connections open across sends (a small pool, one by
default), waits for the ACK with a deadline and judges it: AA/CA delivered; AE/CE transient; AR/CR
permanent (or transient with ``ar: retry``). A timeout, reset or unreadable answer closes that
connection, so the next send starts on a fresh one; the deliverer's retry policy does the rest.

``bridge send --to mllp://HOST:PORT FILE…`` (module ``mllp_send``) is the same sender for people.
Options are documented in ``docs/mllp.md``; TLS options are read by ``mllp_tls``.
"""

from __future__ import annotations

import asyncio
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

GATHER_SECONDS = 0.0002
ORIGINAL = {"ok": "AA", "error": "AE", "reject": "AR", "blocked": "AR"}
# A policy block is an application reject even in enhanced mode: the message *was* committed (CR would
# say it was not), but the receiving application refuses it.
ENHANCED = {"ok": "CA", "error": "CE", "reject": "CR", "blocked": "AR"}


class MLLPSource:
    """The ``mllp``/``mllps`` channel source. ``port`` is the bound port once ``start()`` returned."""

    def __init__(self, ctx: SourceContext):
        self.ctx = ctx
        where = f"channels.{ctx.channel}"
        self.host, self.port = parse_address(ctx.url, f"{where}.source", listening=True)
        self.scheme = ctx.url.split(":", 1)[0].lower()
        opts = ctx.options
        self.ack_mode = choice_option(opts, "ack_mode", ("auto", "original", "commit"), where)
        self.idle_timeout = float(number_option(opts, "idle_timeout_seconds", 300, where, minimum=0.01))
        self.max_connections = int(number_option(opts, "max_connections", 100, where, minimum=1, whole=True))
        self.submit_threads = int(number_option(opts, "submit_threads", 1, where, minimum=1, whole=True))
        self.policy_ack = bool(opts.get("policy_ack", True))
        # several nodes on one host share the port (SO_REUSEPORT: the kernel spreads connections)
        self.reuse_port = bool(opts.get("reuse_port", False))
        self.handshake_timeout = float(number_option(opts, "handshake_timeout_seconds", 10, where, minimum=0.01))
        self.tls = mllp_tls.server_context(opts, ctx.config_dir, where) if self.scheme == "mllps" else None
        self.connections = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._policy_pool: ThreadPoolExecutor | None = None
        # Frames cross to the committing thread, and to the policy thread, a batch at a time.
        self._commits = _Batched(lambda: self._pool, self._submit_many)
        self._verdicts = _Batched(lambda: self._policy_pool, self._evaluate_many, gather=False)

    # lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and listen; returns once connections are accepted, or raises why it could not bind."""
        self._pool = ThreadPoolExecutor(self.submit_threads, thread_name_prefix=f"mllp-submit-{self.ctx.channel}")
        self._policy_pool = ThreadPoolExecutor(1, thread_name_prefix=f"mllp-policy-{self.ctx.channel}")
        self._thread = threading.Thread(target=self._run, name=f"mllp-{self.ctx.channel}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._pool.shutdown(wait=False)
            self._policy_pool.shutdown(wait=False)
            raise self._start_error
        log.info("channel %s: %s listening on %s:%d", self.ctx.channel, self.scheme, self.host, self.port)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            if self.tls is None:
                listen = asyncio.start_server(self._serve_plain, self.host, self.port, limit=READ_CHUNK,
                                              reuse_port=self.reuse_port or None)
            else:
                listen = loop.create_server(lambda: _HoldForHandshake(self), self.host, self.port,
                                            reuse_port=self.reuse_port or None)
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
        if self._policy_pool is not None:
            self._policy_pool.shutdown(wait=True)
        log.info("channel %s: %s listener stopped", self.ctx.channel, self.scheme)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # connections ---------------------------------------------------------------------------------

    def _admit(self, peer: str) -> bool:
        """The connection cap: refuse (close at once) rather than queue beyond ``max_connections``."""
        if self.connections < self.max_connections:
            return True
        log.warning("channel %s: refused a connection from %s: %d connections already open",
                    self.ctx.channel, peer, self.connections)
        return False

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Count the connection and track its task so ``stop()`` can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            yield
        finally:
            self.connections -= 1
            self._tasks.discard(task)

    async def _serve_plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_text(writer.get_extra_info("peername"))
        if not self._admit(peer):
            writer.close()
            return
        with self._slot():
            await self._session(reader, writer, peer)

    async def _serve_tls(self, transport: asyncio.Transport) -> None:
        """Handshake ourselves (asyncio would drop a failed handshake silently), then converse."""
        peer = _peer_text(transport.get_extra_info("peername"))
        if not self._admit(peer):
            transport.abort()
            return
        with self._slot():
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            try:
                secure = await loop.start_tls(transport, protocol, self.tls, server_side=True,
                                              ssl_handshake_timeout=self.handshake_timeout)
            except asyncio.CancelledError:
                transport.abort()
                return
            except (OSError, TimeoutError, ConnectionError) as exc:
                log.warning("channel %s: TLS handshake from %s failed: %s", self.ctx.channel, peer,
                            getattr(exc, "reason", None) or type(exc).__name__)
                transport.abort()
                return
            if secure is None:  # the peer went away during the handshake
                transport.abort()
                return
            protocol.connection_made(secure)
            writer = asyncio.StreamWriter(secure, protocol, reader, loop)
            await self._session(reader, writer, peer)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        origin = {"transport": self.scheme, "peer": peer}
        client = mllp_tls.peer_name(writer.get_extra_info("ssl_object"))
        if client:
            origin["tls_client"] = client
        try:
            await self._converse(reader, writer, origin)
        except asyncio.CancelledError:
            pass  # the listener is stopping; an unacknowledged message will be sent again
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("channel %s: connection from %s ended: %s", self.ctx.channel, peer, type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        origin: Mapping[str, Any]) -> None:
        """Read frames until the peer closes or stays idle; answer each frame after its commit."""
        framer = FrameReader(self.ctx.max_message_bytes)
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                log.info("channel %s: closing idle connection from %s", self.ctx.channel, origin["peer"])
                return
            if not data:
                return
            skipped = framer.skipped
            for item in framer.feed(data):
                writer.write(await self._answer(item, origin))
            if framer.skipped > skipped:
                log.warning("channel %s: skipped %d bytes outside MLLP frames from %s",
                            self.ctx.channel, framer.skipped - skipped, origin["peer"])
            await writer.drain()

    async def _answer(self, item: bytes | Oversized, origin: Mapping[str, Any]) -> bytes:
        """Commit one frame and build its ACK frame."""
        if isinstance(item, Oversized):
            log.warning("channel %s: refused a frame of at least %d bytes from %s (limit %d)",
                        self.ctx.channel, item.size, origin["peer"], self.ctx.max_message_bytes)
            return self._ack(item.head, "reject", f"message of at least {item.size} bytes exceeds the limit of "
                                                  f"{self.ctx.max_message_bytes} bytes; it was not stored")
        if not item.strip():
            return self._ack(item, "reject", "empty MLLP frame; nothing was stored")
        msh, problem = _read_msh(item)
        # The policy check runs beside the commit, on its own thread, so the ACK waits for the slower
        # of the two rather than for both in turn (and the committing thread keeps its SQLite cache).
        verdict = None
        if self.ctx.evaluate is not None and self.policy_ack and problem is None:
            verdict = self._verdicts(item)
            verdict.add_done_callback(_retrieve)  # a frame answered early (store error) never awaits it
        try:
            receipt = await self._commit(item, origin)
        except StoreError:
            log.error("channel %s: store failed; answering with an error ACK", self.ctx.channel)
            return self._ack(item, "error", "message could not be stored; send it again later", msh)
        except Exception as exc:  # an intake bug must not kill the connection; the sender retries
            log.error("channel %s: submit raised %s", self.ctx.channel, type(exc).__name__)
            return self._ack(item, "error", "internal error while storing the message; send it again later", msh)
        if not receipt.accepted:
            return self._ack(item, "reject", f"message refused: {receipt.error or 'not accepted'}", msh)
        if problem is not None:
            log.warning("channel %s: message %s from %s has no readable MSH", self.ctx.channel,
                        receipt.message_id, origin["peer"])
            return self._ack(item, "reject", f"cannot read the message: {problem} "
                                             f"(kept as message {receipt.message_id} for inspection)", msh)
        if verdict is not None:
            decision = await verdict
            if decision is not None and decision.outcome == "BLOCK":
                log.info("channel %s: message %s blocked by policy; answered AR", self.ctx.channel, receipt.message_id)
                return self._ack(item, "blocked", f"{decision.explain()} (kept as message {receipt.message_id})", msh)
        return self._ack(item, "ok", "duplicate of a message already received" if receipt.duplicate else "", msh)

    async def _commit(self, item: bytes, origin: Mapping[str, Any]) -> Any:
        """Group commit: frames that arrive while a commit runs are committed together in the next one.

        Every connection waits for its own frame's commit before it is acknowledged, but one
        transaction (one fsync) serves all the frames that queued meanwhile, so throughput grows with
        the number of busy connections instead of being capped by the disk's fsync rate.
        """
        if self.ctx.submit_many is None:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.ctx.submit, item, origin)
        return await self._commits((item, origin))

    def _submit_many(self, items: list[tuple[bytes, Mapping[str, Any]]]) -> list[Any]:
        assert self.ctx.submit_many is not None
        return self.ctx.submit_many([(raw, origin, None) for raw, origin in items])

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


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (asyncio would otherwise log it when the future is dropped)."""
    if not future.cancelled():
        future.exception()


class _Batched:
    """Runs ``run_many`` on a pool thread for every item that arrived while its previous call ran.

    A busy listener crosses to another thread once per batch instead of once per frame (each
    crossing costs a wake-up of the event loop). Results come back per item: an exception in the
    list fails that item's waiter alone; a call that raised fails the whole batch. ``gather`` waits a
    moment for the senders the last batch answered (worth it before an fsync, not before a policy
    check: the event loop's timer cannot wait less than a millisecond).
    """

    def __init__(self, pool: Callable[[], ThreadPoolExecutor | None], run_many: Callable[[list[Any]], list[Any]],
                 *, gather: bool = True):
        self._pool = pool
        self._run_many = run_many
        self._gather = gather
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_batch = 1

    def __call__(self, item: Any) -> asyncio.Future[Any]:
        """The future of ``item``'s result (a plain future, not a task: this runs once per frame)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            if self._gather and len(self._waiting) < self.last_batch:
                # Senders answered together by the last call reply together: give the rest of them
                # a moment (far less than one fsync) to join this batch instead of the next.
                await asyncio.sleep(GATHER_SECONDS)
            batch, self._waiting = self._waiting, []
            self.last_batch = len(batch)
            try:
                results = await loop.run_in_executor(self._pool(), self._run_many, [item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every waiter gets the error
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class _HoldForHandshake(asyncio.Protocol):
    """A fresh TCP connection on a TLS listener: reading is paused at once, so no byte of the
    ClientHello is consumed before ``start_tls`` takes the connection over."""

    def __init__(self, source: MLLPSource):
        self.source = source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self.source._serve_tls(transport))
        self.source._tasks.add(task)
        task.add_done_callback(self.source._tasks.discard)


def _read_msh(raw: bytes) -> tuple[MSH | None, str | None]:
    try:
        return parse_msh(raw[:HEADER_BYTES]), None
    except DecodeError as exc:
        return None, str(exc)


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
    OptionSpec("idle_timeout_seconds", "close a silent connection after this long", kind="number", default=300),
    OptionSpec("handshake_timeout_seconds", "TLS handshake limit (mllps)", kind="number", default=10),
    OptionSpec("max_connections", "connections accepted at once", kind="integer", default=100),
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
