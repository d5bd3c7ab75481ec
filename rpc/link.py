"""A device connection as the actors see it (``actors.ports.DeviceLink``) and as the streams serve it.

Actors call the outlets from their threads; every call is posted onto the event loop, where
the LED mailbox, the audio channel and the stream slots live. Nothing here blocks an actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from actors.leds import LedFrame
from actors.messages import StreamKind
from actors.ports import CloseCause, PlaybackEndCallback
from media.library import EncodedSound
from media.transport import AudioChannel, AudioTransport
from rpc.loopcall import call_on_loop
from rpc.metrics import Metrics
from rpc.slots import StreamEnd, StreamSlot
from rpc.tracks import TrackBook, WirePacket

ShownLeds = tuple[int, int, int, int, int, int]
"""0xRRGGBBAA colours of led_0..led_5, as the device last confirmed showing them."""


class LedMailbox:
    """The LED state a device should show: only the latest counts, so changes coalesce."""

    def __init__(
        self, metrics: Metrics | None = None, on_shown: Callable[[ShownLeds], None] | None = None
    ) -> None:
        self.shown: ShownLeds | None = None
        self._on_shown = on_shown
        self.desired: LedFrame | None = None
        self.version = 0
        self.taken = 0
        self.confirmed = 0
        """The version the device last confirmed showing (see StatusConversation)."""
        self._cause: float | None = None
        self._metrics = metrics
        self._waiter: asyncio.Future[None] | None = None

    def put(self, leds: LedFrame, caused_at: float | None = None) -> None:
        if leds == self.desired:
            return
        if self.version > self.taken and self._metrics is not None:
            self._metrics.led_changes_coalesced += 1
        self.desired = leds
        self.version += 1
        if self._cause is None:
            self._cause = caused_at
        self.wake()

    def take(self) -> tuple[LedFrame | None, int, float | None]:
        """The state to send now, its version, and when the oldest button behind it was pressed."""
        cause, self._cause = self._cause, None
        self.taken = self.version
        return self.desired, self.version, cause

    @property
    def settled(self) -> bool:
        return self.confirmed == self.version

    def show_confirmed(self, leds: LedFrame, led_0: int | None = None) -> None:
        """The device confirmed showing ``leds`` (and reported its own power LED, if ``led_0``)."""
        if led_0 is None:
            led_0 = self.shown[0] if self.shown is not None else 0
        shown: ShownLeds = (led_0, *leds)
        if shown != self.shown:
            self.shown = shown
            if self._on_shown is not None:
                self._on_shown(shown)

    async def changed_since(self, version: int) -> None:
        while self.version == version:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


_CODES = {
    CloseCause.RETIRED: grpc.StatusCode.ABORTED,
    CloseCause.FAILED: grpc.StatusCode.INTERNAL,
    CloseCause.SHUTDOWN: grpc.StatusCode.UNAVAILABLE,
    CloseCause.LEASE_ENDED: grpc.StatusCode.ABORTED,
}


class _LedOutlet:
    def __init__(self, link: GrpcDeviceLink) -> None:
        self._link = link

    def show(self, leds: LedFrame, caused_at: float | None = None) -> None:
        self._link.post(self._link.leds_wanted.put, leds, caused_at)


class _AudioOutlet:
    def __init__(self, link: GrpcDeviceLink) -> None:
        self._link = link

    def play(self, sound: EncodedSound, on_end: PlaybackEndCallback) -> None:
        self._link.post(self._link.start_playback, sound, on_end)

    def stop(self) -> None:
        self._link.post(self._link.stop_playback)


class GrpcDeviceLink:
    """Built on the supervisor's thread; everything past ``post`` runs on the loop."""

    def __init__(
        self,
        device_id: str,
        peer: str,
        loop: asyncio.AbstractEventLoop,
        transport: AudioTransport[WirePacket],
        tracks: TrackBook,
        metrics: Metrics | None = None,
        on_leds_shown: Callable[[str, ShownLeds], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self._peer = peer
        self._loop = loop
        self._transport = transport
        self._tracks = tracks
        self.leds_wanted = LedMailbox(
            metrics, None if on_leds_shown is None else (lambda leds: on_leds_shown(device_id, leds))
        )
        self.channel: AudioChannel[WirePacket] = AudioChannel(
            transport.channel_capacity(tracks.frame_duration, tracks.max_frames)
        )
        self.end: StreamEnd | None = None
        self._slots: dict[StreamKind, StreamSlot] = {}
        self._streams: dict[StreamKind, int] = {}
        """The supervisor's number of the stream in each slot."""
        self._led_outlet = _LedOutlet(self)
        self._audio_outlet = _AudioOutlet(self)

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def leds(self) -> _LedOutlet:
        return self._led_outlet

    @property
    def audio(self) -> _AudioOutlet:
        return self._audio_outlet

    def close(self, cause: CloseCause, reason: str) -> None:
        self.post(self._close_now, StreamEnd(_CODES[cause], reason))

    def post(self, function: Callable[..., Any], *args: Any) -> None:
        """Run on the loop; a loop already closed at shutdown has nobody left to serve."""
        call_on_loop(self._loop, function, *args)

    # Loop side.

    def attach(self, kind: StreamKind, stream: int) -> StreamSlot:
        """The newest stream of each kind wins: the one with the higher (supervisor-given) number,
        whichever of the two handlers gets here first."""
        slot = StreamSlot(kind)
        if self.end is not None:
            slot.end(self.end)
            return slot
        current = self._slots.get(kind)
        if current is not None and self._streams[kind] > stream:
            slot.end(self._replaced(kind))
            return slot
        if current is not None:
            current.end(self._replaced(kind))
        self._slots[kind] = slot
        self._streams[kind] = stream
        return slot

    def _replaced(self, kind: StreamKind) -> StreamEnd:
        return StreamEnd(
            grpc.StatusCode.ABORTED,
            f"a newer {kind.value} stream of device_id {self.device_id!r} replaced this one",
        )

    def start_playback(self, sound: EncodedSound, on_end: PlaybackEndCallback) -> None:
        self._transport.play(self.channel, self._tracks.track(sound), self._tracks.frame_duration, on_end)

    def stop_playback(self) -> None:
        self._transport.stop(self.channel)

    @property
    def settled(self) -> bool:
        """Nothing left to deliver: the device shows the latest LED state and has every audio packet."""
        leds_delivered = StreamKind.STATUS not in self._slots or self.leds_wanted.settled
        audio_delivered = StreamKind.AUDIO not in self._slots or len(self.channel) == 0
        return self.end is not None or (leds_delivered and audio_delivered)

    def detach(self, slot: StreamSlot) -> None:
        if self._slots.get(slot.kind) is slot:
            del self._slots[slot.kind]

    def _close_now(self, end: StreamEnd) -> None:
        if self.end is not None:
            return
        self.end = end
        self._transport.stop(self.channel)
        self.channel.close()
        self.leds_wanted.wake()
        for slot in self._slots.values():
            slot.end(end)
