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
reply shows the device as it is now. It records in the audit log that it ran a relayed
command, for whom and at which replica's request (``cluster.relayed_audit``).

Requests and answers are sealed (``cluster.replica_auth``: HMAC under the replicas' secret, a
request id and a time, refused when stale or seen before) and checked
(``cluster.validation``) before anything is done: a forged or replayed request is not run, a
forged answer answers nothing; both are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from actors.messages import CommandOutcome, CommandResult
from actors.state import Command, PlaySound, SetMode, StopSound
from admin.access import Caller
from admin.fleetview import FleetView
from cluster import validation
from cluster.redis_io import follow
from cluster.rejections import MISDIRECTED, Rejections
from cluster.relayed_audit import RelayedAudit
from cluster.replica_auth import MessageSeal, read_sealed
from cluster.shared_store import PREFIX

logger = logging.getLogger(__name__)

TIMEOUT = 5.0
REQUEST = "relay-request"
REPLY = "relay-reply"
MAX_RELAY_BYTES = 64 * 1024
UNNAMED_CALLER = ("unnamed", "operator")
"""Who a command sent with no caller (a tool, a test) is recorded as."""


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


LocalSend = Callable[[str, Command], Awaitable[CommandResult]]


@dataclass
class _Waiting:
    replica: str
    """The replica asked: only its answer counts."""
    answer: asyncio.Future[CommandResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CommandRelay:
    """Sends commands to other replicas and serves theirs; ``start`` it once ``local`` exists."""

    def __init__(
        self,
        client: aioredis.Redis,
        replica: str,
        fleet: FleetView,
        timeout: float = TIMEOUT,
        round_trips: Counter[str] | None = None,
        *,
        seal: MessageSeal,
        rejections: Rejections,
        audit: RelayedAudit,
    ) -> None:
        self._client = client
        self._round_trips = round_trips if round_trips is not None else Counter()
        self._replica = replica
        self._fleet = fleet
        self._timeout = timeout
        self._seal = seal
        self._rejections = rejections
        self._audit = audit
        self._local: LocalSend | None = None
        self._waiting: dict[str, _Waiting] = {}
        """Request ids come from the seal: unique across this replica's restarts, so a late answer
        to an earlier run cannot answer a request of this one."""
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
        self._audit.flush()
        for waiting in self._waiting.values():
            if not waiting.answer.done():
                waiting.answer.set_result(CommandResult(CommandOutcome.FAILED))

    def holder(self, device_id: str) -> str | None:
        """The other replica holding the device, if the fleet view says one does."""
        return self._fleet.held_elsewhere(device_id)

    async def forward(
        self, replica: str, device_id: str, command: Command, caller: Caller | None = None
    ) -> CommandResult | None:
        """The owner's result; None when no replica of that name listens (it is gone): the caller
        then treats the device as offline here."""
        request_id = self._seal.new_id()
        waiting = self._waiting[request_id] = _Waiting(replica)
        who, role = UNNAMED_CALLER if caller is None else (caller.who, caller.role.value)
        request = {
            "to": replica,
            "device_id": device_id,
            "command": encode_command(command),
            "who": who,
            "role": role,
        }
        try:
            self._round_trips["command"] += 1
            try:
                receivers = await self._client.publish(
                    requests_channel(replica), self._seal.seal(REQUEST, request, request_id)
                )
            except (RedisError, OSError) as error:
                logger.warning("command for %s not forwarded to %s: %s", device_id, replica, error)
                return CommandResult(CommandOutcome.FAILED)
            if receivers == 0:
                return None
            try:
                async with asyncio.timeout(self._timeout):
                    return await waiting.answer
            except TimeoutError:
                return CommandResult(CommandOutcome.FAILED)
        finally:
            del self._waiting[request_id]

    async def _listen(self) -> None:
        replies = replies_channel(self._replica)

        async def subscribed(_: bool) -> None:
            self._subscribed.set()

        async def handle(channel: str, data: bytes | str) -> None:
            if channel == replies:
                self._answered(data)
            else:
                self._requested(data)

        await follow(
            self._client,
            (requests_channel(self._replica), replies),
            handle,
            subscribed=subscribed,
            closed=lambda: self._closed,
            lost=lambda error: logger.warning("command relay interrupted: %s", error),
        )

    def _requested(self, data: bytes | str) -> None:
        """A request, run only if it is genuine, fresh, new and for this replica."""
        opened = read_sealed(
            self._seal, self._rejections, REQUEST, data, MAX_RELAY_BYTES, validation.relay_request
        )
        if opened is None:
            return
        envelope, request = opened
        if request.to != self._replica:
            self._rejections.reject(REQUEST, MISDIRECTED, f"from {envelope.sender} for {request.to}")
            return
        task = asyncio.create_task(self._serve(envelope.sender, envelope.id, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answered(self, data: bytes | str) -> None:
        opened = read_sealed(
            self._seal, self._rejections, REPLY, data, MAX_RELAY_BYTES, validation.relay_reply
        )
        if opened is None:
            return
        envelope, reply = opened
        waiting = self._waiting.get(reply.request)
        if waiting is None or waiting.answer.done():
            logger.debug("a late answer from %s to request %s", envelope.sender, reply.request)
            return
        if reply.to != self._replica or envelope.sender != waiting.replica:
            self._rejections.reject(
                REPLY, MISDIRECTED, f"{envelope.sender} answered request {reply.request} of {waiting.replica}"
            )
            return
        if reply.device is not None:
            self._fleet.apply_remote(envelope.sender, reply.device)
        waiting.answer.set_result(reply.result)

    async def _serve(self, asker: str, request_id: str, request: validation.RelayRequest) -> None:
        """A command for one of this replica's devices: run as a local one, recorded in the audit
        log, answered with the result and the device as it is after it."""
        assert self._local is not None
        device_id = request.device_id
        result = await self._local(device_id, request.command)
        self._audit.ran(asker, request.who, request.role, device_id, encode_command(request.command), result)
        self._fleet.flush()  # the snapshot sent back includes the command's effect
        answer = {
            "to": asker,
            "request": request_id,
            "result": encode_result(result),
            "device": self._fleet.device(device_id) if self._fleet.connected(device_id) else None,
        }
        self._round_trips["command"] += 1
        with contextlib.suppress(RedisError, OSError):
            await self._client.publish(replies_channel(asker), self._seal.seal(REPLY, answer))
