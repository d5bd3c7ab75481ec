"""Operators' commands, from the loop's side: awaitable, routed by the supervisor like a press.

The supervisor answers through a reply callable (it never blocks on its caller); the reply
resolves an asyncio future on the loop. Bulk commands go out in batches, each after the
previous one has been answered, so 10,000 of them interleave with device traffic instead
of filling the actors' inboxes at once.

Among replicas, a command for a device another replica holds goes to that replica (a
``Forwarder``: ``cluster.relay``) and comes back with its result; everything else is decided
here, by this replica's supervisor (an offline device's desired mode goes into the shared store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pykka

from actors.messages import CommandOutcome, CommandResult, RemovalOutcome, RemoveDevice, RouteCommand
from actors.state import Command
from admin.access import Caller
from rpc.loopcall import call_on_loop

BATCH = 25
"""Commands in flight at once in a bulk action: small enough that a press arriving meanwhile
waits behind a few of them at the supervisor (about 10 ms), not a hundred; a thousand devices
still start within half a second."""

BATCH_PAUSE_MAX = 0.05
"""The longest pause between two batches of a bulk command."""

COMMAND_TIMEOUT = 5.0

T = TypeVar("T")


class Forwarder(Protocol):
    def holder(self, device_id: str) -> str | None:
        """The other replica holding the device's streams, if one does."""
        ...

    async def forward(
        self, replica: str, device_id: str, command: Command, caller: Caller | None = None
    ) -> CommandResult | None:
        """The holder's result; None if that replica is gone. ``caller``: who asked, for the
        holder's audit log."""
        ...


class FleetCommands:
    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        loop: asyncio.AbstractEventLoop,
        timeout: float = COMMAND_TIMEOUT,
        batch: int = BATCH,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._loop = loop
        self._timeout = timeout
        self._batch = batch
        self.forwarder = forwarder

    async def send(self, device_id: str, command: Command, caller: Caller | None = None) -> CommandResult:
        """To the replica holding the device, or decided here."""
        if self.forwarder is not None:
            replica = self.forwarder.holder(device_id)
            if replica is not None:
                result = await self.forwarder.forward(replica, device_id, command, caller)
                if result is not None:
                    return result
        return await self.send_here(device_id, command)

    async def send_here(self, device_id: str, command: Command) -> CommandResult:
        """FAILED when the device's actor cannot answer in time (or the server is stopping)."""
        return await self._ask(
            lambda reply: RouteCommand(device_id, command, reply), CommandResult(CommandOutcome.FAILED)
        )

    async def remove(self, device_id: str) -> RemovalOutcome | None:
        """The device's record removed here, unless it is connected here; None without an answer
        in time. (A device held by another replica is that replica's: the store keeps it.)"""
        return await self._ask(lambda reply: RemoveDevice(device_id, reply), None)

    async def _ask(self, make: Callable[[Callable[[T], None]], object], failed: T) -> T:
        """The supervisor's answer to the message ``make`` builds around a reply; ``failed`` if it
        cannot answer in time (or the server is stopping)."""
        future: asyncio.Future[T] = self._loop.create_future()
        loop = self._loop

        def reply(result: T) -> None:
            call_on_loop(loop, _resolve, future, result)

        try:
            self._supervisor.tell(make(reply))
        except pykka.ActorDeadError:
            return failed
        expiry = loop.call_later(self._timeout, _resolve, future, failed)
        try:
            return await future
        finally:
            expiry.cancel()

    async def send_many(
        self, device_ids: Sequence[str], command: Callable[[str], Command], caller: Caller | None = None
    ) -> dict[str, CommandResult]:
        results: dict[str, CommandResult] = {}
        for start in range(0, len(device_ids), self._batch):
            batch = device_ids[start : start + self._batch]
            began = self._loop.time()
            answers = await asyncio.gather(
                *(self.send(device_id, command(device_id), caller) for device_id in batch)
            )
            results.update(zip(batch, answers, strict=True))
            if start + self._batch < len(device_ids):
                # As long again for everything else: the loop is never saturated by the fan-out,
                # so a press arriving meanwhile waits behind one batch, not behind all of them.
                await asyncio.sleep(min(self._loop.time() - began, BATCH_PAUSE_MAX))
        return results


def _resolve(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)
