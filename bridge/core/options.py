"""Check a channel's or destination's ``options:`` against what its plugins declare.

Why: an option nobody reads used to be accepted and silently ignored (``version: "2.3"`` on an
``hl7v2`` destination changes nothing), so a hospital analyst believed a setting was in force when
it was not. Each plugin now declares the keys it reads (:class:`bridge.plugin_types.OptionSpec`);
``bridge check`` and start-up (both go through :func:`bridge.core.config.parse_config` with the
plugins) refuse any other key, naming its path and the key it probably meant.

Who reads what: a channel's ``options:`` go to its source transport and its format's decoder; a
destination's go to its transport (or vendor profile) and its format's encoder. A plugin that
declared nothing (``None``, an older external plugin) is not checked: :func:`undeclared` names it
so ``bridge check`` can warn.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.plugin_types import OptionSpec

if TYPE_CHECKING:
    from bridge.core.plugin_manager import PluginManager

INJECTED = ("message_control_id", "trace_id", "config_dir", "source_envelope", "records_mapped")
"""Keys the engine adds to a destination's options at run time; never written in the config.
(``records_mapped``: a channel's or the destination's maps ran on the records, so an encoder that
keeps the sender's wording checks them for changes; without maps it need not pay for that.)"""

Problem = tuple[str, str]


@dataclass(frozen=True)
class Declared:
    """The options one channel or destination may carry, and the plugins that declared nothing."""

    specs: Mapping[str, OptionSpec]
    undeclared: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    """Who reads these options, for messages: ``("transport 'mllp'", "format 'hl7v2'")``."""


def _merge(parts: Sequence[tuple[str, tuple[OptionSpec, ...] | None]]) -> Declared:
    specs: dict[str, OptionSpec] = {}
    undeclared = []
    for who, declared in parts:
        if declared is None:
            undeclared.append(who)
            continue
        for spec in declared:
            specs.setdefault(spec.name, spec)
    return Declared(specs, tuple(undeclared), tuple(who.split(" (", 1)[0] for who, _ in parts))


def _scheme(url: str | None) -> str:
    return url.split(":", 1)[0].lower() if url and ":" in url else ""


def channel_options(plugins: PluginManager, source: str, format_name: str) -> Declared | None:
    """Source transport options ∪ format decode options; None when either plugin is unknown."""
    transport = plugins.transports().get(_scheme(source))
    fmt = plugins.formats().get(format_name)
    if transport is None or fmt is None:
        return None  # already reported as an unknown scheme or format
    return _merge(((f"transport {transport.scheme!r} (source options)", transport.source_options),
                   (f"format {fmt.name!r} (decode options)", fmt.decode_options)))


def destination_options(plugins: PluginManager, url: str | None, profile: str | None,
                        format_name: str | None) -> Declared | None:
    """Profile (or destination transport) options ∪ format encode options; None when one is unknown."""
    fmt = plugins.formats().get(format_name or "")
    if fmt is None:
        return None
    if profile is not None:
        spec = plugins.destination_profiles().get(profile)
        if spec is None:
            return None
        first: tuple[str, tuple[OptionSpec, ...] | None] = (f"profile {spec.name!r}", spec.options)
    else:
        transport = plugins.transports().get(_scheme(url))
        if transport is None:
            return None
        first = (f"transport {transport.scheme!r} (destination options)", transport.destination_options)
    return _merge((first, (f"format {fmt.name!r} (encode options)", fmt.encode_options)))


def check_options(options: Mapping[str, Any], declared: Declared, path: str,
                  elsewhere: Mapping[str, list[str]] | None = None) -> list[Problem]:
    """Unknown, injected, missing and mistyped keys, each as ``(key path, problem)``. ``elsewhere``
    (option name → plugins reading it) tells where an unknown key would have meant something."""
    problems: list[Problem] = []
    allowed = sorted(declared.specs)
    for key, value in options.items():
        spec = declared.specs.get(str(key))
        if spec is not None:
            problems += _value_problems(spec, value, f"{path}.{key}")
        elif key in INJECTED:
            problems.append((f"{path}.{key}", "is set by the engine for each message; remove it from the config"))
        elif not declared.undeclared:
            problems.append((f"{path}.{key}", _unknown(str(key), allowed, declared.readers, elsewhere or {})))
    for spec in declared.specs.values():
        if spec.required and options.get(spec.name) in (None, ""):
            problems.append((f"{path}.{spec.name}", f"is required ({spec.description})" if spec.description
                             else "is required"))
    return problems


def unknown_key_message(key: str, allowed: list[str]) -> str:
    """"unknown option (did you mean 'x'?)", else the list of what is allowed."""
    hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
    if hint:
        return f"unknown option (did you mean {hint[0]!r}?)"
    return f"unknown option (allowed: {', '.join(allowed)})" if allowed else "unknown option (this takes no options)"


def _unknown(key: str, allowed: list[str], readers: tuple[str, ...], elsewhere: Mapping[str, list[str]]) -> str:
    message = unknown_key_message(key, allowed)
    if readers:
        message = message.replace("unknown option", f"unknown option for {' and '.join(readers)}", 1)
    others = [who for who in elsewhere.get(key, []) if who not in readers]
    if others:
        message += f"; {key!r} is an option of {', '.join(others)}"
    return message


def _index(plugins: PluginManager) -> dict[str, list[str]]:
    """Option name → the plugins that read it, so a key put in the wrong place says where it belongs."""
    out: dict[str, list[str]] = {}
    entries: list[tuple[str, tuple[OptionSpec, ...] | None]] = []
    for fmt in plugins.formats().values():
        entries += [(f"format {fmt.name!r}", (*(fmt.decode_options or ()), *(fmt.encode_options or ())))]
    for tr in plugins.transports().values():
        entries += [(f"transport {tr.scheme!r}", (*(tr.source_options or ()), *(tr.destination_options or ())))]
    for profile in plugins.destination_profiles().values():
        entries += [(f"profile {profile.name!r}", profile.options)]
    for who, specs in entries:
        for spec in specs or ():
            if who not in out.setdefault(spec.name, []):
                out[spec.name].append(who)
    return out


_KIND_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "mapping": lambda v: isinstance(v, Mapping),
    "list": lambda v: isinstance(v, list),
}
_KIND_WORDS = {"string": "a string", "number": "a number", "integer": "a whole number",
               "boolean": "true or false", "mapping": "a mapping", "list": "a list"}


def _value_problems(spec: OptionSpec, value: Any, path: str) -> list[Problem]:
    if value is None:
        return []
    check = _KIND_CHECKS.get(spec.kind)
    if check is not None and not check(value):
        return [(path, f"expected {_KIND_WORDS[spec.kind]}, got {value!r}")]
    if spec.choices is not None and value not in spec.choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1)
        return [(path, f"expected one of {', '.join(map(str, spec.choices))}, got {value!r}"
                       + (f" (did you mean {hint[0]!r}?)" if hint else ""))]
    return []


def config_problems(channels: Mapping[str, Any], destinations: Mapping[str, Any],
                    plugins: PluginManager) -> list[Problem]:
    """Every option problem of a parsed config's channels and destinations."""
    problems: list[Problem] = []
    elsewhere = _index(plugins)
    for name, ch in channels.items():
        declared = channel_options(plugins, ch.source, ch.format)
        if declared is not None:
            problems += [_channel_key_hint(problem) for problem in
                         check_options(ch.options, declared, f"channels.{name}.options", elsewhere)]
    for name, dest in destinations.items():
        declared = destination_options(plugins, dest.url, dest.profile, dest.format)
        if declared is not None:
            problems += check_options(dest.options, declared, f"destinations.{name}.options", elsewhere)
    return problems


CHANNEL_LEVEL_KEYS = ("timezone", "policies", "facility_state", "order", "max_message_bytes", "retention")
"""Channel settings that live beside ``options:``, not in it: a common misplacement gets pointed at."""


def _channel_key_hint(problem: Problem) -> Problem:
    path, message = problem
    key = path.rsplit(".", 1)[-1]
    if key in CHANNEL_LEVEL_KEYS and message.startswith("unknown option"):
        channel = path.rsplit(".options.", 1)[0]
        message += f"; {key!r} is a channel setting: write it as {channel}.{key}, beside options"
    return path, message


def policy_sections(plugins: PluginManager) -> dict[str, tuple[str, tuple[OptionSpec, ...] | None]]:
    """``{section name: (policy name, its declared settings)}`` for plugins that register exactly one
    policy and one config section (the pairing the engine uses to hand a policy its settings)."""
    out = {}
    for info in plugins.plugins():
        policies = [p.split(":", 1)[1] for p in info.provides if p.startswith("policy:")]
        sections = [p.split(":", 1)[1] for p in info.provides if p.startswith("config:")]
        if len(sections) == 1:
            for policy in policies:
                out[sections[0]] = (policy, plugins.policies()[policy].options)
    return out


def section_problems(sections: Mapping[str, Any], plugins: PluginManager, already: set[str]) -> list[Problem]:
    """A policy's settings section against the policy's declared options; keys its own validator
    already reported (``already``) are not reported twice."""
    problems: list[Problem] = []
    for section, (policy, specs) in policy_sections(plugins).items():
        value = sections.get(section)
        if specs is None or not isinstance(value, Mapping):
            continue
        body = {k: v for k, v in value.items() if k != "config_dir"}
        found = check_options(body, Declared({s.name: s for s in specs}), section)
        problems += [(p, m) for p, m in found if p not in already]
    return problems


def undeclared(config: Any, plugins: PluginManager) -> list[str]:
    """Warnings for ``bridge check``: each plugin used by the config that declared no options."""
    seen: dict[str, list[str]] = {}
    for name, ch in config.channels.items():
        declared = channel_options(plugins, ch.source, ch.format)
        for who in declared.undeclared if declared else ():
            seen.setdefault(who, []).append(f"channels.{name}")
    for name, dest in config.destinations.items():
        declared = destination_options(plugins, dest.url, dest.profile, dest.format)
        for who in declared.undeclared if declared else ():
            seen.setdefault(who, []).append(f"destinations.{name}")
    for section, (policy, specs) in policy_sections(plugins).items():
        if specs is None and section in config.sections:
            seen.setdefault(f"policy {policy!r} (settings)", []).append(section)
    return [f"{who} declares no options, so the options of {', '.join(where)} are not checked "
            "(ask its vendor to declare them)" for who, where in seen.items()]


def reference(plugins: PluginManager) -> str:
    """The options every plugin declares, as the Markdown tables of ``docs/options.md`` (a test keeps
    that page equal to this, so the documentation cannot drift from what ``bridge check`` accepts)."""
    sections: list[tuple[str, tuple[OptionSpec, ...] | None]] = []
    for fmt in sorted(plugins.formats().values(), key=lambda f: f.name):
        sections += [(f"format `{fmt.name}`: decode (channel `options:`)", fmt.decode_options),
                     (f"format `{fmt.name}`: encode (destination `options:`)", fmt.encode_options)]
    for tr in sorted(plugins.transports().values(), key=lambda t: t.scheme):
        if tr.source is not None:
            sections.append((f"transport `{tr.scheme}`: source (channel `options:`)", tr.source_options))
        if tr.destination is not None:
            sections.append((f"transport `{tr.scheme}`: destination (destination `options:`)",
                             tr.destination_options))
    for profile in sorted(plugins.destination_profiles().values(), key=lambda p: p.name):
        sections.append((f"profile `{profile.name}` (destination `options:`)", profile.options))
    for section, (policy, specs) in sorted(policy_sections(plugins).items()):
        sections.append((f"policy `{policy}` (the `{section}:` section)", specs))
    return "\n".join(_table(title, specs) for title, specs in sections)


def _table(title: str, specs: tuple[OptionSpec, ...] | None) -> str:
    if specs is None:
        return f"### {title}\n\nNot declared: not checked.\n"
    if not specs:
        return f"### {title}\n\nNo options.\n"
    rows = [f"### {title}\n", "| option | kind | default | what |", "| --- | --- | --- | --- |"]
    for spec in specs:
        kind = " \\| ".join(map(str, spec.choices)) if spec.choices else spec.kind
        default = "**required**" if spec.required else _shown(spec.default)
        what = spec.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {kind} | {default} | {what} |")
    return "\n".join(rows) + "\n"


def _shown(default: Any) -> str:
    if default is None:
        return ""
    return f"`{str(default).lower()}`" if isinstance(default, bool) else f"`{default}`"


REFERENCE_HEADER = """# Options reference

What each built-in plugin reads under `options:` (and the policy's settings section). `bridge check`
and start-up refuse any other key with its path and a "did you mean"; see
[configuration.md](configuration.md#options-are-checked). A channel's options may be any of its
source transport's and its format's decode options; a destination's, any of its transport's (or
profile's) and its format's encode options.

This page is generated from the plugins' declarations (`python -m bridge.core.options >
docs/options.md`); a test keeps it in step.

"""


if __name__ == "__main__":  # pragma: no cover - regenerates docs/options.md
    from bridge.core.plugin_manager import load_plugins

    print(REFERENCE_HEADER + reference(load_plugins(entry_points=False)), end="")
