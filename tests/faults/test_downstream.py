"""Issue 16, the downstream fault matrix: every message ends delivered or dead-lettered within its
bounds when the peer answers 500, 503, 429 with Retry-After, hangs, drips its answer, resets, commits
and drops the answer (HTTP/FHIR), or answers AE, AR, late or never (MLLP). The cases and the bounds
are in :mod:`tests.faults.downstream_cases`; ``faults/downstream.py`` runs them at a larger size."""

from __future__ import annotations

import pytest

from tests.faults.downstream_cases import check, matrix, run

MESSAGES = 4


@pytest.mark.parametrize("case", matrix(), ids=lambda case: case.name)
def test_every_message_ends_delivered_or_dead_within_its_bounds(case, tmp_path):
    check(run(case, MESSAGES, tmp_path))
