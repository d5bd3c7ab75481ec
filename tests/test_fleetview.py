"""The operator's read model of the fleet, fed the actors' news directly: no server, no threads."""

from __future__ import annotations

from actors.leds import STATUS_IDLE, mode_leds
from actors.state import DeviceState, Fault, Playback
from actors.store import DeviceRecord
from admin.events import EventHub
from admin.fleetview import DeviceFilter, FleetView, hex_colour


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


def view() -> tuple[FleetView, EventHub, ManualClock]:
    clock = ManualClock()
    hub = EventHub(clock)
    return FleetView(hub, clock), hub, clock


def test_devices_from_the_store_are_listed_offline_with_their_mode_and_tags() -> None:
    fleet, _, _ = view()
    fleet.load([DeviceRecord("b", 2, ("lobby",), 3, 1_796_000_000.5), DeviceRecord("a", 0)])
    page = fleet.page(DeviceFilter(), limit=10)
    assert [d["device_id"] for d in page.devices] == ["a", "b"]
    b = page.devices[1]
    assert (b["connected"], b["mode"], b["desired_mode"], b["tags"], b["status"]) == (
        False,
        2,
        3,
        ["lobby"],
        "offline",
    )
    assert b["last_seen"] == "2026-11-30T00:53:20.500Z"


def test_a_device_online_shows_its_peer_and_since_when() -> None:
    fleet, _, _clock = view()
    fleet.device_online("a", "ipv4:10.0.0.7:4000", DeviceState(mode=1))
    device = fleet.device("a")
    assert device is not None
    assert device["connected"]
    assert device["peer"] == "ipv4:10.0.0.7:4000"
    assert device["connected_since"] == device["last_seen"]
    assert device["status"] == "idle"
    assert device["mode"] == 1


def test_playing_shows_the_sound_and_when_it_started_until_it_ends() -> None:
    fleet, _, clock = view()
    fleet.device_online("a", "p", DeviceState())
    clock.now += 2
    fleet.device_changed("a", DeviceState(playing=Playback(1, 0), next_playback_id=2), "builtin-0")
    playing = fleet.device("a")
    assert playing is not None
    assert playing["status"] == "playing"
    assert playing["playing"] == {"sound": "builtin-0", "mode": 0, "since": "2026-11-30T00:53:22.000Z"}
    fleet.device_changed("a", DeviceState(next_playback_id=2), None)
    assert (fleet.device("a") or {})["playing"] is None


def test_status_shows_error_before_busy_before_playing() -> None:
    fleet, _, _ = view()
    fleet.device_online("a", "p", DeviceState())
    fleet.device_changed("a", DeviceState(fault=Fault.AUDIO_LOST, busy=True), None)
    assert (fleet.device("a") or {})["status"] == "error"
    fleet.device_changed("a", DeviceState(busy=True, playing=Playback(1, 0)), "x")
    assert (fleet.device("a") or {})["status"] == "busy"
    fleet.server_leaving()
    assert (fleet.device("a") or {})["status"] == "leaving"


def test_leds_are_what_the_device_confirmed_in_hex() -> None:
    fleet, _, _ = view()
    fleet.device_online("a", "p", DeviceState())
    fleet.leds_shown("a", (0x00FF00FF, STATUS_IDLE.rgba, *mode_leds(0)))
    device = fleet.device("a")
    assert device is not None
    assert device["leds"] == [
        "#00ff00",
        hex_colour(STATUS_IDLE.rgba),
        "#ff6000",
        "#000000",
        "#000000",
        "#000000",
    ]


def test_going_offline_keeps_the_mode_and_forgets_peer_and_leds() -> None:
    fleet, _, _ = view()
    fleet.device_online("a", "p", DeviceState(mode=3))
    fleet.leds_shown("a", (1, 2, 3, 4, 5, 6))
    fleet.device_offline("a", DeviceState(mode=3))
    device = fleet.device("a")
    assert device is not None
    assert (device["connected"], device["mode"], device["peer"], device["status"]) == (
        False,
        3,
        None,
        "offline",
    )
    assert device["leds"] == ["#000000"] * 6


def test_filters_combine_and_pages_follow_the_device_id_order() -> None:
    fleet, _, _ = view()
    for n in range(10):
        fleet.device_online(f"dev-{n:02}", "p", DeviceState(mode=n % 2))
    fleet.tags_set("dev-03", ("hall",))
    fleet.tags_set("dev-05", ("hall",))
    assert fleet.select(DeviceFilter(tag="hall", mode=1)) == ["dev-03", "dev-05"]
    assert fleet.select(DeviceFilter(text="HAL")) == ["dev-03", "dev-05"]
    first = fleet.page(DeviceFilter(mode=0), limit=3)
    assert [d["device_id"] for d in first.devices] == ["dev-00", "dev-02", "dev-04"]
    assert first.total == 5
    assert first.next == "dev-04"
    last = fleet.page(DeviceFilter(mode=0), limit=3, after=first.next)
    assert [d["device_id"] for d in last.devices] == ["dev-06", "dev-08"]
    assert last.next is None


def test_a_burst_of_changes_is_published_as_one_event_per_device() -> None:
    fleet, hub, _ = view()  # no loop: every change is published at once
    reader = hub.join(None)
    fleet.device_online("a", "p", DeviceState())
    fleet.device_changed("a", DeviceState(mode=1), None)
    fleet.device_changed("a", DeviceState(mode=2), None)
    assert [event.data["mode"] for event in reader.pending.values()] == [2]


def snapshot(device_id: str, replica: str, connected: bool = True, mode: int = 0) -> dict[str, object]:
    return {
        "device_id": device_id,
        "connected": connected,
        "mode": mode,
        "replica": replica if connected else None,
    }


def test_a_device_another_replica_holds_is_listed_as_its_snapshot_says() -> None:
    fleet, _, _ = view()
    fleet.replica = "one"
    fleet.apply_remote("two", snapshot("kitchen", "two", mode=3))
    device = fleet.device("kitchen")
    assert device is not None
    assert (device["connected"], device["mode"], device["replica"]) == (True, 3, "two")
    assert fleet.held_elsewhere("kitchen") == "two"


def test_a_replica_speaks_only_for_the_devices_it_holds() -> None:
    fleet, _, _ = view()
    fleet.replica = "one"
    fleet.apply_remote("two", snapshot("kitchen", "two"))
    fleet.apply_remote("three", snapshot("kitchen", "two", mode=4))  # relayed by another: ignored
    fleet.apply_remote("three", snapshot("kitchen", "three", connected=False))  # not its to end
    device = fleet.device("kitchen")
    assert device is not None
    assert (device["connected"], device["mode"], device["replica"]) == (True, 0, "two")


def test_an_operators_change_to_a_device_held_elsewhere_is_not_published_as_this_replicas() -> None:
    fleet, _, _ = view()
    fleet.replica = "one"
    published: list[list[dict[str, object]]] = []
    fleet.on_local_flush = published.append
    fleet.apply_remote("two", snapshot("kitchen", "two"))
    fleet.tags_set("kitchen", ("lobby",))
    fleet.desired_mode("kitchen", 2)
    fleet.server_leaving()
    fleet.flush()
    assert published == [], "the holder's snapshots speak for it"
    fleet.device_online("hall", "ipv4:127.0.0.1:1", DeviceState(mode=1))
    fleet.flush()
    assert [[s["device_id"] for s in flush] for flush in published] == [["hall"]]
