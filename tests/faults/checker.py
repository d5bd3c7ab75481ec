"""History and final states -> anomalies. Pure: tested with hand-made histories.

Each device's presses are serial, so its possible modes are followed press by press: an ok
press moves every possible mode one on; an info press may or may not have, and so may a fail
press (a Mode acked false when its save failed is still applied, and saved by a later commit:
docs/reliability.md); LEDs showing neither the mode before an acked press nor after it are
reported once per device (what follows is its consequence), and the count goes on from the
acks, not from the LEDs. At the end the stored mode, every replica's API and the device's LEDs must be
among the possible modes: anything else means an acked press was lost or reverted (or a stale
owner wrote after a newer one). The modes wrap, so the run uses many of them (24) to make a loss
that wraps around unlikely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tests.faults.history import FinalState, Press

EXCERPT = 6
"""Presses shown before the point an anomaly was found."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    device: str
    kind: str
    """``led-shows-unacked-mode``, ``lost-or-reverted`` (the store), ``api-disagrees``,
    ``leds-disagree``, ``no-final-state``."""
    detail: str
    excerpt: tuple[Press, ...]

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "excerpt": [asdict(press) for press in self.excerpt]}


def advance(possible: frozenset[int], press: Press, modes: int) -> frozenset[int]:
    """The modes the device may be in after ``press``, from those it may have been in before."""
    moved = frozenset((mode + 1) % modes for mode in possible)
    if press.outcome == "ok":
        if press.shown is not None and press.shown in moved and press.shown not in possible:
            return frozenset({press.shown})
        return moved
    return possible | moved  # info, or fail: a Mode acked false was not durable, yet may be applied


def check(
    presses: Iterable[Press], finals: Mapping[str, FinalState], devices: Sequence[str], modes: int
) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    by_device: dict[str, list[Press]] = {device: [] for device in devices}
    for press in presses:
        by_device.setdefault(press.device, []).append(press)
    for device, history in by_device.items():
        possible = frozenset({0})
        for index, press in enumerate(history):
            after = advance(possible, press, modes)
            stale_or_new = possible | after
            seen_led_anomaly = any(
                a.device == device and a.kind == "led-shows-unacked-mode" for a in anomalies
            )
            if (
                press.outcome == "ok"
                and press.shown is not None
                and press.shown not in stale_or_new
                and not seen_led_anomaly  # the first is the finding; the rest follow from it
            ):
                anomalies.append(
                    Anomaly(
                        device,
                        "led-shows-unacked-mode",
                        f"after an acked press the LEDs show mode {press.shown}, "
                        f"neither before ({sorted(possible)}) nor after it ({sorted(after)})",
                        tuple(history[max(0, index - EXCERPT) : index + 1]),
                    )
                )
            possible = after
        excerpt = tuple(history[-EXCERPT:])
        final = finals.get(device)
        if final is None:
            anomalies.append(Anomaly(device, "no-final-state", "its final state was not read", excerpt))
            continue
        expected = sorted(possible)
        if final.store not in possible:
            anomalies.append(
                Anomaly(device, "lost-or-reverted", f"stored mode {final.store}, acked {expected}", excerpt)
            )
        for replica, mode in sorted(final.api.items()):
            if mode not in possible:
                anomalies.append(
                    Anomaly(
                        device,
                        "api-disagrees",
                        f"{replica} reports mode {mode} ({final.api_detail.get(replica, '')}), acked {expected}",
                        excerpt,
                    )
                )
        if final.shown not in possible:
            anomalies.append(
                Anomaly(
                    device, "leds-disagree", f"the LEDs show mode {final.shown}, acked {expected}", excerpt
                )
            )
    return anomalies
