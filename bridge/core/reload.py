"""Reloading the configuration on SIGHUP: routes, destinations and maps, with the listeners left alone.

A hospital cannot drop its feeds' MLLP connections to add a destination or change a route, so a
reload swaps what the workers consult per message (channel plans, destination plans, the processor,
the deliverer and its transports) while every source keeps its sockets. Anything a reload cannot
change in place — a channel's listener, format, options or order, the store, the engine's threads,
the web listener, jobs, alert rules, policy settings — is refused with its key path: the running configuration
stays, and a restart applies it.

The new file must pass what ``bridge check`` checks (it is loaded the same way); a file that fails is
refused and logged with every problem, and the running configuration is kept. Every reload, applied
or refused, is in the audit log (``config.reload`` / ``config.reload_refused``).

A batch a worker had already claimed finishes with the plans it started with; the next batch uses the
new ones. A send in flight on a destination that the reload changed or removed is finished on the old
transport before that transport is closed.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.core.config import BridgeConfig, ChannelConfig, load_config
from bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    from bridge.core.engine import Engine
    from bridge.core.plugin_manager import PluginManager

log = logging.getLogger(__name__)

RELOADABLE_CHANNEL_FIELDS = ("routes", "maps")
RESTART_ONLY = (("store_url", "store"), ("engine", "engine"), ("jobs", "jobs"), ("sections", "plugin sections"),
                ("web", "web"), ("log_format", "logging"), ("alerts", "alerts"))
SETTLED_OUTBOX = ("delivered", "dead")
CLOSE_GRACE_SECONDS = 30.0


class ReloadRefused(BridgeError):
    """The new configuration cannot be applied in place; ``problems`` are (key path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {why}" for path, why in problems))


def restart_only_changes(old: BridgeConfig, new: BridgeConfig) -> list[tuple[str, str]]:
    """What differs between the two configs that only a restart can apply."""
    problems = [(key, "changed; a reload applies routes, destinations and maps only: restart to apply it")
                for attr, key in RESTART_ONLY if getattr(old, attr) != getattr(new, attr)]
    for name in sorted(old.channels.keys() | new.channels.keys()):
        before, after = old.channels.get(name), new.channels.get(name)
        if before is None or after is None:
            problems.append((f"channels.{name}", f"{'added' if before is None else 'removed'}; a channel's"
                                                  " listener starts and stops with the engine: restart"))
            continue
        problems.extend((f"channels.{name}.{field}", "changed; only routes and maps reload: restart to apply it")
                        for field in _changed_fields(before, after) if field not in RELOADABLE_CHANNEL_FIELDS)
    return problems


def _changed_fields(before: ChannelConfig, after: ChannelConfig) -> list[str]:
    return [f.name for f in dataclasses.fields(ChannelConfig) if getattr(before, f.name) != getattr(after, f.name)]


def destination_changes(old: BridgeConfig, new: BridgeConfig) -> dict[str, list[str]]:
    """Destinations ``added``, ``removed``, ``changed`` (their transport is opened again) and
    ``remapped`` (only their maps differ: the open transport is kept)."""
    out: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "remapped": []}
    for name in sorted(old.destinations.keys() | new.destinations.keys()):
        before, after = old.destinations.get(name), new.destinations.get(name)
        if before is None:
            out["added"].append(name)
        elif after is None:
            out["removed"].append(name)
        elif dataclasses.replace(after, maps=before.maps) != before:
            out["changed"].append(name)
        elif after.maps != before.maps:
            out["remapped"].append(name)
    return out


def waiting_rows(store: Any, destinations: list[str]) -> list[tuple[str, str]]:
    """Removing a destination that still has rows to send would dead-letter them: refused."""
    counts = store.destination_counts()
    problems = []
    for name in destinations:
        waiting = sum(n for status, n in counts.get(name, {}).items() if status not in SETTLED_OUTBOX)
        if waiting:
            problems.append((f"destinations.{name}", f"removed while {waiting} row(s) wait to be sent to it;"
                                                     " remove it once they are delivered (or dead-lettered)"))
    return problems


def close_later(transports: Mapping[str, Any], grace: float = CLOSE_GRACE_SECONDS) -> None:
    """Close replaced transports after a grace period, so a send already under way finishes on them."""
    if not transports:
        return

    def close() -> None:
        time.sleep(grace)
        for name, transport in transports.items():
            try:
                transport.close()
            except Exception as exc:
                log.warning("closing the replaced transport of destination %s raised %s", name, type(exc).__name__)

    threading.Thread(target=close, name="close-replaced-destinations", daemon=True).start()


class ConfigReloader:
    """What SIGHUP does in ``bridge run``: read the file again, check it, apply it or refuse it."""

    def __init__(self, path: str, plugins: PluginManager, engine: Engine, *, actor: str = "system:sighup",
                 on_reload: list[Callable[[BridgeConfig], None]] | None = None):
        self.path = path
        self.plugins = plugins
        self.engine = engine
        self.actor = actor
        self.on_reload = on_reload or []
        self._lock = threading.Lock()

    def install(self) -> None:
        """Reload on SIGHUP (in a thread: a signal handler must return at once)."""
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, name="config-reload",
                                                                 daemon=True).start())

    def reload(self) -> bool:
        """Apply the file's configuration; False (logged and audited, nothing changed) when refused."""
        with self._lock:  # two SIGHUPs in a row: one reload after the other
            try:
                config = load_config(self.path, self.plugins)
            except ConfigError as exc:
                return self._refused("fails bridge check", exc.problems)
            try:
                summary = self.engine.reload(config)
            except ReloadRefused as exc:
                return self._refused("cannot be applied without a restart", exc.problems)
            for callback in self.on_reload:
                callback(config)
            log.info("configuration reloaded from %s: %s", self.path, _summary_text(summary))
            self.engine.store.audit(self.actor, "config.reload", f"config:{self.path}", summary)
            return True

    def _refused(self, why: str, problems: list[tuple[str, str]]) -> bool:
        log.error("configuration reload refused, the running configuration is kept: %s %s: %s", self.path, why,
                  "; ".join(f"{path}: {message}" if path else message for path, message in problems))
        self.engine.store.audit(self.actor, "config.reload_refused", f"config:{self.path}",
                                {"reason": why, "problems": [list(p) for p in problems]})
        return False


def _summary_text(summary: Mapping[str, Any]) -> str:
    parts = [f"{key} {', '.join(names)}" for key, names in summary.items() if names]
    return "; ".join(parts) or "routes and maps read again, nothing else changed"
