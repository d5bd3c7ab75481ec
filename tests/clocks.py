"""A virtual clock for code that takes an injectable clock (``media.transport.Clock``).

Time moves only when the test says so, and a test that says "advance 100 ms" gets exactly what
100 ms of ticks do, on any machine and under any load: no real waiting, nothing to flake.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    """``sleep`` parks its caller until ``advance`` (or ``stall``) moves time past its deadline.

    ``advance`` wakes sleepers one at a time, in deadline order, each at its own deadline, and
    waits until the one woken has gone back to sleep on this clock (or finished) before it moves
    on. So when ``advance`` returns, every tick due by then has run in full. The contract that
    makes this work: a sleeper runs from one ``sleep`` to the next without waiting on anything
    else, as the audio scheduler does.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None], asyncio.Task[object]]] = []
        self._order = itertools.count()
        self._woken: asyncio.Task[object] | None = None
        self._back: asyncio.Future[None] | None = None
        """Resolved once the task just woken sleeps again or ends: that is when its turn is over."""

    def now(self) -> float:
        return self._now

    @property
    def sleeping(self) -> int:
        """How many tasks wait on this clock (a cancelled sleep no longer counts)."""
        return sum(1 for _, _, waiter, _ in self._sleepers if not waiter.done())

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a zero sleep would wake forever within one advance"
        task = asyncio.current_task()
        assert task is not None, "a sleeper is a task"
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter, task))
        if task is self._woken:
            self._turn_over()
        await waiter

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, every sleeper waking on time."""
        assert seconds >= 0, "time does not run backwards"
        await self._let_new_tasks_start()
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            self._now = max(self._now, self._sleepers[0][0])
            await self._wake_first()
        self._now = target

    async def stall(self, seconds: float) -> None:
        """The loop was busy for ``seconds``: time jumps, and whoever was due meanwhile wakes late, at the end."""
        assert seconds >= 0, "time does not run backwards"
        await self._let_new_tasks_start()
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            await self._wake_first()

    @staticmethod
    async def _let_new_tasks_start() -> None:
        """One turn of the loop: a task created just before (a scheduler ``play`` started) takes its
        first step, up to its first sleep, before time moves; asyncio runs ready tasks in FIFO order."""
        await asyncio.sleep(0)

    async def _wake_first(self) -> None:
        _, _, waiter, task = heapq.heappop(self._sleepers)
        if waiter.done():
            return  # its sleep was cancelled (the scheduler was closed)
        self._woken, back = task, asyncio.get_running_loop().create_future()
        self._back = back
        task.add_done_callback(self._task_ended)
        waiter.set_result(None)
        try:
            await back
        finally:
            task.remove_done_callback(self._task_ended)
            self._woken = self._back = None

    def _task_ended(self, _: object) -> None:
        self._turn_over()

    def _turn_over(self) -> None:
        if self._back is not None and not self._back.done():
            self._back.set_result(None)
