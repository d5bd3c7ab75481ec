"""The supervisor's own callbacks cannot fail other devices (actors on a runtime of their own)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from actors.messages import OpenStream, RouteButton, StreamKind
from actors.news import FleetListener
from actors.state import Button, ButtonInput, DeviceState, Gesture
from actors.store import MemoryStateStore
from actors.supervisor import _GuardedListener
from media.library import SoundLibrary
from tests.actor_fleet import ActorFleet
from tests.fakes import Replies


class DesiredModeStuck(MemoryStateStore):
    """A store that cannot forget an applied desired mode (its write fails)."""

    def clear_desired(self, device_id: str, mode: int) -> None:
        raise sqlite3.OperationalError("database is locked")


@pytest.fixture
def fleet(library: SoundLibrary) -> Iterator[ActorFleet]:
    store = DesiredModeStuck()
    store.save("away", DeviceState(mode=1))
    store.set_desired("away", 3)
    fleet = ActorFleet(library, store=store)
    try:
        yield fleet
    finally:
        fleet.shutdown()


def test_a_store_failing_to_forget_an_applied_mode_costs_no_other_devices_ack(fleet: ActorFleet) -> None:
    fleet.connect("kitchen")
    events = fleet.grants[("kitchen", StreamKind.EVENTS)]
    press, opened = Replies(), Replies()
    supervisor = fleet.supervisor

    def together() -> None:
        """One supervisor turn: the press's save and the applied mode's save share one commit."""
        supervisor.tell(
            RouteButton("kitchen", events.session, ButtonInput(Button.MODE, Gesture.PRESS), press)
        )
        supervisor.tell(OpenStream("away", "ipv4:127.0.0.1:1001", StreamKind.STATUS, opened))

    fleet.runtime.call_soon(together)
    assert press.last() is True, "the press was saved and acked, whatever the applied mode's callback did"
    opened.last()
    assert fleet.store.load("away") == DeviceState(mode=3)
    assert fleet.store.load_desired("away") == 3, "kept, so applied again on the next connect"


def test_every_update_the_fleet_view_can_be_told_goes_through_the_guard() -> None:
    """A listener method the guard did not pass on would fall to the base class's no-op, silently."""
    listened = {name for name in vars(FleetListener) if not name.startswith("_")}
    guarded = {name for name in vars(_GuardedListener) if not name.startswith("_")}
    assert listened <= guarded, f"not passed on by the guard: {sorted(listened - guarded)}"
