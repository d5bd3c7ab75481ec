"""Property-based fuzzing of every stream against one real server: whatever a client sends, it gets
a well-formed answer or a clear status, and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.config import ServerConfig
from media.library import SoundLibrary
from rpc import comms_pb2 as pb
from rpc import comms_pb2_grpc
from rpc.metadata import MAX_DEVICE_ID_BYTES
from rpc.registration import SERVICE_NAME
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice

SERVICE = f"/{SERVICE_NAME}/"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
UINT32 = st.integers(min_value=0, max_value=2**32 - 1)


class ServerThread:
    """The real server on its own event loop in a background thread, for synchronous fuzz clients."""

    def __init__(self, library: SoundLibrary) -> None:
        self.loop = asyncio.new_event_loop()
        self.plane = ControlPlane(
            ServerConfig(
                host="127.0.0.1",
                port=0,
                metrics_port=-1,
                admin_port=-1,
                state_db=":memory:",
                event_burst=1000,
            ),
            library,
        )
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.plane.start(), self.loop).result(30)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.plane.stop(grace=1.0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def still_serves_a_device(self) -> None:
        async def check() -> None:
            async with SimulatedDevice(self.target, "canary", play_in_real_time=False) as device:
                await device.wait_for_first_set(5)
                assert await device.press(Button.MODE)
                assert await device.press(Button.STOP)

        asyncio.run(asyncio.wait_for(check(), 20))


@pytest.fixture(scope="module")
def server(library: SoundLibrary) -> Iterator[ServerThread]:
    running = ServerThread(library)
    yield running
    running.still_serves_a_device()
    running.stop()


@pytest.fixture(autouse=True)
def no_actor_outlives_its_test() -> None:
    """The module's server outlives each test (overrides the conftest fixture)."""


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as opened:
        yield opened


def status_of(read: Callable[[], object]) -> grpc.StatusCode:
    """The status a call ends with (OK when it ends normally)."""
    try:
        read()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


button_events = st.builds(
    lambda button, event: pb.DeviceEvent(button_event=pb.ButtonEvent(button_id=button, event=event)),
    st.one_of(st.sampled_from([0, 1, 2, 3]), INT32),
    st.one_of(st.sampled_from([0, 1, 2]), INT32),
)
device_events = st.one_of(button_events, st.just(pb.DeviceEvent()))
colours = st.builds(pb.RGBAColor, rgba=UINT32)
device_states = st.builds(
    pb.DeviceStatus,
    led_0=colours,
    led_1=colours,
    led_2=colours,
    led_3=colours,
    led_4=colours,
    led_5=colours,
    button_1=INT32,
    button_4=INT32,
    battery_level=st.floats(allow_nan=True, allow_infinity=True, width=32),
)
status_answers = st.one_of(
    st.builds(lambda state: pb.DeviceStatusResponse(state=state), device_states),
    st.builds(lambda text: pb.DeviceStatusResponse(status=text), st.text(max_size=200)),
    st.just(pb.DeviceStatusResponse(status="success")),
    st.just(pb.DeviceStatusResponse()),
)


@FUZZ
@given(events=st.lists(device_events, max_size=15), name=st.integers(0, 5))
def test_every_event_gets_exactly_one_ack_whatever_its_fields(
    channel: grpc.Channel, events: list[pb.DeviceEvent], name: int
) -> None:
    stub: Any = comms_pb2_grpc.DeviceServiceStub(channel)
    requests: list[pb.DeviceEvent] = []
    gate = threading.Semaphore(0)

    def feed() -> Iterator[pb.DeviceEvent]:
        for event in events:
            requests.append(event)
            yield event
            gate.acquire()

    acks = []
    for response in stub.EventStream(feed(), metadata=(("device_id", f"fuzz-events-{name}"),)):
        acks.append(response.ack)
        gate.release()
    assert len(acks) == len(events)
    for event, ack in zip(events, acks, strict=True):
        known = event.HasField("button_event") and event.button_event.button_id in (1, 2, 3)
        if not known or event.button_event.event not in (0, 1, 2):
            assert ack is False


@FUZZ
@given(answers=st.lists(status_answers, min_size=1, max_size=8))
def test_any_status_answers_keep_the_status_stream_in_lockstep(
    channel: grpc.Channel, answers: list[pb.DeviceStatusResponse]
) -> None:
    """A GET comes first, and the server never sends a request before the previous one is answered."""
    stub: Any = comms_pb2_grpc.DeviceServiceStub(channel)
    pending = list(answers)
    turn = threading.Semaphore(0)

    def feed() -> Iterator[pb.DeviceStatusResponse]:
        while pending:
            turn.acquire()
            yield pending.pop(0)

    call = stub.StatusStream(feed(), metadata=(("device_id", "fuzz-status"),), timeout=1.0)
    received = []

    def converse() -> None:
        for request in call:
            received.append(request)
            assert len(received) <= len(answers) - len(pending) + 1, "a request overtook an answer"
            turn.release()

    assert status_of(converse) in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert received[0].WhichOneof("request") == "get"
    assert all(request.WhichOneof("request") in ("get", "set") for request in received[1:])


@FUZZ
@given(raw=st.binary(max_size=300), method=st.sampled_from(["StatusStream", "EventStream"]))
def test_random_bytes_as_messages_get_invalid_argument_or_a_normal_answer(
    channel: grpc.Channel, raw: bytes, method: str
) -> None:
    call = channel.stream_stream(
        SERVICE + method, request_serializer=lambda data: data, response_deserializer=lambda data: data
    )
    responses = call(iter([raw]), metadata=(("device_id", "fuzz-bytes"),), timeout=5)
    code = status_of(lambda: list(responses))
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_as_an_audio_request_get_a_clear_status(channel: grpc.Channel, raw: bytes) -> None:
    call = channel.unary_stream(
        SERVICE + "ServerAudioStream", request_serializer=lambda data: data, response_deserializer=lambda d: d
    )
    responses = call(raw, metadata=(("device_id", "fuzz-audio"),), timeout=0.5)
    code = status_of(lambda: list(responses))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED)


printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@FUZZ
@given(device_id=printable)
def test_any_device_id_is_served_or_refused_with_invalid_argument(
    channel: grpc.Channel, device_id: str
) -> None:
    stub: Any = comms_pb2_grpc.DeviceServiceStub(channel)
    valid = 0 < len(device_id.encode()) <= MAX_DEVICE_ID_BYTES
    call = stub.EventStream(iter([pb.DeviceEvent()]), metadata=(("device_id", device_id),), timeout=5)
    acks: list[bool] = []
    code = status_of(lambda: acks.extend(response.ack for response in call))
    if valid:
        assert (code, acks) == (grpc.StatusCode.OK, [False])
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "device_id" in (call.details() or "")


@FUZZ
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["status", "events", "audio"]), st.integers(0, 3), st.floats(0, 0.05)),
        max_size=12,
    )
)
def test_streams_opened_and_cancelled_at_random_leave_nothing_behind(
    server: ServerThread, channel: grpc.Channel, plan: list[tuple[str, int, float]]
) -> None:
    stub: Any = comms_pb2_grpc.DeviceServiceStub(channel)
    calls = []
    for kind, device, _ in plan:
        metadata = (("device_id", f"fuzz-churn-{device}"),)
        if kind == "status":
            calls.append(stub.StatusStream(iter(()), metadata=metadata))
        elif kind == "events":
            calls.append(stub.EventStream(iter(()), metadata=metadata))
        else:
            calls.append(stub.ServerAudioStream(pb.AudioStreamRequest(start=True), metadata=metadata))
    for call, (_, _, delay) in zip(calls, plan, strict=True):
        threading.Event().wait(delay)
        call.cancel()

    async def connected() -> int:
        from tests.live import fleet_status

        return (await fleet_status(server.plane)).connected

    # A cancelled call's handler may still be starting, so "nothing left" must hold for a while;
    # a loaded CI machine gets up to 15 s to retire everything.
    calm_since = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if asyncio.run_coroutine_threadsafe(connected(), server.loop).result(5) == 0:
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= 0.5:
                break
        else:
            calm_since = None
        threading.Event().wait(0.02)
    assert asyncio.run_coroutine_threadsafe(connected(), server.loop).result(5) == 0
