"""Load and validate ``bridge.yaml``.

The shape of this file is part of the product (hospital analysts write it by hand), so validation
reports *every* problem at once, each with the dotted path of the offending key and, for a typo, the
key it probably meant. Relative paths (``sqlite:///../var/bridge.db``, ``file://inbox``) resolve
against the config file's folder, so the engine behaves the same from any working directory.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bridge.core.model.records import RECORD_TYPES
from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.core.plugin_manager import PluginManager

TOP_KEYS = ("store", "channels", "destinations", "engine", "jobs", "web")
CHANNEL_KEYS = ("source", "format", "routes", "options", "order", "max_message_bytes", "description", "enabled")
ROUTE_KEYS = ("when", "to")
WHEN_KEYS = ("record", "match")
ORDER_KEYS = ("by", "mode")
ORDER_BY = ("patient", "encounter", "prescription", "none")
ORDER_MODES = ("strict", "rotate")
DESTINATION_KEYS = ("url", "format", "retry", "options", "profile", "description")
RETRY_KEYS = ("max_attempts", "backoff", "initial_seconds", "max_seconds", "jitter")
ENGINE_KEYS = ("workers", "deliverers", "lease_seconds", "poll_seconds")
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` sends in all, waits growing exponentially with jitter."""

    max_attempts: int = 8
    backoff: str = "exponential"
    initial_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); ``rand`` in [0, 1)."""
        base = self.initial_seconds if self.backoff == "fixed" else self.initial_seconds * 2 ** (attempt - 1)
        base = min(base, self.max_seconds)
        return max(0.0, base * (1 + self.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class Route:
    to: tuple[str, ...]
    records: tuple[str, ...] = ()
    match: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    source: str
    format: str
    routes: tuple[Route, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    order_by: str = "patient"
    order_mode: str = "strict"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    enabled: bool = True


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    url: str | None
    format: str | None
    retry: RetryPolicy = RetryPolicy()
    options: Mapping[str, Any] = field(default_factory=dict)
    profile: str | None = None


@dataclass(frozen=True)
class EngineSettings:
    workers: int = 2
    deliverers: int = 2
    lease_seconds: float = 60.0
    poll_seconds: float = 0.2


@dataclass(frozen=True)
class BridgeConfig:
    path: str
    config_dir: str
    store_url: str
    channels: Mapping[str, ChannelConfig]
    destinations: Mapping[str, DestinationConfig]
    engine: EngineSettings = EngineSettings()
    jobs: Mapping[str, Any] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
                self.add(_join(path, str(key)), f"unknown key{extra}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str, problems: _Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(path, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _number(value: Any, path: str, problems: _Problems, *, kind: type = float, minimum: float = 0) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        problems.add(path, f"expected a {'whole ' if kind is int else ''}number, got {value!r}")
        return None
    if value < minimum:
        problems.add(path, f"must be at least {minimum}, got {value!r}")
        return None
    return kind(value)


def resolve_store_url(url: str, config_dir: str) -> str:
    """``sqlite:///rel.db`` is relative to the config folder, ``sqlite:////abs.db`` absolute."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path == ":memory:" or os.path.isabs(path):
            return url
        return "sqlite:///" + os.path.normpath(os.path.join(config_dir, path))
    return url


def load_config(path: str | os.PathLike[str], plugins: PluginManager | None = None) -> BridgeConfig:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read config: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError([(str(path), f"invalid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, config_dir=str(path.resolve().parent), path=str(path), plugins=plugins)


def parse_config(data: Any, *, config_dir: str, path: str = "<config>",
                 plugins: PluginManager | None = None) -> BridgeConfig:
    problems = _Problems()
    data = _mapping(data, "", problems)
    sections = plugins.config_sections() if plugins else {}
    problems.unknown_keys(data, TOP_KEYS + tuple(sections), "")

    store = data.get("store", "sqlite:///var/bridge.db")
    if not isinstance(store, str) or not store.startswith("sqlite:///"):
        problems.add("store", f"expected a store URL like sqlite:///var/bridge.db, got {store!r}")
        store = "sqlite:///:memory:"

    destinations = _destinations(_mapping(data.get("destinations"), "destinations", problems), problems, plugins)
    channels = _channels(_mapping(data.get("channels"), "channels", problems), set(destinations), problems, plugins)
    engine = _engine(_mapping(data.get("engine"), "engine", problems), problems)
    jobs = _mapping(data.get("jobs"), "jobs", problems)
    for name, section in sections.items():
        if name in data:
            for sub, message in section.validate(data[name]):
                problems.add(_join(name, sub), message)
    if problems.items:
        raise ConfigError(problems.items)
    return BridgeConfig(
        path=path,
        config_dir=config_dir,
        store_url=resolve_store_url(store, config_dir),
        channels=channels,
        destinations=destinations,
        engine=engine,
        jobs=dict(jobs),
        sections={name: data[name] for name in sections if name in data},
    )


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _known_format(name: Any, path: str, problems: _Problems, plugins: PluginManager | None) -> str | None:
    if not isinstance(name, str) or not name:
        problems.add(path, f"expected a format name, got {name!r}")
        return None
    if plugins is not None and name not in plugins.formats():
        problems.add(path, f"unknown format {name!r} (known: {', '.join(sorted(plugins.formats())) or 'none'})")
    return name


def _url(value: Any, path: str, problems: _Problems, plugins: PluginManager | None, role: str) -> str | None:
    if not isinstance(value, str) or ":" not in value:
        problems.add(path, f"expected a URL such as file:///path/to/folder, got {value!r}")
        return None
    if plugins is not None:
        spec = plugins.transports().get(_scheme(value))
        factory = getattr(spec, role, None) if spec else None
        if factory is None:
            usable = sorted(s for s, t in plugins.transports().items() if getattr(t, role))
            problems.add(path, f"no transport can be a {role} for scheme {_scheme(value)!r} "
                               f"(known: {', '.join(usable) or 'none'})")
    return value


def _channels(raw: Mapping[str, Any], destination_names: set[str], problems: _Problems,
              plugins: PluginManager | None) -> dict[str, ChannelConfig]:
    channels = {}
    for name, body in raw.items():
        path = f"channels.{name}"
        body = _mapping(body, path, problems)
        problems.unknown_keys(body, CHANNEL_KEYS, path)
        if "source" not in body:
            problems.add(f"{path}.source", "is required")
        if "format" not in body:
            problems.add(f"{path}.format", "is required")
        source = _url(body.get("source"), f"{path}.source", problems, plugins, "source") if "source" in body else ""
        fmt = _known_format(body.get("format"), f"{path}.format", problems, plugins) if "format" in body else ""
        routes_raw = body.get("routes", [])
        if not isinstance(routes_raw, list):
            problems.add(f"{path}.routes", "expected a list of routes")
            routes_raw = []
        routes = tuple(
            r for i, item in enumerate(routes_raw)
            if (r := _route(item, f"{path}.routes[{i}]", destination_names, problems)) is not None
        )
        order = _mapping(body.get("order"), f"{path}.order", problems)
        problems.unknown_keys(order, ORDER_KEYS, f"{path}.order")
        order_by = order.get("by", "patient")
        if order_by not in ORDER_BY:
            problems.add(f"{path}.order.by", f"expected one of {', '.join(ORDER_BY)}, got {order_by!r}")
        mode = order.get("mode", "strict")
        if mode not in ORDER_MODES:
            problems.add(f"{path}.order.mode", f"expected one of {', '.join(ORDER_MODES)}, got {mode!r}")
        limit = body.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
        limit = _number(limit, f"{path}.max_message_bytes", problems, kind=int, minimum=1)
        channels[str(name)] = ChannelConfig(
            name=str(name),
            source=source or "",
            format=fmt or "",
            routes=routes,
            options=dict(_mapping(body.get("options"), f"{path}.options", problems)),
            order_by=order_by,
            order_mode=mode,
            max_message_bytes=limit or DEFAULT_MAX_MESSAGE_BYTES,
            enabled=bool(body.get("enabled", True)),
        )
    return channels


def _route(item: Any, path: str, destination_names: set[str], problems: _Problems) -> Route | None:
    body = _mapping(item, path, problems)
    problems.unknown_keys(body, ROUTE_KEYS, path)
    to = body.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        problems.add(f"{path}.to", "expected a list of destination names")
        return None
    for i, dest in enumerate(to):
        if dest not in destination_names:
            hint = difflib.get_close_matches(str(dest), sorted(destination_names), n=1)
            problems.add(f"{path}.to[{i}]", f"unknown destination {dest!r}"
                                            + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    when = _mapping(body.get("when"), f"{path}.when", problems)
    problems.unknown_keys(when, WHEN_KEYS, f"{path}.when")
    kinds = when.get("record", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        problems.add(f"{path}.when.record", "expected a record kind or a list of them")
        kinds = []
    for kind in kinds:
        if kind not in RECORD_TYPES:
            hint = difflib.get_close_matches(str(kind), sorted(RECORD_TYPES), n=1)
            problems.add(f"{path}.when.record", f"unknown record kind {kind!r}"
                                                + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    match = _mapping(when.get("match"), f"{path}.when.match", problems)
    return Route(
        to=tuple(str(d) for d in to),
        records=tuple(kinds),
        match={str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in match.items()},
    )


def _destinations(raw: Mapping[str, Any], problems: _Problems,
                  plugins: PluginManager | None) -> dict[str, DestinationConfig]:
    out = {}
    for name, body in raw.items():
        path = f"destinations.{name}"
        body = _mapping(body, path, problems)
        problems.unknown_keys(body, DESTINATION_KEYS, path)
        profile = body.get("profile")
        profile_format = None
        if profile is not None and plugins is not None:
            spec = plugins.destination_profiles().get(profile)
            if spec is None:
                known = ", ".join(sorted(plugins.destination_profiles())) or "none"
                problems.add(f"{path}.profile", f"unknown profile {profile!r} (known: {known})")
            else:
                profile_format = spec.format
        url = body.get("url")
        if url is None and profile is None:
            problems.add(f"{path}.url", "is required")
        elif url is not None and profile is None:
            url = _url(url, f"{path}.url", problems, plugins, "destination")
        fmt = body.get("format", profile_format)
        if fmt is None:
            problems.add(f"{path}.format", "is required")
        else:
            fmt = _known_format(fmt, f"{path}.format", problems, plugins)
        retry = _retry(_mapping(body.get("retry"), f"{path}.retry", problems), f"{path}.retry", problems)
        out[str(name)] = DestinationConfig(
            name=str(name),
            url=url,
            format=fmt,
            retry=retry,
            options=dict(_mapping(body.get("options"), f"{path}.options", problems)),
            profile=profile,
        )
    return out


def _retry(body: Mapping[str, Any], path: str, problems: _Problems) -> RetryPolicy:
    problems.unknown_keys(body, RETRY_KEYS, path)
    values: dict[str, Any] = {}
    if "max_attempts" in body:
        values["max_attempts"] = _number(body["max_attempts"], f"{path}.max_attempts", problems, kind=int, minimum=1)
    if "backoff" in body:
        if body["backoff"] not in ("exponential", "fixed"):
            problems.add(f"{path}.backoff", f"expected exponential or fixed, got {body['backoff']!r}")
        else:
            values["backoff"] = body["backoff"]
    for key in ("initial_seconds", "max_seconds", "jitter"):
        if key in body:
            values[key] = _number(body[key], f"{path}.{key}", problems)
    if values.get("jitter") is not None and values["jitter"] > 1:
        problems.add(f"{path}.jitter", "must be between 0 and 1")
    return RetryPolicy(**{k: v for k, v in values.items() if v is not None})


def _engine(body: Mapping[str, Any], problems: _Problems) -> EngineSettings:
    problems.unknown_keys(body, ENGINE_KEYS, "engine")
    values: dict[str, Any] = {}
    for key in ("workers", "deliverers"):
        if key in body:
            values[key] = _number(body[key], f"engine.{key}", problems, kind=int, minimum=1)
    for key in ("lease_seconds", "poll_seconds"):
        if key in body:
            values[key] = _number(body[key], f"engine.{key}", problems, minimum=0.01)
    return EngineSettings(**{k: v for k, v in values.items() if v is not None})
