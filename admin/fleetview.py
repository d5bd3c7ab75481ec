"""The operator's view of the fleet: every device the server has seen, kept up to date from the
actors' news (``FleetListener``) and the devices' LED confirmations, never by asking an actor.

Among replicas sharing a store, each view also holds the devices the other replicas serve:
their snapshots arrive through ``apply_remote`` (``cluster.fleet_share``), and each view hands
its own devices' snapshots to ``on_local_flush``. A device's ``replica`` says which server
holds its streams; only that server's news may take it offline.

Everything runs on the event loop's thread (the actors take their turns there too), so the
view needs no lock. A device's JSON is built once per change and reused by every listing;
changes within ``COALESCE_SECONDS`` reach the live events as one ``device`` event.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from actors.news import FleetListener
from actors.state import DeviceState
from actors.store import DeviceRecord
from admin.events import EventHub

COALESCE_SECONDS = 0.05
"""A burst of changes to one device (a press: state, then LEDs confirmed) is one event."""

NO_LEDS = ("#000000",) * 6


def iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hex_colour(rgba: int) -> str:
    """The device shows 0xRRGGBB and ignores the intensity byte."""
    return f"#{(rgba >> 8) & 0xFFFFFF:06x}"


@dataclass(slots=True)
class _Entry:
    device_id: str
    mode: int = 0
    connected: bool = False
    desired_mode: int | None = None
    state: DeviceState | None = None
    sound: str | None = None
    playing_since: float | None = None
    leds: tuple[str, ...] = NO_LEDS
    last_seen: float | None = None
    connected_since: float | None = None
    peer: str | None = None
    tags: tuple[str, ...] = ()
    replica: str | None = None
    """The server holding the device's streams, while it is connected."""
    remote: dict[str, Any] | None = field(default=None, repr=False)
    """The snapshot of another replica's device, as that replica published it."""
    json: dict[str, Any] | None = field(default=None, repr=False)

    def status(self, leaving: bool) -> str:
        if not self.connected:
            return "offline"
        if leaving:
            return "leaving"
        state = self.state
        if state is None:
            return "idle"
        if state.fault is not None:
            return "error"
        if state.busy:
            return "busy"
        return "playing" if state.playing is not None else "idle"

    def to_json(self, leaving: bool) -> dict[str, Any]:
        if self.json is None and self.remote is not None:
            self.json = {**self.remote, "tags": list(self.tags), "desired_mode": self.desired_mode}
        if self.json is None:
            playing = None
            if self.connected and self.state is not None and self.state.playing is not None:
                playing = {
                    "sound": self.sound,
                    "mode": self.state.playing.mode,
                    "since": iso_time(self.playing_since),
                }
            self.json = {
                "device_id": self.device_id,
                "connected": self.connected,
                "mode": self.mode,
                "desired_mode": self.desired_mode,
                "status": self.status(leaving),
                "playing": playing,
                "leds": list(self.leds),
                "last_seen": iso_time(self.last_seen),
                "connected_since": iso_time(self.connected_since) if self.connected else None,
                "peer": self.peer if self.connected else None,
                "tags": list(self.tags),
                "replica": (self.replica or None) if self.connected else None,
            }
        return self.json


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    connected: bool | None = None
    tag: str | None = None
    mode: int | None = None
    text: str | None = None

    def matches(self, entry: _Entry) -> bool:
        if self.connected is not None and entry.connected != self.connected:
            return False
        if self.tag is not None and self.tag not in entry.tags:
            return False
        if self.mode is not None and entry.mode != self.mode:
            return False
        if self.text:
            text = self.text.lower()
            return text in entry.device_id.lower() or any(text in tag.lower() for tag in entry.tags)
        return True


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[dict[str, Any]]
    total: int
    next: str | None


class FleetView(FleetListener):
    def __init__(
        self,
        hub: EventHub,
        clock: Callable[[], float],
        loop: asyncio.AbstractEventLoop | None = None,
        replica: str = "",
    ) -> None:
        self._hub = hub
        self.replica = replica
        self.on_local_flush: Callable[[list[dict[str, Any]]], None] | None = None
        """Told the snapshots of this server's own devices changed since the last flush."""
        self._local_dirty: set[str] = set()
        self._clock = clock
        self._loop = loop
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []
        """Every device_id, sorted: pages are slices of it."""
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self.leaving = False

    def load(self, records: Iterable[DeviceRecord]) -> None:
        """Devices seen before this process started, from the store."""
        for record in records:
            entry = self._entry(record.device_id)
            entry.mode, entry.tags = record.mode, record.tags
            entry.desired_mode, entry.last_seen = record.desired_mode, record.last_seen

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def device(self, device_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(device_id)
        return None if entry is None else entry.to_json(self.leaving)

    def page(self, where: DeviceFilter, limit: int, after: str | None = None) -> DevicePage:
        start = 0 if after is None else bisect.bisect_right(self._order, after)
        devices: list[dict[str, Any]] = []
        total = 0
        next_id: str | None = None
        entries, leaving = self._entries, self.leaving
        for index, device_id in enumerate(self._order):
            entry = entries[device_id]
            if not where.matches(entry):
                continue
            total += 1
            if index >= start and len(devices) < limit:
                devices.append(entry.to_json(leaving))
                if len(devices) == limit:
                    next_id = device_id
        if next_id is not None and not any(
            where.matches(entries[device_id])
            for device_id in self._order[bisect.bisect_right(self._order, next_id) :]
        ):
            next_id = None
        return DevicePage(devices, total, next_id)

    def select(self, where: DeviceFilter) -> list[str]:
        return [device_id for device_id in self._order if where.matches(self._entries[device_id])]

    def connected(self, device_id: str) -> bool:
        entry = self._entries.get(device_id)
        return entry is not None and entry.connected

    def held_elsewhere(self, device_id: str) -> str | None:
        """The other replica holding the device's streams, if one does."""
        entry = self._entries.get(device_id)
        if entry is None or not entry.connected or entry.replica in (None, self.replica):
            return None
        return entry.replica

    # What the other replicas report.

    def apply_remote(self, replica: str, snapshot: dict[str, Any]) -> None:
        """Another replica's snapshot of a device: taken when it says the device is connected
        there, or offline while this view had it there."""
        device_id = str(snapshot["device_id"])
        if snapshot.get("connected") and snapshot.get("replica") != replica:
            return  # a replica speaks only for the devices it holds
        entry = self._entry(device_id)
        if snapshot.get("connected"):
            entry.connected, entry.replica, entry.remote = True, replica, snapshot
            entry.state = None
        elif entry.replica == replica or not entry.connected:
            entry.connected, entry.replica, entry.remote = False, None, None
            entry.leds, entry.peer, entry.connected_since = NO_LEDS, None, None
        else:
            return
        entry.mode = int(snapshot.get("mode", entry.mode))
        entry.last_seen = _seconds(snapshot.get("last_seen")) or entry.last_seen
        self._changed(entry, local=False)

    def replica_gone(self, replica: str) -> None:
        """A replica stopped beating: the devices it held are offline until they reconnect."""
        for entry in self._entries.values():
            if entry.connected and entry.replica == replica:
                entry.connected, entry.replica, entry.remote = False, None, None
                entry.leds, entry.peer, entry.connected_since = NO_LEDS, None, None
                self._changed(entry, local=False)

    def record_changed(self, record: DeviceRecord) -> None:
        """The shared store's record of a device changed (another replica's tags, desired mode or
        saved state)."""
        entry = self._entry(record.device_id)
        if (entry.tags, entry.desired_mode) == (record.tags, record.desired_mode) and (
            entry.connected or (entry.mode, entry.last_seen) == (record.mode, record.last_seen)
        ):
            return
        entry.tags, entry.desired_mode = record.tags, record.desired_mode
        if not entry.connected:
            entry.mode, entry.last_seen = record.mode, record.last_seen
        self._changed(entry, local=False)

    def local_snapshots(self) -> list[dict[str, Any]]:
        """This server's connected devices, for a replica that starts or missed the feed."""
        return [
            entry.to_json(self.leaving)
            for entry in self._entries.values()
            if entry.connected and entry.replica == self.replica
        ]

    # What the actors and the device links report.

    def device_online(self, device_id: str, peer: str, state: DeviceState) -> None:
        entry = self._entry(device_id)
        now = self._clock()
        if not entry.connected or entry.replica != self.replica:
            entry.connected_since = now
        entry.connected, entry.peer, entry.last_seen = True, peer, now
        entry.replica, entry.remote = self.replica, None
        self._take_state(entry, state, None)
        self._changed(entry)

    def device_changed(self, device_id: str, state: DeviceState, sound: str | None) -> None:
        entry = self._entries.get(device_id)
        if entry is None or not entry.connected or entry.replica != self.replica:
            return
        entry.last_seen = self._clock()
        self._take_state(entry, state, sound)
        self._changed(entry)

    def device_offline(self, device_id: str, state: DeviceState) -> None:
        entry = self._entry(device_id)
        if entry.connected and entry.replica != self.replica:
            return  # another replica took it over: its news is newer
        entry.connected, entry.peer, entry.connected_since = False, None, None
        entry.replica, entry.remote = None, None
        entry.last_seen = self._clock()
        self._take_state(entry, state, None)
        entry.leds = NO_LEDS
        self._changed(entry)

    def desired_mode(self, device_id: str, mode: int | None) -> None:
        entry = self._entries.get(device_id)
        if entry is not None:
            entry.desired_mode = mode
            self._changed(entry)

    def leds_shown(self, device_id: str, leds: tuple[int, ...]) -> None:
        entry = self._entries.get(device_id)
        if entry is None or not entry.connected or entry.replica != self.replica:
            return
        entry.leds = tuple(hex_colour(rgba) for rgba in leds)
        self._changed(entry)

    def tags_set(self, device_id: str, tags: tuple[str, ...]) -> None:
        entry = self._entries.get(device_id)
        if entry is not None:
            entry.tags = tags
            self._changed(entry)

    def devices_removed(self, device_ids: frozenset[str]) -> None:
        """Their records are gone (removed here, or by another replica): each leaves the view with
        a ``removed`` event, which replaces a reader's unread news of it. A device connected by
        now (it came back meanwhile) stays: it is a new device with a record of its own."""
        for device_id in sorted(device_ids):
            entry = self._entries.get(device_id)
            if entry is None or entry.connected:
                continue
            del self._entries[device_id]
            del self._order[bisect.bisect_left(self._order, device_id)]
            self._dirty.discard(device_id)
            self._local_dirty.discard(device_id)
            self._hub.publish("removed", f"device:{device_id}", {"device_id": device_id})

    def server_leaving(self) -> None:
        self.leaving = True
        for entry in self._entries.values():
            if entry.connected and entry.replica == self.replica:
                self._changed(entry)

    # Inside.

    def _entry(self, device_id: str) -> _Entry:
        entry = self._entries.get(device_id)
        if entry is None:
            entry = self._entries[device_id] = _Entry(device_id)
            bisect.insort(self._order, device_id)
        return entry

    def _take_state(self, entry: _Entry, state: DeviceState, sound: str | None) -> None:
        before = entry.state.playing if entry.state is not None else None
        entry.state, entry.mode = state, state.mode
        if state.playing is None:
            entry.sound, entry.playing_since = None, None
        elif before is None or before.id != state.playing.id:
            entry.sound, entry.playing_since = sound, self._clock()
        elif sound is not None:
            entry.sound = sound

    def _changed(self, entry: _Entry, local: bool = True) -> None:
        """``local``: this server's news. Only what it may speak for goes to the other replicas:
        its own devices, and devices nobody holds (an operator's tags for another replica's
        device reach every replica through the store's feed instead)."""
        entry.json = None
        self._dirty.add(entry.device_id)
        if local and (not entry.connected or entry.replica == self.replica):
            self._local_dirty.add(entry.device_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self._loop is None:
                self.flush()
            else:
                self._loop.call_later(COALESCE_SECONDS, self.flush)

    def flush(self) -> None:
        """Publish one ``device`` event per device changed since the last flush."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        local, self._local_dirty = self._local_dirty, set()
        for device_id in sorted(dirty):
            entry = self._entries.get(device_id)
            if entry is not None:
                self._hub.publish("device", f"device:{device_id}", entry.to_json(self.leaving))
        if self.on_local_flush is not None and local:
            self.on_local_flush(
                [self._entries[device_id].to_json(self.leaving) for device_id in sorted(local)]
            )


def _seconds(iso: object) -> float | None:
    if not isinstance(iso, str):
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
