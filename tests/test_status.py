"""The lockstep status conversation: one request in flight, changes coalesced, errors retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import pytest

from actors.leds import LedFrame
from actors.messages import StreamKind
from rpc import comms_pb2 as pb
from rpc.link import LedMailbox
from rpc.metrics import Metrics
from rpc.slots import DeviceClosedStream, StreamEnd, StreamEnded, StreamSlot
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


class WatchedMailbox(LedMailbox):
    """The LED mailbox, telling the test what the conversation did with it.

    The conversation records what the device confirmed (``confirmed``) and parks on
    ``changed_since`` when it has nothing to send: state a test can wait for, instead of waiting
    a while and hoping the conversation got there.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._confirmed = 0
        self.waits = 0
        """How many times the conversation has waited for a change (to give up, or to back off)."""
        super().__init__()

    @property
    def confirmed(self) -> int:
        return self._confirmed

    @confirmed.setter
    def confirmed(self, version: int) -> None:
        self._confirmed = version
        self.notify()

    async def changed_since(self, version: int) -> None:
        self.waits += 1
        self.notify()
        await super().changed_since(version)

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()


@dataclass(frozen=True)
class WatchedPolicy(RetryPolicy):
    """A retry policy that notes every backoff the conversation asks it for."""

    backoffs: list[int] = field(default_factory=list)

    def delay(self, failures: int) -> float:
        self.backoffs.append(failures)
        return super().delay(failures)


class Device:
    """The device side of the conversation, answering only when the test says so.

    The conversation runs only while the test waits on it (``next_request``, ``until``): it is an
    async generator, driven by the request the test asks for.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.mailbox = WatchedMailbox()
        self.slot = StreamSlot(StreamKind.STATUS)
        self.answers: asyncio.Queue[pb.DeviceStatusResponse | None] = asyncio.Queue()
        self.waiting_for_an_answer = asyncio.Event()
        """Set while the conversation waits for the device to answer, with no answer queued."""
        self.metrics = Metrics()
        conversation = StatusConversation(
            "dev", self.mailbox, self._answers(), self.slot, self.metrics, policy
        )
        self.requests = conversation.requests()
        self._pending: asyncio.Future[pb.DeviceStatusRequest] | None = None

    async def _answers(self) -> AsyncIterator[pb.DeviceStatusResponse]:
        while True:
            if self.answers.empty():
                self.waiting_for_an_answer.set()
            answer = await self.answers.get()
            self.waiting_for_an_answer.clear()
            if answer is None:
                return
            yield answer

    def ask(self) -> asyncio.Future[pb.DeviceStatusRequest]:
        """Let the conversation run on to its next request (asked once, however often this is called)."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self.requests))
            self._pending.add_done_callback(lambda _: self.mailbox.notify())
        return self._pending

    async def next_request(self) -> pb.DeviceStatusRequest:
        request = await self.ask()
        self._pending = None
        return request

    async def until(self, condition: Callable[[], bool]) -> None:
        """Let the conversation run until ``condition`` holds; a request sent meanwhile fails the test."""
        pending = self.ask()
        await self.mailbox.until(lambda: condition() or pending.done())
        assert not pending.done(), f"unexpected request {pending.result()}"

    async def until_it_waits_for_a_change(self) -> None:
        """Until the conversation, done with the answers it has, parks on the mailbox once more."""
        waits = self.mailbox.waits
        await self.until(lambda: self.mailbox.waits > waits)


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
        await device.until(lambda: device.mailbox.settled)
        assert device.metrics.led_sets_sent == 0
        device.mailbox.put(B)
        assert await device.next_request() == set_request(B), "the first SET is B's: none went out for A"
        assert device.metrics.led_sets_sent == 1

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
        device.mailbox.put(B)  # while A's SET is still unanswered
        device.mailbox.put(C)
        device.answers.put_nowait(SUCCESS)
        assert await device.next_request() == set_request(C), "B was superseded; C arrives last"
        device.answers.put_nowait(SUCCESS)
        await device.until(lambda: device.mailbox.settled)
        assert device.metrics.led_sets_sent == 2
        device.mailbox.put(A)
        assert await device.next_request() == set_request(A), "the next SET is the next change's: no repeat"
        assert device.metrics.led_sets_sent == 3

    run(scenario)


def test_a_failed_set_is_retried_after_a_backoff() -> None:
    async def scenario() -> None:
        policy = WatchedPolicy(first_delay=0.05, attempts=3)
        device = Device(policy)
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        assert await device.next_request() == set_request(A)
        device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        loop = asyncio.get_running_loop()
        failed_at = loop.time()
        assert await device.next_request() == set_request(A)
        assert loop.time() - failed_at >= 0.045
        assert policy.backoffs == [1]
        assert device.metrics.led_sets_failed == 1

    run(scenario)


def test_a_newer_state_is_sent_at_once_instead_of_waiting_out_the_backoff() -> None:
    async def scenario() -> None:
        policy = WatchedPolicy(first_delay=3600.0, max_delay=3600.0)
        device = Device(policy)
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        await device.next_request()
        device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        await device.until_it_waits_for_a_change()
        assert policy.backoffs == [1], "it is backing off now, for an hour"
        device.mailbox.put(B)
        assert await device.next_request() == set_request(B), "only B can have cut the hour short"

    run(scenario)


def test_after_the_last_attempt_the_state_waits_for_the_next_change() -> None:
    async def scenario() -> None:
        policy = WatchedPolicy(first_delay=0.01, attempts=2)
        device = Device(policy)
        await device.next_request()
        device.answers.put_nowait(shown((0, 0, 0, 0, 0)))
        device.mailbox.put(A)
        for _ in range(2):
            assert await device.next_request() == set_request(A)
            device.answers.put_nowait(pb.DeviceStatusResponse(status="error: busy"))
        await device.until_it_waits_for_a_change()
        assert policy.backoffs == [1], "a backoff after the first failure, no retry after the last"
        assert device.metrics.led_sets_sent == 2
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
        with pytest.raises(DeviceClosedStream):
            await device.next_request()

    run(scenario)


def test_the_server_ending_the_stream_interrupts_a_wait_for_the_device() -> None:
    async def scenario() -> None:
        device = Device()
        await device.next_request()
        waiting = device.ask()
        await device.waiting_for_an_answer.wait()
        assert not waiting.done()
        device.slot.end(StreamEnd(grpc.StatusCode.ABORTED, "superseded"))
        with pytest.raises(StreamEnded):
            await device.next_request()

    run(scenario)
