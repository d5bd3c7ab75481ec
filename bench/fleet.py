"""The devices of one load-generator worker process: lean simulated devices and the scenarios they run.

A worker is started by ``bench.loadgen`` as ``python -m bench.fleet SPEC.json``. It talks to its
coordinator in lines: it prints ``ready`` once its devices are connected, waits for ``go T`` (a
``time.monotonic()`` instant, shared by every process on the machine), runs the scenario, prints
``finished``, waits for ``close``, disconnects and writes its results.

These devices speak the device's protocol faithfully (three streams on their own channel and TCP
connection, lockstep status answers, one event in flight), but do as little as possible per audio
packet: a thousand of them share a core with the server they measure. Every message is read with
the generated protobuf classes (``rpc.comms_pb2``: parsing an AudioPacket costs ~0.3 µs of the
~50-80 µs a packet costs the client); only a sample of devices decodes the Opus inside. Unlike
the real device they never stop reading while "playing" a clip: the load generator measures the
server's pacing, not the device's speaker.

Refusals are not errors: a Play acked ``false`` is a refused Play (its press→ack time is kept as
``play_refused_ack``; the device streams nothing and, with ``refused_retry``, presses Play again
later), and a stream answered RESOURCE_EXHAUSTED while connecting is a refused connect
(``connect_refused``), retried a few times before the run starts (never in a connect storm).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from actors import leds as led_map
from actors.leds import mode_leds
from media.opus import SAMPLE_RATE, OpusDecoder
from media.repacketize import OpusPacketError, packet_samples
from rpc import comms_pb2 as pb
from rpc.registration import SERVICE_NAME
from simulator.leds import device_status
from simulator.reconnect import Backoff

SERVICE = f"/{SERVICE_NAME}/"
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Without this, channels to one target share one subchannel: N devices, one TCP connection.
    ("grpc.use_local_subchannel_pool", 1),
)
SUCCESS = pb.DeviceStatusResponse(status="success")
START = pb.AudioStreamRequest(start=True)
POWER_ON = 0x00FF00FF
TIMEOUT = 10.0
"""How long a device waits for an ack, an LED, a first or an end packet before counting a timeout."""
REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED
_BUSY = getattr(led_map, "STATUS_BUSY", None)
BUSY_RGB = _BUSY.rgba >> 8 if _BUSY is not None else None
"""led_1's "busy" colour after a refused Play, where the server has one."""

RECONNECT_BACKOFF = Backoff()
"""How a device that could not connect waits before the next try: as the firmware does."""


def _press(button: pb.ButtonEvent.ButtonId) -> pb.DeviceEvent:
    return pb.DeviceEvent(button_event=pb.ButtonEvent(button_id=button, event=pb.ButtonEvent.PRESS))


MODE, STOP, PLAY = (
    _press(pb.ButtonEvent.BUTTON_2),
    _press(pb.ButtonEvent.BUTTON_3),
    _press(pb.ButtonEvent.BUTTON_4),
)


@dataclass
class Spec:
    """What one worker does; written by the coordinator as JSON."""

    worker: str
    target: str
    devices: int
    scenario: str
    duration: float
    frame_ms: int
    preroll_ms: int
    modes: int
    out: str
    jitter_buffer_ms: float = 60.0
    decode_sample: float = 0.05
    rate: float = 1.0
    ramp: float = 1.0
    think: float = 5.0
    reconnect_prob: float = 0.05
    probe: bool = False
    probe_interval: float = 0.5
    connect_concurrency: int = 100
    connect_retries: int = 5
    """A connect refused with RESOURCE_EXHAUSTED before the run is tried again this many times."""
    refused_retry: float = 0.0
    """streaming: seconds (±50 %) before a device whose Play was refused presses Play again; 0: never."""
    flood_events: int = 150_000
    flood_reconnect: bool = True
    seed: int = 1


@dataclass
class Results:
    """Everything a worker measured; latencies in seconds, merged by the coordinator."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    lat_times: array[float] = field(default_factory=lambda: array("f"))
    """Arrival of each timed packet, seconds after go (float32 keeps a long soak in memory)."""
    lat_values: array[float] = field(default_factory=lambda: array("f"))
    """Lateness of each timed packet against real time, seconds."""
    timed: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Probes' samples with when they were taken: (seconds after go, value), to cut a window out."""

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)


class Device:
    """One simulated device. Three streams on one channel; state kept in slots for cheap access."""

    __slots__ = (
        "_audio_task",
        "_status_task",
        "ack_latency",
        "admitted",
        "after_stop",
        "alive_calls",
        "asked",
        "channel",
        "clips",
        "closing",
        "connected",
        "decoder",
        "device_id",
        "end_waiter",
        "event_call",
        "events_broken",
        "first_set",
        "fleet",
        "led_target",
        "led_waiter",
        "leds",
        "mode",
        "packets",
        "play_waiter",
        "position",
        "rec_open",
        "refused",
        "stop_waiter",
        "t0",
        "underruns",
        "underruns_after_preroll",
    )

    def __init__(self, fleet: Fleet, device_id: str, decode: bool) -> None:
        self.fleet = fleet
        self.device_id = device_id
        self.decoder: OpusDecoder | None = OpusDecoder() if decode else None
        self.leds: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
        self.mode = -1
        """The mode the LEDs show; -1 until the first SET."""
        self.channel: grpc.aio.Channel | None = None
        self.event_call: Any = None
        self.alive_calls: tuple[Any, ...] = ()
        self._status_task: asyncio.Task[None] | None = None
        self._audio_task: asyncio.Task[None] | None = None
        self.closing = False
        self.connected = False
        self.events_broken = False
        self.first_set: asyncio.Future[float] | None = None
        self.led_target: tuple[int, int, int, int] | None = None
        self.led_waiter: asyncio.Future[float] | None = None
        self.play_waiter: asyncio.Future[float] | None = None
        self.stop_waiter: asyncio.Future[float] | None = None
        self.end_waiter: asyncio.Future[float] | None = None
        self.rec_open = False
        self.after_stop = False
        self.t0 = 0.0
        self.position = 0.0
        """Seconds of audio in the open recording's packets so far."""
        self.clips: list[tuple[float, float, float]] = []
        """Whole clips received: (is_start at, is_end at, seconds of audio), monotonic clock."""
        self.packets = 0
        self.underruns = 0
        self.underruns_after_preroll = 0
        self.ack_latency = 0.0
        """press→ack of the last event sent, seconds."""
        self.asked = False
        """Pressed Play at least once."""
        self.admitted = False
        """A Play of this device was accepted and its stream started."""
        self.refused = 0
        """Plays of this device acked false."""

    # -- connection -----------------------------------------------------------------------------

    async def connect(self, kind: str = "connect") -> str:
        """Channel ready, three calls started, first SET received: that whole span is the connect time.

        "connected", "refused" (a stream answered RESOURCE_EXHAUSTED) or "failed".
        """
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        channel = grpc.aio.insecure_channel(fleet.spec.target, options=CHANNEL_OPTIONS)
        self.channel = channel
        self.closing = False
        try:
            await asyncio.wait_for(channel.channel_ready(), TIMEOUT * 3)
        except TimeoutError:
            fleet.results.counters[f"{kind}_failed_channel"] += 1
            await channel.close()
            self.channel = None
            return "failed"
        ready = time.monotonic()
        metadata = (("device_id", self.device_id),)
        status_call = channel.stream_stream(
            SERVICE + "StatusStream",
            request_serializer=pb.DeviceStatusResponse.SerializeToString,
            response_deserializer=pb.DeviceStatusRequest.FromString,
        )(metadata=metadata)
        self.event_call = channel.stream_stream(
            SERVICE + "EventStream",
            request_serializer=pb.DeviceEvent.SerializeToString,
            response_deserializer=pb.DeviceEventResponse.FromString,
        )(metadata=metadata)
        audio_call: Any = channel.unary_stream(
            SERVICE + "ServerAudioStream",
            request_serializer=pb.AudioStreamRequest.SerializeToString,
            response_deserializer=pb.AudioPacket.FromString,
        )(START, metadata=metadata)
        self.alive_calls = (status_call, self.event_call, audio_call)
        self.first_set = loop.create_future()
        self.events_broken = False
        self.rec_open = False
        self.after_stop = False
        if self.decoder is not None:
            self.decoder = OpusDecoder()  # the device decodes with one decoder per connection
        self._status_task = loop.create_task(self._status(status_call))
        audio = self._audio_decoding if self.decoder is not None else self._audio_lean
        self._audio_task = loop.create_task(audio(audio_call))
        try:
            first = await asyncio.wait_for(asyncio.shield(self.first_set), TIMEOUT * 3)
        except TimeoutError:
            fleet.results.counters[f"{kind}_failed_first_set"] += 1
            await self.disconnect()
            return "failed"
        except grpc.aio.AioRpcError as error:  # a stream ended before the first SET (see _stream_error)
            await self.disconnect()
            if error.code() == REFUSED:
                fleet.results.counters[f"{kind}_refused"] += 1
                return "refused"
            fleet.results.counters[f"{kind}_failed_{error.code().name}"] += 1
            return "failed"
        self.connected = True
        fleet.results.add(f"{fleet.prefix}{kind}_channel_ready", ready - started)
        fleet.results.add(fleet.prefix + kind, first - started)
        fleet.connected_at.append(first)
        return "connected"

    async def disconnect(self) -> None:
        """As the device's Connect button: cancel the three calls and close the channel."""
        self.closing = True
        self.connected = False
        for task in (self._status_task, self._audio_task):
            if task is not None:
                task.cancel()
        if self.channel is not None:
            await self.channel.close()
        self.channel = None
        self.alive_calls = ()
        # The device turns led_0 and led_1 off itself; the mode LEDs keep their colour.
        self.leds = (0, 0, *self.leds[2:])
        for waiter in (self.led_waiter, self.play_waiter, self.stop_waiter, self.end_waiter):
            if waiter is not None and not waiter.done():
                waiter.cancel()

    def alive(self) -> bool:
        """All three streams still open."""
        return bool(self.alive_calls) and not any(call.done() for call in self.alive_calls)

    def _stream_error(self, kind: str, error: BaseException) -> None:
        if self.closing:
            return
        if not self.connected:
            # Still connecting: the connect counts it (a refusal is not an error).
            if self.first_set is not None and not self.first_set.done():
                self.first_set.set_exception(error)
            return
        code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
        self.fleet.results.counters[f"stream_error_{kind}_{code}"] += 1

    # -- status: lockstep answers ---------------------------------------------------------------

    async def _status(self, call: Any) -> None:
        try:
            while True:
                request = await call.read()
                if request is grpc.aio.EOF:
                    if not self.closing:
                        self.fleet.results.counters["stream_end_status"] += 1
                    return
                now = time.monotonic()
                kind = request.WhichOneof("request")
                if kind == "set":
                    self._apply(request.set, now)
                    await call.write(SUCCESS)
                elif kind == "get":
                    await call.write(self._state())
                else:
                    self.fleet.results.counters["status_unknown_request"] += 1
                    await call.write(pb.DeviceStatusResponse(status="error: unknown request"))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._stream_error("status", error)

    def _apply(self, request: pb.DeviceStatusSet, now: float) -> None:
        self.leds = (
            POWER_ON,
            request.led_1.rgba,
            request.led_2.rgba,
            request.led_3.rgba,
            request.led_4.rgba,
            request.led_5.rgba,
        )
        shown = (
            request.led_2.rgba >> 8,
            request.led_3.rgba >> 8,
            request.led_4.rgba >> 8,
            request.led_5.rgba >> 8,
        )
        self.mode = self.fleet.mode_of.get(shown, -1)
        if BUSY_RGB is not None and request.led_1.rgba >> 8 == BUSY_RGB:
            self.fleet.results.counters["busy_shown"] += 1
        if self.first_set is not None and not self.first_set.done():
            self.first_set.set_result(now)
        if self.led_target is not None and shown == self.led_target:
            self.led_target = None
            if self.led_waiter is not None and not self.led_waiter.done():
                self.led_waiter.set_result(now)

    def _state(self) -> pb.DeviceStatusResponse:
        """A GET's answer, as the real device (and the simulator) gives it."""
        return pb.DeviceStatusResponse(state=device_status((POWER_ON, *self.leds[1:])))

    # -- audio: timed on arrival ----------------------------------------------------------------

    async def _audio_lean(self, call: Any) -> None:
        """The hot path: one monotonic(), a TOC read and two appends per packet; starts and ends take _edge.

        Packets may hold 20 to 120 ms (elastic packets): each is timed by where its audio starts in
        the recording (the durations of the packets before it, read from their TOC bytes).
        """
        results = self.fleet.results
        times, values = results.lat_times.append, results.lat_values.append
        go = self.fleet.go
        jitter = self.fleet.jitter_s
        preroll = self.fleet.preroll_s
        read = call.read
        eof = grpc.aio.EOF
        monotonic = time.monotonic
        try:
            while True:
                packet = await read()
                now = monotonic()
                if packet is eof:
                    if not self.closing:
                        results.counters["stream_end_audio"] += 1
                    return
                self.packets += 1
                if self.rec_open and not (packet.is_start or packet.is_end):
                    position = self.position
                    self.position = position + self._seconds(packet.data)
                    late = now - self.t0 - position
                    times(now - go)
                    values(late)
                    if late > jitter:
                        self.underruns += 1
                        if position >= preroll:
                            self.underruns_after_preroll += 1
                else:
                    self._edge(packet, now)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._stream_error("audio", error)

    def _seconds(self, data: bytes) -> float:
        """The audio a packet holds, from its TOC byte; a packet that has none is counted."""
        try:
            return packet_samples(data) / SAMPLE_RATE
        except OpusPacketError:
            self.fleet.results.counters["bad_toc"] += 1
            return self.fleet.frame_s

    async def _audio_decoding(self, call: Any) -> None:
        """The sampled devices: also run every packet through Opus, as the device does, and check
        that it decodes to exactly the duration its TOC byte says."""
        results = self.fleet.results
        decoder = self.decoder
        assert decoder is not None
        try:
            while True:
                packet = await call.read()
                now = time.monotonic()
                if packet is grpc.aio.EOF:
                    if not self.closing:
                        results.counters["stream_end_audio"] += 1
                    return
                self.packets += 1
                results.counters["decoded_packets"] += 1
                data = packet.data
                if not data:
                    results.counters["empty_data"] += 1
                try:
                    decoded = len(decoder.decode(data))
                except Exception:
                    results.counters["decode_errors"] += 1
                else:
                    if data and decoded != round(self._seconds(data) * SAMPLE_RATE):
                        results.counters["duration_mismatches"] += 1
                    results.counters[f"packets_of_{decoded * 1000 // SAMPLE_RATE}_ms"] += 1
                if self.rec_open and not (packet.is_start or packet.is_end):
                    position = self.position
                    self.position = position + self._seconds(data)
                    late = now - self.t0 - position
                    results.lat_times.append(now - self.fleet.go)
                    results.lat_values.append(late)
                    if late > self.fleet.jitter_s:
                        self._underrun(position)
                else:
                    self._edge(packet, now)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._stream_error("audio", error)

    def _edge(self, packet: pb.AudioPacket, now: float) -> None:
        """A start or end packet, or one that arrives with no recording open."""
        results = self.fleet.results
        counters = results.counters
        is_start, is_end = packet.is_start, packet.is_end
        if is_start:
            if self.play_waiter is not None and not self.play_waiter.done():
                self.play_waiter.set_result(now)
            elif self.after_stop:
                counters["packets_after_stop"] += 1
            counters["recordings"] += 1
            # Packet 0 is the reference (lateness 0 by definition), so it is not recorded.
            self.rec_open, self.after_stop = True, False
            self.t0, self.position = now, self._seconds(packet.data)
            self.end_waiter = asyncio.get_running_loop().create_future()
        elif not self.rec_open:
            if self.after_stop:
                counters["packets_after_stop"] += 1
            elif is_end:
                counters["end_without_start"] += 1
            else:
                counters["packets_without_recording"] += 1
            return
        if is_end:
            self.rec_open = False
            if self.stop_waiter is not None and not self.stop_waiter.done():
                # The end a Stop asked for: not a media frame, so not timed against real time.
                self.stop_waiter.set_result(now)
                self.after_stop = True
                return
            if self.end_waiter is not None and not self.end_waiter.done():
                self.end_waiter.set_result(now)
        if not is_start:
            position = self.position
            self.position = position + self._seconds(packet.data)
            late = now - self.t0 - position
            results.lat_times.append(now - self.fleet.go)
            results.lat_values.append(late)
            if late > self.fleet.jitter_s:
                self._underrun(position)
        if is_end:
            # A whole clip, is_start to is_end: when it started and ended, and the audio it held.
            self.clips.append((self.t0, now, self.position))

    def _underrun(self, position: float) -> None:
        """A 60 ms jitter buffer would have had nothing to play for this packet."""
        self.underruns += 1
        if position >= self.fleet.preroll_s:
            self.underruns_after_preroll += 1

    # -- buttons --------------------------------------------------------------------------------

    async def _send(self, event: pb.DeviceEvent, name: str) -> bool | None:
        """Send one event and wait for its one ack; None when no ack came (the device's buttons froze)."""
        fleet = self.fleet
        if self.events_broken or not self.connected:
            return None
        pressed = time.monotonic()
        try:
            await self.event_call.write(event)
            answer = await asyncio.wait_for(self.event_call.read(), TIMEOUT)
        except TimeoutError:
            fleet.results.counters["ack_timeouts"] += 1
            self.events_broken = True
            return None
        except Exception as error:
            self._stream_error("events", error)
            self.events_broken = True
            return None
        if answer is grpc.aio.EOF:
            if not self.closing:
                fleet.results.counters["stream_end_events"] += 1
            self.events_broken = True
            return None
        latency = self.ack_latency = time.monotonic() - pressed
        fleet.results.add(f"{fleet.prefix}press_to_ack", latency)
        if fleet.spec.probe:
            fleet.results.timed.setdefault("press_to_ack", []).append((pressed - fleet.go, latency))
        fleet.results.counters[f"{name}_presses"] += 1
        fleet.presses += 1
        if not answer.ack:
            fleet.results.counters[f"{name}_nacks"] += 1
        return bool(answer.ack)

    async def _await(self, waiter: asyncio.Future[float], pressed: float, metric: str) -> bool:
        try:
            arrived = await asyncio.wait_for(asyncio.shield(waiter), TIMEOUT)
        except TimeoutError:
            self.fleet.results.counters[f"{metric}_timeouts"] += 1
            return False
        except asyncio.CancelledError:
            if waiter.cancelled():  # the device disconnected meanwhile
                return False
            raise
        self.fleet.results.add(self.fleet.prefix + metric, arrived - pressed)
        return True

    async def press_mode(self) -> bool:
        """Mode, then wait for the first SET whose mode LEDs show the next mode: press→LED."""
        if self.mode < 0:
            return False
        want = tuple(value >> 8 for value in mode_leds((self.mode + 1) % self.fleet.spec.modes))
        self.led_target = (want[0], want[1], want[2], want[3])
        waiter = self.led_waiter = asyncio.get_running_loop().create_future()
        pressed = time.monotonic()
        if not await self._send(MODE, "mode"):
            self.led_target = None
            return False
        return await self._await(waiter, pressed, "press_to_led")

    async def press_play(self) -> str:
        """Play, then wait for the is_start of the new recording: Play→first packet.

        "started"; "refused" (acked false: the server is at capacity; the ack's latency is kept as
        play_refused_ack); or "failed" (no ack, or no first packet in time).
        """
        waiter = self.play_waiter = asyncio.get_running_loop().create_future()
        pressed = time.monotonic()
        self.asked = True
        ack = await self._send(PLAY, "play")
        if ack is None:
            return "failed"
        if not ack:
            self.play_waiter = None
            waiter.cancel()
            self.refused += 1
            self.fleet.results.add(self.fleet.prefix + "play_refused_ack", self.ack_latency)
            return "refused"
        if not await self._await(waiter, pressed, "play_to_first_packet"):
            return "failed"
        self.admitted = True
        return "started"

    async def press_stop(self) -> bool:
        """Stop, and if a recording is open, wait for its is_end: Stop→end packet."""
        if not self.rec_open:
            return bool(await self._send(STOP, "stop"))
        waiter = self.stop_waiter = asyncio.get_running_loop().create_future()
        pressed = time.monotonic()
        if not await self._send(STOP, "stop"):
            return False
        return await self._await(waiter, pressed, "stop_to_end")

    async def until_natural_end(self, deadline: float) -> bool:
        """Wait until the current recording ends by itself or the deadline passes; True if it ended."""
        waiter = self.end_waiter
        remaining = deadline - time.monotonic()
        if waiter is None or remaining <= 0 or not self.rec_open:
            await asyncio.sleep(max(0.0, min(remaining, 0.5)))  # no recording: do not spin on Play
            return False
        done, _ = await asyncio.wait((waiter,), timeout=remaining)
        return bool(done) and not waiter.cancelled()

    async def flood(self, count: int, deadline: float) -> int:
        """Write up to ``count`` Mode presses without waiting for acks (a stuck button, a broken
        firmware), acks read meanwhile. Writes that take long are the server's flow control pushing
        back; an error ends the stream (RESOURCE_EXHAUSTED is how the server ends a sustained
        flood) and is counted, not raised. Returns how many events are done with: all written, or
        once the server ended the stream only those it answered (the rest died with the stream)."""
        fleet = self.fleet
        counters = fleet.results.counters
        call = self.event_call
        answered = [0]

        async def read_acks() -> None:
            while True:
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    return
                answered[0] += 1
                counters["flood_acked" if answer.ack else "flood_nacked"] += 1

        reader = asyncio.get_running_loop().create_task(read_acks())
        sent = 0
        ended = False
        monotonic = time.monotonic
        try:
            while sent < count and monotonic() < deadline:
                before = monotonic()
                await call.write(MODE)
                took = monotonic() - before
                sent += 1
                if took >= 0.005:
                    fleet.results.add("flood_write_stall", took)
            # The events written but not yet answered are still the server's to take in (its
            # buffers and the flow-control window hold them): the flood lasts until they are
            # answered, the server ends the stream, or the deadline.
            while answered[0] < sent and not reader.done() and monotonic() < deadline:
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
            if not isinstance(error, grpc.aio.AioRpcError) and call.done():
                # A write to a call the server already ended: its status says how it ended.
                with contextlib.suppress(Exception):
                    code = (await call.code()).name
            counters[f"flood_stream_ended_{code}"] += 1
            self.events_broken = ended = True
        finally:
            failure = reader.exception() if reader.done() and not reader.cancelled() else None
            if failure is not None and not ended:
                code = (
                    failure.code().name
                    if isinstance(failure, grpc.aio.AioRpcError)
                    else type(failure).__name__
                )
                counters[f"flood_stream_ended_{code}"] += 1
                self.events_broken = ended = True
            reader.cancel()
        counters["flood_written"] += sent
        return answered[0] if ended else sent


BRIEF_SCENARIOS = ("streaming", "idle", "play-stop", "mode-presses")
"""Scenarios measured over a short window, during which a worker holds its garbage collector."""


class Fleet:
    """The devices of one worker, the results they share, and the scenarios they run."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.results = Results()
        self.frame_s = spec.frame_ms / 1000
        self.jitter_s = spec.jitter_buffer_ms / 1000
        self.preroll_s = spec.preroll_ms / 1000
        """Audio sent ahead at once: an underrun at or past this position is one after the pre-roll."""
        self.go = time.monotonic()
        self.prefix = "probe_" if spec.probe else ""
        self.mode_of = {tuple(value >> 8 for value in mode_leds(mode)): mode for mode in range(spec.modes)}
        self.random = random.Random(f"{spec.seed}-{spec.worker}")
        self.connected_at: list[float] = []
        self.presses = 0
        """Events acked (true or false) to this worker's devices, floods not included."""
        self.flood_window: list[float] = []
        """[start, end] of the flood, seconds after go."""
        self.loop_lag: list[float] = []
        self.loop_lag_at: list[float] = []
        self.gc_pauses: list[tuple[float, int, float]] = []
        """(seconds after go, generation, pause seconds) of each collection of a millisecond or more."""
        name = "probe" if spec.probe else "bench"
        self.devices = [
            Device(self, f"{name}-{spec.worker}-{index}", _decodes(index, spec.decode_sample))
            for index in range(spec.devices)
        ]

    async def connect_all(self, kind: str) -> None:
        """Connect every device at once, or through a semaphore when the connect is not what we measure."""
        limit = asyncio.Semaphore(
            self.spec.connect_concurrency if kind == "connect" else len(self.devices) or 1
        )

        retries = 0 if kind == "storm" else self.spec.connect_retries

        async def one(device: Device) -> None:
            for attempt in range(retries + 1):
                async with limit:
                    outcome = await device.connect(kind)
                if outcome != "refused" or attempt == retries:
                    return
                await asyncio.sleep(RECONNECT_BACKOFF.delay(attempt, self.random.random()))

        await asyncio.gather(*(one(device) for device in self.devices))

    async def run(self, deadline: float) -> None:
        scenarios: dict[str, Callable[[Device, float], Awaitable[None]]] = {
            "connect-storm": self._hold,
            "idle": self._hold,
            "mode-presses": self._mode_presses,
            "play-stop": self._play_stop,
            "streaming": self._streaming,
            "soak": self._soak,
            "flood": self._hold,
        }
        body = self._probe if self.spec.probe else scenarios[self.spec.scenario]
        flooder = self.devices[0] if self.spec.scenario == "flood" and not self.spec.probe else None
        await asyncio.gather(
            *(
                (self._flood if device is flooder else body)(device, deadline)
                for device in self.devices
                if device.connected
            )
        )

    async def _sleep(self, seconds: float, deadline: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    async def _hold(self, device: Device, deadline: float) -> None:
        await self._sleep(math.inf, deadline)

    async def _probe(self, device: Device, deadline: float) -> None:
        """Press→LED, Play→first packet and Stop→end, again and again, while the fleet does its scenario.

        They start once the fleet's Plays are spread out (the ramp), to measure the steady state.
        """
        settle = self.spec.ramp + 0.5 if self.spec.scenario in ("streaming", "play-stop") else 0.0
        await self._sleep(settle + self.random.uniform(0, self.spec.probe_interval), deadline)
        while time.monotonic() < deadline and device.connected:
            await device.press_mode()
            await device.press_play()
            await self._sleep(self.random.uniform(0.1, 0.3), deadline)
            await device.press_stop()
            await self._sleep(self.random.uniform(0.5, 1.5) * self.spec.probe_interval, deadline)

    async def _mode_presses(self, device: Device, deadline: float) -> None:
        while True:
            await self._sleep(self.random.expovariate(self.spec.rate), deadline)
            if time.monotonic() >= deadline or not device.connected:
                return
            await device.press_mode()

    async def _play_stop(self, device: Device, deadline: float) -> None:
        """Churn: Play, a random 0.2-2 s, Stop, and again."""
        await self._sleep(self.random.uniform(0, self.spec.ramp), deadline)
        while time.monotonic() < deadline and device.connected:
            await device.press_play()
            await self._sleep(self.random.uniform(0.2, 2.0), deadline)
            await device.press_stop()

    async def prepare(self) -> None:
        """Before go: streaming devices switch to mode 1 (the 32 s sound), so go starts with the Plays."""
        if self.spec.scenario != "streaming" or self.spec.probe:
            return

        async def to_mode_1(device: Device) -> None:
            for _ in range(self.spec.modes):
                if device.mode == 1 or not device.connected:
                    return
                await device.press_mode()

        limit = asyncio.Semaphore(self.spec.connect_concurrency)

        async def one(device: Device) -> None:
            async with limit:
                await to_mode_1(device)

        await asyncio.gather(*(one(device) for device in self.devices))
        self.results.counters["not_in_mode_1"] = sum(device.mode != 1 for device in self.devices)

    async def _streaming(self, device: Device, deadline: float) -> None:
        """Play (spread over the ramp), replay if the sound ends, Stop spread over the ramp after the deadline.

        A refused Play is pressed again after ``refused_retry`` (if set); a device whose Play failed
        (no ack, no first packet) waits for the end: it is counted, not retried in a loop.
        """
        await self._sleep(self.random.uniform(0, self.spec.ramp), deadline)
        while time.monotonic() < deadline and device.connected:
            outcome = await device.press_play()
            if outcome == "started" or device.rec_open:
                await device.until_natural_end(deadline)
            elif outcome == "refused" and self.spec.refused_retry > 0:
                await self._sleep(self.spec.refused_retry * self.random.uniform(0.5, 1.5), deadline)
            else:
                await self._sleep(math.inf, deadline)
        # Everyone streams until the deadline; the Stops come spread over the ramp after it.
        await asyncio.sleep(self.random.uniform(0, self.spec.ramp))
        if device.connected:
            await device.press_stop()

    async def _soak(self, device: Device, deadline: float) -> None:
        """A mixed fleet for hours: Mode, Play, Stop, and now and then a reconnect, with think times."""
        rng = self.random
        failures = 0
        await self._sleep(rng.uniform(0, self.spec.think), deadline)
        while time.monotonic() < deadline:
            if not device.connected:
                # After a failed connect, the firmware's backoff; after a chosen disconnect, a pause.
                pause = (
                    RECONNECT_BACKOFF.delay(failures - 1, rng.random()) if failures else rng.uniform(0.1, 1.0)
                )
                await self._sleep(pause, deadline)
                if time.monotonic() < deadline:
                    failures = 0 if await device.connect("reconnect") == "connected" else failures + 1
                continue
            roll = rng.random()
            if roll < self.spec.reconnect_prob:
                await device.disconnect()
                self.results.counters["reconnects"] += 1
            elif roll < 0.4:
                await device.press_play()
            elif roll < 0.7:
                await device.press_stop()
            else:
                await device.press_mode()
            await self._sleep(rng.expovariate(1 / self.spec.think), deadline)

    async def _flood(self, device: Device, deadline: float) -> None:
        """The flooder: ``flood_events`` Mode presses as fast as the stream takes them; when the server
        ends the stream, reconnect (``flood_reconnect``) and go on, until all are sent or the deadline."""
        counters = self.results.counters
        left = self.spec.flood_events
        self.flood_window = [time.monotonic() - self.go]
        while left > 0 and time.monotonic() < deadline:
            if device.connected and not device.events_broken:
                left -= await device.flood(left, deadline)
                continue
            if not self.spec.flood_reconnect:
                break
            await device.disconnect()
            counters["flood_reconnects"] += 1
            if await device.connect("reconnect") != "connected":
                await self._sleep(0.5, deadline)
        self.flood_window.append(time.monotonic() - self.go)

    async def watch_loop(self) -> None:
        """How late this worker's own event loop runs: a busy load generator would look like a slow server."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            after = time.monotonic()
            self.loop_lag.append(after - before - 0.05)
            self.loop_lag_at.append(after - self.go)

    def watch_gc(self) -> None:
        """Record this worker's garbage-collector pauses: a long one delays every packet it holds."""
        started = [0.0]

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.monotonic()
                return
            pause = time.monotonic() - started[0]
            if pause >= 0.001:
                self.gc_pauses.append((round(started[0] - self.go, 4), info["generation"], round(pause, 5)))

        gc.callbacks.append(callback)

    def snapshot(self) -> dict[str, int]:
        return {
            "packets": sum(device.packets for device in self.devices),
            "presses": self.presses,
            "alive": sum(device.alive() for device in self.devices),
            "connected": sum(device.connected for device in self.devices),
        }


def _decodes(index: int, fraction: float) -> bool:
    """Spread the decoding devices evenly: device 0, then every 1/fraction-th."""
    if fraction <= 0:
        return False
    return index == 0 or math.floor(index * fraction) > math.floor((index - 1) * fraction)


async def _line(loop: asyncio.AbstractEventLoop) -> str:
    line: str = await loop.run_in_executor(None, sys.stdin.readline)
    return line.strip()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def work(spec: Spec) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(spec)
    cpu_start = time.process_time()
    storm = spec.scenario == "connect-storm" and not spec.probe
    if not storm:
        await fleet.connect_all("connect")
        await fleet.prepare()
    # What lives for the whole run (channels, calls, devices) leaves the collector's view: a full
    # collection over thousands of devices stalls this loop for ~100 ms, which would show up as
    # server lateness.
    gc.collect()
    gc.freeze()
    # Streaming runs last seconds: this worker's own collections (25-50 ms each at a thousand
    # streams, measured with watch_gc) held every packet it was reading and showed up as the
    # server's lateness. For those windows the collector waits; the soak keeps it running.
    paused_gc = spec.scenario in BRIEF_SCENARIOS and spec.duration <= 120
    if paused_gc:
        gc.disable()
    _say(f"ready {json.dumps(fleet.snapshot())}")
    command = await _line(loop)
    if not command.startswith("go "):
        raise SystemExit(f"worker {spec.worker}: expected 'go T', got {command!r}")
    fleet.go = float(command.split()[1])
    await asyncio.sleep(max(0.0, fleet.go - time.monotonic()))
    watcher = loop.create_task(fleet.watch_loop())
    fleet.watch_gc()
    cpu_go = time.process_time()
    at_go = fleet.snapshot()
    if storm:
        await fleet.connect_all("storm")
    await fleet.run(fleet.go + spec.duration)
    at_end = fleet.snapshot()
    cpu_end = time.process_time()
    if paused_gc:
        gc.enable()
    watcher.cancel()
    _say("finished")
    command = await _line(loop)
    await asyncio.gather(*(device.disconnect() for device in fleet.devices))
    times = np.frombuffer(fleet.results.lat_times, dtype=np.float32)
    values = np.frombuffer(fleet.results.lat_values, dtype=np.float32)
    lat_file = Path(spec.out).with_suffix(".npy")
    np.save(lat_file, np.vstack((times, values)))
    report = {
        "worker": spec.worker,
        "probe": spec.probe,
        "devices": spec.devices,
        "decoding_devices": sum(device.decoder is not None for device in fleet.devices),
        "samples": fleet.results.samples,
        "counters": dict(fleet.results.counters)
        | {
            "underruns": sum(device.underruns for device in fleet.devices),
            "underruns_after_preroll": sum(device.underruns_after_preroll for device in fleet.devices),
        },
        "underrun_devices": sum(device.underruns_after_preroll > 0 for device in fleet.devices),
        "streams": {
            "asked": sum(device.asked for device in fleet.devices),
            "admitted": sum(device.admitted for device in fleet.devices),
            "refused_never_admitted": sum(
                device.refused > 0 and not device.admitted for device in fleet.devices
            ),
            "refused_then_admitted": sum(device.refused > 0 and device.admitted for device in fleet.devices),
            "on_time": sum(
                device.admitted and device.underruns_after_preroll == 0 for device in fleet.devices
            ),
            "refused_plays": sum(device.refused for device in fleet.devices),
        },
        "timed": fleet.results.timed,
        "flood_window": fleet.flood_window,
        "clips": [clip for device in fleet.devices for clip in device.clips],
        "at_go": at_go,
        "at_end": at_end,
        "connected_at": [t - fleet.go for t in fleet.connected_at],
        "loop_lag": fleet.loop_lag,
        "loop_lag_at": fleet.loop_lag_at,
        "gc_pauses": fleet.gc_pauses,
        "cpu_s": {"total": time.process_time() - cpu_start, "window": cpu_end - cpu_go},
        "lateness_file": str(lat_file),
        "event_loop": type(loop).__module__,
    }
    await asyncio.to_thread(Path(spec.out).write_text, json.dumps(report))
    _say("done")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = Spec(**json.loads(Path(args[0]).read_text()))
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional: less client CPU
    except ImportError:
        asyncio.run(work(spec))
    else:
        uvloop.run(work(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
