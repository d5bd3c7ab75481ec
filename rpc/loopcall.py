"""Posting work onto the event loop from wherever an actor runs.

The actors take their turns on the loop's own thread in the server, so what they post can
go straight into the loop's ready queue; ``call_soon_threadsafe`` would also write to the
loop's wake-up pipe each time (a system call per LED change and per ack). From any other
thread (actor tests, tools) the thread-safe path is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def call_on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on ``loop``; a loop already closed at shutdown has nobody left to serve."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.call_soon(callback, *args)
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
