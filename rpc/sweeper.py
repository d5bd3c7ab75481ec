"""The retention's timer: from the event loop, asks the supervisor to sweep the device records
now and then (``actors.records`` decides what goes). The time comes from a clock passed in,
or is given to ``sweep``, so a test moves time forward without waiting for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.messages import SweepRecords
from rpc.loopcall import call_on_loop

logger = logging.getLogger(__name__)

SWEEP_TIMEOUT = 30.0
"""Seconds a sweep may take (Redis is asked a few hundred records at a time) before it is given up."""


class RecordSweeper:
    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        loop: asyncio.AbstractEventLoop,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._supervisor = supervisor
        self._loop = loop
        self._interval = interval
        self._clock = clock

    async def sweep(self, now: float | None = None) -> frozenset[str]:
        """The devices whose records were deleted, as of ``now`` (the clock's time if not given)."""
        future: asyncio.Future[frozenset[str]] = self._loop.create_future()
        loop = self._loop

        def reply(removed: frozenset[str]) -> None:
            call_on_loop(loop, _resolve, future, removed)

        self._supervisor.tell(SweepRecords(self._clock() if now is None else now, reply))
        async with asyncio.timeout(SWEEP_TIMEOUT):
            return await future

    async def run(self) -> None:
        """Sweep every interval until cancelled; a sweep that fails is tried at the next."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except (TimeoutError, pykka.ActorDeadError) as error:
                logger.warning("the device records were not swept: %s", error or "no answer in time")


def _resolve(future: asyncio.Future[frozenset[str]], removed: frozenset[str]) -> None:
    if not future.done():
        future.set_result(removed)
