"""Waiting for the device or for the server's decision to end the stream, whichever comes first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from rpc.registration import Malformed

T = TypeVar("T")


class StreamEnded(Exception):
    """The server ended this stream while it waited (see the slot's ``Ending``)."""


class EndOfStream(Exception):
    """The device half-closed its side of the stream."""


class MalformedMessage(Exception):
    """The device sent bytes that do not parse as the stream's message type."""


async def first_of(awaitable: Awaitable[T], ended: asyncio.Future[Any]) -> T:
    """The awaitable's result, or StreamEnded if ``ended`` resolves first."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(_settled)
    try:
        done, _ = await asyncio.wait((task, ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
    if task in done:
        return task.result()
    raise StreamEnded


def _settled(task: asyncio.Future[Any]) -> None:
    """A read abandoned because the call went away may still finish; its outcome is not needed."""
    if not task.cancelled():
        task.exception()


async def next_message(requests: AsyncIterator[T], ended: asyncio.Future[Any]) -> T:
    """The device's next message; EndOfStream when it has no more."""
    if ended.done():
        raise StreamEnded
    try:
        message = await first_of(requests.__anext__(), ended)
    except StopAsyncIteration:
        raise EndOfStream from None
    if isinstance(message, Malformed):
        raise MalformedMessage(str(message))
    return message
