"""The contracts must fail for faulty plugins: each fault here is one a real plugin could have.

Contract methods are called directly on a subclass instance with the objects their fixtures would
give, so each test shows exactly which contract test catches which fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from bridge import (
    DecodeError,
    Delivery,
    DestinationContext,
    DestinationProfile,
    EncodeError,
    FormatSpec,
    HumanName,
    OptionSpec,
    Patient,
    PermanentDeliveryError,
    Record,
    TransientDeliveryError,
    hookimpl,
)
from bridge.testing import FakeHttpServer, FormatContract, ProfileContract, fake_patient, plugin_manager


# --- a small JSON patient format, with switchable faults ------------------------------------------


def make_format(*, leak: bool = False, crash: bool = False, lossy: bool = False,
                declared: bool = True) -> FormatSpec:
    def decode(raw: bytes, options: Mapping[str, Any]) -> list[Record]:
        try:
            doc = json.loads(raw)
        except ValueError:
            if crash:
                raise  # fault: a bare ValueError escapes
            detail = f" in {raw.decode('utf-8', 'replace')}" if leak else ""  # fault: quotes the input
            raise DecodeError(f"not JSON{detail}") from None
        if not isinstance(doc, dict) or "family" not in doc:
            raise DecodeError("expected an object with 'family'")
        return [Patient(id=doc.get("id"), name=HumanName(family=doc["family"], given=doc.get("given", [])),
                        birth_date=None if lossy else doc.get("birth"))]

    def encode(records: Sequence[Record], options: Mapping[str, Any]) -> bytes:
        patients = [r for r in records if isinstance(r, Patient)]
        if not patients:
            raise EncodeError("only Patient records can be written")
        p = patients[0]
        if p.name is None:
            raise EncodeError(f"patient without a name (born {p.birth_date})" if leak else "patient without a name")
        doc = {"id": p.id, "family": p.name.family, "given": p.name.given, "birth": p.birth_date}
        return json.dumps(doc, sort_keys=True).encode()

    options = () if declared else None  # fault when undeclared: bridge check cannot check its options
    return FormatSpec(name="pt-json", media_type="application/json", decode=decode, encode=encode,
                      file_extension="json", decode_options=options, encode_options=options)


def format_contract(spec: FormatSpec) -> tuple[FormatContract, FormatSpec]:
    class Contract(FormatContract):
        format_name = "pt-json"
        sample_records = [fake_patient(id="P1", identifiers=[], addresses=[], telecom=[], gender=None)]
        bad_inputs = [b"{", b"[]"]
        bad_records = [[fake_patient(name=None)]]

    class Plugin:
        @hookimpl
        def bridge_formats(self):
            return [spec]

    return Contract(), plugin_manager(("pt", Plugin())).format("pt-json")


def test_a_correct_format_passes_the_whole_contract():
    contract, spec = format_contract(make_format())
    for name in dir(contract):
        if name.startswith("test_"):
            getattr(contract, name)(spec)


def test_a_format_that_declares_no_options_is_caught():
    contract, spec = format_contract(make_format(declared=False))
    with pytest.raises(AssertionError, match="format 'pt-json' decode_options declares no options"):
        contract.test_format_declares_valid_options(spec)


def test_malformed_option_declarations_are_caught():
    from bridge import OptionSpec
    from bridge.testing.contracts import option_spec_problems

    specs = (OptionSpec("mode", kind="text"), OptionSpec("mode", choices=("a", "b"), default="c"),
             OptionSpec("trace_id"))
    problems = " | ".join(option_spec_problems(specs, "format 'x'"))
    assert "kind 'text'" in problems and "declared twice" in problems
    assert "defaults to 'c'" in problems and "'trace_id' is set by the engine" in problems


def test_quoting_the_input_in_a_decode_error_is_caught():
    contract, spec = format_contract(make_format(leak=True))
    with pytest.raises(AssertionError, match="PHI in an error .*family name in DecodeError"):
        contract.test_decode_errors_carry_no_phi(spec)
    with pytest.raises(AssertionError, match="birth date in EncodeError"):
        contract.test_encode_errors_carry_no_phi(spec)


def test_an_exception_other_than_decode_error_is_caught():
    contract, spec = format_contract(make_format(crash=True))
    with pytest.raises(AssertionError, match="JSONDecodeError .*not DecodeError"):
        contract.test_damaged_input_raises_only_decode_error(spec)
    with pytest.raises(Exception) as caught:
        contract.test_bad_inputs_raise_decode_error_with_a_message(spec)
    assert not isinstance(caught.value, DecodeError)


def test_a_lossy_round_trip_is_caught():
    contract, spec = format_contract(make_format(lossy=True))
    with pytest.raises(AssertionError, match="decode\\(encode\\(records\\)\\) differs"):
        contract.test_decode_of_encode_gives_the_records_back(spec)


def test_samples_without_seeded_phi_are_refused():
    contract, spec = format_contract(make_format())
    type(contract).sample_records = [Patient(id="P9", name=HumanName(family="Doe"))]
    with pytest.raises(AssertionError, match="no seeded PHI"):
        contract.test_samples_carry_the_seeded_phi(spec)


# --- a destination profile posting to a counting peer, with switchable faults ----------------------


class CountingPeer(FakeHttpServer):
    """Stores each POSTed body under its Idempotency-Key when it has one (as many APIs do)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[bytes] = []
        self.keys: set[str] = set()

    def answer(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key")
        with self.lock:
            if key and key in self.keys:
                return self.json(200, {"status": "already stored"})
            if key:
                self.keys.add(key)
            self.stored.append(request.get_data())
        return self.json(201, {"status": "stored"})


class PostingDestination:
    def __init__(self, ctx: DestinationContext, *, keyed: bool, leak: bool, raw_errors: bool):
        self.url, self.keyed, self.leak, self.raw_errors = ctx.options["url"], keyed, leak, raw_errors

    def send(self, delivery: Delivery) -> str:
        headers = {"Idempotency-Key": delivery.idempotency_key} if self.keyed else {}
        answer = requests.post(self.url, data=delivery.payload, headers=headers, timeout=(1, 1))
        if answer.status_code < 300:
            return f"HTTP {answer.status_code}"
        if self.raw_errors:
            answer.raise_for_status()  # fault: a requests.HTTPError, not a DeliveryError
        what = f" sending {delivery.payload.decode()}" if self.leak else ""  # fault: quotes the payload
        kind = TransientDeliveryError if answer.status_code >= 500 else PermanentDeliveryError
        raise kind(f"HTTP {answer.status_code}{what}")

    def close(self) -> None:
        pass


def profile_contract(declared: tuple[OptionSpec, ...] | None = (OptionSpec("url", kind="string", required=True),),
                     **faults: bool) -> tuple[ProfileContract, Any]:
    options = {"keyed": True, "leak": False, "raw_errors": False, **faults}

    class Plugin:
        @hookimpl
        def bridge_formats(self):
            return [make_format()]

        @hookimpl
        def bridge_destination_profiles(self):
            return [DestinationProfile(name="counting", format="pt-json", options=declared,
                                       make_destination=lambda ctx: PostingDestination(ctx, **options))]

    class Contract(ProfileContract):
        profile_name = "counting"
        sample_records = [[fake_patient(id="P1", identifiers=[], addresses=[], telecom=[], gender=None)],
                          [fake_patient(id="P2", identifiers=[], addresses=[], telecom=[], gender=None)]]

        def effects(self, peer: CountingPeer) -> int:
            return len(peer.stored)

        def destination_options(self, peer: CountingPeer) -> dict[str, Any]:
            return {"url": peer.url + "/visits"}

        def script_failure(self, peer: CountingPeer, kind: str) -> None:
            if kind == "timeout":
                raise NotImplementedError(kind)
            peer.inject(status=503 if kind == "transient" else 422, body={"error": "refused"})

    return Contract(), plugin_manager(("counting", Plugin()))


def run_destination_test(contract: ProfileContract, plugins: Any, test_name: str, tmp_path: Any) -> None:
    with CountingPeer() as peer:
        made = []

        def make():
            ctx = DestinationContext(url="", name="contract", options={"url": peer.url + "/visits"},
                                     config_dir=str(tmp_path))
            made.append(contract.build(plugins, ctx))
            return made[-1]

        getattr(contract, test_name)(plugins, peer, make)


DESTINATION_TESTS = ["test_each_delivery_has_one_effect", "test_the_same_delivery_twice_leaves_one_effect",
                     "test_redelivery_from_a_restarted_engine_leaves_one_effect",
                     "test_transient_failure_raises_transient_then_recovers", "test_permanent_failure_raises_permanent",
                     "test_delivery_errors_carry_no_phi"]


@pytest.mark.parametrize("test_name", DESTINATION_TESTS)
def test_a_correct_destination_passes(test_name, tmp_path):
    contract, plugins = profile_contract()
    run_destination_test(contract, plugins, test_name, tmp_path)


def test_profile_option_declarations_are_checked():
    with CountingPeer() as peer:
        contract, plugins = profile_contract()
        contract.test_profile_declares_valid_options(plugins, peer)
        contract, plugins = profile_contract(declared=None)
        with pytest.raises(AssertionError, match="profile 'counting' declares no options"):
            contract.test_profile_declares_valid_options(plugins, peer)
        contract, plugins = profile_contract(declared=(OptionSpec("base_url"),))
        with pytest.raises(AssertionError, match=r"destination options \['url'\] are not declared"):
            contract.test_profile_declares_valid_options(plugins, peer)


def test_a_destination_without_idempotency_is_caught(tmp_path):
    contract, plugins = profile_contract(keyed=False)
    with pytest.raises(AssertionError, match="the same delivery sent twice left 2 effects"):
        run_destination_test(contract, plugins, "test_the_same_delivery_twice_leaves_one_effect", tmp_path)


def test_a_destination_quoting_the_payload_in_errors_is_caught(tmp_path):
    contract, plugins = profile_contract(leak=True)
    with pytest.raises(AssertionError, match="PHI in an error .*transient failure.*family name"):
        run_destination_test(contract, plugins, "test_delivery_errors_carry_no_phi", tmp_path)


def test_a_destination_raising_a_non_delivery_error_is_caught(tmp_path):
    contract, plugins = profile_contract(raw_errors=True)
    with pytest.raises(requests.HTTPError):
        run_destination_test(contract, plugins, "test_transient_failure_raises_transient_then_recovers", tmp_path)
