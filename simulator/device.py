"""A headless device that speaks to the server exactly as the real device client does.

One connect() opens one channel and the three RPCs at once; StatusStream answers in lockstep, EventStream
sends one event and waits for its single ack, ServerAudioStream decodes and "plays" clips. The quirks of
the real client (a dead audio loop after a stray is_end or bad Opus data, no reading while a clip plays)
are reproduced on purpose: they are what the server has to live with.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

import grpc

from media.opus import OpusDecoder
from rpc import comms_pb2, comms_pb2_grpc
from simulator.buttons import Button, EventType, button_event
from simulator.call_status import (
    MADE_UP_STATUS,
    StreamEnd,
    drain_after_failed_write,
    peek_status,
    status_after_race,
)
from simulator.leds import ALL_OFF, OFF, POWER_ON, Leds, apply_set, device_status
from simulator.recording import Recording

if TYPE_CHECKING:
    StatusCall: TypeAlias = grpc.aio.StreamStreamCall[
        comms_pb2.DeviceStatusResponse, comms_pb2.DeviceStatusRequest
    ]
    EventCall: TypeAlias = grpc.aio.StreamStreamCall[comms_pb2.DeviceEvent, comms_pb2.DeviceEventResponse]
    AudioCall: TypeAlias = grpc.aio.UnaryStreamCall[comms_pb2.AudioStreamRequest, comms_pb2.AudioPacket]

logger = logging.getLogger(__name__)

StreamKind = Literal["status", "events", "audio"]
STREAM_KINDS: tuple[StreamKind, ...] = ("status", "events", "audio")

DEFAULT_TARGET = "localhost:50051"
DEFAULT_DEVICE_ID = "test_client"
INJECTED_FAILURE = "error: injected failure"

_M = TypeVar("_M")


class EventLostError(ConnectionError):
    """The ack for an event can no longer arrive: the device disconnected or the server ended EventStream."""


class AudioLoopError(RuntimeError):
    """The audio loop of the current connection has stopped, so no further recording can arrive on it."""


class _Reader(Protocol):
    async def read(self) -> object: ...


async def _read(call: _Reader, kind: type[_M]) -> _M | None:
    """One message from a stream, or None at a clean end (the status says why)."""
    message = await call.read()
    if message is grpc.aio.EOF:
        return None
    if not isinstance(message, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(message).__name__}")
    return message


@dataclass(eq=False)
class _PendingEvent:
    event: comms_pb2.DeviceEvent
    ack: asyncio.Future[bool]


class _Connection:
    """What lives from one connect() to the next disconnect(): channel, calls, tasks, the Opus decoder."""

    def __init__(
        self,
        number: int,
        channel: grpc.aio.Channel,
        status_call: StatusCall,
        event_call: EventCall,
        audio_call: AudioCall,
    ) -> None:
        self.number = number
        self.channel = channel
        self.status_call = status_call
        self.event_call = event_call
        self.audio_call = audio_call
        self.decoder = OpusDecoder()
        self.workers: list[asyncio.Task[None]] = []
        self.watchers: list[asyncio.Task[None]] = []
        self.closing = False
        self.sets = 0
        self.in_flight: _PendingEvent | None = None
        self.events_closed: str | None = None
        self.audio_stopped: str | None = None
        self.open_recording: Recording | None = None
        self.server_status: dict[str, StreamEnd] = {}
        """The first real status of each call, caught as it is set (see simulator.call_status)."""


class SimulatedDevice:
    """The device: LEDs, buttons and a speaker, connected to the server over gRPC.

    Use ``async with SimulatedDevice(target, device_id) as device:`` or connect()/disconnect(). All state
    lives in plain attributes so tests can assert on it; the wait_for_* helpers block until a condition
    holds. Everything runs on the caller's event loop; the device must stay on one loop.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        device_id: str = DEFAULT_DEVICE_ID,
        *,
        metadata: Sequence[tuple[str, str]] | None = None,
        play_in_real_time: bool = True,
        connect_timeout: float | None = 5.0,
        power_colour: int = POWER_ON,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        self.device_id = device_id
        self.metadata: tuple[tuple[str, str], ...] = (
            tuple(metadata) if metadata is not None else (("device_id", device_id),)
        )
        """Call metadata of all three RPCs; given explicitly it replaces the default device_id pair."""
        self.play_in_real_time = play_in_real_time
        """Like the real device, read no packets while a clip plays (its duration); off for fast tests."""
        self.connect_timeout = connect_timeout
        self.power_colour = power_colour
        self.credentials = credentials
        """TLS (or mutual TLS) credentials; plaintext when None, like today's device."""

        self.leds: Leds = ALL_OFF
        self.led_history: list[tuple[float, Leds]] = []
        """(time.monotonic(), leds) after each applied SET."""
        self.gets_received = 0
        self.sets_received = 0
        self.other_requests_received = 0
        self.fail_next_sets = 0
        """While > 0, a SET is not applied and is answered with INJECTED_FAILURE (then decremented)."""

        self.events_sent = 0
        self.acks: list[bool] = []

        self.recordings: list[Recording] = []
        """Every recording opened, in arrival order, complete or not (see Recording.complete)."""
        self.audio_packets_received = 0
        self.packets_ignored = 0
        """Packets that arrived with no recording open (dropped, as the real device does)."""
        self.playing: Recording | None = None
        self.audio_error: str | None = None
        """Why an audio loop died (stray is_end, undecodable data); the first reason is kept for good."""

        self.stream_ends: dict[str, StreamEnd] = {}
        """Status of each stream the server ended on the current connection, OK included; keyed by kind."""
        self.connections = 0

        self.on_leds: Callable[[Leds], None] | None = None
        self.on_recording: Callable[[Recording], None] | None = None
        self.on_stream_end: Callable[[str, grpc.StatusCode, str], None] | None = None
        self.on_audio_error: Callable[[str], None] | None = None

        self._conn: _Connection | None = None
        self._outbox: collections.deque[_PendingEvent] = collections.deque()
        self._changed = asyncio.Event()

    # -- connection ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def stream_errors(self) -> dict[str, StreamEnd]:
        """The streams the server ended with a status other than OK (a cancel of our own is not one)."""
        return {kind: end for kind, end in self.stream_ends.items() if end[0] != grpc.StatusCode.OK}

    @property
    def completed_recordings(self) -> list[Recording]:
        return [recording for recording in self.recordings if recording.complete]

    @property
    def pending_events(self) -> int:
        """Events not yet acknowledged: queued ones plus the one in flight."""
        in_flight = 1 if self._conn is not None and self._conn.in_flight is not None else 0
        return len(self._outbox) + in_flight

    async def __aenter__(self) -> SimulatedDevice:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Open one channel and start StatusStream, EventStream and ServerAudioStream together.

        Raises ConnectionError when the server cannot be reached within connect_timeout.
        """
        if self._conn is not None:
            raise RuntimeError(f"device {self.device_id!r} is already connected")
        # A connection of its own, as a real device has: gRPC would otherwise reuse another
        # channel's TCP connection to the same target from its process-wide subchannel pool.
        options = [("grpc.use_local_subchannel_pool", 1)]
        channel = (
            grpc.aio.insecure_channel(self.target, options=options)
            if self.credentials is None
            else grpc.aio.secure_channel(self.target, self.credentials, options=options)
        )
        try:
            if self.connect_timeout is not None:
                async with asyncio.timeout(self.connect_timeout):
                    await channel.channel_ready()
        except TimeoutError:
            await channel.close()
            raise ConnectionError(
                f"cannot reach the server at {self.target} (no connection within {self.connect_timeout:g} s)"
            ) from None
        except BaseException:
            await channel.close()
            raise
        stub = comms_pb2_grpc.DeviceServiceStub(channel)
        metadata = self.metadata
        self.connections += 1
        conn = _Connection(
            self.connections,
            channel,
            stub.StatusStream(metadata=metadata),
            stub.EventStream(metadata=metadata),
            stub.ServerAudioStream(comms_pb2.AudioStreamRequest(start=True), metadata=metadata),
        )
        self._conn = conn
        self.stream_ends.clear()
        for kind, call in (
            ("status", conn.status_call),
            ("events", conn.event_call),
            ("audio", conn.audio_call),
        ):
            call.add_done_callback(functools.partial(self._note_status, conn, kind))
        conn.workers = [
            self._spawn(self._answer_status(conn), "status"),
            self._spawn(self._send_events(conn), "events"),
            self._spawn(self._play_audio(conn), "audio"),
        ]
        conn.watchers = [
            self._spawn(self._watch(conn, "status", conn.status_call), "watch-status"),
            self._spawn(self._watch(conn, "events", conn.event_call), "watch-events"),
            self._spawn(self._watch(conn, "audio", conn.audio_call), "watch-audio"),
        ]
        self._set_leds((self.power_colour, *self.leds[1:]))
        logger.info("%s connected to %s (connection %d)", self.device_id, self.target, conn.number)

    async def disconnect(self) -> None:
        """Cancel the three RPCs and close the channel; led_0 and led_1 go off, the others keep their colour.

        An event in flight fails with EventLostError; events not yet sent stay queued for the next connect.
        """
        conn = self._conn
        if conn is None:
            return
        conn.closing = True
        self._conn = None
        for task in conn.workers:
            task.cancel()
        await asyncio.gather(*conn.workers, return_exceptions=True)
        for call in (conn.status_call, conn.event_call, conn.audio_call):
            call.cancel()
        _, stuck = await asyncio.wait(conn.watchers, timeout=1.0)
        for task in stuck:
            task.cancel()
        if conn.open_recording is not None:
            conn.open_recording.close(time.monotonic(), complete=False)
            conn.open_recording = None
        self.playing = None
        self._set_leds((OFF, OFF, *self.leds[2:]))
        await conn.channel.close()
        self._notify()
        logger.info("%s disconnected (connection %d)", self.device_id, conn.number)

    # -- buttons ------------------------------------------------------------------------------------

    async def press(self, button: Button, event: EventType = EventType.PRESS) -> bool:
        """Press a button and return the server's ack; blocks until that ack has been read.

        Presses queue behind each other (one event in flight); made while disconnected, they are delivered
        after the next connect, as on the real device.
        """
        return await self.send_event(button_event(button, event))

    async def send_event(self, event: comms_pb2.DeviceEvent) -> bool:
        """Send any DeviceEvent (unknown button id, empty oneof) with press()'s queueing and ack rules."""
        conn = self._conn
        if conn is not None and conn.events_closed is not None:
            raise EventLostError(conn.events_closed)
        pending = _PendingEvent(event, asyncio.get_running_loop().create_future())
        self._outbox.append(pending)
        self._notify()
        return await pending.ack

    async def _send_events(self, conn: _Connection) -> None:
        """The single sender: write the oldest queued event, then read exactly one response for it."""
        call = conn.event_call
        while True:
            await self._wait_until(lambda: bool(self._outbox) or conn.events_closed is not None, None)
            if conn.events_closed is not None:
                self._fail_outbox(conn.events_closed)
                return
            pending = self._outbox[0]
            try:
                await call.write(pending.event)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                self._events_lost(conn, "EventStream ended before the event was sent")
                if isinstance(exc, grpc.aio.AioRpcError):
                    await drain_after_failed_write(call, exc)
                return
            self._outbox.popleft()
            conn.in_flight = pending
            self.events_sent += 1
            try:
                response = await _read(call, comms_pb2.DeviceEventResponse)
            except asyncio.CancelledError:
                conn.in_flight = None
                _reject(pending, "disconnected before the event was acknowledged")
                raise
            except grpc.aio.AioRpcError as exc:
                response = None
                reason = f"EventStream ended before the ack: {exc.code().name} {exc.details()}"
            else:
                reason = "EventStream ended (OK) before the ack"
            conn.in_flight = None
            if response is None:
                _reject(pending, reason)
                self._events_lost(conn, reason)
                return
            self.acks.append(response.ack)
            if not pending.ack.done():
                pending.ack.set_result(response.ack)
            self._notify()

    def _events_lost(self, conn: _Connection, reason: str) -> None:
        if conn.events_closed is None:
            conn.events_closed = reason
        self._fail_outbox(conn.events_closed)

    def _fail_outbox(self, reason: str) -> None:
        while self._outbox:
            _reject(self._outbox.popleft(), reason)
        self._notify()

    # -- StatusStream -------------------------------------------------------------------------------

    async def _answer_status(self, conn: _Connection) -> None:
        """Lockstep: send nothing first, then exactly one response per request, in order."""
        call = conn.status_call
        try:
            while True:
                request = await _read(call, comms_pb2.DeviceStatusRequest)
                if request is None:
                    return
                try:
                    await call.write(self._answer(conn, request))
                except grpc.aio.AioRpcError as exc:
                    await drain_after_failed_write(call, exc)
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the watcher records why the server ended the stream

    def _answer(
        self, conn: _Connection, request: comms_pb2.DeviceStatusRequest
    ) -> comms_pb2.DeviceStatusResponse:
        kind = request.WhichOneof("request")
        if kind == "get":
            self.gets_received += 1
            self._notify()
            return comms_pb2.DeviceStatusResponse(state=device_status(self.leds))
        if kind == "set":
            self.sets_received += 1
            conn.sets += 1
            if self.fail_next_sets > 0:
                self.fail_next_sets -= 1
                self._notify()
                return comms_pb2.DeviceStatusResponse(status=INJECTED_FAILURE)
            leds = apply_set(self.leds, request.set)
            self.led_history.append((time.monotonic(), leds))
            self._set_leds(leds)
            self._notify()
            return comms_pb2.DeviceStatusResponse(status="success")
        self.other_requests_received += 1
        self._notify()
        return comms_pb2.DeviceStatusResponse(status="error: empty request")

    def _set_leds(self, leds: Leds) -> None:
        changed = leds != self.leds
        self.leds = leds
        self._notify()
        if changed and self.on_leds is not None:
            _run_hook(self.on_leds, leds)

    # -- ServerAudioStream --------------------------------------------------------------------------

    async def _play_audio(self, conn: _Connection) -> None:
        """Read packets for the whole connection; a stray is_end or bad data ends the loop for good."""
        try:
            await self._audio_loop(conn)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            conn.audio_stopped = f"ServerAudioStream ended: {exc}"
        finally:
            if conn.open_recording is not None and not conn.closing:
                conn.open_recording.close(time.monotonic(), complete=False)
                conn.open_recording = None
            self.playing = None
            self._notify()

    async def _audio_loop(self, conn: _Connection) -> None:
        while True:
            packet = await _read(conn.audio_call, comms_pb2.AudioPacket)
            now = time.monotonic()
            if packet is None:
                conn.audio_stopped = "ServerAudioStream ended by the server"
                return
            self.audio_packets_received += 1
            if packet.is_start:
                if conn.open_recording is not None:
                    conn.open_recording.close(now, complete=False)
                conn.open_recording = Recording(connection=conn.number, started_at=now)
                self.recordings.append(conn.open_recording)
            recording = conn.open_recording
            if recording is None:
                if packet.is_end:
                    self._audio_failed(conn, "a packet with is_end arrived with no recording open")
                    return
                self.packets_ignored += 1
                continue
            try:
                pcm = conn.decoder.decode(packet.data)
            except Exception as exc:  # the real device's loop dies on whatever the decoder raises
                self._audio_failed(
                    conn, f"the Opus decoder rejected a packet ({len(packet.data)} bytes): {exc}"
                )
                return
            recording.add(packet, pcm, now)
            if not packet.is_end:
                self._notify()
                continue
            recording.close(now, complete=True)
            conn.open_recording = None
            self._notify()
            if self.on_recording is not None:
                _run_hook(self.on_recording, recording)
            if self.play_in_real_time:
                self.playing = recording
                await asyncio.sleep(recording.duration)  # reading nothing: flow control holds the server
                self.playing = None

    def _audio_failed(self, conn: _Connection, reason: str) -> None:
        logger.warning("%s: audio loop stopped: %s", self.device_id, reason)
        conn.audio_stopped = reason
        if self.audio_error is None:
            self.audio_error = reason
        if self.on_audio_error is not None:
            _run_hook(self.on_audio_error, reason)

    # -- stream ends --------------------------------------------------------------------------------

    async def _watch(self, conn: _Connection, kind: StreamKind, call: grpc.aio.Call) -> None:
        """Record how the server ended a call; our own cancel at disconnect is not recorded."""
        code = await call.code()
        details = await call.details() or ""
        if (code, details) == MADE_UP_STATUS and kind not in conn.server_status:
            code, details = await status_after_race(call)
        code, details = conn.server_status.get(kind, (code, details))
        if conn.closing and code == grpc.StatusCode.CANCELLED:
            return
        self.stream_ends[kind] = (code, details)
        logger.info("%s: the server ended %s: %s %s", self.device_id, kind, code, details)
        if kind == "events" and conn.events_closed is None:
            conn.events_closed = f"EventStream ended by the server: {code.name} {details}"
        self._notify()
        if self.on_stream_end is not None:
            _run_hook(self.on_stream_end, kind, code, details)

    def _note_status(self, conn: _Connection, kind: str, call: object) -> None:
        """Runs the moment gRPC sets a call's status, before a racing write can overwrite it."""
        end = peek_status(call)
        if end is not None and end != MADE_UP_STATUS and kind not in conn.server_status:
            conn.server_status[kind] = end
            self._notify()

    # -- waiting ------------------------------------------------------------------------------------

    async def wait_for_leds(self, predicate: Callable[[Leds], bool], timeout: float) -> Leds:
        """Wait until the LEDs satisfy predicate (checked now and after every change); returns them."""
        await self._wait_until(lambda: predicate(self.leds), timeout, "LEDs matching the predicate")
        return self.leds

    async def wait_for_first_set(self, timeout: float) -> Leds:
        """Wait for the first SET of the current connection (applied or not); returns the LEDs after it."""
        await self._wait_until(
            lambda: self._conn is not None and self._conn.sets > 0, timeout, "the first SET after connect"
        )
        return self.leds

    async def wait_for_sets(self, count: int, timeout: float) -> Leds:
        """Wait until sets_received (over all connections) reaches count; returns the LEDs."""
        await self._wait_until(lambda: self.sets_received >= count, timeout, f"{count} SET requests")
        return self.leds

    async def wait_for_recordings(self, count: int, timeout: float) -> list[Recording]:
        """Wait until count recordings (over all connections) have completed; returns all completed ones.

        Raises AudioLoopError as soon as the current connection's audio loop stops, rather than time out.
        """

        def enough() -> bool:
            if len(self.completed_recordings) >= count:
                return True
            if self._conn is not None and self._conn.audio_stopped is not None:
                raise AudioLoopError(self._conn.audio_stopped)
            return False

        await self._wait_until(enough, timeout, f"{count} completed recordings")
        return self.completed_recordings

    async def wait_until_lost(self) -> None:
        """Until the current connection is gone: the server ended one of its streams, or it was closed."""
        await self._wait_until(
            lambda: self._conn is None or bool(self.stream_ends), None, "a lost connection"
        )

    @property
    def established(self) -> bool:
        """The server took the current connection up: its first LED SET arrived."""
        return self._conn is not None and self._conn.sets > 0

    async def wait_for_stream_end(self, kind: StreamKind, timeout: float) -> StreamEnd:
        """Wait until the server ends the given stream of the current connection; returns (code, details)."""
        await self._wait_until(lambda: kind in self.stream_ends, timeout, f"the end of the {kind} stream")
        return self.stream_ends[kind]

    async def _wait_until(self, condition: Callable[[], bool], timeout: float | None, what: str = "") -> None:
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.device_id}: no {what} within {timeout:g} s (leds={self.leds}, "
                f"recordings={len(self.recordings)}, audio_error={self.audio_error!r}, "
                f"stream_ends={self.stream_ends})"
            ) from None

    def _notify(self) -> None:
        """Wake every waiter: they re-check their condition against the new state."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"{self.device_id}-{name}")
        task.add_done_callback(_log_crash)
        return task


def _reject(pending: _PendingEvent, reason: str) -> None:
    if not pending.ack.done():
        pending.ack.set_exception(EventLostError(reason))


def _run_hook(hook: Callable[..., None], *args: Any) -> None:
    """Observers (the CLI's printer) must not be able to kill the device's loops."""
    try:
        hook(*args)
    except Exception:
        logger.exception("hook %r failed", hook)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("task %s crashed", task.get_name(), exc_info=task.exception())
