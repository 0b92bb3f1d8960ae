"""Typed, path-aware access to FHIR JSON for the decoder.

Every getter checks the JSON type of what it reads and raises ``DecodeError`` with the FHIR path
(``MedicationRequest.dispenseRequest.quantity.value: expected a number``), because the person who
reads the error is an analyst looking at a payload from an EHR, not at our code.
"""

from __future__ import annotations

import re
from typing import Any

from bridge import DecodeError

DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
DATETIME = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class Node:
    """One JSON object of a resource and the path that leads to it."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise DecodeError("expected an object", path)
        self.data = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise DecodeError("expected a string", self.at(key))
        return value

    def datetime(self, key: str, *, date_only: bool = False) -> str | None:
        value = self.str(key)
        if value is not None and not (DATE if date_only else DATETIME).match(value):
            kind = "date" if date_only else "date or date-time"
            raise DecodeError(f"expected a FHIR {kind}, got {value!r}", self.at(key))
        return value

    def bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise DecodeError("expected true or false", self.at(key))
        return value

    def int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DecodeError("expected a whole number", self.at(key))
        return value

    def num(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DecodeError("expected a number", self.at(key))
        return None if value is None else float(value)

    def obj(self, key: str) -> Node | None:
        value = self.data.get(key)
        return None if value is None else Node(value, self.at(key))

    def list(self, key: str) -> list[Node]:
        return [Node(item, f"{self.at(key)}[{i}]") for i, item in enumerate(self._list(key))]

    def strs(self, key: str) -> list[str]:
        items = self._list(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise DecodeError("expected a string", f"{self.at(key)}[{i}]")
        return list(items)

    def _list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise DecodeError("expected a list", self.at(key))
        return value
