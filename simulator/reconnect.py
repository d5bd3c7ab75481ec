"""Staying connected as firmware does: after any loss, reconnect with jittered exponential backoff.

The pattern of ESPHome's client: the n-th attempt in a row waits min(1.8**n, 60) s, less a random
part of it, so a fleet that lost its server does not come back in one synchronized wave. A
connection the server took up (its first LED SET arrived) starts the count again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.device import SimulatedDevice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    factor: float = 1.8
    cap: float = 60.0
    jitter: float = 0.5
    """The share of each wait that is random: 0.5 waits between half and all of it."""

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 for the first after a loss);
        ``draw`` is a random number in [0, 1)."""
        ceiling = min(self.factor**attempt, self.cap)
        return ceiling * (1.0 - self.jitter * draw)


class Reconnector:
    """Keeps one simulated device connected until ``stop``; counts what it did."""

    def __init__(
        self,
        device: SimulatedDevice,
        backoff: Backoff | None = None,
        draw: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.device = device
        self.backoff = backoff or Backoff()
        self._draw = draw
        self._sleep = sleep
        self.attempts = 0
        """Connects tried, the first included."""
        self.losses = 0
        """Connections lost after they were made."""
        self.waits: list[float] = []
        """Each backoff wait, in order."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.device.device_id}-reconnect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.device.disconnect()

    async def _run(self) -> None:
        failures = 0
        while True:
            self.attempts += 1
            try:
                await self.device.connect()
            except ConnectionError as error:
                logger.info("%s: %s", self.device.device_id, error)
            else:
                await self.device.wait_until_lost()
                self.losses += 1
                if self.device.established:
                    failures = 0
                logger.info("%s: connection lost: %s", self.device.device_id, self.device.stream_ends)
                await self.device.disconnect()
            wait = self.backoff.delay(failures, self._draw())
            failures += 1
            self.waits.append(wait)
            await self._sleep(wait)
