"""What a replica accepts from Redis: every message and stored value checked before it is used.

Redis is shared with whoever can write to it, so nothing read from it is trusted to have the
shape its writer meant: types, sizes and allowed values (device ids, tag and sound names, mode
ranges, epochs, replica names, times) are checked here, in pure functions, and anything else
raises ``Malformed``. The caller drops it and counts it (``cluster.rejections``); a bad message
is never applied, never answered with a 500 and never ends a feed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.messages import CommandOutcome, CommandResult
from actors.state import Command, DeviceState, Fault, Playback, PlaySound, SetMode, StopSound
from admin.audit import MAX_DEVICES_RECORDED, AuditEntry
from media.library import MAX_MODES
from rpc.metadata import MAX_DEVICE_ID_BYTES

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A tag or a sound name: the operator API's own pattern (``admin.app.NAME_PATTERN``)."""
MAX_TAGS = 32
"""As many tags as the operator API lets a device have."""
REPLICA_NAME = re.compile(r"[A-Za-z0-9._:/@-]{1,128}")
"""A replica's name: a pod or host name, possibly with a port and a worker index."""
MAX_EPOCH = 2**63 - 1
"""Redis integers are signed 64-bit."""
MAX_PLAYBACK_ID = 2**63 - 1
MAX_TEXT = 256
"""The longest free text (a peer address, an operator's name) a message may carry."""
MAX_FILE_NAME = 255
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
LED_COLOUR = re.compile(r"#[0-9a-f]{6}")
LEDS = 6
STATUSES = frozenset({"offline", "leaving", "idle", "error", "busy", "playing"})
ROLES = frozenset({"operator", "readonly"})
SOUND_CHANGES = frozenset({"added", "removed", "assigned"})
OPERATOR_FIELDS = frozenset({"tags", "desired"})
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Malformed(ValueError):
    """A message or stored value that is not what a replica writes; the text says what is wrong."""


# Scalars.


def text_of(value: object) -> str:
    """A Redis reply as text: bytes must be UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("not UTF-8") from None
    if isinstance(value, str):
        return value
    raise Malformed(f"not text but {type(value).__name__}")


def integer(value: object, low: int, high: int, what: str) -> int:
    """An integer within low..high (JSON's true and false are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} is not an integer")
    if not low <= value <= high:
        raise Malformed(f"{what} {value} is outside {low}..{high}")
    return value


def integer_text(value: object, low: int, high: int, what: str) -> int:
    """A stored integer (Redis keeps decimal text)."""
    raw = text_of(value)
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise Malformed(f"{what} {raw[:40]!r} is not an integer")
    return integer(int(raw), low, high, what)


def mode(value: object) -> int:
    return integer(value, 0, MAX_MODES - 1, "mode")


def epoch(value: object) -> int:
    return integer(value, 1, MAX_EPOCH, "epoch")


def seconds(value: object, what: str) -> float:
    """A finite, non-negative time in seconds since the epoch."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{what} is not a number")
    if not math.isfinite(value) or value < 0:
        raise Malformed(f"{what} {value} is not a time")
    return float(value)


def short_text(value: object, what: str, limit: int = MAX_TEXT) -> str:
    """Printable text of at most ``limit`` characters."""
    if not isinstance(value, str):
        raise Malformed(f"{what} is not text")
    if not 0 < len(value) <= limit or not value.isprintable():
        raise Malformed(f"{what} is empty, longer than {limit} characters or not printable")
    return value


def device_id(value: object) -> str:
    """As a device may name itself (``rpc.metadata``): 1..128 bytes of printable UTF-8."""
    if not isinstance(value, str) or not value:
        raise Malformed("device_id is not a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_DEVICE_ID_BYTES or not value.isprintable():
        raise Malformed(f"device_id {value[:40]!r} is too long or not printable")
    return value


def replica_name(value: object) -> str:
    if not isinstance(value, str) or not REPLICA_NAME.fullmatch(value):
        raise Malformed(f"{str(value)[:40]!r} is not a replica name")
    return value


def name(value: object, what: str = "name") -> str:
    """A tag or a sound name."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or value in (".", ".."):
        raise Malformed(f"{what} {str(value)[:40]!r} is not 1..64 of a-z A-Z 0-9 . _ -")
    return value


def tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise Malformed(f"tags are not a list of at most {MAX_TAGS}")
    return tuple(name(tag, "tag") for tag in value)


def tags_json(value: object) -> tuple[str, ...]:
    """Tags as stored and announced: a JSON list, or empty text for none."""
    raw = text_of(value)
    if not raw:
        return ()
    if len(raw) > MAX_TAGS * 80:
        raise Malformed("tags are too long")
    try:
        return tags(json.loads(raw))
    except ValueError as error:
        raise Malformed(f"tags are not JSON: {error}") from None


def iso_time(value: object, what: str) -> str | None:
    """A time as the fleet view writes it (UTC, milliseconds, ``Z``), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not ISO_TIME.fullmatch(value):
        raise Malformed(f"{what} is not an ISO time")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Malformed(f"{what} is not a valid time") from None
    return value


def json_object(raw: object, limit: int) -> dict[str, Any]:
    """A JSON object of at most ``limit`` bytes."""
    text = text_of(raw)
    if len(text) > limit:
        raise Malformed(f"longer than {limit} bytes")
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise Malformed(f"not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise Malformed("not a JSON object")
    return parsed


def _keys(body: object, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Malformed("not an object")
    missing = required - body.keys()
    if missing:
        raise Malformed(f"no {', '.join(sorted(missing))}")
    unknown = body.keys() - required - optional
    if unknown:
        raise Malformed(f"unexpected {', '.join(sorted(map(str, unknown)))[:80]}")
    return body


# The change feed (``cluster.shared_store``).


@dataclass(frozen=True, slots=True)
class Claim:
    device_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class FieldChange:
    """An operator's tags or desired mode for a device; ``desired`` None clears it."""

    device_id: str
    field: str
    tags: tuple[str, ...] = ()
    desired: int | None = None


def claim(body: object) -> Claim:
    checked = _keys(body, frozenset({"claim", "epoch"}))
    return Claim(device_id(checked["claim"]), epoch(checked["epoch"]))


def field_change(body: object) -> FieldChange:
    checked = _keys(body, frozenset({"field", "id", "value"}))
    device, field, value = device_id(checked["id"]), checked["field"], checked["value"]
    if field not in OPERATOR_FIELDS or not isinstance(value, str):
        raise Malformed(f"not a change of tags or desired mode: {str(field)[:20]!r}")
    if field == "tags":
        return FieldChange(device, field, tags=tags_json(value))
    return FieldChange(
        device, field, desired=None if value == "" else integer_text(value, 0, MAX_MODES - 1, "mode")
    )


MAX_REMOVED = 10_000


def removal(body: object) -> tuple[str, ...]:
    """The devices whose records another replica removed."""
    removed = _keys(body, frozenset({"removed"}))["removed"]
    if not isinstance(removed, list) or len(removed) > MAX_REMOVED:
        raise Malformed(f"removed is not a list of at most {MAX_REMOVED} device ids")
    return tuple(device_id(item) for item in removed)


# A device's stored record (the mirror, and a claim's reply).


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """The fields of ``acp:device:{id}`` that passed; ``bad`` names those that did not (dropped)."""

    mode: int | None
    next_playback_id: int | None
    tags: tuple[str, ...]
    desired: int | None
    seen: float | None
    bad: tuple[str, ...] = ()


def stored_device(fields: Sequence[object]) -> StoredDevice:
    """mode, next, tags, desired, seen, each None when absent: each checked on its own, so one damaged
    field costs only that field."""
    if len(fields) != 5:
        raise Malformed(f"{len(fields)} fields, not 5")
    raw_mode, raw_next, raw_tags, raw_desired, raw_seen = fields
    bad: list[str] = []

    def checked(field: str, raw: object, parse: Any, default: Any) -> Any:
        if raw is None:
            return default
        try:
            return parse(raw)
        except Malformed:
            bad.append(field)
            return default

    def stored_seconds(raw: object) -> float:
        text = text_of(raw)
        try:
            value = float(text)
        except ValueError:
            raise Malformed("not a number") from None
        return seconds(value, "seen")

    return StoredDevice(
        checked("mode", raw_mode, lambda raw: integer_text(raw, 0, MAX_MODES - 1, "mode"), None),
        checked("next", raw_next, lambda raw: integer_text(raw, 1, MAX_PLAYBACK_ID, "next"), None),
        checked("tags", raw_tags, tags_json, ()),
        checked("desired", raw_desired, lambda raw: integer_text(raw, 0, MAX_MODES - 1, "desired"), None),
        checked("seen", raw_seen, stored_seconds, None),
        tuple(bad),
    )


# The fleet's snapshots (``cluster.fleet_share``), as ``admin.fleetview`` writes them.

SNAPSHOT_KEYS = frozenset(
    {
        "device_id",
        "connected",
        "mode",
        "desired_mode",
        "status",
        "playing",
        "leds",
        "last_seen",
        "connected_since",
        "peer",
        "tags",
        "replica",
    }
)


def snapshot(body: object) -> dict[str, Any]:
    """A device as another replica's fleet view shows it, rebuilt from checked values only."""
    checked = _keys(body, SNAPSHOT_KEYS)
    connected = checked["connected"]
    if not isinstance(connected, bool):
        raise Malformed("connected is not true or false")
    desired = checked["desired_mode"]
    status = checked["status"]
    if status not in STATUSES:
        raise Malformed(f"status {str(status)[:20]!r} is not one of {sorted(STATUSES)}")
    leds = checked["leds"]
    if (
        not isinstance(leds, list)
        or len(leds) != LEDS
        or not all(isinstance(led, str) and LED_COLOUR.fullmatch(led) for led in leds)
    ):
        raise Malformed("leds are not six #rrggbb colours")
    peer, replica = checked["peer"], checked["replica"]
    return {
        "device_id": device_id(checked["device_id"]),
        "connected": connected,
        "mode": mode(checked["mode"]),
        "desired_mode": None if desired is None else mode(desired),
        "status": status,
        "playing": _playing(checked["playing"]),
        "leds": list(leds),
        "last_seen": iso_time(checked["last_seen"], "last_seen"),
        "connected_since": iso_time(checked["connected_since"], "connected_since"),
        "peer": None if peer is None else short_text(peer, "peer"),
        "tags": list(tags(checked["tags"])),
        "replica": None if replica is None else replica_name(replica),
    }


def _playing(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    checked = _keys(value, frozenset({"sound", "mode", "since"}))
    sound = checked["sound"]
    return {
        # The name of what plays: an uploaded sound's, or a sound file's in the operator's folder.
        "sound": None if sound is None else short_text(sound, "sound", MAX_FILE_NAME),
        "mode": mode(checked["mode"]),
        "since": iso_time(checked["since"], "since"),
    }


def snapshots(body: object) -> list[dict[str, Any]]:
    """A flush's snapshots: each checked (one bad snapshot spoils the message: it was forged)."""
    if not isinstance(body, list):
        raise Malformed("snapshots are not a list")
    return [snapshot(item) for item in body]


# Relayed commands (``cluster.relay``).


@dataclass(frozen=True, slots=True)
class RelayRequest:
    to: str
    device_id: str
    command: Command
    who: str
    role: str


@dataclass(frozen=True, slots=True)
class RelayReply:
    to: str
    request: str
    result: CommandResult
    device: dict[str, Any] | None


def command(body: object) -> Command:
    if not isinstance(body, dict):
        raise Malformed("the command is not an object")
    match body.get("kind"):
        case "mode":
            checked = _keys(body, frozenset({"kind", "mode"}))
            return SetMode(mode(checked["mode"]))
        case "play":
            checked = _keys(body, frozenset({"kind", "sound", "mode", "interrupt"}))
            sound, chosen, interrupt = checked["sound"], checked["mode"], checked["interrupt"]
            if not isinstance(interrupt, bool):
                raise Malformed("interrupt is not true or false")
            return PlaySound(
                None if sound is None else name(sound, "sound"),
                None if chosen is None else mode(chosen),
                interrupt,
            )
        case "stop":
            _keys(body, frozenset({"kind"}))
            return StopSound()
    raise Malformed(f"not a command: {str(body.get('kind'))[:20]!r}")


def relay_request(body: object) -> RelayRequest:
    checked = _keys(body, frozenset({"to", "device_id", "command", "who", "role"}))
    role = checked["role"]
    if role not in ROLES:
        raise Malformed(f"role {str(role)[:20]!r} is not one of {sorted(ROLES)}")
    return RelayRequest(
        replica_name(checked["to"]),
        device_id(checked["device_id"]),
        command(checked["command"]),
        short_text(checked["who"], "who", 128),
        role,
    )


def device_state(body: object) -> DeviceState:
    checked = _keys(body, frozenset({"mode", "next_playback_id", "playing", "fault", "busy"}))
    playing, fault, busy = checked["playing"], checked["fault"], checked["busy"]
    if not isinstance(busy, bool):
        raise Malformed("busy is not true or false")
    if fault is not None and (not isinstance(fault, str) or fault not in Fault.__members__):
        raise Malformed(f"fault {str(fault)[:30]!r} is not one of {sorted(Fault.__members__)}")
    playback = None
    if playing is not None:
        if not isinstance(playing, list) or len(playing) != 3:
            raise Malformed("playing is not [id, mode, sound]")
        sound = playing[2]
        playback = Playback(
            integer(playing[0], 0, MAX_PLAYBACK_ID, "playback id"),
            mode(playing[1]),
            None if sound is None else name(sound, "sound"),
        )
    return DeviceState(
        mode=mode(checked["mode"]),
        playing=playback,
        next_playback_id=integer(checked["next_playback_id"], 1, MAX_PLAYBACK_ID, "next_playback_id"),
        fault=None if fault is None else Fault[fault],
        busy=busy,
    )


def command_result(body: object) -> CommandResult:
    checked = _keys(body, frozenset({"outcome", "state"}))
    outcome, state = checked["outcome"], checked["state"]
    try:
        decided = CommandOutcome(outcome)
    except ValueError:
        raise Malformed(f"outcome {str(outcome)[:20]!r} is not one a command has") from None
    return CommandResult(decided, None if state is None else device_state(state))


def relay_reply(body: object) -> RelayReply:
    checked = _keys(body, frozenset({"to", "request", "result", "device"}))
    device = checked["device"]
    return RelayReply(
        replica_name(checked["to"]),
        short_text(checked["request"], "request", 64),
        command_result(checked["result"]),
        None if device is None else snapshot(device),
    )


# Sounds and assignments (``cluster.sound_share``).


@dataclass(frozen=True, slots=True)
class SoundAnnouncement:
    kind: str
    name: str
    mode: int | None
    sha256: str | None
    """The uploaded file's digest ("added"): what is read from the hash must be what was announced."""


def sound_announcement(body: object) -> SoundAnnouncement:
    checked = _keys(body, frozenset({"kind", "name", "mode", "sha256"}))
    kind, chosen, digest = checked["kind"], checked["mode"], checked["sha256"]
    if kind not in SOUND_CHANGES:
        raise Malformed(f"kind {str(kind)[:20]!r} is not one of {sorted(SOUND_CHANGES)}")
    if kind == "assigned" and chosen is None:
        raise Malformed("an assignment names no mode")
    if kind == "added" and (not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest)):
        raise Malformed("an added sound carries no SHA-256 of its file")
    return SoundAnnouncement(
        str(kind),
        name(checked["name"], "sound"),
        None if chosen is None else mode(chosen),
        digest if kind == "added" else None,
    )


def stored_sound_name(raw: object) -> str:
    return name(text_of(raw), "sound")


def assignment(raw_mode: object, raw_name: object) -> tuple[int, str]:
    return integer_text(raw_mode, 0, MAX_MODES - 1, "mode"), name(text_of(raw_name), "sound")


# The audit log (``cluster.shared_audit``).

MAX_AUDIT_ROW = 256_000
"""An entry names at most MAX_DEVICES_RECORDED devices of at most 128 bytes, and a small result."""


def audit_row(raw: object) -> AuditEntry:
    """A sorted-set member: the entry's number, a space, the entry as JSON."""
    row = text_of(raw)
    number, _, body = row.partition(" ")
    entry = _keys(
        json_object(body, MAX_AUDIT_ROW),
        frozenset({"at", "who", "role", "action", "target", "devices", "result"}),
    )
    devices, result = entry["devices"], entry["result"]
    if (
        not isinstance(devices, list)
        or len(devices) > MAX_DEVICES_RECORDED
        or not all(isinstance(device, str) and len(device) <= 512 for device in devices)
    ):
        raise Malformed(f"devices are not a list of at most {MAX_DEVICES_RECORDED} names")
    if not isinstance(result, dict):
        raise Malformed("result is not an object")
    target = entry["target"]
    if not isinstance(target, str) or len(target) > 512:
        raise Malformed("target is not text of at most 512 characters")
    return AuditEntry(
        seconds(entry["at"], "at"),
        short_text(entry["who"], "who"),
        short_text(entry["role"], "role", 32),
        short_text(entry["action"], "action", 64),
        target,
        tuple(devices),
        result,
        integer_text(number, 1, MAX_EPOCH, "entry number"),
    )
