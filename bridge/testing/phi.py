"""Fake PHI to seed into test records, and the check that errors do not repeat it.

Errors reach logs, the timeline, the dashboard and support tickets, so a plugin must describe what
is wrong and where (a path, a field, a record kind, an id) without quoting the patient's data.
What counts, precisely, is in :func:`phi_in_exception`:

- **checked values** — the fake patient's family and given names, birth date (as ``1937-04-23``,
  ``19370423`` and ``04/23/1937``), phone number (``202-555-0142``, ``2025550142``, ``(202) 555-0142``)
  and street line, compared case-insensitively;
- **not checked** — identifiers (MRN, visit number, control id): operators find messages by them and
  the project's logging rule allows ids;
- **where** — ``str()`` and ``repr()`` of the exception, each of its ``args``, a ``DeliveryError``'s
  ``detail``, and the same for every exception a traceback would print with it (``__cause__``, or
  ``__context__`` unless suppressed by ``raise … from None``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge import Address, ContactPoint, HumanName, Identifier, Patient


@dataclass(frozen=True)
class FakePHI:
    """Distinctive fake values: nothing in a real message or error text matches them by chance."""

    family: str = "Quillfeather"
    given: str = "Ottoline"
    birth_date: str = "1937-04-23"
    phone: str = "202-555-0142"
    street: str = "17 Larkspur Close"
    mrn: str = "MRN-7Q4Z19"

    def spellings(self) -> dict[str, tuple[str, ...]]:
        """Every way each checked value may be written, by field name (identifiers excluded)."""
        year, month, day = self.birth_date.split("-")
        digits = "".join(c for c in self.phone if c.isdigit())
        return {
            "family name": (self.family,),
            "given name": (self.given,),
            "birth date": (self.birth_date, f"{year}{month}{day}", f"{month}/{day}/{year}"),
            "phone": (self.phone, digits, f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"),
            "street": (self.street,),
        }


FAKE_PHI = FakePHI()


def fake_patient(phi: FakePHI = FAKE_PHI, **overrides: object) -> Patient:
    """A Patient carrying every seeded value; put it in the records your contract tests use."""
    values: dict[str, object] = {
        "identifiers": [Identifier(value=phi.mrn, type="MR", system="urn:oid:2.16.840.1.113883.3.9999.1")],
        "name": HumanName(family=phi.family, given=[phi.given]),
        "birth_date": phi.birth_date,
        "gender": "female",
        "addresses": [Address(lines=[phi.street], state="OR", postal_code="97201")],
        "telecom": [ContactPoint(value=phi.phone, system="phone")],
    }
    values.update(overrides)
    return Patient(**values)  # type: ignore[arg-type]


def phi_in_text(text: str, phi: FakePHI = FAKE_PHI) -> list[str]:
    """The checked fields whose value (in any spelling) occurs in ``text``."""
    lowered = text.lower()
    return [name for name, spellings in phi.spellings().items() if any(s.lower() in lowered for s in spellings)]


def _exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *(str(a) for a in exc.args)]
    detail = getattr(exc, "detail", None)
    if detail:
        texts.append(str(detail))
    return texts


def printed_chain(exc: BaseException) -> list[BaseException]:
    """The exception and those a traceback prints with it (cause, or unsuppressed context)."""
    chain, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def phi_in_exception(exc: BaseException, phi: FakePHI = FAKE_PHI) -> list[str]:
    """``"<field> in <ExceptionType>"`` for each checked value found where the module docstring says."""
    found = []
    for item in printed_chain(exc):
        for name in sorted({n for text in _exception_texts(item) for n in phi_in_text(text, phi)}):
            found.append(f"{name} in {type(item).__name__}")
    return found


def assert_no_phi(exc: BaseException, phi: FakePHI = FAKE_PHI, context: str = "") -> None:
    """Fail when ``exc`` (or its printed chain) repeats a seeded value."""
    found = phi_in_exception(exc, phi)
    where = f" ({context})" if context else ""
    assert not found, f"PHI in an error{where}: {', '.join(found)} — error text: {str(exc)[:300]!r}"
