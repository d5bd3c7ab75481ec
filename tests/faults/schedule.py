"""Seed -> a list of timed fault steps: the same seed always gives the same schedule.

Pure, so a failing run is reproduced from its seed alone, and the rules (every fault healed
inside the window, one replica fault at a time so some replica can always serve) are tested
without starting a process.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Fault(StrEnum):
    KILL_REPLICA = "kill_replica"
    """SIGKILL a replica; started again (same ports) when the step heals."""
    PAUSE_REPLICA = "pause_replica"
    """SIGSTOP a replica; SIGCONT when the step heals."""
    PARTITION_REPLICA = "partition_replica"
    """Cut a replica off Redis and off the proxy (its relays hold everything); healed later."""
    KILL_REDIS = "kill_redis"
    """SIGKILL redis-server; started again on the same port and append-only file."""
    REBOOT_DEVICE = "reboot_device"
    """The device's connection goes silent (half-open), the device reconnects anew and goes on
    pressing; the silent connection is closed when the step heals."""


REPLICA_FAULTS = (Fault.KILL_REPLICA, Fault.PAUSE_REPLICA, Fault.PARTITION_REPLICA)
WEIGHTS = {
    Fault.KILL_REPLICA: 3,
    Fault.PAUSE_REPLICA: 3,
    Fault.PARTITION_REPLICA: 2,
    Fault.KILL_REDIS: 2,
    Fault.REBOOT_DEVICE: 4,
}


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    """Seconds after the devices start pressing."""
    fault: Fault
    target: int
    """The replica's or the device's index; 0 for Redis."""
    duration: float
    """Seconds from the fault to its heal."""

    @property
    def heals_at(self) -> float:
        return self.at + self.duration


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    replicas: int
    devices: int
    window: float
    """Seconds of pressing under faults; every step has healed by then."""
    steps: tuple[Step, ...]

    def describe(self) -> dict[str, Any]:
        body = asdict(self)
        body["steps"] = [{**asdict(step), "fault": step.fault.value} for step in self.steps]
        return body


def generate(
    seed: int,
    *,
    window: float = 6.0,
    replicas: int | None = None,
    devices: int | None = None,
    faults: tuple[Fault, ...] = tuple(Fault),
) -> Schedule:
    """Faults arrive at random gaps; a step starts only when its target is free again."""
    rng = random.Random(seed)
    replica_count = replicas if replicas is not None else rng.choice((2, 3))
    device_count = devices if devices is not None else rng.randint(4, 24)
    kinds = [fault for fault in WEIGHTS if fault in faults]
    weights = [WEIGHTS[fault] for fault in kinds]
    replica_free_at = 0.0
    redis_free_at = 0.0
    device_free_at = [0.0] * device_count
    steps: list[Step] = []
    at = rng.uniform(0.3, 1.0)
    while at < window - 0.5 and kinds:
        fault = rng.choices(kinds, weights)[0]
        duration = round(min(rng.uniform(0.5, 2.5), window - at), 2)
        at = round(at, 2)
        if fault in REPLICA_FAULTS and at >= replica_free_at:
            steps.append(Step(at, fault, rng.randrange(replica_count), duration))
            replica_free_at = at + duration + 0.5
        elif fault is Fault.KILL_REDIS and at >= redis_free_at:
            steps.append(Step(at, fault, 0, duration))
            redis_free_at = at + duration + 0.5
        elif fault is Fault.REBOOT_DEVICE:
            free = [index for index, free_at in enumerate(device_free_at) if at >= free_at]
            if free:
                target = rng.choice(free)
                steps.append(Step(at, fault, target, duration))
                device_free_at[target] = at + duration + 0.5
        at += rng.expovariate(1 / 0.8)
    return Schedule(seed, replica_count, device_count, window, tuple(steps))
