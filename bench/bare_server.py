"""The bare baseline: the same DeviceService in plain grpc.aio, with no actors, no supervisor, no scheduler.

    python -m bench.bare_server --port 0 --frame-ms 20 --preroll-ms 150

Written the straightforward way on purpose: it is the ceiling of Python gRPC on this machine, what
the project is compared against in the same run. It does the same work as the project per press and
per Play, so that the comparison is of how, not of what:

- Per connection (keyed by the peer address, which the three streams of one device share) it keeps
  the mode and whether a sound plays, and acks every event at once.
- LEDs: StatusStream sends a GET, then a SET of led_1..led_5 (led_0 left unset) only when the
  colours differ from what the device shows, as the project does: the device's GET answer after
  connect, then each SET it confirmed. A Mode press is one SET (the mode LEDs); a Play from idle
  one (led_1 blue); a Play preempting a Play none; changes while a SET is in flight coalesce.
- Audio: Play streams the same pre-encoded packets (``media.library``, the same sounds, the same
  packet duration) in real time after the same pre-roll (packet i is handed to gRPC at
  start + i * frame - pre-roll), from one asyncio task per playing device that sleeps until each
  packet is due; Stop cancels that task, drops what the device has not been sent and closes the
  recording with a packet of encoded silence.

What it leaves out on purpose: admission control (it never refuses a Play, so overloaded it is
late for everyone), rate limits, state persistence, keep-alive settings and GC tuning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc

from actors.leds import STATUS_IDLE, STATUS_PLAYING, mode_leds
from media.library import build_library
from media.opus import FRAME_DURATIONS_MS
from rpc import comms_pb2 as pb
from rpc import comms_pb2_grpc

logger = logging.getLogger("bench.bare_server")

ACK = pb.DeviceEventResponse(ack=True)
GET = pb.DeviceStatusRequest(get=True)
MODE, STOP, PLAY = pb.ButtonEvent.BUTTON_2, pb.ButtonEvent.BUTTON_3, pb.ButtonEvent.BUTTON_4


class Connection:
    """One device connection: its mode, its LED signal and its audio queue, shared by its three streams."""

    def __init__(self) -> None:
        self.mode = 0
        self.streams = 0
        self.leds_changed = asyncio.Event()
        self.audio: asyncio.Queue[pb.AudioPacket] = asyncio.Queue()
        self.playback: asyncio.Task[None] | None = None
        self.recording_open = False
        """The audio stream has handed the device an is_start and not yet an is_end."""

    def leds(self) -> Frame:
        """led_1..led_5 as 0xRRGGBBAA: led_1 the state, the others the mode."""
        status = STATUS_PLAYING if self.playback is not None else STATUS_IDLE
        return (status.rgba, *mode_leds(self.mode))


Frame = tuple[int, int, int, int, int]


def set_request(frame: Frame) -> pb.DeviceStatusRequest:
    """The same message the project sends: led_1..led_5, led_0 (the device's own) unset."""
    led_1, led_2, led_3, led_4, led_5 = (pb.RGBAColor(rgba=value) for value in frame)
    return pb.DeviceStatusRequest(
        set=pb.DeviceStatusSet(led_1=led_1, led_2=led_2, led_3=led_3, led_4=led_4, led_5=led_5)
    )


def shown_by(answer: pb.DeviceStatusResponse) -> Frame | None:
    """What a GET answer says the device shows, or None (then the next SET is sent regardless)."""
    if answer.WhichOneof("response") != "state":
        return None
    state = answer.state
    return (state.led_1.rgba, state.led_2.rgba, state.led_3.rgba, state.led_4.rgba, state.led_5.rgba)


def same_colours(a: Frame, b: Frame) -> bool:
    """The device shows rgba >> 8 and ignores intensity, as the project compares."""
    return all((x >> 8) == (y >> 8) for x, y in zip(a, b, strict=True))


class BareService(comms_pb2_grpc.DeviceServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        tracks: Sequence[Sequence[pb.AudioPacket]],
        end: pb.AudioPacket,
        frame_s: float,
        preroll_s: float,
    ) -> None:
        self._tracks = tracks
        self._end = end
        self._frame_s = frame_s
        self._preroll_s = preroll_s
        self._connections: dict[str, Connection] = {}

    @contextlib.contextmanager
    def _connection(self, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[Connection]:
        """The connection's shared state, created by its first stream and dropped with its last."""
        peer = context.peer()
        connection = self._connections.get(peer)
        if connection is None:
            connection = self._connections[peer] = Connection()
        connection.streams += 1
        try:
            yield connection
        finally:
            connection.streams -= 1
            if connection.streams == 0:
                self._stop(connection)
                del self._connections[peer]

    async def StatusStream(
        self,
        request_iterator: AsyncIterator[pb.DeviceStatusResponse],
        context: grpc.aio.ServicerContext[pb.DeviceStatusResponse, pb.DeviceStatusRequest],
    ) -> AsyncIterator[pb.DeviceStatusRequest]:
        with self._connection(context) as connection:
            yield GET
            answer = await anext(request_iterator, None)
            if answer is None:
                return
            shown = shown_by(answer)
            while True:
                connection.leds_changed.clear()
                wanted = connection.leds()
                if shown is None or not same_colours(shown, wanted):
                    yield set_request(wanted)
                    answer = await anext(request_iterator, None)
                    if answer is None:
                        return
                    confirmed = answer.WhichOneof("response") == "status" and answer.status == "success"
                    shown = wanted if confirmed else None
                await connection.leds_changed.wait()

    async def EventStream(
        self,
        request_iterator: AsyncIterator[pb.DeviceEvent],
        context: grpc.aio.ServicerContext[pb.DeviceEvent, pb.DeviceEventResponse],
    ) -> AsyncIterator[pb.DeviceEventResponse]:
        with self._connection(context) as connection:
            async for event in request_iterator:
                button = event.button_event
                if button.event == pb.ButtonEvent.PRESS:
                    if button.button_id == MODE:
                        connection.mode = (connection.mode + 1) % len(self._tracks)
                        connection.leds_changed.set()
                    elif button.button_id == PLAY:
                        self._play(connection)
                    elif button.button_id == STOP:
                        self._stop(connection)
                yield ACK

    async def ServerAudioStream(
        self,
        request: pb.AudioStreamRequest,
        context: grpc.aio.ServicerContext[pb.AudioStreamRequest, pb.AudioPacket],
    ) -> AsyncIterator[pb.AudioPacket]:
        with self._connection(context) as connection:
            while True:
                packet = await connection.audio.get()
                if packet.is_start:
                    connection.recording_open = True
                if packet.is_end:
                    connection.recording_open = False
                yield packet

    def _play(self, connection: Connection) -> None:
        self._stop(connection)
        track = self._tracks[connection.mode]
        connection.playback = asyncio.create_task(self._stream(connection, track))
        connection.leds_changed.set()

    def _stop(self, connection: Connection) -> None:
        """Cancel the pacing task, drop unsent packets, and close the device's recording if it is open."""
        playback, connection.playback = connection.playback, None
        if playback is not None:
            playback.cancel()
            connection.leds_changed.set()
        while not connection.audio.empty():
            connection.audio.get_nowait()
        if connection.recording_open:
            connection.audio.put_nowait(self._end)

    async def _stream(self, connection: Connection, track: Sequence[pb.AudioPacket]) -> None:
        """Packet i is queued at start + i * frame - pre-roll: real time, a pre-roll ahead."""
        loop = asyncio.get_running_loop()
        start = loop.time() - self._preroll_s
        for index, packet in enumerate(track):
            delay = start + index * self._frame_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            connection.audio.put_nowait(packet)
        connection.playback = None
        connection.leds_changed.set()


async def serve(host: str, port: int, frame_ms: int, preroll_ms: int, modes: int) -> None:
    library = build_library(modes, frame_ms)
    tracks = [
        [
            pb.AudioPacket(is_start=index == 0, is_end=index == len(sound.packets) - 1, data=data)
            for index, data in enumerate(sound.packets)
        ]
        for sound in library.sounds
    ]
    end = pb.AudioPacket(is_end=True, data=library.silence_packet)
    server = grpc.aio.server()
    comms_pb2_grpc.add_DeviceServiceServicer_to_server(
        BareService(tracks, end, frame_ms / 1000, preroll_ms / 1000), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    logger.info(
        "serving on %s:%d: %d modes, %d ms packets, %d ms pre-roll", host, bound, modes, frame_ms, preroll_ms
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--frame-ms", type=int, default=20, choices=FRAME_DURATIONS_MS)
    parser.add_argument("--preroll-ms", type=int, default=150)
    parser.add_argument("--modes", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.host, args.port, args.frame_ms, args.preroll_ms, args.modes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
