"""What replicas accept from Redis: each kind of message and stored value, checked in pure functions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from actors.messages import CommandOutcome, CommandResult
from actors.state import DeviceState, Fault, Playback, PlaySound, SetMode, StopSound
from admin.app import NAME_PATTERN
from admin.events import EventHub
from admin.fleetview import FleetView
from cluster import validation
from cluster.relay import encode_command, encode_result
from cluster.validation import Malformed


def fleet_snapshot() -> dict[str, Any]:
    """A snapshot as a replica's fleet view publishes it: connected, playing, tagged."""
    loop = asyncio.new_event_loop()
    try:
        fleet = FleetView(EventHub(lambda: 1.0), lambda: 1_700_000_000.0, loop, replica="replica-1")
        fleet.device_online("kitchen", "ipv4:10.0.0.7:5000", DeviceState(mode=2))
        fleet.device_changed("kitchen", DeviceState(mode=2, playing=Playback(1, 2, "bell")), "bell")
        fleet.leds_shown("kitchen", (0x00FF00FF,) * 6)
        fleet.tags_set("kitchen", ("hall", "floor-2"))
        snapshot = fleet.device("kitchen")
        assert snapshot is not None
        return snapshot
    finally:
        loop.close()


def test_a_snapshot_the_fleet_view_makes_passes_unchanged() -> None:
    snapshot = fleet_snapshot()
    assert validation.snapshot(json.loads(json.dumps(snapshot))) == snapshot


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"tags": [1, 2]}, "tag"),
        ({"tags": ["a b"]}, "tag"),
        ({"tags": ["t"] * 33}, "tags"),
        ({"mode": 24}, "mode"),
        ({"mode": True}, "mode"),
        ({"mode": "1"}, "mode"),
        ({"connected": 1}, "connected"),
        ({"status": "haunted"}, "status"),
        ({"leds": ["#00ff00"] * 5}, "leds"),
        ({"leds": ["red"] * 6}, "leds"),
        ({"last_seen": "yesterday"}, "last_seen"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": "x" * 129}, "device_id"),
        ({"device_id": "a\nb"}, "device_id"),
        ({"replica": "two words"}, "replica"),
        ({"peer": "p" * 300}, "peer"),
        ({"playing": {"sound": "bell\n", "mode": 1, "since": None}}, "sound"),
        ({"playing": {"sound": "x" * 256, "mode": 1, "since": None}}, "sound"),
        ({"extra": "field"}, "unexpected"),
    ],
)
def test_a_snapshot_with_a_wrong_value_is_refused(change: dict[str, Any], why: str) -> None:
    with pytest.raises(Malformed, match=why):
        validation.snapshot({**fleet_snapshot(), **change})


def test_a_snapshot_of_a_device_playing_a_sound_file_of_the_operators_folder_passes() -> None:
    snapshot = fleet_snapshot()
    playing = {"sound": "0-Door Bell (long).mp3", "mode": 0, "since": "2026-01-01T00:00:00.000Z"}
    assert validation.snapshot({**snapshot, "playing": playing})["playing"] == playing


def test_a_snapshot_missing_a_field_is_refused() -> None:
    snapshot = fleet_snapshot()
    del snapshot["tags"]
    with pytest.raises(Malformed, match="no tags"):
        validation.snapshot(snapshot)


def test_the_name_pattern_is_the_operator_apis() -> None:
    assert f"^{validation.NAME.pattern}$" == NAME_PATTERN


@pytest.mark.parametrize(
    "command", [SetMode(3), PlaySound("bell", None, False), PlaySound(None, 2), StopSound()]
)
def test_every_command_survives_the_relay_encoding(command: SetMode | PlaySound | StopSound) -> None:
    assert validation.command(json.loads(json.dumps(encode_command(command)))) == command


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "mode", "mode": 99},
        {"kind": "mode", "mode": "3"},
        {"kind": "mode"},
        {"kind": "play", "sound": "/etc/passwd", "mode": None, "interrupt": True},
        {"kind": "play", "sound": None, "mode": None, "interrupt": "yes"},
        {"kind": "reboot"},
        ["mode", 1],
    ],
)
def test_a_command_that_is_not_one_is_refused(body: object) -> None:
    with pytest.raises(Malformed):
        validation.command(body)


def test_a_relay_request_names_its_target_device_caller_and_role() -> None:
    body = {
        "to": "replica-2",
        "device_id": "kitchen",
        "command": {"kind": "stop"},
        "who": "ops",
        "role": "operator",
    }
    request = validation.relay_request(body)
    assert request == validation.RelayRequest("replica-2", "kitchen", StopSound(), "ops", "operator")
    with pytest.raises(Malformed, match="role"):
        validation.relay_request({**body, "role": "root"})
    with pytest.raises(Malformed, match="who"):
        validation.relay_request({**body, "who": ""})


def test_a_command_result_survives_the_relay_encoding() -> None:
    state = DeviceState(mode=2, playing=Playback(7, 2, "bell"), next_playback_id=8, fault=Fault.RECOVERED)
    result = CommandResult(CommandOutcome.STARTED, state)
    assert validation.command_result(json.loads(json.dumps(encode_result(result)))) == result
    with pytest.raises(Malformed, match="outcome"):
        validation.command_result({"outcome": "exploded", "state": None})
    with pytest.raises(Malformed, match="fault"):
        validation.command_result(
            {**encode_result(result), "state": {**encode_result(result)["state"], "fault": "X"}}
        )


def test_claims_and_operator_changes_are_checked() -> None:
    assert validation.claim({"claim": "kitchen", "epoch": 4}) == validation.Claim("kitchen", 4)
    for bad in (
        {"claim": "kitchen", "epoch": 0},
        {"claim": "kitchen", "epoch": "4"},
        {"claim": 5, "epoch": 4},
    ):
        with pytest.raises(Malformed):
            validation.claim(bad)
    assert validation.field_change({"field": "tags", "id": "k", "value": '["a","b"]'}).tags == ("a", "b")
    assert validation.field_change({"field": "desired", "id": "k", "value": ""}).desired is None
    assert validation.field_change({"field": "desired", "id": "k", "value": "3"}).desired == 3
    for bad_change in (
        {"field": "tags", "id": "k", "value": "[1,2]"},
        {"field": "tags", "id": "k", "value": "{not json"},
        {"field": "desired", "id": "k", "value": "99"},
        {"field": "owner", "id": "k", "value": "me"},
    ):
        with pytest.raises(Malformed):
            validation.field_change(bad_change)
    assert validation.removal({"removed": ["a", "b"]}) == ("a", "b")
    with pytest.raises(Malformed):
        validation.removal({"removed": [1]})


def test_a_damaged_stored_field_costs_only_that_field() -> None:
    stored = validation.stored_device([b"2", b"9", b"[1,2]", b"x", b"1700000000.5"])
    assert stored == validation.StoredDevice(2, 9, (), None, 1_700_000_000.5, ("tags", "desired"))
    assert validation.stored_device([None, None, None, None, None]).bad == ()
    assert validation.stored_device([b"30", b"-1", None, None, b"nan"]).bad == ("mode", "next", "seen")


def test_sound_announcements_and_assignments_are_checked() -> None:
    digest = "0" * 64
    added = validation.sound_announcement({"kind": "added", "name": "bell", "mode": None, "sha256": digest})
    assert added == validation.SoundAnnouncement("added", "bell", None, digest)
    for bad in (
        {"kind": "added", "name": "bell", "mode": None, "sha256": None},
        {"kind": "assigned", "name": "bell", "mode": None, "sha256": None},
        {"kind": "added", "name": "../../etc", "mode": None, "sha256": digest},
        {"kind": "moved", "name": "bell", "mode": None, "sha256": None},
    ):
        with pytest.raises(Malformed):
            validation.sound_announcement(bad)
    assert validation.assignment(b"2", b"bell") == (2, "bell")
    with pytest.raises(Malformed):
        validation.assignment(b"two", b"bell")


def test_an_audit_row_is_checked() -> None:
    body = {"at": 1.5, "who": "ops", "role": "operator", "action": "mode", "target": "k", "devices": ["k"]}
    entry = validation.audit_row(f"7 {json.dumps({**body, 'result': {'mode': 2}})}".encode())
    assert (entry.id, entry.who, entry.devices, entry.result) == (7, "ops", ("k",), {"mode": 2})
    for row in ("7 not json", f"x {json.dumps({**body, 'result': {}})}", f"7 {json.dumps(body)}", "7 [1]"):
        with pytest.raises(Malformed):
            validation.audit_row(row)
