"""The real server in-process on 127.0.0.1, for integration tests (pytest-asyncio is not used)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from actors.config import ServerConfig
from actors.leds import LedFrame
from actors.messages import DescribeFleet, FleetStatus
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Leds

TEST_CONFIG = ServerConfig(
    host="127.0.0.1", port=0, metrics_port=0, admin_port=-1, state_db=":memory:", preroll_ms=100, grace=1.0
)


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


@asynccontextmanager
async def serving(library: SoundLibrary, **overrides: Any) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(replace(TEST_CONFIG, **overrides), library)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop(grace=1.0)


def target(plane: ControlPlane) -> str:
    return f"127.0.0.1:{plane.port}"


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
