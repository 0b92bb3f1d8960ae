"""Loads plugins and turns what they register into typed tables the engine uses.

Built-ins are registered exactly like third-party plugins (tox's pattern), then entry points of
group ``bridge.plugins``; a plugin that fails to import or whose hook raises is reported and skipped
so the engine goes on; ``BRIDGE_DISABLED_PLUGINS`` (comma separated names) blocks plugins by name;
``check_pending()`` catches hook implementations that match no spec (usually a typo). Two plugins
registering the same name is an error naming both. Core code calls the typed accessors here, never
``pm.hook.*``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from bridge import hookspecs
from bridge.errors import PluginError
from bridge.plugin_types import (
    CommandSpec,
    ConfigSection,
    DestinationProfile,
    FormatSpec,
    JobType,
    PolicySpec,
    TransportSpec,
    WebBlueprint,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "bridge.plugins"
DISABLED_ENV = "BRIDGE_DISABLED_PLUGINS"


@dataclass(frozen=True)
class _Registry:
    """How each registration hook's results are validated and named."""

    hook: str
    kind: str
    type: type
    key: str


REGISTRIES = (
    _Registry("bridge_formats", "format", FormatSpec, "name"),
    _Registry("bridge_transports", "transport", TransportSpec, "scheme"),
    _Registry("bridge_destination_profiles", "profile", DestinationProfile, "name"),
    _Registry("bridge_policies", "policy", PolicySpec, "name"),
    _Registry("bridge_job_types", "job", JobType, "name"),
    _Registry("bridge_web_blueprints", "web", WebBlueprint, "name"),
    _Registry("bridge_config_sections", "config", ConfigSection, "name"),
    _Registry("bridge_commands", "command", CommandSpec, "name"),
)


@dataclass
class PluginInfo:
    """What ``bridge plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    provides: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "provides": list(self.provides),
            "error": self.error,
        }


def _own_version() -> str:
    from bridge import __version__

    return __version__


class PluginManager:
    """The typed facade over pluggy. Build one with :func:`load_plugins` or, in tests, by hand."""

    def __init__(self, disabled: Iterable[str] | None = None):
        self._pm = pluggy.PluginManager("bridge")
        self._pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._tables: dict[str, dict[str, Any]] | None = None
        if disabled is None:
            disabled = [n.strip() for n in os.environ.get(DISABLED_ENV, "").split(",") if n.strip()]
        self.disabled = frozenset(disabled)
        for name in self.disabled:
            self._pm.set_blocked(name)

    # --- registration ----------------------------------------------------------------------

    def register(self, plugin: object, name: str, distribution: str = "", version: str = "",
                 builtin: bool = False) -> bool:
        """Register a plugin object or module; returns False when it is disabled by name."""
        if name in self.disabled:
            log.info("plugin %s disabled by %s", name, DISABLED_ENV)
            return False
        if self._pm.get_plugin(name) is plugin:
            return True  # already registered (e.g. a built-in a test registers again by hand)
        if name in self._infos and self._infos[name].error is None:
            raise PluginError(
                f"plugin name {name!r} is used by both {self._infos[name].distribution!r} and {distribution!r}"
            )
        self._pm.register(plugin, name=name)
        self._infos[name] = PluginInfo(name, distribution or "?", version or "?", builtin)
        self._tables = None
        return True

    def load_builtins(self, modules: Iterable[str] | None = None) -> None:
        if modules is None:
            from bridge.plugins import BUILTIN_PLUGINS

            modules = BUILTIN_PLUGINS
        for module_name in modules:
            short = module_name.rsplit(".", 1)[-1]
            if short in self.disabled:
                continue
            module = importlib.import_module(module_name)
            self.register(module, short, "telemed-bridge", _own_version(), builtin=True)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load third-party plugins; a failing one is recorded and skipped, never fatal."""
        for ep in metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in self.disabled:
                log.info("plugin %s disabled by %s", ep.name, DISABLED_ENV)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not stop the engine
                log.error("plugin %s from %s failed to load: %s", ep.name, dist, exc)
                self._infos[ep.name] = PluginInfo(ep.name, dist, version, False, error=f"failed to load: {exc}")
                continue
            self.register(plugin, ep.name, dist, version)

    def check_pending(self) -> None:
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self._pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(f"plugin {name!r} implements a hook that does not exist: {exc}") from exc

    # --- tables --------------------------------------------------------------------------------

    def _build_tables(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        owners: dict[tuple[str, str], str] = {}
        for info in self._infos.values():
            if info.error is None:
                info.provides = []
        for reg in REGISTRIES:
            table: dict[str, Any] = {}
            hook = getattr(self._pm.hook, reg.hook)
            for impl in reversed(hook.get_hookimpls()):  # registration order
                info = self._infos.get(impl.plugin_name)
                if info is None or info.error:
                    continue
                try:
                    items = list(impl.function() or [])
                    for item in items:
                        if not isinstance(item, reg.type):
                            raise PluginError(f"{reg.hook} returned {type(item).__name__}, expected {reg.type.__name__}")
                except Exception as exc:  # isolate: one plugin's broken hook does not stop the rest
                    log.error("plugin %s: %s failed: %s", impl.plugin_name, reg.hook, exc)
                    info.error = f"{reg.hook} failed: {exc}"
                    continue
                for item in items:
                    key = getattr(item, reg.key)
                    if key in table:
                        first = self._infos[owners[(reg.kind, key)]]
                        raise PluginError(
                            f"{reg.kind} {key!r} is registered by both plugin {first.name!r} "
                            f"(distribution {first.distribution}) and plugin {info.name!r} "
                            f"(distribution {info.distribution})"
                        )
                    table[key] = item
                    owners[(reg.kind, key)] = info.name
                    info.provides.append(f"{reg.kind}:{key}")
            tables[reg.kind] = table
        return tables

    def _table(self, kind: str) -> dict[str, Any]:
        if self._tables is None:
            self._tables = self._build_tables()
        return self._tables[kind]

    def formats(self) -> dict[str, FormatSpec]:
        return self._table("format")

    def transports(self) -> dict[str, TransportSpec]:
        return self._table("transport")

    def destination_profiles(self) -> dict[str, DestinationProfile]:
        return self._table("profile")

    def policies(self) -> dict[str, PolicySpec]:
        return self._table("policy")

    def job_types(self) -> dict[str, JobType]:
        return self._table("job")

    def web_blueprints(self) -> dict[str, WebBlueprint]:
        return self._table("web")

    def config_sections(self) -> dict[str, ConfigSection]:
        return self._table("config")

    def commands(self) -> dict[str, CommandSpec]:
        return self._table("command")

    def format(self, name: str) -> FormatSpec:
        """The format called ``name``, or a PluginError listing the known ones."""
        try:
            return self.formats()[name]
        except KeyError:
            known = ", ".join(sorted(self.formats())) or "none"
            raise PluginError(f"unknown format {name!r} (known: {known})") from None

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, including the broken ones (with their error)."""
        for reg in REGISTRIES:  # make sure provides/errors are filled in
            self._table(reg.kind)
        return sorted(self._infos.values(), key=lambda i: (not i.builtin, i.name))


def load_plugins(*, entry_points: bool = True, builtins: Iterable[str] | None = None,
                 disabled: Iterable[str] | None = None) -> PluginManager:
    """Build the plugin manager the engine and CLI use: built-ins, entry points, then checks."""
    manager = PluginManager(disabled=disabled)
    manager.load_builtins(builtins)
    if entry_points:
        manager.load_entry_points()
    manager.check_pending()
    manager.formats()  # flatten now so duplicate names fail at start-up, not mid-traffic
    return manager
