"""The ``policy:`` config section and the rule-set cache behind it.

Section shape (every key optional)::

    policy:
      rules_dir: /etc/bridge/policy          # default: the shipped config/policy
      pathways: {buprenorphine: true}        # switch pathways on or off for this site
      schedule_overrides: /etc/bridge/site-schedules.yaml   # extra or replacing drug rows

Validation loads the rules for real, so ``bridge check`` reports a broken rule file before the
engine starts. Loaded rule-sets are cached per distinct settings: the files are read once per
process, not per message (changing them needs a restart, which is also what makes the recorded
rule-set version trustworthy).
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge import ConfigError, OptionSpec

from .ruleset import PATHWAYS, RULES_DIR_ENV, RuleSet, load_ruleset

SETTINGS: tuple[OptionSpec, ...] = (
    OptionSpec("rules_dir", "folder of rule files (default: the shipped config/policy)", kind="string"),
    OptionSpec("pathways", "switch pathways on or off for this site, e.g. {buprenorphine: true}", kind="mapping"),
    OptionSpec("schedule_overrides", "YAML file of extra or replacing drug schedule rows", kind="string"),
)
SECTION_KEYS = tuple(spec.name for spec in SETTINGS)
_cache: dict[tuple[Any, ...], RuleSet] = {}
_lock = threading.Lock()


def validate_settings(value: Any) -> list[tuple[str, str]]:
    """``(key path, problem)`` pairs for the ``policy:`` section; empty when it is usable."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [("", f"expected a mapping, got {type(value).__name__}")]
    problems = [(str(k), _unknown(str(k))) for k in value
                if k not in SECTION_KEYS and k != "config_dir"]  # config_dir: added by the engine
    value = _resolved(value)
    problems += _path_problems(value, "rules_dir", want_dir=True)
    problems += _path_problems(value, "schedule_overrides", want_dir=False)
    problems += _pathway_problems(value.get("pathways"))
    if not problems:
        try:
            ruleset_for(value)
        except ConfigError as exc:
            where = "rules_dir" if value.get("rules_dir") else ""
            problems += [(where, f"{p}: {m}" if p else m) for p, m in exc.problems]
    return problems


def _unknown(key: str) -> str:
    hint = difflib.get_close_matches(key, SECTION_KEYS, n=1)
    return f"unknown key (did you mean {hint[0]!r}?)" if hint else f"unknown key (allowed: {', '.join(SECTION_KEYS)})"


def _path_problems(value: Mapping[str, Any], key: str, *, want_dir: bool) -> list[tuple[str, str]]:
    path = value.get(key)
    if path is None:
        return []
    if not isinstance(path, str) or not path:
        return [(key, f"expected a path, got {path!r}")]
    if want_dir and not Path(path).is_dir():
        return [(key, f"folder {path} does not exist")]
    if not want_dir and not Path(path).is_file():
        return [(key, f"file {path} does not exist")]
    return []


def _pathway_problems(pathways: Any) -> list[tuple[str, str]]:
    if pathways is None:
        return []
    if not isinstance(pathways, Mapping):
        return [("pathways", "expected a mapping such as {buprenorphine: true}")]
    problems = []
    for name, on in pathways.items():
        if name not in PATHWAYS:
            problems.append((f"pathways.{name}", f"unknown pathway (known: {', '.join(PATHWAYS)})"))
        elif not isinstance(on, bool):
            problems.append((f"pathways.{name}", f"expected true or false, got {on!r}"))
    return problems


def ruleset_for(settings: Mapping[str, Any] | None = None) -> RuleSet:
    """The rule-set for a ``policy:`` section (None: the defaults), loaded once and cached."""
    settings = _resolved(settings or {})
    pathways = dict(settings.get("pathways") or {})
    key = (settings.get("rules_dir"), settings.get("schedule_overrides"), tuple(sorted(pathways.items())),
           _env_dir())
    with _lock:
        cached = _cache.get(key)
        if cached is None:
            cached = load_ruleset(settings.get("rules_dir"), pathways=pathways,
                                  schedule_overrides=settings.get("schedule_overrides"))
            _cache[key] = cached
    return cached


def _resolved(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """Relative ``rules_dir``/``schedule_overrides`` resolve against the config file's folder,
    which the engine passes as ``config_dir`` beside the section's own keys."""
    base = settings.get("config_dir")
    if not base:
        return settings
    out = dict(settings)
    for key in ("rules_dir", "schedule_overrides"):
        if out.get(key) and not os.path.isabs(str(out[key])):
            out[key] = os.path.join(str(base), str(out[key]))
    return out


def _env_dir() -> str | None:
    return os.environ.get(RULES_DIR_ENV)
