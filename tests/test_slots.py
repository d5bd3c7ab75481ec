"""Waits the server cuts short: ending a stream interrupts only that stream's wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from actors.messages import StreamKind
from rpc.registration import Malformed
from rpc.slots import DeviceClosedStream, MalformedMessage, StreamEnd, StreamEnded, StreamSlot, next_message

TAKEN_OVER = StreamEnd(grpc.StatusCode.ABORTED, "taken over")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))


async def messages(queue: asyncio.Queue[object]) -> AsyncIterator[object]:
    while (item := await queue.get()) is not None:
        yield item


async def waiting_read(slot: StreamSlot) -> asyncio.Future[object]:
    """A read of a device that sends nothing, already waiting in ``slot``."""
    read = asyncio.ensure_future(next_message(messages(asyncio.Queue()), slot))
    await asyncio.sleep(0.01)
    return read


def test_ending_the_slot_interrupts_a_read_with_stream_ended() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        read = await waiting_read(slot)
        slot.end(TAKEN_OVER)
        with pytest.raises(StreamEnded):
            await read

    run(scenario)


def test_the_interrupted_task_is_not_left_cancelling() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)

        async def handler() -> int:
            with pytest.raises(StreamEnded):
                await next_message(messages(asyncio.Queue()), slot)
            await asyncio.sleep(0.01)  # a later await is not hit by a stale cancellation
            task = asyncio.current_task()
            assert task is not None
            return task.cancelling()

        task = asyncio.ensure_future(handler())
        await asyncio.sleep(0.01)
        slot.end(TAKEN_OVER)
        assert await task == 0

    run(scenario)


def test_a_slot_already_ended_raises_before_reading() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queue.put_nowait("waiting message")
        slot.end(TAKEN_OVER)
        with pytest.raises(StreamEnded):
            await next_message(messages(queue), slot)
        assert queue.qsize() == 1

    run(scenario)


def test_cancelling_the_call_passes_through_as_cancellation() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        read = await waiting_read(slot)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read

    run(scenario)


def test_a_call_cancelled_as_the_slot_ends_stays_cancelled() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        read = await waiting_read(slot)
        read.cancel()
        slot.end(TAKEN_OVER)
        with pytest.raises(asyncio.CancelledError):
            await read

    run(scenario)


def test_an_end_after_the_wait_does_not_cancel_what_the_handler_does_next() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queue.put_nowait("press")
        reads = messages(queue)
        assert await next_message(reads, slot) == "press"
        slot.end(TAKEN_OVER)
        await asyncio.sleep(0.01)  # would raise CancelledError if the end reached this task
        with pytest.raises(StreamEnded):
            await next_message(reads, slot)

    run(scenario)


def test_a_half_closed_stream_is_end_of_stream() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queue.put_nowait(None)
        with pytest.raises(DeviceClosedStream):
            await next_message(messages(queue), slot)

    run(scenario)


def test_unparseable_bytes_are_a_malformed_message() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.EVENTS)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queue.put_nowait(Malformed("DeviceEvent", "truncated message"))
        with pytest.raises(MalformedMessage, match="DeviceEvent"):
            await next_message(messages(queue), slot)

    run(scenario)


def test_until_ended_returns_what_finishes_first() -> None:
    async def scenario() -> None:
        slot = StreamSlot(StreamKind.STATUS)
        assert await slot.until_ended(asyncio.sleep(0, "done")) == "done"
        waiting = asyncio.ensure_future(slot.until_ended(asyncio.sleep(10)))
        await asyncio.sleep(0.01)
        slot.end(TAKEN_OVER)
        with pytest.raises(StreamEnded):
            await waiting

    run(scenario)
