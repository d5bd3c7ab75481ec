"""How a call really ended: the server's status, even when one of our writes raced with that end.

When the server ends a stream (e.g. ABORTED because a newer connection took over) while the device is
writing on it, grpc-aio fails the write and makes up a local INTERNAL status "Internal error from Core":
either it replaces the server's status that had just been set, or it comes first while the server's
status waits in Core behind messages nobody will read any more. Tests and the CLI need the server's
status, so this module reads it where gRPC keeps it. grpc-aio has no public API for that; everything here
falls back to the public status when its internals change.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeAlias

import grpc

StreamEnd: TypeAlias = "tuple[grpc.StatusCode, str]"
"""(code, details) of a finished call."""

CORE_WRITE_FAILURE = "Internal error from Core"
MADE_UP_STATUS: StreamEnd = (grpc.StatusCode.INTERNAL, CORE_WRITE_FAILURE)
"""The status grpc-aio makes up locally when a write fails because the call has already ended."""
REAL_STATUS_WAIT = 1.0
"""How long to wait for the server's status behind a made-up one before reporting the made-up one."""

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def peek_status(call: object) -> StreamEnd | None:
    """The status a call holds right now, read synchronously from its Core call object.

    The public code()/details() are coroutines: by the time they run, a racing write may have replaced
    the server's status with the made-up INTERNAL for good. Call this from a done callback instead.
    """
    status = getattr(getattr(call, "_cython_call", None), "_status", None)
    try:
        return _STATUS_CODES[int(status.code())], str(status.details() or "")  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


async def drain_after_failed_write(call: grpc.aio.Call, error: grpc.aio.AioRpcError) -> None:
    """After a write failed with the made-up status, let the server's status reach the call.

    Core delivers it only once the messages queued before it are read, and grpc-aio refuses reads once it
    has made up its status, so the leftovers are read through the Core call. They are not answered: the
    server has already ended the call.
    """
    if (error.code(), error.details()) != MADE_UP_STATUS:
        return
    receive = getattr(getattr(call, "_cython_call", None), "receive_serialized_message", None)
    if receive is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(REAL_STATUS_WAIT):
            while await receive() is not grpc.aio.EOF:
                pass


async def status_after_race(call: grpc.aio.Call) -> StreamEnd:
    """Wait (briefly) for the server's status to replace the made-up one; the drain above lets it in."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(REAL_STATUS_WAIT):
            while (end := peek_status(call)) in (None, MADE_UP_STATUS):
                await asyncio.sleep(0.005)
            if end is not None:
                return end
    return MADE_UP_STATUS
