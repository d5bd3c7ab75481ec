"""What the actors tell the operator surface about each device as it happens: fire-and-forget.

Like ``FleetObserver`` (counts, for metrics), but with the device's identity and state, so a
read model of the fleet can follow it without asking any actor. Called on the actor
runtime's thread; an implementation must return at once and never call back into an actor.
The default does nothing, so the actors run (and are tested) without an operator surface.
"""

from __future__ import annotations

from actors.state import DeviceState


class FleetListener:
    def device_online(self, device_id: str, peer: str, state: DeviceState) -> None:
        """The device opened its first stream, or a newer connection took it over."""

    def device_changed(self, device_id: str, state: DeviceState, sound: str | None) -> None:
        """The device's state changed; ``sound`` names what it plays now (None: nothing)."""

    def device_offline(self, device_id: str, state: DeviceState) -> None:
        """The device's last stream is gone; ``state`` is what it resumes with."""

    def desired_mode(self, device_id: str, mode: int | None) -> None:
        """A mode for an offline device is kept for its reconnect (None: applied, or cleared)."""

    def devices_removed(self, device_ids: frozenset[str]) -> None:
        """The devices' records are gone (an operator removed them, or the retention did)."""
