"""The engine: builds sources, workers and deliverers from a config and a plugin manager, and runs them.

Everything that depends on plugins is resolved here, once (formats, transports, destinations,
policies, routers); the threads then only call the resolved objects. ``run_once`` and ``drain``
let tests and the CLI move work along deterministically without background threads.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bridge.core.config import BridgeConfig, ChannelConfig
from bridge.core.delivery import Deliverer, reply_channel
from bridge.core.delivery_lease import DeliveryLeaseKeeper
from bridge.core import redaction
from bridge.core.intake import Intake
from bridge.core.telemetry import METRICS_DIR_ENV, EngineMetrics
from bridge.core.pipeline import ChannelPlan, DestinationPlan, Processor, internal_failure
from bridge.core.plugin_manager import PluginManager
from bridge.core.router import Router
from bridge.core.store import Store, open_store
from bridge.core.store.base import DeliveryOutcome, MessageClaim, ProcessingResult
from bridge.core.workers import WorkerProcesses, lower_priority, watch_parent, worker_command
from bridge.errors import BridgeError, ConfigError, LeaseLost, StoreError
from bridge.plugin_types import Destination, DestinationContext, Receipt, Source, SourceContext

log = logging.getLogger(__name__)
CONTENT_INDEX_SECONDS = 1.0  # how far the content search may lag the store while the engine runs
CONTENT_INDEX_BATCH = 500  # rows per table in one indexing transaction: a few ms of the writer lock
STORED_AS_FAILED = "stored_as_failed"  # a result the store refused: the message was marked failed instead


def policy_settings(config: BridgeConfig, plugins: PluginManager) -> dict[str, dict[str, Any]]:
    """Each policy gets the config section its plugin registered (``policy:`` for the telehealth
    gate), plus ``config_dir``. A plugin registering exactly one policy and one section pairs them."""
    owners: dict[str, list[str]] = {}
    for info in plugins.plugins():
        for item in info.provides:
            kind, _, name = item.partition(":")
            owners.setdefault(info.name, []).append(f"{kind}:{name}")
    out: dict[str, dict[str, Any]] = {}
    for provided in owners.values():
        policies = [p.split(":", 1)[1] for p in provided if p.startswith("policy:")]
        sections = [p.split(":", 1)[1] for p in provided if p.startswith("config:")]
        for policy in policies:
            section = config.sections.get(sections[0]) if len(sections) == 1 else None
            out[policy] = {**(section or {}), "config_dir": config.config_dir}
    return out


def _maps(config: BridgeConfig, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The compiled maps a channel or destination names (config loading checked they exist)."""
    return tuple(config.maps[name] for name in names)


def build_plans(config: BridgeConfig, plugins: PluginManager) -> tuple[dict[str, ChannelPlan],
                                                                      dict[str, DestinationPlan]]:
    """What workers consult per message: each channel's format, router and maps, each destination's
    format and maps, and the implicit channels that decode destinations' replies."""
    channel_plans = {
        name: ChannelPlan(ch, plugins.format(ch.format), Router(ch.routes), _maps(config, ch.maps))
        for name, ch in config.channels.items()
    }
    destination_plans = {
        name: DestinationPlan(dest, plugins.format(dest.format or ""), _maps(config, dest.maps))
        for name, dest in config.destinations.items()
    }
    for name, plan in destination_plans.items():  # where a destination's replies are decoded
        reply = ChannelConfig(name=reply_channel(name), source="", format=plan.format.name, order_by="none")
        channel_plans.setdefault(reply.name, ChannelPlan(reply, plan.format, Router(())))
    return channel_plans, destination_plans


class Engine:
    def __init__(self, config: BridgeConfig, plugins: PluginManager, store: Store | None = None):
        self.config = config
        self.plugins = plugins
        self.store = store or open_store(config.store_url)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.work_ready = threading.Event()
        self.delivery_ready = threading.Event()
        formats = plugins.formats()
        self.metrics = EngineMetrics()
        self.intake = Intake(self.store, formats, self.work_ready, on_stored=self.metrics.received)
        self.channel_plans, self.destination_plans = build_plans(config, plugins)
        self.processor = self._make_processor(config, self.channel_plans, self.destination_plans)
        self.destinations: dict[str, Destination] = {}
        self.deliverer = self._make_deliverer(config, self.destination_plans, self.destinations)
        self.lease_keeper = DeliveryLeaseKeeper(self.store)  # one thread renews every deliverer's slow sends
        self.sources: list[Source] = []
        self.sources_by_channel: dict[str, Source] = {}  # what bridge.core.health asks whether it listens
        self.scheduler: Any = None
        self.alerts: Any = None
        self.on_reload: list[Callable[[BridgeConfig], None]] = []
        """Called with the new configuration after a reload (the admin app beside the engine reads it)."""
        self.worker_processes: WorkerProcesses | None = None
        self.delivery_processes: WorkerProcesses | None = None  # engine.delivery_processes
        self.journals: dict[str, Any] = {}  # channel -> JournalWriter (channels with intake_journal)
        self.journal_mover: WorkerProcesses | None = None
        redaction.install()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- building ------------------------------------------------------------------------------

    def _make_processor(self, config: BridgeConfig, channel_plans: Mapping[str, ChannelPlan],
                        destination_plans: Mapping[str, DestinationPlan]) -> Processor:
        processor = Processor(self.store, channel_plans, destination_plans, self.plugins.policies(), config.config_dir)
        processor.policy_settings = policy_settings(config, self.plugins)
        return processor

    def _make_deliverer(self, config: BridgeConfig, destination_plans: Mapping[str, DestinationPlan],
                        transports: Mapping[str, Destination]) -> Deliverer:
        return Deliverer(self.store, transports, {n: d.retry for n, d in config.destinations.items()},
                         formats={n: p.format.name for n, p in destination_plans.items()})

    def open_destinations(self) -> None:
        for name, dest in self.config.destinations.items():
            self.destinations[name] = self._open_destination(self.config, name)

    def _open_destination(self, config: BridgeConfig, name: str) -> Destination:
        dest = config.destinations[name]
        ctx = DestinationContext(url=dest.url or "", name=name, options=dest.options, config_dir=config.config_dir)
        if dest.profile:
            return self.plugins.destination_profiles()[dest.profile].make_destination(ctx)
        scheme = (dest.url or "").split(":", 1)[0].lower()
        spec = self.plugins.transports().get(scheme)
        if spec is None or spec.destination is None:
            raise ConfigError([(f"destinations.{name}.url", f"no destination transport for {scheme!r}")])
        return spec.destination(ctx)

    def reload(self, config: BridgeConfig) -> dict[str, list[str]]:
        """Apply a new configuration's routes, destinations and maps while sources keep listening
        (bridge.core.reload); raises ReloadRefused, changing nothing, for anything else."""
        from bridge.core import reload as reloading

        changes = reloading.destination_changes(self.config, config)
        problems = reloading.restart_only_changes(self.config, config)
        problems += reloading.waiting_rows(self.store, changes["removed"])
        if problems:
            raise reloading.ReloadRefused(problems)
        transports_here = bool(self.destinations or self._threads)  # not in a parent whose children deliver
        opened = self._open_for_reload(config, changes["added"] + changes["changed"]) if transports_here else {}
        channel_plans, destination_plans = build_plans(config, self.plugins)
        replaced = {n: t for n, t in self.destinations.items() if n in changes["removed"] + changes["changed"]}
        transports = {**{n: t for n, t in self.destinations.items() if n not in replaced}, **opened}
        summary = {"channels": [n for n in config.channels
                                if self.config.channels[n].routes != config.channels[n].routes
                                or self.config.channels[n].maps != config.channels[n].maps], **changes}
        # the swap: each attribute is one assignment, read afresh by the next batch
        self.processor = self._make_processor(config, channel_plans, destination_plans)
        self.deliverer = self._make_deliverer(config, destination_plans, transports)
        self.config, self.channel_plans, self.destination_plans, self.destinations = (
            config, channel_plans, destination_plans, transports)
        reloading.close_later(replaced)
        if self.alerts is not None:  # its rules cannot change by reload; the destinations they watch can
            self.alerts.config = config
        for listener in self.on_reload:
            listener(config)
        for children in self._child_processes():
            children.signal_all(signal.SIGHUP)  # the children reload the same file themselves
        return summary

    def _open_for_reload(self, config: BridgeConfig, names: list[str]) -> dict[str, Destination]:
        from bridge.core.reload import ReloadRefused

        opened: dict[str, Destination] = {}
        for name in names:
            try:
                opened[name] = self._open_destination(config, name)
            except Exception as exc:
                for transport in opened.values():
                    transport.close()
                reason = "; ".join(m for _, m in exc.problems) if isinstance(exc, ConfigError) else type(exc).__name__
                raise ReloadRefused([(f"destinations.{name}", f"cannot be opened: {reason}")]) from None
        return opened

    def submit(self, channel: str, raw: bytes, origin: Mapping[str, Any] | None = None) -> Receipt:
        """Commit a message for ``channel`` (what sources call); raises StoreError if it was not stored."""
        return self.intake.submit(self.config.channels[channel], raw, origin)

    def open_sources(self) -> None:
        for name, ch in self.config.channels.items():
            if ch.enabled:
                source = self._make_source(ch)
                self.sources.append(source)
                self.sources_by_channel[name] = source

    def stop_listener(self, channel: str) -> None:
        """Close a channel's listener: its port refuses from now on (senders keep their messages and
        send them again later); processing and delivery go on. The stopped source stays known, so
        health, ``/readyz`` and the ``listener_down`` alert say it is down, until
        :meth:`start_listener` or a restart (to keep it closed across restarts: ``enabled: false``)."""
        source = self.sources_by_channel.get(channel)
        if source is None:
            raise BridgeError(f"channel {channel!r} has no listener in this process")
        source.stop()
        log.info("channel %s: listener stopped by an operator", channel)

    def start_listener(self, channel: str) -> None:
        """Open a stopped channel's listener again, as configured (a new source replaces the old)."""
        ch = self.config.channels.get(channel)
        old = self.sources_by_channel.get(channel)
        if ch is None or not ch.enabled or old is None:
            raise BridgeError(f"channel {channel!r} has no listener in this process")
        if getattr(old, "listening", True):  # a source that cannot say whether it listens is left alone
            raise BridgeError(f"channel {channel!r} is already listening")
        source = self._make_source(ch)
        source.start()
        self.sources = [source if s is old else s for s in self.sources]
        self.sources_by_channel[channel] = source
        log.info("channel %s: listener started by an operator", channel)

    def _make_source(self, ch: ChannelConfig) -> Source:
        scheme = ch.source.split(":", 1)[0].lower()
        spec = self.plugins.transports().get(scheme)
        if spec is None or spec.source is None:
            raise ConfigError([(f"channels.{ch.name}.source", f"no source transport for {scheme!r}")])
        fmt = self.channel_plans[ch.name].format
        journal = self._journal(ch, fmt) if ch.intake_journal is not None else None
        ctx = SourceContext(
            url=ch.source, channel=ch.name, options=ch.options,
            submit=lambda raw, origin=None, error=None, _ch=ch: self.intake.submit(_ch, raw, origin, error),
            config_dir=self.config.config_dir, max_message_bytes=ch.max_message_bytes, format_name=ch.format,
            decode=lambda raw, _fmt=fmt, _opts=ch.options: _fmt.decode(raw, _opts),
            evaluate=(lambda raw, _name=ch.name: self.processor.verdict(_name, raw)) if self.processor.policies
            else None,
            submit_many=journal.submit_many if journal is not None
            else lambda items, _ch=ch: self.intake.submit_many(_ch, items),
            submit_now=journal.submit_now if journal is not None
            else lambda items, _ch=ch: self.intake.submit_now(_ch, items),
            # with a journal the mover reads the whole header; the listener needs only what the dedupe
            # key and the policy check read (FormatSpec.peek_quick), when the format has it
            peek=fmt.peek_quick if journal is not None and fmt.peek_quick is not None
            else lambda raw, _fmt=fmt, _name=ch.name: Intake.peek(_fmt, _name, raw),
            policy_applies=(lambda header, _name=ch.name: self.processor.policy_applies(_name, header))
            if self.processor.policies else None,
            observe_ack=self.metrics.ack_observer(ch.name),
            intake_full=(lambda _j=journal: _j.full) if journal is not None else None,
        )
        return spec.source(ctx)

    def _journal(self, ch: ChannelConfig, fmt: Any) -> Any:
        """The channel's intake journal (opened once: recovery runs at its first listener start)."""
        from bridge.core.journal import JournalWriter

        journal = self.journals.get(ch.name)
        if journal is not None:
            return journal
        if not self.store.supports_intake_journal:
            raise ConfigError([(f"channels.{ch.name}.intake_journal", "this store does not support an intake"
                                " journal (SQLite only for now)")])
        judged = self.processor.policies and ch.options.get("policy_ack", True)

        def needs_id(header: Any, _name: str = ch.name) -> bool:
            """An ACK that names the stored message (a policy block) needs the row first."""
            return bool(judged) and self.processor.policy_applies(_name, header)

        settings = ch.intake_journal
        assert settings is not None
        journal = JournalWriter(settings.directory, self.store, ch, fmt, needs_id=needs_id,
                                direct=lambda items, _ch=ch: self.intake.direct_rows(_ch, items),
                                make_row=lambda item, _ch=ch: self.intake.journal_row(_ch, item),
                                rows_for=lambda entries, _ch=ch: self.intake.journal_rows(_ch, entries),
                                max_bytes=settings.max_bytes, segment_bytes=settings.segment_bytes,
                                on_moved=self.work_ready.set)
        journal.on_stored = self.metrics.received
        journal.open()
        self.journals[ch.name] = journal
        self.metrics.journals = self.journals
        return journal

    # --- stepping (used by threads, tests and the CLI) ------------------------------------------

    def process_one(self) -> bool:
        claim = self.store.claim_message(self.owner, self.config.engine.lease_seconds)
        if claim is None:
            return False
        try:
            self.metrics.processed(claim, self.processor.process(claim))
        except LeaseLost:
            log.warning("message %s: lease lost during processing; another worker has it", claim.id)
        except StoreError:
            raise  # store trouble, not the message's fault: its lease expires and it is processed again
        except Exception as exc:  # never leave a claim to block its lane: fail it, visibly
            log.error("message %s: processing raised %s; marked failed", claim.id, type(exc).__name__)
            self.processor.fail(claim, internal_failure(exc).error or "")
        self.delivery_ready.set()
        return True

    def process_batch(self) -> int:
        """Claim a batch of lane heads, decide each, write every result in one transaction."""
        settings = self.config.engine
        claims = self.store.claim_messages(self.owner, settings.lease_seconds, settings.batch_size)
        if not claims:
            return 0
        self._write_results(list(zip(claims, self.processor.decide_many(claims))))
        self.delivery_ready.set()
        return len(claims)

    def _write_results(self, results: list[tuple[MessageClaim, ProcessingResult]]) -> None:
        try:
            lost = self.store.finish_processing_many(results)
        except StoreError:
            raise
        except Exception:  # a result the store refused: write each alone, so only that message fails
            lost = [self._write_alone(claim, result) for claim, result in results]
        for (claim, result), item in zip(results, lost):
            if isinstance(item, LeaseLost):
                log.warning("message %s: lease lost during processing; another worker has it", claim.id)
            elif item == STORED_AS_FAILED:
                self.metrics.inc("bridge_messages_failed_total", claim.channel, "store")
            else:
                self.metrics.processed(claim, result)

    def _write_alone(self, claim: MessageClaim, result: ProcessingResult) -> LeaseLost | str | None:
        try:
            return self.store.finish_processing_many([(claim, result)])[0]
        except StoreError:
            raise
        except Exception as exc:
            log.error("message %s: its result could not be stored (%s); marked failed", claim.id, type(exc).__name__)
            self.processor.fail(claim, f"internal error while storing the result ({type(exc).__name__}); "
                                       "replay once the cause is fixed")
            return STORED_AS_FAILED

    def deliver_batch(self) -> int:
        """Claim a batch of due lane heads, send each, settle the outcomes together. Outcomes are
        settled early when the sends take a third of the lease, so a slow destination cannot make
        the batch outlive its leases."""
        settings = self.config.engine
        claims = self.store.claim_deliveries(self.owner, settings.lease_seconds, settings.batch_size)
        if not claims:
            return 0
        started, pending = time.monotonic(), []
        with self.lease_keeper.keep(claims, settings.lease_seconds) as heartbeat:
            for claim in claims:
                pending.append(self.deliverer.attempt(claim))
                if time.monotonic() - started > settings.lease_seconds / 3:
                    heartbeat.settled([o.claim for o in pending])
                    self._settle(pending)
                    pending, started = [], time.monotonic()
            heartbeat.settled([o.claim for o in pending])
            self._settle(pending)
        return len(claims)

    def _settle(self, outcomes: list[DeliveryOutcome]) -> None:
        """Write the outcomes, then count what was written (telemetry: never work whose lease was lost)."""
        self.metrics.settled(self.store, outcomes, self.deliverer.settle(outcomes))

    def deliver_one(self) -> bool:
        lease_seconds = self.config.engine.lease_seconds
        claim = self.store.claim_delivery(self.owner, lease_seconds)
        if claim is None:
            return False
        with self.lease_keeper.keep([claim], lease_seconds) as heartbeat:
            outcome = self.deliverer.attempt(claim)
            heartbeat.settled([claim])
            self._settle([outcome])
        return True

    def drain(self, timeout: float = 30.0) -> None:
        """Process and deliver until nothing is due (retries scheduled later are left waiting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worked = self.process_batch()
            worked = self.deliver_batch() or worked
            if not worked:
                return
        raise TimeoutError("work was still due after the drain timeout")

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Run everything. With ``engine.processes`` the workers and deliverers run in that many
        child processes (see bridge.core.workers) and this process keeps the sources and scheduler;
        with ``engine.delivery_processes`` the deliverers run in children of their own."""
        settings = self.config.engine
        for key, count in (("processes", settings.processes), ("delivery_processes", settings.delivery_processes)):
            if count and not os.path.isfile(self.config.path):
                raise ConfigError([(f"engine.{key}", "worker processes run `bridge run` on the same config file;"
                                    " this config was not read from a file")])
        if settings.processes or settings.delivery_processes:
            share_dir = self.metrics.open_share_dir()  # the children's counts, for this process's /metrics
        if settings.processes:
            self.worker_processes = WorkerProcesses(self.config.path, settings.processes,
                                                    env={METRICS_DIR_ENV: share_dir})
            self.worker_processes.start()
        else:
            self.start_workers(deliverers=not settings.delivery_processes)
        if settings.delivery_processes:
            self.delivery_processes = WorkerProcesses(
                self.config.path, settings.delivery_processes, env={METRICS_DIR_ENV: share_dir},
                command=worker_command(self.config.path, "deliverer"), label="delivery process")
            self.delivery_processes.start()
        self.open_sources()
        if self.journals:  # the mover: its own process, so the listener keeps the GIL (bridge.core.journal)
            from bridge.core.journal import mover_command

            if not os.path.isfile(self.config.path):
                raise ConfigError([("channels", "the intake journal's mover runs `bridge run` on the same config"
                                    " file; this config was not read from a file")])
            share_dir = self.metrics.share_dir or self.metrics.open_share_dir()  # the mover's counts
            self.journal_mover = WorkerProcesses(self.config.path, 1, command=mover_command(self.config.path),
                                                 label="journal mover", env={METRICS_DIR_ENV: share_dir})
            self.journal_mover.start()
        for source in self.sources:
            source.start()
        if self.store.indexes_content_later:  # payloads reach the content search in batches, off the intake
            thread = threading.Thread(target=self._index_content, name="content-indexer", daemon=True)
            thread.start()
            self._threads.append(thread)
        if any(job.enabled for job in self.config.jobs.values()):
            from bridge.core.scheduler import Scheduler

            self.scheduler = Scheduler(self.store, self.config, self.plugins, self.owner, submit=self.submit)
            self.scheduler.start()
        if self.config.alerts is not None and self.config.alerts.active:
            from bridge.core.alerts import AlertMonitor

            self.alerts = AlertMonitor(self.store, self.config, engine=self)
            self.alerts.start()
        log.info("engine started: %d channel(s), %d destination(s)", len(self.config.channels),
                 len(self.config.destinations))

    def _child_processes(self) -> list[WorkerProcesses]:
        """The running groups of worker and delivery processes (``engine.processes``, ``delivery_processes``)."""
        return [group for group in (self.worker_processes, self.delivery_processes) if group is not None]

    def start_workers(self, *, other_process_wakes: bool = False, workers: bool = True,
                      deliverers: bool = True) -> None:
        """Open the destinations and start the worker and deliverer threads (either alone: see
        ``engine.delivery_processes``). In a worker process (``other_process_wakes``) the intake runs
        elsewhere, so idle threads wait on the store's wake-up hint rather than this process's events."""
        self.open_destinations()
        settings = self.config.engine
        # a store shared by several nodes (PostgreSQL) hints at work any node committed: wait on that
        other_process_wakes = other_process_wakes or getattr(self.store, "shared_by_nodes", False)
        for i in range(settings.workers if workers else 0):
            self._spawn(f"worker-{i}", self.process_batch, self.work_ready, other_process_wakes, "messages")
        for i in range(settings.deliverers if deliverers else 0):
            self._spawn(f"deliverer-{i}", self.deliver_batch, self.delivery_ready, other_process_wakes, "deliveries")

    def _index_content(self) -> None:
        """The content indexer's thread: every ``CONTENT_INDEX_SECONDS``, index what arrived since,
        in batches of ``CONTENT_INDEX_BATCH`` rows a transaction (another batch at once while a batch
        comes back full). Paced rather than run whenever a row arrives: each of its transactions
        takes SQLite's one writer lock that intake commits, results and settlements wait for, and
        under load an unpaced indexer committed every few milliseconds, a few rows at a time."""
        while not self._stop.wait(CONTENT_INDEX_SECONDS):
            try:
                while self.store.index_content(CONTENT_INDEX_BATCH) >= CONTENT_INDEX_BATCH:
                    if self._stop.is_set():
                        return
            except StoreError as exc:
                log.error("content-indexer: store error: %s", exc)
            except Exception:
                log.exception("content-indexer: unexpected error")

    def _spawn(self, name: str, step, wake: threading.Event, other_process_wakes: bool = False,
               kind: str = "messages") -> None:
        def idle() -> None:
            if other_process_wakes:  # a deliverer sleeps through hints of new messages, and a worker
                self.store.wait_for(kind, self.config.engine.poll_seconds)  # through settled sends
            else:
                wake.wait(self.config.engine.poll_seconds)
                wake.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if step():
                        continue
                except StoreError as exc:
                    log.error("%s: store error: %s", name, exc)
                except Exception:
                    log.exception("%s: unexpected error", name)
                idle()

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        children = self._child_processes()
        for group in children:
            group.stop()
        if children and self.journal_mover is None:  # else the mover still writes its counts there
            self.metrics.close_share_dir()
        for source in self.sources:
            try:
                source.stop()
            except Exception:
                log.exception("error stopping a source")
        if self.journal_mover is not None:  # after the listeners: it moves what they journaled last
            self.journal_mover.stop()
            self.metrics.close_share_dir()
        for journal in self.journals.values():
            journal.close()
        self.sources_by_channel = {}
        self._stop.set()
        self.work_ready.set()
        self.delivery_ready.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.lease_keeper.close()
        for destination in self.destinations.values():
            try:
                destination.close()
            except Exception:
                log.exception("error closing a destination")
        self.store.close()

    def run_forever(self, stop: threading.Event) -> None:
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def run_worker(self, stop: threading.Event, role: str = "worker") -> None:
        """A worker process (``bridge run --role worker``): workers and deliverers only (workers only
        when ``engine.delivery_processes`` runs the deliverers; ``--role deliverer``: deliverers only),
        until ``stop`` or until the parent ``bridge run`` is gone."""
        watch_parent(stop)
        lower_priority()
        settings = self.config.engine
        workers, deliverers = role == "worker", role == "deliverer" or not settings.delivery_processes
        self.start_workers(other_process_wakes=True, workers=workers, deliverers=deliverers)
        self.metrics.share_from_worker(stop)
        log.info("%s process started: %d worker(s), %d deliverer(s)", role, settings.workers if workers else 0,
                 settings.deliverers if deliverers else 0)
        try:
            stop.wait()
        finally:
            self.stop()
            self.metrics.share_final()
