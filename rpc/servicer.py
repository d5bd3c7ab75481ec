"""The DeviceService servicer: forwards what devices send to the actors and streams back what they emit.

No application logic lives here: each handler names its device, opens its stream with the
supervisor, relays, and closes the stream with the supervisor however it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import grpc

from actors.logs import for_device
from actors.messages import Refusal, StreamGrant, StreamKind, StreamRefused
from rpc import comms_pb2 as pb
from rpc import comms_pb2_grpc
from rpc.auth import AuthError, DeviceAuthenticator
from rpc.events import UnsupportedEvent, button_input_of
from rpc.gateway import FleetGateway
from rpc.link import GrpcDeviceLink
from rpc.metadata import BadDeviceId, device_id_from
from rpc.metrics import Metrics
from rpc.ratelimit import Throttle
from rpc.registration import Malformed
from rpc.slots import DeviceClosedStream, MalformedMessage, StreamEnd, StreamEnded, StreamSlot, next_message
from rpc.status import StatusConversation

logger = logging.getLogger(__name__)

StatusContext = grpc.aio.ServicerContext[pb.DeviceStatusResponse, pb.DeviceStatusRequest]
EventContext = grpc.aio.ServicerContext[pb.DeviceEvent, pb.DeviceEventResponse]
AudioContext = grpc.aio.ServicerContext[pb.AudioStreamRequest, bytes]
AnyContext = grpc.aio.ServicerContext[Any, Any]

_REFUSAL_CODES = {
    Refusal.DRAINING: grpc.StatusCode.UNAVAILABLE,
    Refusal.FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.BUSY: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.STORE_DOWN: grpc.StatusCode.UNAVAILABLE,
}

ACK = pb.DeviceEventResponse(ack=True)
NACK = pb.DeviceEventResponse(ack=False)


@dataclass(frozen=True, slots=True)
class _Stream:
    device_id: str
    grant: StreamGrant
    link: GrpcDeviceLink
    slot: StreamSlot


class DeviceService(comms_pb2_grpc.DeviceServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        fleet: FleetGateway,
        metrics: Metrics,
        event_rate: float = 20.0,
        event_burst: int = 40,
        authenticator: DeviceAuthenticator | None = None,
        *,
        event_abuse_seconds: float = 10.0,
    ) -> None:
        self._fleet = fleet
        self._authenticator = authenticator
        self._metrics = metrics
        self._event_rate = event_rate
        self._event_burst = event_burst
        self._event_abuse_seconds = event_abuse_seconds

    async def StatusStream(
        self, request_iterator: AsyncIterator[pb.DeviceStatusResponse], context: StatusContext
    ) -> AsyncIterator[pb.DeviceStatusRequest]:
        async with self._stream(context, StreamKind.STATUS) as stream:
            conversation = StatusConversation(
                stream.device_id, stream.link.leds_wanted, request_iterator, stream.slot, self._metrics
            )
            try:
                async for request in conversation.requests():
                    yield request
            except DeviceClosedStream:
                return
            except StreamEnded:
                await _end(context, stream.slot)
            except MalformedMessage as error:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))

    async def EventStream(
        self, request_iterator: AsyncIterator[pb.DeviceEvent], context: EventContext
    ) -> AsyncIterator[pb.DeviceEventResponse]:
        async with self._stream(context, StreamKind.EVENTS) as stream:
            throttle = Throttle(self._event_rate, self._event_burst, self._event_abuse_seconds)
            while True:
                read_at = time.monotonic()
                try:
                    event = await next_message(request_iterator, stream.slot)
                except DeviceClosedStream:
                    return
                except StreamEnded:
                    await _end(context, stream.slot)
                except MalformedMessage as error:
                    await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
                # Back-pressure: an event beyond the device's rate waits here for its token and
                # nothing more is read meanwhile, so once the stream's HTTP/2 receive window is
                # full, flow control holds the sender back. The event is then handled as any
                # other (acked true if its actor accepts it). A device over its rate for too long
                # (see Throttle) has the stream ended; the event just read dies with it, unacked.
                wait = throttle.admit(idle=time.monotonic() - read_at)
                if wait is None:
                    self._metrics.event_floods_ended.inc()
                    why = (
                        f"over the event rate of {self._event_rate:g}/s for more than"
                        f" {self._event_abuse_seconds:g} s: event stream ended"
                    )
                    for_device(logger, stream.device_id).warning("%s", why)
                    await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, why)
                if wait > 0:
                    self._metrics.events_throttled.inc()
                    try:
                        await stream.slot.until_ended(asyncio.sleep(wait))
                    except StreamEnded:
                        await _end(context, stream.slot)
                # From here on: the wait was the device's own doing, not the server's latency.
                received_at = time.monotonic()
                try:
                    button = button_input_of(event)
                except UnsupportedEvent as error:
                    for_device(logger, stream.device_id).info("nack: %s", error)
                    self._metrics.events.labels("unknown", "unknown").inc()
                    self._metrics.nacks.labels("unsupported").inc()
                    yield NACK
                    continue
                self._metrics.events.labels(button.button.value, button.gesture.value).inc()
                accepted = await self._fleet.press(
                    stream.device_id, stream.grant.session, button, received_at
                )
                if not accepted:
                    self._metrics.nacks.labels("refused").inc()
                yield ACK if accepted else NACK

    async def ServerAudioStream(
        self, request: pb.AudioStreamRequest | Malformed, context: AudioContext
    ) -> AsyncIterator[bytes]:
        """Yields each packet's serialised bytes: the stream's serializer is the identity."""
        if isinstance(request, Malformed):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(request))
        if not request.start:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "AudioStreamRequest.start must be true to open the audio stream",
            )
        async with self._stream(context, StreamKind.AUDIO) as stream:
            if stream.slot.ended.done():  # a newer audio stream is already there: leave its consumer be
                await _end(context, stream.slot)
            consumer = stream.link.channel.attach()
            context.add_done_callback(cast(Any, lambda _: consumer.close()))  # stubs want a class
            while True:
                packet = await consumer.next()
                if packet is None:
                    break
                self._metrics.audio_packets_sent += 1
                yield packet.payload
            if not stream.slot.ended.done():
                stream.slot.end(StreamEnd(grpc.StatusCode.ABORTED, "a newer audio stream replaced this one"))
            await _end(context, stream.slot)

    def _stream(self, context: AnyContext, kind: StreamKind) -> _Registration:
        """``async with``: the stream opened with the supervisor (or the call aborted with why
        not), and closed with it however the call ends."""
        return _Registration(self, context, kind)


class _Registration:
    """A stream's place with the supervisor, given back exactly once, however the call ends.

    A class rather than an ``asynccontextmanager``: one per stream, three per device, and a
    suspended generator with its frame costs several hundred bytes more than these slots.
    """

    __slots__ = ("_call_over", "_closed", "_context", "_grant", "_kind", "_service", "device_id")

    def __init__(self, service: DeviceService, context: AnyContext, kind: StreamKind) -> None:
        self._service = service
        self._context: AnyContext | None = context
        self._kind = kind
        self.device_id = ""
        self._grant: tuple[StreamGrant, GrpcDeviceLink, StreamSlot] | None = None
        self._call_over = False
        self._closed = False

    async def __aenter__(self) -> _Stream:
        context, service = self._context, self._service
        assert context is not None, "entered once"
        self._context = None  # the call's done-callback holds this: no cycle back to the call
        try:
            self.device_id = device_id_from(context.invocation_metadata())
        except BadDeviceId as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if service._authenticator is not None:
            try:
                service._authenticator.check(self.device_id, context.invocation_metadata())
            except AuthError as error:
                await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(error))
        # gRPC does not always cancel a handler whose call is gone (a call cancelled as it
        # starts), so the call's own end closes the stream with the supervisor as well.
        context.add_done_callback(cast(Any, self.call_ended))  # stubs want a class
        result = await service._fleet.open_stream(self.device_id, context.peer(), self._kind)
        if isinstance(result, StreamRefused):
            service._metrics.streams_refused += 1
            if result.why is Refusal.BUSY:
                service._metrics.connects_shed += 1
            await _abort(context, _REFUSAL_CODES[result.why], result.reason)
        link = result.link
        assert isinstance(link, GrpcDeviceLink)
        slot = link.attach(self._kind, result.stream)
        self.granted(result, link, slot)
        return _Stream(self.device_id, result, link, slot)

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def granted(self, grant: StreamGrant, link: GrpcDeviceLink, slot: StreamSlot) -> None:
        self._grant = (grant, link, slot)
        self._service._metrics.open_streams.labels(self._kind.value).inc()
        if self._call_over:
            self.close()

    def call_ended(self, _: object) -> None:
        self._call_over = True
        if self._grant is not None:
            self._grant[2].end(StreamEnd(grpc.StatusCode.CANCELLED, "the call has ended"))
            self.close()

    def close(self) -> None:
        if self._closed or self._grant is None:
            return
        self._closed = True
        grant, link, slot = self._grant
        self._service._metrics.open_streams.labels(self._kind.value).dec()
        link.detach(slot)
        self._service._fleet.close_stream(self.device_id, grant, self._kind)


async def _end(context: AnyContext, slot: StreamSlot) -> NoReturn:
    end = slot.ended.result()
    await _abort(context, end.code, end.details)


async def _abort(context: AnyContext, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("abort returned")
