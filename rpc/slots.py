"""A stream's place on a device connection, and the waits the server may cut short.

A handler waits on the device (its next message) or on the LED mailbox; the server may
end the stream meanwhile (a takeover, a retire, a drain). StreamEnd the slot cancels the task
waiting in it, and the wait raises ``StreamEnded``: one ``Task.cancel`` when a stream ends,
instead of a task and an ``asyncio.wait`` for every message read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from actors.messages import StreamKind
from rpc.registration import Malformed

T = TypeVar("T")


class StreamEnded(Exception):
    """The server ended this stream while it waited (see the slot's ``StreamEnd``)."""


class DeviceClosedStream(Exception):
    """The device half-closed its side of the stream."""


class MalformedMessage(Exception):
    """The device sent bytes that do not parse as the stream's message type."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The status a stream ends with when the server ends it."""

    code: grpc.StatusCode
    details: str


class StreamSlot:
    """One open stream of a connection; ``ended`` resolves when the server must end it."""

    def __init__(self, kind: StreamKind) -> None:
        self.kind = kind
        self.ended: asyncio.Future[StreamEnd] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Task[object] | None = None
        self._interrupted = False

    def end(self, end: StreamEnd) -> None:
        if self.ended.done():
            return
        self.ended.set_result(end)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and waiter is not asyncio.current_task():
            self._interrupted = True
            waiter.cancel()

    async def until_ended(self, awaitable: Awaitable[T]) -> T:
        """The awaitable's result, or StreamEnded if the slot ends before or while it waits.

        Only this slot's own cancellation becomes StreamEnded; a cancellation of the call
        itself (gRPC cancelling the handler) passes through, as ``asyncio.timeout`` does.
        """
        if self.ended.done():
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # never awaited: say so, or Python warns about it
            raise StreamEnded
        task = asyncio.current_task()
        assert task is not None, "a stream waits inside its handler's task"
        cancelling = task.cancelling()
        self._waiter = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._take_interrupt(task) and task.cancelling() <= cancelling:
                raise StreamEnded from None
            raise
        finally:
            if self._waiter is task:
                self._waiter = None
            # The awaitable swallowed the cancellation: take it back all the same.
            self._take_interrupt(task)

    def _take_interrupt(self, task: asyncio.Task[object]) -> bool:
        if not self._interrupted:
            return False
        self._interrupted = False
        task.uncancel()
        return True


async def next_message(requests: AsyncIterator[T], slot: StreamSlot) -> T:
    """The device's next message; DeviceClosedStream when it has no more."""
    try:
        message = await slot.until_ended(anext(requests))
    except StopAsyncIteration:
        raise DeviceClosedStream from None
    if isinstance(message, Malformed):
        raise MalformedMessage(str(message))
    return message
