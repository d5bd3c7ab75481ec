"""A short set of seeds over real processes (the command in ``tests.faults.run`` runs many more).

A seed that finds an anomaly stays in this list, marked xfail(strict=True) with the finding, so
the suite stays green, the finding stays recorded, and its fix turns the mark into a failure
that asks for the mark's removal.
"""

from __future__ import annotations

import json

import pytest

from tests.faults.runner import run_schedule
from tests.faults.schedule import generate

SEEDS = [1, 2, 40, 48]
"""Between them every kind of fault: replica killed, paused, partitioned; Redis killed; device rebooted."""


@pytest.mark.parametrize("seed", SEEDS)
def test_no_acked_press_is_lost_or_reverted_under_a_random_fault_schedule(seed: int) -> None:
    outcome = run_schedule(generate(seed, window=5.0, devices=8))
    report = outcome.describe(with_history=False)
    assert outcome.errors == [], report
    assert report["acked"] > 0, report
    assert outcome.anomalies == [], json.dumps(report["anomalies"][:3], indent=1)
