"""The real server in-process on 127.0.0.1, for integration tests (pytest-asyncio is not used)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc

from actors.config import ServerConfig
from actors.leds import LedFrame
from actors.messages import DescribeFleet, FleetStatus
from media.library import EncodedSound, SoundLibrary
from media.opus import samples_per_frame
from media.repacketize import packet_samples
from rpc.server import ControlPlane
from simulator import Leds, Recording, StreamEnd
from tests.proxy import haproxy

TEST_CONFIG = ServerConfig(
    host="127.0.0.1", port=0, metrics_port=0, admin_port=-1, state_db=":memory:", preroll_ms=100, grace=1.0
)


def holds_the_whole_sound(recording: Recording, sound: EncodedSound) -> bool:
    """Whether the recording carries every frame of the sound, whatever packet sizes it came in:
    under load the server joins frames into larger packets, so packets are not counted."""
    samples = sum(packet_samples(packet.data) for packet in recording.packets)
    return samples == len(sound.packets) * samples_per_frame(sound.frame_ms)


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


class Route(enum.Enum):
    """How the devices of a test reach the server."""

    DIRECT = "direct"
    HAPROXY = "haproxy"
    """Through HAProxy with the shipped config, the server its one replica."""


route = Route.DIRECT
"""The route ``serving`` sets up; a test module parametrizes it (see test_integration)."""

_front_doors: dict[int, str] = {}
"""Where devices connect to a plane, by ``id(plane)``, when that is not the plane's own port."""


@asynccontextmanager
async def serving(library: SoundLibrary, **overrides: Any) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(replace(TEST_CONFIG, **overrides), library)
    await plane.start()
    try:
        if route is Route.HAPROXY:
            with haproxy([f"127.0.0.1:{plane.port}"]) as front_door:
                _front_doors[id(plane)] = front_door
                try:
                    yield plane
                finally:
                    del _front_doors[id(plane)]
        else:
            yield plane
    finally:
        await plane.stop(grace=1.0)


def assert_ended_with(end: StreamEnd, code: grpc.StatusCode, detail: str) -> None:
    """The server ended a device's stream with ``code`` and a message containing ``detail``.

    Through HAProxy 2.6 a stream the server ends while the device still sends on it reaches the
    device as CANCELLED: HAProxy resets it with CANCEL right after the server's trailers, and the
    client reports the reset (haproxy/haproxy#1219, changed in later releases). The device sees
    the end either way; only the status text is the proxy's.
    """
    got, details = end
    if route is Route.HAPROXY and got == grpc.StatusCode.CANCELLED:
        return
    assert got == code, end
    assert detail in details, end


def target(plane: ControlPlane) -> str:
    return _front_doors.get(id(plane), f"127.0.0.1:{plane.port}")


async def fleet_status(plane: ControlPlane) -> FleetStatus:
    supervisor = plane.supervisor
    loop = asyncio.get_running_loop()
    future: asyncio.Future[FleetStatus] = loop.create_future()

    def reply(status: FleetStatus) -> None:
        loop.call_soon_threadsafe(future.set_result, status)

    supervisor.tell(DescribeFleet(reply))
    return await asyncio.wait_for(future, 5)


async def wait_for_fleet(
    plane: ControlPlane, predicate: Callable[[FleetStatus], bool], timeout: float = 5
) -> None:
    async with asyncio.timeout(timeout):
        while not predicate(await fleet_status(plane)):
            await asyncio.sleep(0.01)


def shows(frame: LedFrame) -> Callable[[Leds], bool]:
    """The device shows ``frame`` on led_1..led_5 (colours only, as the device displays them)."""
    return lambda leds: [rgba >> 8 for rgba in leds[1:]] == [rgba >> 8 for rgba in frame]


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Until ``condition()`` holds, looking every 10 ms; TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
