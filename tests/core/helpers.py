"""Shared helpers for core tests: sample messages and a scriptable test transport."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from bridge import (
    Delivery,
    DestinationContext,
    PermanentDeliveryError,
    TransientDeliveryError,
    TransportSpec,
    hookimpl,
)


def encounter_message(n: int = 1, patient: str = "MRN1", message_id: str | None = None, **fields: Any) -> bytes:
    record = {
        "kind": "Encounter",
        "id": f"ENC-{n}",
        "status": "finished",
        "modality": "video",
        "patient": {"identifiers": [{"value": patient, "type": "MR"}], "name": {"family": "Testpatient"}},
        **fields,
    }
    doc: dict[str, Any] = {"schema": "telemed-bridge/1", "records": [record]}
    if message_id is not None:
        doc["message_id"] = message_id
    return json.dumps(doc).encode()


def prescription_message(number: str = "RX-1", patient: str = "MRN1", encounter: str | None = None) -> bytes:
    record: dict[str, Any] = {
        "kind": "Prescription",
        "prescriber_order_number": number,
        "medication": {"description": "Ibuprofen 400 mg tablet", "rxnorm": "197806", "dea_schedule": "none"},
        "quantity": {"value": 30, "unit": "tablet"},
        "patient": {"identifiers": [{"value": patient, "type": "MR"}]},
    }
    if encounter:
        record["encounter"] = {"id": encounter}
    return json.dumps({"schema": "telemed-bridge/1", "records": [record]}).encode()


class ScriptedDestinations:
    """A ``script://NAME`` destination whose answers a test scripts: "ok", "transient", "permanent", "boom"."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}
        self.sent: dict[str, list[Delivery]] = {}
        self.lock = threading.Lock()

    def script(self, name: str, answers: Iterable[str]) -> None:
        self.scripts[name] = list(answers)

    def plugin(self):
        owner = self

        class Destination:
            def __init__(self, ctx: DestinationContext):
                self.name = ctx.url.split("://", 1)[1]

            def send(self, delivery: Delivery) -> str:
                with owner.lock:
                    answers = owner.scripts.get(self.name, [])
                    answer = answers.pop(0) if answers else "ok"
                    owner.sent.setdefault(self.name, []).append(delivery)
                if answer == "transient":
                    raise TransientDeliveryError("peer busy (scripted)", retry_after=0)
                if answer == "permanent":
                    raise PermanentDeliveryError("peer refused (scripted)")
                if answer == "boom":
                    raise RuntimeError("scripted crash")
                return f"accepted by {self.name}"

            def close(self) -> None:
                pass

        class Plugin:
            @hookimpl
            def bridge_transports(self):
                return [TransportSpec(scheme="script", destination=Destination)]

        return Plugin()
