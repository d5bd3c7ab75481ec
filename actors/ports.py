"""What the actors drive: the device's connection, seen from the actor side.

The gRPC layer implements these for real connections (posting onto the asyncio loop);
tests implement them with small recording fakes. Every method is called from an actor
thread and must return at once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from actors.leds import LedFrame
from media.library import EncodedSound
from media.transport import PlaybackEnd

PlaybackEndCallback = Callable[[PlaybackEnd], None]


class Sounds(Protocol):
    """What the actors play: each mode's sound, and sounds by name (the sound library, or the
    catalog an operator changes at run time)."""

    @property
    def modes(self) -> int: ...

    def for_mode(self, mode: int) -> EncodedSound: ...

    def named(self, name: str) -> EncodedSound | None: ...


class CloseCause(enum.Enum):
    """Why the server ends a connection's streams; the gRPC layer picks the status from it."""

    RETIRED = "retired"
    FAILED = "failed"
    SHUTDOWN = "shutdown"
    LEASE_ENDED = "lease-ended"
    """The device's lease here ended: another server holds it now (its streams reached that one)."""


class LedOutlet(Protocol):
    def show(self, leds: LedFrame, caused_at: float | None = None) -> None:
        """Make this the device's LED state; only the latest matters.

        ``caused_at`` is when the button event behind the change reached the server
        (time.monotonic()), so the gRPC side can measure button→LED latency.
        """


class AudioOutlet(Protocol):
    def play(self, sound: EncodedSound, on_end: PlaybackEndCallback) -> None:
        """Start streaming ``sound``, ending whatever is streaming now."""

    def stop(self) -> None:
        """End the current stream at once, closing the device's recording if one is open."""


class DeviceLink(Protocol):
    """One connection of one device: the outlets its streams serve."""

    @property
    def peer(self) -> str: ...

    @property
    def leds(self) -> LedOutlet: ...

    @property
    def audio(self) -> AudioOutlet: ...

    def close(self, cause: CloseCause, reason: str) -> None:
        """End every stream of the device (it retired, its actor kept failing, or the server stops)."""


LinkFactory = Callable[[str, str], DeviceLink]
"""Makes the link for (device_id, peer) when a device opens its first stream."""
