"""The supervisor as the event loop sees it: awaitable requests that never block the loop.

Pykka futures block in ``get()``; instead each request carries a reply callable that
resolves an asyncio future through ``call_soon_threadsafe``. A reply that does not come in
time fails its future (a timer handle, cheaper than ``asyncio.timeout`` on the press path);
never ``asyncio.wait_for``: on Python 3.11 ``wait_for`` returns a result that arrives together
with a cancellation and swallows the cancellation, which left handlers of cancelled calls
waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pykka

from actors.messages import (
    OpenStream,
    Refusal,
    RouteButton,
    StreamClosed,
    StreamGrant,
    StreamKind,
    StreamRefused,
)
from actors.state import ButtonInput
from actors.store import StoreFull, StoreUnavailable
from rpc.loopcall import call_on_loop

T = TypeVar("T")


class Claims(Protocol):
    """Ownership of devices among replicas (``cluster.shared_store``): a device's streams are
    served only once this server owns it."""

    def owns(self, device_id: str) -> bool: ...

    async def claim(self, device_id: str) -> None:
        """Raises StoreUnavailable when ownership cannot be decided now, and StoreFull for a new
        device beyond the cap on device records."""
        ...


class FleetGateway:
    """Requests to the supervisor, from the loop's side.

    Connect storms: an open waits for the supervisor behind every open already asked. When
    the oldest of those has waited longer than ``connect_queue_limit``, the server is not
    keeping up, and a new open is refused at once (RESOURCE_EXHAUSTED: retry later) rather
    than served seconds late along with everyone else.
    """

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        loop: asyncio.AbstractEventLoop,
        ack_timeout: float = 5.0,
        connect_queue_limit: float = 0.5,
        claims: Claims | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._claims = claims
        self._loop = loop
        self._ack_timeout = ack_timeout
        self._connect_queue_limit = connect_queue_limit
        self._opening: dict[int, float] = {}
        """Opens asked and not yet answered, oldest first: request number -> when asked."""
        self._requests = itertools.count()

    def shedding(self) -> bool:
        """True while the oldest unanswered open has waited longer than the limit."""
        for asked in self._opening.values():
            return self._loop.time() - asked > self._connect_queue_limit
        return False

    async def open_stream(self, device_id: str, peer: str, kind: StreamKind) -> StreamGrant | StreamRefused:
        """A grant that arrives after the caller gave up (the call was cancelled) is closed at once,
        or the supervisor would count a stream that nobody serves."""
        if self.shedding():
            return StreamRefused(
                "the server is busy connecting other devices; reconnect in a moment", Refusal.BUSY
            )
        if self._claims is not None and not self._claims.owns(device_id):
            try:
                await self._claims.claim(device_id)
            except StoreFull as error:
                return StreamRefused(str(error), Refusal.FULL)
            except StoreUnavailable as error:
                return StreamRefused(str(error), Refusal.STORE_DOWN)
        future: asyncio.Future[StreamGrant | StreamRefused] = self._loop.create_future()
        loop = self._loop
        request = next(self._requests)
        self._opening[request] = loop.time()

        def granted(result: StreamGrant | StreamRefused) -> None:
            self._opening.pop(request, None)
            if future.done():
                if isinstance(result, StreamGrant):
                    self.close_stream(device_id, result, kind)
                return
            future.set_result(result)

        def reply(result: StreamGrant | StreamRefused) -> None:
            call_on_loop(loop, granted, result)

        handed_over = False
        try:
            self._supervisor.tell(OpenStream(device_id, peer, kind, reply))
            async with asyncio.timeout(30.0):
                result = await future
            handed_over = True
            return result
        finally:
            # Given up (cancelled, timed out, or the handler closed with GeneratorExit, which
            # leaves the future pending): a grant now or later is ours to close.
            if not handed_over:
                self._opening.pop(request, None)
                if not future.done():
                    future.cancel()
                elif not future.cancelled() and isinstance(grant := future.result(), StreamGrant):
                    self.close_stream(device_id, grant, kind)

    def close_stream(self, device_id: str, grant: StreamGrant, kind: StreamKind) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._supervisor.tell(StreamClosed(device_id, grant.session, grant.stream, kind))

    async def press(self, device_id: str, session: int, event: ButtonInput, received_at: float) -> bool:
        """False when the device actor refused the event or could not answer in time."""
        try:
            return await self._request(
                lambda reply: RouteButton(device_id, session, event, reply, received_at),
                timeout=self._ack_timeout,
            )
        except (TimeoutError, pykka.ActorDeadError):
            return False

    async def _request(self, make: Callable[[Callable[[T], None]], object], timeout: float) -> T:
        future: asyncio.Future[T] = self._loop.create_future()
        loop = self._loop

        def reply(value: T) -> None:
            call_on_loop(loop, _resolve, future, value)

        self._supervisor.tell(make(reply))
        expiry = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            expiry.cancel()


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _expire(future: asyncio.Future[T]) -> None:
    """A timeout that fails the reply, not the waiting task: nothing to cancel, nothing to swallow."""
    if not future.done():
        future.set_exception(TimeoutError())
