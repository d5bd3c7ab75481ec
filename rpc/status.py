"""The StatusStream conversation: the server asks, the device answers each request in order.

At most one request is in flight. While the device answers, LED changes coalesce in the
link's mailbox and the next SET carries the latest state, so no change is lost and no
stale state arrives last. The first request is a GET: what the device shows after a
reconnect decides whether a SET is needed at all.

Error answers: each one is logged and counted, and the state is sent again after a
backoff (``RetryPolicy``), at once if a newer state arrives meanwhile. After
``RetryPolicy.attempts`` failures in a row the server stops retrying that state and
sends the next change when it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from actors.leds import LedFrame
from actors.logs import for_device
from rpc import comms_pb2 as pb
from rpc.link import LedMailbox
from rpc.metrics import Metrics
from rpc.slots import StreamSlot, next_message

logger = logging.getLogger(__name__)

SUCCESS = "success"
GET_REQUEST = pb.DeviceStatusRequest(get=True)


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.2
    max_delay: float = 5.0
    attempts: int = 5

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** (failures - 1)))


def set_request(leds: LedFrame) -> pb.DeviceStatusRequest:
    """led_0 belongs to the device and is left unset."""
    led_1, led_2, led_3, led_4, led_5 = (pb.RGBAColor(rgba=value) for value in leds)
    return pb.DeviceStatusRequest(
        set=pb.DeviceStatusSet(led_1=led_1, led_2=led_2, led_3=led_3, led_4=led_4, led_5=led_5)
    )


def shown_leds(state: pb.DeviceStatus) -> LedFrame:
    """The device reports 0xRRGGBBFF; compare colours only, as the device displays them."""
    return (state.led_1.rgba, state.led_2.rgba, state.led_3.rgba, state.led_4.rgba, state.led_5.rgba)


def same_colours(a: LedFrame, b: LedFrame) -> bool:
    return all((x >> 8) == (y >> 8) for x, y in zip(a, b, strict=True))


class StatusConversation:
    def __init__(
        self,
        device_id: str,
        mailbox: LedMailbox,
        answers: AsyncIterator[pb.DeviceStatusResponse],
        slot: StreamSlot,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._log = for_device(logger, device_id)
        self._mailbox = mailbox
        self._answers = answers
        self._slot = slot
        self._metrics = metrics
        self._policy = policy or RetryPolicy()

    async def requests(self) -> AsyncIterator[pb.DeviceStatusRequest]:
        """Raises DeviceClosedStream when the device closes its side, StreamEnded when the server does."""
        yield GET_REQUEST
        shown = self._read_state(await self._answer())
        failures = 0
        cause: float | None = None
        mailbox = self._mailbox
        while True:
            wanted, version, newer_cause = mailbox.take()
            cause = cause if cause is not None else newer_cause
            if wanted is None or (shown is not None and same_colours(shown, wanted)):
                mailbox.confirmed = version
                if wanted is not None:
                    mailbox.show_confirmed(wanted)
                cause = None
                await self._slot.until_ended(mailbox.changed_since(version))
                continue
            self._metrics.led_sets_sent += 1
            yield set_request(wanted)
            answer = await self._answer()
            if answer.WhichOneof("response") == "status" and answer.status == SUCCESS:
                shown, failures = wanted, 0
                mailbox.confirmed = version
                mailbox.show_confirmed(wanted)
                if cause is not None:
                    self._metrics.button_to_led.observe(time.monotonic() - cause)
                    cause = None
                continue
            failures += 1
            self._metrics.led_sets_failed += 1
            self._log.warning(
                "LED set failed (%d in a row): %s",
                failures,
                _describe(answer),
            )
            shown = None
            if failures >= self._policy.attempts:
                self._log.error("giving up on this LED state until the next change")
                await self._slot.until_ended(self._mailbox.changed_since(version))
                failures = 0
            else:
                await self._slot.until_ended(self._backoff(version, failures))

    async def _answer(self) -> pb.DeviceStatusResponse:
        return await next_message(self._answers, self._slot)

    def _read_state(self, answer: pb.DeviceStatusResponse) -> LedFrame | None:
        if answer.WhichOneof("response") == "state":
            leds = shown_leds(answer.state)
            self._mailbox.show_confirmed(leds, answer.state.led_0.rgba)
            return leds
        self._metrics.led_gets_failed += 1
        self._log.warning("GET answered without a state: %s", _describe(answer))
        return None

    async def _backoff(self, version: int, failures: int) -> None:
        """Wait out the retry delay, but not past a newer state."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._policy.delay(failures)):
                await self._mailbox.changed_since(version)


def _describe(answer: pb.DeviceStatusResponse) -> str:
    kind = answer.WhichOneof("response")
    if kind == "status":
        return repr(answer.status)
    if kind == "state":
        return "a state instead of a status"
    return "an empty answer"
