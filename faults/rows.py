"""What the fault scripts share for their results: a judged row, its console line, the Markdown table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def judged_row(outcome: Any, check: Callable[[Any], None], thrown_away: int) -> dict:
    """``outcome.row()`` with whether ``check`` found its bounds held (the failed bound's text if not)."""
    try:
        check(outcome)
        held = "yes"
    except AssertionError as failure:
        held = f"NO: {failure}"
    return {**outcome.row(), "bounds held": held, "reruns": thrown_away}


def print_row(header: Sequence[str], row: dict) -> None:
    print(" | ".join(str(row[k]) for k in header), flush=True)


def table_lines(header: Sequence[str], rows: Sequence[dict]) -> list[str]:
    """A Markdown table of ``rows`` in ``header``'s column order."""
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows)]
