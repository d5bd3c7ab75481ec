"""The two ways the cluster's parts talk to Redis in the background: following channels, and
writing queued changes in order, each retried until Redis takes it.

Both outlive a Redis outage: a feed subscribes again (and says so, so its owner can repair
what it missed), a write waits and is tried again. Neither stops for one bad message. What
waits is bounded (``Coalescing``): the latest write per key, at most so many keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

RETRY_DELAY = 0.5
"""Seconds before a lost subscription or a failed write is tried again."""

FAILURE_LOG_INTERVAL = 60.0

CONFIRM_TIMEOUT = 5.0
"""Seconds Redis may take to confirm a subscription."""

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
T_co = TypeVar("T_co", covariant=True)


class Waiting(Protocol[T_co]):
    """What ``write_in_order`` takes its items from: an ``asyncio.Queue`` or a ``Coalescing``."""

    async def get(self) -> T_co: ...

    def task_done(self) -> None: ...


class Coalescing(Generic[K, T]):
    """Writes waiting for Redis, at most one per key, at most ``limit`` keys: what an outage
    costs in memory is bounded by what there is to say, not by how long Redis is away.

    A newer item for a key replaces the waiting one and goes to the back, behind what it may
    depend on (an assignment behind the upload of its sound); items leave in that order. A new
    key beyond ``limit`` is dropped and counted (``dropped``).
    """

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[K, T] = OrderedDict()
        self._limit = limit
        self._taken = 0
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0
        """Items refused because ``limit`` keys were waiting."""
        self.replaced = 0
        """Items superseded by a newer one for their key before they were written."""

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def waiting(self, key: K) -> T | None:
        return self._items.get(key)

    def put(self, key: K, item: T) -> bool:
        """False if it was dropped (``limit`` other keys waiting)."""
        if key in self._items:
            del self._items[key]
            self.replaced += 1
        elif len(self._items) >= self._limit:
            self.dropped += 1
            return False
        self._items[key] = item
        self._idle.clear()
        self._arrived.set()
        return True

    async def get(self) -> T:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        self._taken += 1
        return self._items.popitem(last=False)[1]

    def take_all(self) -> list[T]:
        """Every waiting item at once (one ``task_done`` for them all)."""
        items = list(self._items.values())
        self._items.clear()
        self._taken += 1
        return items

    async def get_all(self) -> list[T]:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self.take_all()

    def task_done(self) -> None:
        self._taken -= 1
        if self._taken <= 0 and not self._items:
            self._idle.set()

    async def join(self) -> None:
        """Until nothing waits and nothing taken is still being written."""
        await self._idle.wait()


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def follow(
    client: aioredis.Redis,
    channels: tuple[str, ...],
    handle: Callable[[str, bytes | str], Awaitable[None]],
    *,
    subscribed: Callable[[bool], Awaitable[None]],
    closed: Callable[[], bool],
    lost: Callable[[BaseException], None],
    ready: asyncio.Future[None] | None = None,
) -> None:
    """Hand every message on ``channels`` to ``handle`` (its channel, its data) until ``closed``.

    ``subscribed(first)`` runs after each subscription is confirmed, before any message: the
    first, or one after a gap, in which messages were lost. It is where an owner reads its
    snapshot: subscribed first, a change published while the snapshot is read is not missed but
    waits in the subscription and is handed over after it, in order (never overwritten by the
    older snapshot). ``ready`` gets the first subscription's outcome: done once ``subscribed``
    returned, or the error that stopped it (the feed then goes on retrying).

    ``handle`` checks and counts what it refuses (``cluster.validation``); should it still fail
    on a message, that is logged (with its traceback, at most once a minute) and the feed goes
    on. A lost connection goes to ``lost`` and the subscription is made again after RETRY_DELAY.
    ``closed`` is checked at least once a second: redis-py can swallow a cancel that lands during
    a subscribe.
    """
    first = True
    last_failure = -math.inf
    task = asyncio.current_task()

    def ending() -> bool:
        # A cancel redis-py swallowed still counts: without this the loop outlived its cancel
        # and asyncio.run waited for it forever.
        return closed() or (task is not None and task.cancelling() > 0)

    while not ending():
        pubsub = client.pubsub()
        try:
            try:
                await pubsub.subscribe(*channels)
                early = await _confirmed(pubsub, len(channels))
                await subscribed(first)
            except BaseException as error:
                if ready is not None and not ready.done():
                    ready.set_exception(error)
                raise
            first = False
            if ready is not None and not ready.done():
                ready.set_result(None)
            while not ending():
                if early:
                    message = early.pop(0)
                else:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                channel = text(message["channel"])
                try:
                    await handle(channel, message["data"])
                except (RedisError, OSError):
                    raise
                except Exception:  # one message, not the feed
                    if time.monotonic() - last_failure >= FAILURE_LOG_INTERVAL:
                        last_failure = time.monotonic()
                        logger.exception("a message on %s could not be handled", channel)
        except (RedisError, OSError) as error:
            lost(error)
            await asyncio.sleep(RETRY_DELAY)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError  # the cancel redis-py swallowed, passed on


async def _confirmed(pubsub: aioredis.client.PubSub, channels: int) -> list[dict[str, Any]]:
    """Wait for Redis to confirm each subscription: only then is a message published afterwards
    sure to arrive (``subscribe`` only sends the command). Returns the messages that came on a
    channel confirmed earlier, to be handled first."""
    confirmed = 0
    early: list[dict[str, Any]] = []
    async with asyncio.timeout(CONFIRM_TIMEOUT):
        while confirmed < channels:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "subscribe":
                confirmed += 1
            elif message["type"] == "message":
                early.append(message)
    return early


async def write_in_order(
    queue: Waiting[T],
    write: Callable[[T], Awaitable[None]],
    *,
    failed: Callable[[T, BaseException], None],
    written: Callable[[], None] = lambda: None,
) -> None:
    """Write each queued item, one after another, each retried until Redis takes it (``failed``
    hears of every failed try); ``queue.join()`` waits until all are written."""
    while True:
        item = await queue.get()
        try:
            while True:
                try:
                    await write(item)
                    written()
                    break
                except (RedisError, OSError) as error:
                    failed(item, error)
                    await asyncio.sleep(RETRY_DELAY)
        finally:
            queue.task_done()
