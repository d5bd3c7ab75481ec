"""How busy the event loop is: the share of wall time it spends working, not waiting for I/O.

Like Node's event-loop utilisation: the loop's selector call is timed, and everything outside it
is work (callbacks, the pacing, gRPC's completions; time the thread waits for the core or the
GIL counts too, since the loop could not serve meanwhile). A loop without a Python selector
(uvloop) is measured by its thread's CPU time instead. Either way the reading is combined with
the process's CPU per core it may use, so gRPC's own threads competing for the same core show.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


class LoopLoad:
    """Install once on the loop that serves; ``sample()`` gives the busy share since the last call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._idle = 0.0
        self.times_selector = _time_selector(loop, self)
        self._cores = max(1, len(os.sched_getaffinity(0)))
        self._wall = time.perf_counter()
        self._idle_seen = 0.0
        self._thread = time.thread_time()
        self._process = time.process_time()

    def add_idle(self, seconds: float) -> None:
        self._idle += seconds

    def sample(self) -> float:
        """Busy share (0..1) of the interval since the previous sample; call it from the loop."""
        wall, idle = time.perf_counter(), self._idle
        thread, process = time.thread_time(), time.process_time()
        elapsed = wall - self._wall
        if elapsed <= 0:
            return 0.0
        if self.times_selector:
            loop_busy = 1.0 - (idle - self._idle_seen) / elapsed
        else:
            loop_busy = (thread - self._thread) / elapsed
        process_busy = (process - self._process) / elapsed / self._cores
        self._wall, self._idle_seen, self._thread, self._process = wall, idle, thread, process
        return min(1.0, max(0.0, loop_busy, process_busy))


def _time_selector(loop: asyncio.AbstractEventLoop, load: LoopLoad) -> bool:
    """Wrap the loop's ``selector.select`` so the time spent in it is counted as idle."""
    selector: Any = getattr(loop, "_selector", None)
    select = getattr(selector, "select", None)
    if select is None:
        return False
    perf_counter = time.perf_counter

    def timed_select(timeout: float | None = None) -> Any:
        started = perf_counter()
        try:
            return select(timeout)
        finally:
            load.add_idle(perf_counter() - started)

    selector.select = timed_select
    return True
