"""Operator commands for a device another replica holds: forwarded to that replica over Redis.

Why Redis pub/sub and not an internal gRPC service: every replica already holds a Redis
connection and a subscriber, so no second port, address registry or TLS set-up is needed,
and ``PUBLISH`` says how many subscribers got the request, so a request to a replica that is
gone is known at once (zero receivers) instead of timing out. Pub/sub is fire-and-forget: a
request or its answer lost (the owner died mid-command) ends as FAILED after the timeout,
the same result as a local device whose actor did not answer; commands are not retried,
because Play is not idempotent.

The owner runs the command through its own ``FleetCommands`` (the supervisor, the device's
actor, admission, persistence: exactly as for a local command) and answers with the result
and its snapshot of the device, which the caller's fleet view takes at once so the API's
reply shows the device as it is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.messages import CommandOutcome, CommandResult
from actors.state import Command, DeviceState, Fault, Playback, PlaySound, SetMode, StopSound
from admin.fleetview import FleetView
from cluster.redis_io import follow
from cluster.shared_store import PREFIX

logger = logging.getLogger(__name__)

TIMEOUT = 5.0


def requests_channel(replica: str) -> str:
    return f"{PREFIX}commands:{replica}"


def replies_channel(replica: str) -> str:
    return f"{PREFIX}replies:{replica}"


def encode_command(command: Command) -> dict[str, Any]:
    match command:
        case SetMode(mode=mode):
            return {"kind": "mode", "mode": mode}
        case PlaySound(sound=sound, mode=mode, interrupt=interrupt):
            return {"kind": "play", "sound": sound, "mode": mode, "interrupt": interrupt}
        case StopSound():
            return {"kind": "stop"}


def decode_command(body: dict[str, Any]) -> Command:
    match body.get("kind"):
        case "mode":
            return SetMode(int(body["mode"]))
        case "play":
            mode = body.get("mode")
            return PlaySound(body.get("sound"), None if mode is None else int(mode), bool(body["interrupt"]))
        case "stop":
            return StopSound()
    raise ValueError(f"not a command: {body!r}")


def encode_result(result: CommandResult) -> dict[str, Any]:
    state = result.state
    encoded: dict[str, Any] = {"outcome": result.outcome.value, "state": None}
    if state is not None:
        playing = state.playing
        encoded["state"] = {
            "mode": state.mode,
            "next_playback_id": state.next_playback_id,
            "playing": None if playing is None else [playing.id, playing.mode, playing.sound],
            "fault": None if state.fault is None else state.fault.name,
            "busy": state.busy,
        }
    return encoded


def decode_result(body: dict[str, Any]) -> CommandResult:
    state = body.get("state")
    decoded = None
    if state is not None:
        playing = state["playing"]
        decoded = DeviceState(
            mode=int(state["mode"]),
            playing=None if playing is None else Playback(int(playing[0]), int(playing[1]), playing[2]),
            next_playback_id=int(state["next_playback_id"]),
            fault=None if state["fault"] is None else Fault[state["fault"]],
            busy=bool(state["busy"]),
        )
    return CommandResult(CommandOutcome(body["outcome"]), decoded)


LocalSend = Callable[[str, Command], Awaitable[CommandResult]]


class CommandRelay:
    """Sends commands to other replicas and serves theirs; ``start`` it once ``local`` exists."""

    def __init__(
        self,
        client: aioredis.Redis,
        replica: str,
        fleet: FleetView,
        timeout: float = TIMEOUT,
        round_trips: Counter[str] | None = None,
    ) -> None:
        self._client = client
        self._round_trips = round_trips if round_trips is not None else Counter()
        self._replica = replica
        self._fleet = fleet
        self._timeout = timeout
        self._local: LocalSend | None = None
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}
        self._numbers = itertools.count(1)
        self._nonce = secrets.token_hex(4)
        """Request ids are unique across this replica's restarts: a late reply to an earlier run
        cannot answer a request of this one."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closed = False

    async def start(self, local: LocalSend) -> None:
        self._local = local
        self._listener = asyncio.create_task(self._listen(), name="command-relay")
        async with asyncio.timeout(5.0):
            await self._subscribed.wait()

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks) + ([self._listener] if self._listener is not None else [])
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for future in self._waiting.values():
            if not future.done():
                future.set_result(CommandResult(CommandOutcome.FAILED))

    def holder(self, device_id: str) -> str | None:
        """The other replica holding the device, if the fleet view says one does."""
        return self._fleet.held_elsewhere(device_id)

    async def forward(self, replica: str, device_id: str, command: Command) -> CommandResult | None:
        """The owner's result; None when no replica of that name listens (it is gone): the caller
        then treats the device as offline here."""
        number = f"{self._nonce}-{next(self._numbers)}"
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        request = {
            "id": number,
            "from": self._replica,
            "device_id": device_id,
            "command": encode_command(command),
        }
        try:
            self._round_trips["command"] += 1
            try:
                receivers = await self._client.publish(requests_channel(replica), json.dumps(request))
            except (RedisError, OSError) as error:
                logger.warning("command for %s not forwarded to %s: %s", device_id, replica, error)
                return CommandResult(CommandOutcome.FAILED)
            if receivers == 0:
                return None
            try:
                async with asyncio.timeout(self._timeout):
                    return await future
            except TimeoutError:
                return CommandResult(CommandOutcome.FAILED)
        finally:
            del self._waiting[number]

    async def _listen(self) -> None:
        replies = replies_channel(self._replica)

        async def subscribed(_: bool) -> None:
            self._subscribed.set()

        async def handle(channel: str, data: bytes | str) -> None:
            body = json.loads(data)
            if channel == replies:
                self._answered(body)
                return
            missing = {"id", "from", "device_id", "command"} - set(body)
            if missing:
                raise KeyError(f"no {', '.join(sorted(missing))}")
            task = asyncio.create_task(self._serve(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        await follow(
            self._client,
            (requests_channel(self._replica), replies),
            handle,
            subscribed=subscribed,
            closed=lambda: self._closed,
            lost=lambda error: logger.warning("command relay interrupted: %s", error),
        )

    def _answered(self, body: dict[str, Any]) -> None:
        future = self._waiting.get(str(body["id"]))
        if future is None or future.done():
            return
        device = body.get("device")
        if device is not None:
            self._fleet.apply_remote(str(body["replica"]), device)
        future.set_result(decode_result(body["result"]))

    async def _serve(self, request: dict[str, Any]) -> None:
        """A command for one of this replica's devices: run as a local one, answered with the
        result and the device as it is after it."""
        assert self._local is not None
        device_id = str(request["device_id"])
        try:
            result = await self._local(device_id, decode_command(request["command"]))
        except (ValueError, KeyError) as error:
            logger.warning("a malformed forwarded command for %s: %s", device_id, error)
            result = CommandResult(CommandOutcome.INVALID)
        self._fleet.flush()  # the snapshot sent back includes the command's effect
        answer = {
            "id": request["id"],
            "replica": self._replica,
            "result": encode_result(result),
            "device": self._fleet.device(device_id) if self._fleet.connected(device_id) else None,
        }
        self._round_trips["command"] += 1
        with contextlib.suppress(RedisError, OSError):
            await self._client.publish(replies_channel(str(request["from"])), json.dumps(answer))
