"""The escape hatch: a map step ``call: module:function`` runs a Python function of the map's folder.

Data cannot say everything (a check across three fields with a site's own rule, a value computed
from two tables), so a step may call a function written for it. It keeps the shape of every other
step: it has an id and an optional ``when:``, its changes are counted in the timeline, a hold it
asks for is a review like any other, and anything going wrong fails that message (the message is
kept, with the map, the step and the error's type and line, never a value).

Where the code comes from is bounded: ``module`` is a file ``MODULE.py`` in the map's own folder
(``maps/NAME/steps.py`` for ``call: steps:flag``), never an installed module, so ``call:
os:system`` names nothing. Its source is part of the map's version (the digest of the folder), so
the timeline says which code touched a message. It is executed without writing bytecode into the
folder. ``bridge check`` loads it and refuses a missing file or function and a function that does
not take exactly one argument, the :class:`StepContext`.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bridge.core.maps.actions import Action, ActionError, MapFailure, Run
from bridge.core.model.codec import record_from_dict, record_to_dict
from bridge.core.model.records import Record
from bridge.errors import DecodeError

TARGET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_][A-Za-z0-9_]*)$")
MAX_SOURCE_BYTES = 256 * 1024
"""A step's module is a few functions; anything larger is refused rather than executed."""

_LOADED: dict[tuple[str, str], types.ModuleType] = {}
"""(file, digest of its source) → module, so a file is executed once per process while unchanged."""


class StepContext:
    """What a ``call`` function receives: the message's records as the map has them so far, and
    the few things a step may ask for besides changing them in place.

    - ``records``: the message's top-level records (change them in place; ``drop`` to remove one).
    - ``of_kind(kind)``: every record of a kind, nested ones included (``"patient"``, ``"condition"``).
    - ``hold(reason)``: hold the message for review; the reason is what a reviewer reads.
    - ``drop(record)``: remove a top-level record (a message left with none is filtered).
    - ``fail(reason)``: fail the message (a destination's map: that destination only).
    - ``stage``: ``"channel"`` or ``"destination:NAME"``; ``map`` and ``step``: where it runs.

    Reasons are shown to operators and kept in the timeline: no patient data in them.
    """

    def __init__(self, run: Run, map_name: str, step: str):
        self._run = run
        self.map = map_name
        self.step = step
        self.changes = 0

    @property
    def records(self) -> list[Record]:
        return self._run.records

    @property
    def stage(self) -> str:
        return self._run.stage

    def of_kind(self, kind: str) -> list[Record]:
        from bridge.core.maps.paths import ROOTS

        if kind not in ROOTS:
            raise ValueError(f"unknown record kind {kind!r} (known: {', '.join(sorted(ROOTS))})")
        self._run.reshaped()  # the function may have changed the records since the last look
        return list(self._run.of_kind(ROOTS[kind]))

    def hold(self, reason: str) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("hold needs the reason a reviewer will read")
        self._run.holds.append({"id": self.step, "reason": reason.strip()})
        self.changes += 1

    def drop(self, record: Record) -> None:
        before = len(self._run.records)
        self._run.records[:] = [r for r in self._run.records if r is not record]
        if len(self._run.records) == before:
            raise ValueError("drop takes one of ctx.records (a top-level record of the message)")
        self.changes += 1

    def fail(self, reason: str) -> NoReturn:
        raise MapFailure(str(reason).strip() or "the step failed the message")


@dataclass(frozen=True)
class CallAction(Action):
    """Runs ``function(ctx)``; it returns None or how many values it changed."""

    target: str = ""
    function: Callable[[StepContext], Any] | None = None
    map_name: str = ""
    step: str = ""

    @property
    def reshapes(self) -> bool:
        return True

    def apply(self, run: Run, subject: Any) -> int:
        assert self.function is not None
        ctx = StepContext(run, self.map_name, self.step)
        try:
            result = self.function(ctx)
        except MapFailure as exc:
            raise MapFailure(f"call {self.target}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the site's code: its failure fails this message only
            raise MapFailure(f"call {self.target} raised {type(exc).__name__}{_line(exc)}") from None
        if result is not None and (isinstance(result, bool) or not isinstance(result, int) or result < 0):
            raise MapFailure(f"call {self.target} returned a {type(result).__name__}; expected None or the "
                             "number of values it changed")
        run.reshaped()
        _check_records(run.records, self.target)
        return (result or 0) + ctx.changes


def _line(exc: BaseException) -> str:
    """Where in the step's own file it was raised (its text may quote patient data: not shown)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<map ")]
    return f" ({frames[-1].filename[5:-1]} line {frames[-1].lineno})" if frames else ""


def _check_records(records: list[Record], target: str) -> None:
    """Every value the function left must fit its field, as a decoded value must."""
    for index, record in enumerate(records):
        try:
            record_from_dict(record_to_dict(record))
        except (DecodeError, TypeError, ValueError, AttributeError) as exc:
            reason = re.sub(r", got .*$", "", str(exc).split(": ", 1)[-1]) if isinstance(exc, DecodeError) else \
                type(exc).__name__
            where = str(exc).split(": ", 1)[0].removeprefix("record.") if isinstance(exc, DecodeError) \
                and ": " in str(exc) else ""
            raise MapFailure(f"call {target} left a value that does not fit in records[{index}] "
                             f"({record.kind}{' ' + where if where else ''}: {reason})") from None


def compile_call(body: Any, folder: Path, map_name: str, step: str) -> CallAction:
    """The ``call:`` step of ``folder``'s map; ActionError when its target cannot be used."""
    if not isinstance(body, str) or not TARGET.match(body.strip()):
        raise ActionError(f"call: expected module:function, a file MODULE.py in the map's folder and a function "
                          f"in it (e.g. steps:flag_visit), got {body!r}")
    module_name, function_name = TARGET.match(body.strip()).groups()  # type: ignore[union-attr]
    module = _load(folder, module_name)
    function = getattr(module, function_name, None)
    if not callable(function) or isinstance(function, type):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        raise ActionError(f"call: {module_name}.py has no function {function_name!r} "
                          f"(functions: {', '.join(found) or 'none'})")
    if inspect.iscoroutinefunction(function):
        raise ActionError(f"call: {body.strip()} is async; a step function is a plain def")
    try:
        inspect.signature(function).bind(object())
    except TypeError:
        raise ActionError(f"call: {body.strip()} must take one argument, the step context "
                          f"(def {function_name}(ctx): …); it is {function_name}{inspect.signature(function)}") from None
    except ValueError:
        pass  # a builtin without a signature: it will say so when called
    return CallAction("call", None, (), body.strip(), function, map_name, step)


def _load(folder: Path, module_name: str) -> types.ModuleType:
    path = folder / f"{module_name}.py"
    if not path.is_file():
        raise ActionError(f"call: no file {module_name}.py in the map's folder {folder.name}/ "
                          "(a call names a module of the map's own folder, not an installed one)")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ActionError(f"call: {module_name}.py points outside the map's folder")
    source = path.read_bytes()
    if len(source) > MAX_SOURCE_BYTES:
        raise ActionError(f"call: {module_name}.py is larger than {MAX_SOURCE_BYTES // 1024} KiB")
    key = (str(path.resolve()), hashlib.sha256(source).hexdigest())
    if key in _LOADED:
        return _LOADED[key]
    label = f"<map {folder.name}/{module_name}.py>"
    module = types.ModuleType(f"bridge_map_{folder.name.replace('-', '_')}_{module_name}")
    module.__file__ = str(path)
    try:
        code = compile(source, label, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the site's own step code, from its config folder
    except SyntaxError as exc:
        raise ActionError(f"call: {module_name}.py line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - loading the site's code failed: a config problem
        raise ActionError(f"call: loading {module_name}.py raised {type(exc).__name__}{_line(exc)}: {exc}") from None
    _LOADED[key] = module
    return module
