"""A short set of seeds over real processes (the command in ``tests.faults.run`` runs many more).

A seed that finds an anomaly stays in this list, marked xfail(strict=True) with the finding, so
the suite stays green, the finding stays recorded, and its fix turns the mark into a failure
that asks for the mark's removal.

Found, and not in this list because it comes and goes with timing (a strict mark would flake):
after Redis is killed while a replica is partitioned, paused or killed, a replica's
``GET /api/devices/{id}`` can go on reporting a device's mode from before the outage (connected,
on the other replica) for 20 s and more after everything healed, while Redis, the device's
holder and its LEDs all show its last acked mode. In seed 1008 the device connected to replica3
0.3 s after Redis came back, "in mode 7", pressed on to mode 17 there, and every replica's API,
replica3's own included, still said 7 or 8 twenty seconds later. Seeds 100, 102, 105 and 1008 of
``python -m tests.faults.run`` (seed 102: 2 of 3 runs; its four faults alone with 8 devices:
1 of 3). No acked press has been lost from the store or the device in any run.
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
