"""What the devices saw: every Mode press with its outcome, and each device's final state.

A press is ``ok`` (acked true: the device's mode moved one on), ``fail`` (acked false: not
durable when acked, but possibly applied) or ``info`` (no ack: the connection went away or the
wait ran out, so it may or may not have been applied, as Jepsen's indeterminate operations).
Plain data, JSON both ways, so a report carries the history a finding came from.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Press:
    device: str
    start: float
    """Seconds since the run began, when the press was made."""
    end: float
    """When its ack arrived (or the press was given up)."""
    outcome: Outcome
    shown: int | None = None
    """The mode the device's LEDs showed once the ack was in (None: no mode lit)."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class FinalState:
    device: str
    store: int | None
    """The mode in Redis (None: no record)."""
    api: dict[str, int | None]
    """The mode each live replica's ``GET /api/devices/{id}`` reports, by replica."""
    shown: int | None
    """The mode the device's LEDs show after it reconnected."""
    api_detail: dict[str, str] = field(default_factory=dict)
    """Where each replica's API says the device is (``connected on replica2``), to read a finding by."""


@dataclass
class History:
    """Appended to from the device tasks; presses of one device are in the order they were made."""

    presses: list[Press] = field(default_factory=list)
    finals: dict[str, FinalState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, press: Press) -> None:
        with self._lock:
            self.presses.append(press)

    def of(self, device: str) -> list[Press]:
        return [press for press in self.presses if press.device == device]

    def describe(self) -> dict[str, Any]:
        return {
            "presses": [asdict(press) for press in self.presses],
            "finals": {device: asdict(final) for device, final in self.finals.items()},
        }
