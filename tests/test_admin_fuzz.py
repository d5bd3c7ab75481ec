"""The operator API fuzzed from its own OpenAPI document (schemathesis) against the real server.

The server runs in-process on an asyncio loop in a background thread, with simulated devices
connected over real gRPC, so device actions reach real actors; schemathesis (synchronous, over
``requests``) fuzzes it from the test's thread. The fuzz runs once per module: every operation,
positive and negative cases, a bounded number of each, derandomized and without a Hypothesis
database; then schemathesis's coverage phase, every operation's boundary and malformed values
(a number one past its bound, a string of the wrong kind, a missing or duplicated parameter,
methods it does not allow). The event stream's 200 is a stream that never ends: it is closed once
its status and content type are read. The server keeps its state and audit log in SQLite, as a
deployed one does, so an id too large for SQLite reaches it. A failure is recorded (the shortest
request per operation and kind of failure), not raised, so one finding does not hide the others;
each test asserts on one kind.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import math
import time
import traceback
import wave
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from actors.leds import mode_leds
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.background import BackgroundLoop
from tests.live import serving, target

Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Operation]

DEVICE_IDS = ("dev-0", "dev-1", "dev-2")
MODES = 5
"""The library fixture's modes, and so the server's."""
MAX_EXAMPLES = 75
"""Per operation and generation mode: some 1,500 requests in all, about 20 s."""
REQUEST_TIMEOUT = 5.0
"""A reply slower than this is a hang (the server answers each in a few milliseconds)."""
UPLOADED = "fuzz-tone"
SOUND_NAMES = ("builtin-0", "builtin-3", UPLOADED)
"""Names a positive case's sound fields sometimes get, so plays, announcements, assignments and
deletes find a sound (a generated name is one no one uploaded: 422 or 404)."""
EVENT_STREAM = "/api/events"
DEVICE_ACTIONS = (
    "POST /api/devices/{device_id}/mode",
    "POST /api/devices/{device_id}/play",
    "POST /api/devices/{device_id}/stop",
    "PUT /api/devices/{device_id}/tags",
)

SERVER_ERROR_CHECKS: list[CheckFunction] = [not_a_server_error]
SCHEMA_CHECKS: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REJECTION_CHECKS: list[CheckFunction] = [negative_data_rejection]
# Not checked: positive_data_acceptance. A schema-valid request may rightly get a documented 4xx
# the schema cannot express: a mode beyond the server's --modes, a sound no one uploaded, a device
# never seen, a sound file that does not decode.

CONFIG = schemathesis.Config.from_dict(
    # 503 (admission control refused a play, or a device did not answer) and 507 (the disk failed)
    # are documented refusals; any other 5xx is a server error. An explicit config also keeps a
    # stray schemathesis.toml from changing the run.
    {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503", "507"]}}}
)


class ServerLog(logging.Handler):
    """What the in-process server (and the devices beside it) logs at ERROR or above, with tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)


@dataclass(frozen=True)
class Finding:
    operation: str
    failure: str
    request: str
    reply: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.failure}\n    {self.request}\n    -> {self.reply}"


@dataclass
class Findings:
    """The shortest failing request of each (operation, kind of failure)."""

    found: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        key = (finding.operation, finding.failure.splitlines()[0])
        if key not in self.found or len(finding.request) < len(self.found[key].request):
            self.found[key] = finding

    def report(self) -> str:
        return "\n\n".join(str(finding) for finding in self.found.values())


@dataclass
class Fuzzed:
    operations: list[str] = field(default_factory=list)
    """Every operation the schema documents, the event stream included."""
    statuses: dict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    """The status codes each operation answered."""
    server_errors: Findings = field(default_factory=Findings)
    """Undocumented 5xx replies, and requests that got no reply in time."""
    off_schema: Findings = field(default_factory=Findings)
    """Replies with an undocumented status, content type or header, or a body off its schema."""
    accepted_invalid: Findings = field(default_factory=Findings)
    """Requests the schema forbids that the server did not reject."""
    server_log: list[str] = field(default_factory=list)
    acks_after: dict[str, bool] = field(default_factory=dict)
    """Each device's ack of a Mode press made after the fuzz."""
    leds_after: dict[str, bool] = field(default_factory=dict)
    """Whether each device then showed its next mode on its LEDs."""


class Fuzzer:
    def __init__(self, schema: BaseSchema, result: Fuzzed) -> None:
        self.schema = schema
        self.result = result

    def run(self) -> None:
        self.result.operations = [operation.label for operation in operations(self.schema)]
        for operation in operations(self.schema):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self.fuzz(operation, mode)
            self.cover(operation)

    def cover(self, operation: Operation) -> None:
        """The coverage phase: each boundary and malformed value once, deterministically."""
        generation = self.schema.config.generation_for(operation=operation)
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        for case in self.schema.iter_coverage_cases(
            operation, generation_modes=modes, generation_config=generation
        ):
            drop_content_length(case)
            if not self.send(case):
                return

    def fuzz(self, operation: Operation, mode: GenerationMode) -> None:
        hung = False

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # failures are recorded, not raised: no shrinking
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        @given(
            case=operation.as_strategy(mode),
            known_device=st.sampled_from((*DEVICE_IDS, None)),
            known_sound=st.sampled_from((*SOUND_NAMES, None)),
        )
        def example(case: FuzzCase, known_device: str | None, known_sound: str | None) -> None:
            nonlocal hung
            if hung:  # one request left unanswered says enough; do not wait out every other example
                return
            if mode is GenerationMode.POSITIVE:
                aim(case, known_device, known_sound)
            drop_content_length(case)
            hung = not self.send(case)

        try:
            example()
        except Unsatisfiable:
            # Negative mode on an operation with nothing to break (no parameters, or only
            # unconstrained strings) has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request generated"

    def send(self, case: FuzzCase) -> bool:
        """Sends ``case`` and records what the checks find; False when no reply came."""
        headers = {"Content-Type": "application/json"} if needs_json_type(case) else None
        label = case.operation.label
        stream = case.operation.path == EVENT_STREAM
        try:
            # A fresh connection each time: a kept-alive one waits out a delayed ACK per request here.
            response = open_stream(case) if stream else case.call(headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:  # no reply in time, or the connection dropped
            request = case.as_curl_command(headers=headers)
            self.result.server_errors.add(
                Finding(label, f"no reply: {type(error).__name__}", request, str(error))
            )
            return False
        self.result.statuses[label][response.status_code] += 1
        if stream and response.status_code == 200:
            if not str(response.headers.get("content-type", "")).startswith("text/event-stream"):
                request = case.as_curl_command()
                self.result.off_schema.add(Finding(label, "not text/event-stream", request, "200"))
            return True
        sent = dict(response.request.headers)
        for findings, checks in (
            (self.result.server_errors, SERVER_ERROR_CHECKS),
            (self.result.off_schema, SCHEMA_CHECKS),
            (self.result.accepted_invalid, REJECTION_CHECKS),
        ):
            try:
                case.validate_response(response, checks=checks, headers=sent)
            except FailureGroup as group:
                request = case.as_curl_command(headers=sent)
                reply = f"{response.status_code} {response.content[:300]!r}"
                for failure in group.exceptions:
                    findings.add(Finding(label, describe(failure), request, reply))
        return True


def open_stream(case: FuzzCase) -> Any:
    """The event stream: a 200 is closed once its headers are read; any other reply is read whole."""
    response = requests.request(**case.as_transport_kwargs(), stream=True, timeout=REQUEST_TIMEOUT)
    if response.status_code == 200:
        response.close()
    else:
        response.content  # noqa: B018 (reads the error's short body, for the checks)
    return response


def operations(schema: BaseSchema) -> list[Operation]:
    """The schema's operations; one it cannot read fails the fuzz, naming why."""
    found: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


def aim(case: FuzzCase, known_device: str | None, known_sound: str | None) -> None:
    """Points a positive case, most of the time, at a connected device and a sound that exists.

    So actions reach a device's actor and plays find their sound (a generated device_id is one the
    server has never seen: 404). An upload of ``UPLOADED`` sends a real WAV file. Negative cases
    are left alone: the path or the sound may be the part made invalid.
    """
    path = case.path_parameters or {}
    if known_device is not None and "device_id" in path:
        path["device_id"] = known_device
    if known_sound is None:
        return
    if "name" in path:
        path["name"] = known_sound
        if case.method.upper() == "PUT" and known_sound == UPLOADED:
            case.body = TONE_WAV
    if isinstance(case.body, dict) and "sound" in case.body:
        case.body["sound"] = known_sound


def drop_content_length(case: FuzzCase) -> None:
    """PUT /api/sounds/{name} declares Content-Length as a header parameter (put_sound's
    Header(ge=0)). A generated one is a malformed HTTP message that the HTTP layer rejects before
    the app sees it; the transport sends the true length instead."""
    if case.headers:
        for name in [name for name in case.headers if name.lower() == "content-length"]:
            del case.headers[name]


def tone_wav(seconds: float = 0.2, rate: int = 16_000) -> bytes:
    samples = (round(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(round(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(rate)
        sink.writeframes(b"".join(sample.to_bytes(2, "little", signed=True) for sample in samples))
    return buffer.getvalue()


TONE_WAV = tone_wav()


def needs_json_type(case: FuzzCase) -> bool:
    """A JSON action sent without a body still needs ``Content-Type: application/json`` (the guard)."""
    upload = case.operation.path.startswith("/api/sounds/")
    return case.method.upper() in ("POST", "PUT") and case.body is NOT_SET and not upload


def describe(failure: Failure) -> str:
    """The failure's title and the first paragraph of its message (a schema error's is long)."""
    message = failure.message.split("\n\n")[0]
    return f"{failure.title}\n    {message}".rstrip()


def admin_url(plane: ControlPlane) -> str:
    return f"http://127.0.0.1:{plane.admin_port}"


def device_json(plane: ControlPlane, device_id: str) -> dict[str, Any]:
    response = requests.get(f"{admin_url(plane)}/api/devices/{device_id}", timeout=REQUEST_TIMEOUT)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def wait_until_connected(plane: ControlPlane, timeout: float = 10) -> None:
    """Every device shows as connected through the API, as an operator sees it."""
    deadline = time.monotonic() + timeout
    while not all(device_json(plane, device_id)["connected"] for device_id in DEVICE_IDS):
        assert time.monotonic() < deadline, "the devices did not connect"
        time.sleep(0.05)


async def connect_devices(stack: AsyncExitStack, plane: ControlPlane) -> dict[str, SimulatedDevice]:
    devices: dict[str, SimulatedDevice] = {}
    for device_id in DEVICE_IDS:
        device = SimulatedDevice(target(plane), device_id, play_in_real_time=False)
        devices[device_id] = await stack.enter_async_context(device)
    return devices


async def press_mode(device: SimulatedDevice, mode_before: int, result: Fuzzed) -> None:
    """Records whether a Mode press is acked and the device's LEDs then show the next mode."""
    wanted = [rgba >> 8 for rgba in mode_leds((mode_before + 1) % MODES)]
    try:
        async with asyncio.timeout(5):
            result.acks_after[device.device_id] = await device.press(Button.MODE)
    except (TimeoutError, ConnectionError):  # no ack, or the device's event stream was lost
        result.acks_after[device.device_id] = False
    try:
        await device.wait_for_leds(lambda leds: [rgba >> 8 for rgba in leds[2:]] == wanted, 5)
        result.leds_after[device.device_id] = True
    except TimeoutError:
        result.leds_after[device.device_id] = False


@pytest.fixture(scope="module")
def fuzzed(library: SoundLibrary, tmp_path_factory: pytest.TempPathFactory) -> Fuzzed:
    """Starts the server and the devices, fuzzes, presses each device, and stops it all again.

    All of it happens here, so no actor outlives the fixture (conftest stops every actor after
    each test) and the tests only read what was found.
    """
    result = Fuzzed()
    log = ServerLog()
    root = logging.getLogger()
    background = BackgroundLoop()
    stack = AsyncExitStack()
    root.addHandler(log)
    try:
        state_db = str(tmp_path_factory.mktemp("fuzz-state") / "devices.sqlite3")
        plane = background.run(stack.enter_async_context(serving(library, admin_port=0, state_db=state_db)))
        devices = background.run(connect_devices(stack, plane))
        wait_until_connected(plane)
        schema = schemathesis.openapi.from_url(f"{admin_url(plane)}/api/openapi.json", config=CONFIG)
        Fuzzer(schema, result).run()
        for device_id, device in devices.items():
            background.run(press_mode(device, device_json(plane, device_id)["mode"], result))
    finally:
        try:
            background.run(stack.aclose())
        finally:
            background.close()
            root.removeHandler(log)
    result.server_log = log.lines
    return result


def test_every_operation_is_fuzzed_the_event_stream_included(fuzzed: Fuzzed) -> None:
    assert f"GET {EVENT_STREAM}" in fuzzed.operations
    assert sorted(fuzzed.statuses) == sorted(fuzzed.operations)


def test_fuzzed_device_actions_reach_the_connected_devices(fuzzed: Fuzzed) -> None:
    assert [action for action in DEVICE_ACTIONS if fuzzed.statuses[action][200] == 0] == []


def test_no_fuzzed_request_gets_a_server_error_or_hangs(fuzzed: Fuzzed) -> None:
    assert not fuzzed.server_errors.found, "\n\n".join([fuzzed.server_errors.report(), *fuzzed.server_log])


def test_the_server_logs_no_error_while_fuzzed(fuzzed: Fuzzed) -> None:
    assert fuzzed.server_log == []


def test_every_fuzzed_reply_keeps_to_its_documented_status_and_schema(fuzzed: Fuzzed) -> None:
    assert not fuzzed.off_schema.found, fuzzed.off_schema.report()


def test_every_request_the_schema_forbids_is_rejected(fuzzed: Fuzzed) -> None:
    assert not fuzzed.accepted_invalid.found, fuzzed.accepted_invalid.report()


def test_each_device_press_after_the_fuzz_is_acked(fuzzed: Fuzzed) -> None:
    assert fuzzed.acks_after == dict.fromkeys(DEVICE_IDS, True)


def test_each_device_shows_its_next_mode_after_a_press_after_the_fuzz(fuzzed: Fuzzed) -> None:
    assert fuzzed.leds_after == dict.fromkeys(DEVICE_IDS, True)
