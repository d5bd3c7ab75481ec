"""The lockstep status conversation: one request in flight, changes coalesced, errors retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from actors.leds import LedFrame
from actors.messages import StreamKind
from rpc import comms_pb2 as pb
from rpc.link import LedMailbox
from rpc.metrics import Metrics
from rpc.slots import Ending, EndOfStream, StreamEnded, StreamSlot
from rpc.status import RetryPolicy, StatusConversation, set_request

A: LedFrame = (0x00C000FF, 0xFF6000FF, 0, 0, 0)
B: LedFrame = (0x0050FFFF, 0xFF6000FF, 0, 0, 0)
C: LedFrame = (0x00C000FF, 0, 0xFF6000FF, 0, 0)
SUCCESS = pb.DeviceStatusResponse(status="success")


def shown(leds: LedFrame) -> pb.DeviceStatusResponse:
    colours = [pb.RGBAColor(rgba=(value & 0xFFFFFF00) | 0xFF) for value in leds]
    return pb.DeviceStatusResponse(
        state=pb.DeviceStatus(
            led_0=pb.RGBAColor(rgba=0x00FF00FF),
            led_1=colours[0],
            led_2=colours[1],
            led_3=colours[2],
            led_4=colours[3],
            led_5=colours[4],
        )
    )


class Device:
    """The device side of the conversation, answering only when the test says so."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.mailbox = LedMailbox()
        self.slot = StreamSlot(StreamKind.STATUS)
        self.answers: asyncio.Queue[pb.DeviceStatusResponse | None] = asyncio.Queue()
        self.metrics = Metrics()
        conversation = StatusConversation(
            "dev", self.mailbox, self._answers(), self.slot, self.metrics, policy
        )
        self.requests = conversation.requests()
        self._pending: asyncio.Future[pb.DeviceStatusRequest] | None = None

    async def _answers(self) -> AsyncIterator[pb.DeviceStatusResponse]:
        while (answer := await self.answers.get()) is not None:
            yield answer

    def _next(self) -> asyncio.Future[pb.DeviceStatusRequest]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self.requests))
        return self._pending

    async def next_request(self, timeout: float = 1.0) -> pb.DeviceStatusRequest:
        request = await asyncio.wait_for(asyncio.shield(self._next()), timeout)
        self._pending = None
        return request

    async def no_request_within(self, seconds: float) -> None:
        pending = self._next()
        await asyncio.sleep(seconds)
        assert not pending.done(), f"unexpected request {pending.result()}"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_conversation_opens_with_a_get() -> None:
    async def scenario() -> None:
        device = Device()
        assert (await device.next_request()).WhichOneof("request") == "get"

    run(scenario)


def test_a_state_is_set_after_the_get_when_the_device_shows_something_else() -> None:
    async def scenario() -> None:
        device = Device()
        device.mailbox.put(A)
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        assert await device.next_request() == set_request(A)

    run(scenario)


def test_no_set_is_sent_when_the_device_already_shows_the_state() -> None:
    async def scenario() -> None:
        device = Device()
        device.mailbox.put(A)
        await device.next_request()
        device.answers.put_nowait(shown(A))
        await device.no_request_within(0.1)

    run(scenario)


def test_a_set_leaves_led_0_to_the_device() -> None:
    assert not set_request(A).set.HasField("led_0")


def test_changes_made_while_a_set_is_in_flight_coalesce_into_the_latest() -> None:
    async def scenario() -> None:
        device = Device()
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        assert await device.next_request() == set_request(A)
        device.mailbox.put(B)
        device.mailbox.put(C)
        await asyncio.sleep(0.05)
        device.answers.put_nowait(SUCCESS)
        assert await device.next_request() == set_request(C), "B was superseded; C arrives last"
        device.answers.put_nowait(SUCCESS)
        await device.no_request_within(0.1)
        assert device.metrics.led_sets_sent == 2

    run(scenario)


def test_a_failed_set_is_retried_after_a_backoff() -> None:
    async def scenario() -> None:
        device = Device(RetryPolicy(first_delay=0.05, attempts=3))
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        assert await device.next_request() == set_request(A)
        device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        loop = asyncio.get_running_loop()
        failed_at = loop.time()
        assert await device.next_request() == set_request(A)
        assert loop.time() - failed_at >= 0.045
        assert device.metrics.led_sets_failed == 1

    run(scenario)


def test_a_newer_state_is_sent_at_once_instead_of_waiting_out_the_backoff() -> None:
    async def scenario() -> None:
        device = Device(RetryPolicy(first_delay=5.0))
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        await device.next_request()
        device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        await asyncio.sleep(0.05)
        device.mailbox.put(B)
        assert await device.next_request(timeout=0.5) == set_request(B)

    run(scenario)


def test_after_the_last_attempt_the_state_waits_for_the_next_change() -> None:
    async def scenario() -> None:
        device = Device(RetryPolicy(first_delay=0.01, attempts=2))
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        for _ in range(2):
            assert await device.next_request() == set_request(A)
            device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        await device.no_request_within(0.15)
        device.mailbox.put(B)
        assert await device.next_request() == set_request(B)

    run(scenario)


def test_an_answer_of_the_wrong_kind_counts_as_a_failure() -> None:
    async def scenario() -> None:
        device = Device(RetryPolicy(first_delay=0.01))
        await device.next_request()
        device.answers.put_nowait(pb.DeviceStatusResponse())
        device.mailbox.put(A)
        assert await device.next_request() == set_request(A)
        device.answers.put_nowait(shown(A))
        assert await device.next_request() == set_request(A)
        assert device.metrics.led_gets_failed == 1
        assert device.metrics.led_sets_failed == 1

    run(scenario)


def test_the_device_closing_its_side_ends_the_conversation() -> None:
    async def scenario() -> None:
        device = Device()
        await device.next_request()
        device.answers.put_nowait(None)
        with pytest.raises(EndOfStream):
            await device.next_request()

    run(scenario)


def test_the_server_ending_the_stream_interrupts_a_wait_for_the_device() -> None:
    async def scenario() -> None:
        device = Device()
        await device.next_request()
        waiting = asyncio.ensure_future(device.next_request())
        await asyncio.sleep(0.02)
        device.slot.end(Ending(grpc.StatusCode.ABORTED, "superseded"))
        with pytest.raises(StreamEnded):
            await waiting

    run(scenario)
