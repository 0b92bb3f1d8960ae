"""Contract tests every format, transport and destination profile must pass, as classes to subclass.

In the style of pytest's own test kits: subclass in your plugin's test suite, name the class
``Test…`` so pytest collects it, and fill in the class attributes (and, for destinations, a ``peer``
fixture and a few small methods)::

    class TestAcmeFormat(FormatContract):
        plugin, plugin_name = acme_bridge, "acme"
        format_name = "acme-json"
        sample_records = [encounter_with_note()]
        bad_inputs = [b"{", b'{"visit": 3}']

Each test gets a fresh plugin manager with the built-ins plus ``plugin`` (or, when ``plugin`` is
None, everything installed: built-ins and entry points). What each test checks is in its docstring
and in ``docs/plugins.md``; the PHI rule is in :mod:`bridge.testing.phi`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from bridge import (
    OPTION_KINDS,
    DecodeError,
    Delivery,
    Destination,
    DestinationContext,
    EncodeError,
    MessageHeader,
    OptionSpec,
    PermanentDeliveryError,
    Receipt,
    Record,
    SourceContext,
    StoreError,
    TransientDeliveryError,
    record_to_dict,
)
from bridge.core.plugin_manager import PluginManager, load_plugins

from . import plugin_manager
from .phi import FAKE_PHI, FakePHI, assert_no_phi, phi_in_text

ENGINE_OPTIONS = {"message_control_id": "TBCONTRACT0001", "trace_id": "trace-contract-1"}
"""What the engine adds to a destination's options when it encodes (see docs/plugins.md)."""


def option_spec_problems(specs: Sequence[OptionSpec] | None, who: str) -> list[str]:
    """What is wrong with a plugin's declared options: undeclared (``None``), not OptionSpecs, a name
    twice, a kind that is not one of OPTION_KINDS, a default outside its choices, an engine-set key."""
    if specs is None:
        return [f"{who} declares no options (None): bridge check cannot check its users' options; "
                "declare them (an empty tuple if it reads none)"]
    problems, seen = [], set()
    for spec in specs:
        if not isinstance(spec, OptionSpec):
            problems.append(f"{who}: {spec!r} is not an OptionSpec")
            continue
        if spec.name in seen:
            problems.append(f"{who}: option {spec.name!r} declared twice")
        seen.add(spec.name)
        if spec.kind not in OPTION_KINDS:
            problems.append(f"{who}: option {spec.name!r} has kind {spec.kind!r} (one of {', '.join(OPTION_KINDS)})")
        if spec.choices is not None and spec.default is not None and spec.default not in spec.choices:
            problems.append(f"{who}: option {spec.name!r} defaults to {spec.default!r}, not one of its choices")
        if spec.name in ENGINE_OPTIONS or spec.name == "config_dir":
            problems.append(f"{who}: {spec.name!r} is set by the engine, not a user option")
    return problems


def undeclared_keys(options: Mapping[str, Any], *declared: Sequence[OptionSpec] | None) -> list[str]:
    """The keys of ``options`` none of ``declared`` names (engine-set keys aside)."""
    names = {spec.name for specs in declared for spec in specs or ()}
    return sorted(k for k in options if k not in names and k not in ENGINE_OPTIONS and k != "config_dir")


def as_messages(records: Sequence[Any]) -> list[list[Record]]:
    """``sample_records`` may be one message (a list of records) or a list of messages."""
    if not records:
        return []
    if isinstance(records[0], Record):
        return [list(records)]
    return [list(message) for message in records]


def as_dicts(records: Sequence[Record]) -> list[Any]:
    return [record_to_dict(r) for r in records]


def corruptions(raw: bytes, phi: FakePHI = FAKE_PHI) -> list[bytes]:
    """Damaged copies of a good message: truncations (also right after each seeded value), a stray
    invalid byte after each seeded value, non-UTF-8 and empty input — all things a sender has sent."""
    cuts = {len(raw) // 4, len(raw) // 2, (3 * len(raw)) // 4, len(raw) - 1}
    damaged = [b"", b"\xff\xfe\x00garbage", raw[: max(cuts)] + b"\xff"]
    lowered = raw.lower()
    for spellings in phi.spellings().values():
        for spelling in spellings:
            at = lowered.find(spelling.lower().encode())
            if at >= 0:
                end = at + len(spelling)
                cuts.add(end)
                damaged.append(raw[:end] + b"\xc3" + raw[end:])
    damaged.extend(raw[:cut] for cut in sorted(cuts) if 0 < cut < len(raw))
    return damaged


class PluginUnderTest:
    """Shared by every contract: which plugin is tested and a fresh plugin manager per test."""

    plugin: ClassVar[object | None] = None
    """The plugin module or object under test; None tests what is installed (built-ins and entry points)."""
    plugin_name: ClassVar[str] = ""
    """Its name, as in its entry point (``acme``)."""
    disabled_plugins: ClassVar[tuple[str, ...]] = ()
    """Plugins to leave out (e.g. ``("telehealth_policy",)``)."""
    phi: ClassVar[FakePHI] = FAKE_PHI

    @pytest.fixture
    def plugins(self) -> PluginManager:
        """A fresh plugin manager for this test."""
        if self.plugin is None:
            return load_plugins(disabled=self.disabled_plugins)
        name = self.plugin_name or getattr(self.plugin, "__name__", "plugin-under-test")
        return plugin_manager((name, self.plugin), disabled=self.disabled_plugins)


# --- formats -----------------------------------------------------------------------------------


class FormatContract(PluginUnderTest):
    """What a format must do. Set ``format_name``, ``sample_records`` and ``bad_inputs``.

    ``sample_records`` should carry the seeded PHI (use :func:`bridge.testing.fake_patient`) so the
    no-PHI tests have something to find; ``bad_records`` are records the format cannot encode.
    """

    format_name: ClassVar[str] = ""
    sample_records: ClassVar[Sequence[Any]] = ()
    bad_inputs: ClassVar[Sequence[bytes]] = ()
    bad_records: ClassVar[Sequence[Sequence[Record]]] = ()
    options: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def spec(self, plugins: PluginManager) -> Any:
        assert self.format_name, f"{type(self).__name__}: set format_name"
        return plugins.format(self.format_name)

    def messages(self) -> list[list[Record]]:
        messages = as_messages(self.sample_records)
        assert messages, f"{type(self).__name__}: set sample_records (one message's records, or a list of them)"
        return messages

    def encode(self, spec: Any, records: Sequence[Record]) -> bytes:
        return spec.encode(records, {**self.options, **ENGINE_OPTIONS})

    def decode(self, spec: Any, raw: bytes) -> list[Record]:
        return spec.decode(raw, dict(self.options))

    def test_format_declares_valid_options(self, spec: Any) -> None:
        """decode_options and encode_options are declared (so ``bridge check`` can refuse a typo) and
        well formed; the ``options`` this contract uses are among them."""
        problems = (option_spec_problems(spec.decode_options, f"format {spec.name!r} decode_options")
                    + option_spec_problems(spec.encode_options, f"format {spec.name!r} encode_options"))
        assert not problems, "; ".join(problems)
        unknown = undeclared_keys(self.options, spec.decode_options, spec.encode_options)
        assert not unknown, f"options {unknown} are used by {type(self).__name__} but not declared by {spec.name!r}"

    def test_format_is_registered_with_a_media_type(self, spec: Any) -> None:
        """The format is found by name and says what it is (media type, file extension)."""
        assert spec.name == self.format_name
        assert "/" in spec.media_type, f"{spec.name}: media_type {spec.media_type!r} is not a media type"
        assert spec.file_extension and "." not in spec.file_extension

    def test_decode_of_encode_gives_the_records_back(self, spec: Any) -> None:
        """decode(encode(records)) == records: nothing is lost or invented."""
        for index, records in enumerate(self.messages()):
            decoded = self.decode(spec, self.encode(spec, records))
            assert as_dicts(decoded) == as_dicts(records), f"sample {index}: decode(encode(records)) differs"

    def test_encode_is_stable_across_a_round_trip(self, spec: Any) -> None:
        """encode → decode → encode gives the same bytes (so re-delivery sends the same payload)."""
        for index, records in enumerate(self.messages()):
            first = self.encode(spec, records)
            assert isinstance(first, bytes), f"sample {index}: encode returned {type(first).__name__}, not bytes"
            assert self.encode(spec, self.decode(spec, first)) == first, f"sample {index}: encode is not stable"

    def test_peek_and_detect_never_raise(self, spec: Any) -> None:
        """peek runs at intake before the commit and must not fail; detect recognises own output."""
        own = [self.encode(spec, records) for records in self.messages()]
        for raw in [*own, *self.bad_inputs, *(c for r in own for c in corruptions(r, self.phi))]:
            assert isinstance(spec.peek(raw), MessageHeader)
            if spec.detect is not None:
                assert spec.detect(raw) in (True, False)
        if spec.detect is not None:
            assert all(spec.detect(raw) for raw in own), f"{spec.name}: detect does not recognise its own output"

    def test_bad_inputs_raise_decode_error_with_a_message(self, spec: Any) -> None:
        """Each of ``bad_inputs`` raises DecodeError saying what is wrong — never another exception."""
        assert self.bad_inputs, f"{type(self).__name__}: give at least one bad input in bad_inputs"
        for raw in self.bad_inputs:
            with pytest.raises(DecodeError) as caught:
                self.decode(spec, raw)
            assert str(caught.value).strip(), f"DecodeError without a message for {raw[:60]!r}"

    def test_damaged_input_raises_only_decode_error(self, spec: Any) -> None:
        """Truncated, non-UTF-8 and empty input either decodes or raises DecodeError, nothing else."""
        for records in self.messages():
            for raw in corruptions(self.encode(spec, records), self.phi):
                try:
                    decoded = self.decode(spec, raw)
                except DecodeError as exc:
                    assert str(exc).strip(), f"DecodeError without a message for {raw[-60:]!r}"
                    continue
                except Exception as exc:  # the contract: nothing but DecodeError escapes decode
                    raise AssertionError(f"decode raised {type(exc).__name__} (not DecodeError) "
                                         f"for damaged input ending {raw[-40:]!r}: {exc}") from exc
                assert isinstance(decoded, list) and all(isinstance(r, Record) for r in decoded)

    def test_bad_records_raise_encode_error_with_a_message(self, spec: Any) -> None:
        """Each of ``bad_records`` raises EncodeError with a message; empty input does too or encodes."""
        for records in self.bad_records:
            with pytest.raises(EncodeError) as caught:
                self.encode(spec, records)
            assert str(caught.value).strip(), "EncodeError without a message"
        try:
            self.encode(spec, [])
        except EncodeError as exc:
            assert str(exc).strip(), "EncodeError without a message for no records"

    def test_samples_carry_the_seeded_phi(self, spec: Any) -> None:
        """Precondition of the no-PHI tests: the encoded samples really contain seeded values."""
        found = {name for records in self.messages()
                 for name in phi_in_text(self.encode(spec, records).decode("utf-8", "replace"), self.phi)}
        assert found, (f"{type(self).__name__}: no seeded PHI in the encoded samples; build them with "
                       "bridge.testing.fake_patient() so the no-PHI tests can find a leak")

    def test_decode_errors_carry_no_phi(self, spec: Any) -> None:
        """DecodeErrors for damaged messages full of seeded PHI name the place, not the values."""
        for records in self.messages():
            for raw in [*corruptions(self.encode(spec, records), self.phi), *self.bad_inputs]:
                try:
                    self.decode(spec, raw)
                except DecodeError as exc:
                    assert_no_phi(exc, self.phi, f"decoding input ending {raw[-30:]!r}")

    def test_encode_errors_carry_no_phi(self, spec: Any) -> None:
        """EncodeErrors for ``bad_records`` (seed PHI into them) do not repeat the values."""
        for records in self.bad_records:
            try:
                self.encode(spec, records)
            except EncodeError as exc:
                assert_no_phi(exc, self.phi, "encoding bad_records")


# --- destinations (transports and profiles) ------------------------------------------------------


class DestinationContract(PluginUnderTest):
    """What any destination must do; subclass :class:`TransportContract` or :class:`ProfileContract`.

    Provide a ``peer`` fixture (a fake of the receiving system, started and stopped), and:

    - ``destination_url(peer)`` / ``destination_options(peer)``: the destination's config;
    - ``effects(peer)``: how many distinct things the peer now holds (records, visits, accepted messages);
    - ``script_failure(peer, kind)``: make the peer's next answer fail — ``"transient"`` (e.g. 503 / AE),
      ``"permanent"`` (e.g. 422 / AR) or ``"timeout"`` (no answer within the options' timeout); raise
      NotImplementedError for a kind that does not apply (its test is then skipped). The scripted
      answer must not quote the request: the no-PHI test checks what the *destination* adds.

    Payloads come from ``payloads``, or from ``sample_records`` encoded with ``format_name``.
    """

    format_name: ClassVar[str] = ""
    sample_records: ClassVar[Sequence[Any]] = ()
    payloads: ClassVar[Sequence[bytes]] = ()
    timeout_budget_seconds: ClassVar[float] = 10.0
    """A ``"timeout"`` failure must surface as TransientDeliveryError within this many seconds."""

    @pytest.fixture
    def peer(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__}: define a `peer` fixture starting the fake peer")
        yield  # pragma: no cover

    def destination_url(self, peer: Any) -> str:
        return ""

    def destination_options(self, peer: Any) -> dict[str, Any]:
        return {}

    def effects(self, peer: Any) -> int:
        raise NotImplementedError(f"{type(self).__name__}: define effects(peer)")

    def script_failure(self, peer: Any, kind: str) -> None:
        raise NotImplementedError(kind)

    def build(self, plugins: PluginManager, ctx: DestinationContext) -> Destination:
        raise NotImplementedError

    def resolved_format(self, plugins: PluginManager) -> str:
        return self.format_name

    # -- helpers --

    @pytest.fixture
    def open_destination(self, plugins: PluginManager, peer: Any, tmp_path: Any) -> Iterator[Any]:
        """Factory building destinations against ``peer``; every one is closed after the test."""
        made: list[Destination] = []

        def make() -> Destination:
            ctx = DestinationContext(url=self.destination_url(peer), name="contract",
                                     options=self.destination_options(peer), config_dir=str(tmp_path))
            made.append(self.build(plugins, ctx))
            return made[-1]

        yield make
        for destination in made:
            destination.close()

    def deliveries(self, plugins: PluginManager) -> list[Delivery]:
        payloads = list(self.payloads)
        media_type, extension = "application/octet-stream", "dat"
        fmt = self.resolved_format(plugins)
        if fmt:
            spec = plugins.format(fmt)
            media_type, extension = spec.media_type, spec.file_extension
        if not payloads:
            assert fmt, f"{type(self).__name__}: set payloads, or sample_records and a format"
            payloads = [spec.encode(records, {**ENGINE_OPTIONS, "message_control_id": f"TBCONTRACT{i:04d}"})
                        for i, records in enumerate(as_messages(self.sample_records))]
        assert payloads, f"{type(self).__name__}: set payloads or sample_records"
        return [Delivery(outbox_id=i + 1, message_id=i + 1, destination="contract", payload=payload,
                         media_type=media_type, file_extension=extension, attempt=1,
                         trace_id=f"trace-contract-{i + 1}", idempotency_key=f"tb-{i + 1}-{i + 1}")
                for i, payload in enumerate(payloads)]

    def failing(self, peer: Any, kind: str) -> None:
        try:
            self.script_failure(peer, kind)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} scripts no {kind!r} failure")

    @staticmethod
    def again(delivery: Delivery) -> Delivery:
        return dataclasses.replace(delivery, attempt=delivery.attempt + 1)

    # -- the contract --

    def test_each_delivery_has_one_effect(self, plugins: PluginManager, peer: Any, open_destination: Any) -> None:
        """Every distinct delivery reaches the peer once; ``send`` returns a description or None."""
        destination = open_destination()
        for count, delivery in enumerate(self.deliveries(plugins), start=1):
            answer = destination.send(delivery)
            assert answer is None or isinstance(answer, str)
            assert self.effects(peer) == count, f"after delivery {count} the peer holds {self.effects(peer)}"

    def test_the_same_delivery_twice_leaves_one_effect(self, plugins: PluginManager, peer: Any,
                                                       open_destination: Any) -> None:
        """At-least-once delivery re-sends after a crash or lost answer: the peer must hold it once."""
        destination = open_destination()
        first = self.deliveries(plugins)[0]
        destination.send(first)
        destination.send(self.again(first))
        assert self.effects(peer) == 1, f"the same delivery sent twice left {self.effects(peer)} effects"

    def test_redelivery_from_a_restarted_engine_leaves_one_effect(self, plugins: PluginManager, peer: Any,
                                                                 open_destination: Any) -> None:
        """Idempotency may not live only in memory: a new destination object re-sending is a no-op too."""
        first = self.deliveries(plugins)[0]
        open_destination().send(first)
        open_destination().send(self.again(first))
        assert self.effects(peer) == 1

    def test_transient_failure_raises_transient_then_recovers(self, plugins: PluginManager, peer: Any,
                                                              open_destination: Any) -> None:
        """A failure that may pass raises TransientDeliveryError (with a message); the retry succeeds once."""
        destination = open_destination()
        first = self.deliveries(plugins)[0]
        self.failing(peer, "transient")
        with pytest.raises(TransientDeliveryError) as caught:
            destination.send(first)
        assert str(caught.value).strip()
        destination.send(self.again(first))
        assert self.effects(peer) == 1

    def test_permanent_failure_raises_permanent(self, plugins: PluginManager, peer: Any,
                                                open_destination: Any) -> None:
        """A refusal retrying cannot fix raises PermanentDeliveryError (dead letter) with a message."""
        destination = open_destination()
        self.failing(peer, "permanent")
        with pytest.raises(PermanentDeliveryError) as caught:
            destination.send(self.deliveries(plugins)[0])
        assert str(caught.value).strip()
        assert self.effects(peer) == 0

    def test_a_peer_that_does_not_answer_is_transient_within_the_timeout(
            self, plugins: PluginManager, peer: Any, open_destination: Any) -> None:
        """Every network call has a timeout: a silent peer gives TransientDeliveryError, not a hang."""
        destination = open_destination()
        self.failing(peer, "timeout")
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError):
            destination.send(self.deliveries(plugins)[0])
        assert time.monotonic() - started < self.timeout_budget_seconds

    def test_delivery_errors_carry_no_phi(self, plugins: PluginManager, peer: Any, open_destination: Any) -> None:
        """Errors for payloads full of seeded PHI do not repeat it (see bridge.testing.phi)."""
        destination = open_destination()
        delivery = self.deliveries(plugins)[0]
        checked = 0
        for kind in ("transient", "permanent", "timeout"):
            try:
                self.script_failure(peer, kind)
            except NotImplementedError:
                continue
            with pytest.raises((TransientDeliveryError, PermanentDeliveryError)) as caught:
                destination.send(self.again(delivery))
            assert_no_phi(caught.value, self.phi, f"{kind} failure")
            checked += 1
        if not checked:
            pytest.skip("no failure kinds scripted")


class TransportContract(DestinationContract):
    """A transport (``scheme``): its destination side, and its source side when ``source_url`` is set.

    Source side: define ``source_url(tmp_path)`` (port 0 is fine) and ``send_to_source(source, url, raw)
    -> bool`` — send ``raw`` to the started source (read a bound port from ``source``) and return True
    when the source answered "accepted"; ``source_payload`` is what is sent.
    """

    scheme: ClassVar[str] = ""
    source_payload: ClassVar[bytes] = b""

    def build(self, plugins: PluginManager, ctx: DestinationContext) -> Destination:
        spec = plugins.transports()[self.scheme]
        if spec.destination is None:
            pytest.skip(f"transport {self.scheme!r} has no destination side")
        return spec.destination(ctx)

    def source_url(self, tmp_path: Any) -> str | None:
        return None

    def send_to_source(self, source: Any, url: str, raw: bytes) -> bool:
        raise NotImplementedError(f"{type(self).__name__}: define send_to_source(source, url, raw)")

    def run_source(self, plugins: PluginManager, tmp_path: Any, submit: Any) -> bool:
        url = self.source_url(tmp_path)
        spec = plugins.transports()[self.scheme]
        if url is None or spec.source is None:
            pytest.skip(f"{type(self).__name__} tests no source side")
        ctx = SourceContext(url=url, channel="contract", options={}, submit=submit, config_dir=str(tmp_path),
                            max_message_bytes=1024 * 1024, format_name=self.format_name or "bridge",
                            submit_many=lambda items: [submit(*item) for item in items])
        source = spec.source(ctx)
        source.start()
        try:
            return self.send_to_source(source, url, self.source_payload)
        finally:
            source.stop()

    def test_transport_scheme_is_registered(self, plugins: PluginManager) -> None:
        assert self.scheme in plugins.transports(), f"no transport registered for {self.scheme!r}"

    def test_transport_declares_valid_options(self, plugins: PluginManager, peer: Any) -> None:
        """source_options and destination_options are declared and well formed (a side the transport
        does not have may declare nothing); the destination options this contract uses are declared."""
        spec = plugins.transports()[self.scheme]
        problems = []
        if spec.source is not None:
            problems += option_spec_problems(spec.source_options, f"transport {self.scheme!r} source_options")
        if spec.destination is not None:
            problems += option_spec_problems(spec.destination_options,
                                             f"transport {self.scheme!r} destination_options")
            fmt = plugins.formats().get(self.resolved_format(plugins))
            unknown = undeclared_keys(self.destination_options(peer), spec.destination_options,
                                      fmt.encode_options if fmt else ())
            problems += [f"destination options {unknown} are not declared"] if unknown else []
        assert not problems, "; ".join(problems)

    def test_source_submits_the_bytes_unchanged_and_acknowledges(self, plugins: PluginManager,
                                                                 tmp_path: Any) -> None:
        """What the sender sent is what the intake gets, and the sender hears success after the commit."""
        submitted: list[bytes] = []

        def submit(raw: bytes, origin: Any = None, error: Any = None) -> Receipt:
            submitted.append(raw)
            return Receipt(message_id=len(submitted), accepted=error is None)

        assert self.run_source(plugins, tmp_path, submit) is True
        assert submitted == [self.source_payload]

    def test_source_does_not_acknowledge_what_was_not_stored(self, plugins: PluginManager, tmp_path: Any) -> None:
        """When the commit fails (StoreError) the sender must not hear success."""
        def submit(raw: bytes, origin: Any = None, error: Any = None) -> Receipt:
            raise StoreError("disk full (contract test)")

        assert self.run_source(plugins, tmp_path, submit) is False


class ProfileContract(DestinationContract):
    """A vendor destination profile (``profile_name``); payloads are encoded with the profile's format
    (or ``format_name``) from ``sample_records``."""

    profile_name: ClassVar[str] = ""

    def profile(self, plugins: PluginManager) -> Any:
        assert self.profile_name, f"{type(self).__name__}: set profile_name"
        profiles = plugins.destination_profiles()
        assert self.profile_name in profiles, f"no destination profile {self.profile_name!r}"
        return profiles[self.profile_name]

    def build(self, plugins: PluginManager, ctx: DestinationContext) -> Destination:
        return self.profile(plugins).make_destination(ctx)

    def resolved_format(self, plugins: PluginManager) -> str:
        return self.format_name or self.profile(plugins).format or ""

    def test_profile_declares_valid_options(self, plugins: PluginManager, peer: Any) -> None:
        """The profile declares its options, well formed; the options this contract uses are declared
        by the profile or its format's encoder (what ``bridge check`` will accept)."""
        profile = self.profile(plugins)
        problems = option_spec_problems(profile.options, f"profile {profile.name!r}")
        fmt = plugins.formats().get(self.resolved_format(plugins))
        unknown = undeclared_keys(self.destination_options(peer), profile.options, fmt.encode_options if fmt else ())
        problems += [f"destination options {unknown} are not declared"] if unknown else []
        assert not problems, "; ".join(problems)

    def test_profile_is_registered_and_its_format_exists(self, plugins: PluginManager) -> None:
        """The profile is found by name, and the format it encodes with is registered too."""
        fmt = self.resolved_format(plugins)
        assert fmt, f"profile {self.profile_name!r} names no format and format_name is not set"
        plugins.format(fmt)
