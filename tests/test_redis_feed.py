"""Following a Redis channel ends when the follower is cancelled, even if the cancel is swallowed
on the way (redis-py can swallow one that lands mid-command): asyncio.run must not wait forever."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from cluster.redis_io import follow
from tests.live import run
from tests.redis_server import redis_server


def test_a_follower_whose_cancel_is_swallowed_mid_message_still_ends_cancelled() -> None:
    with redis_server() as server:

        async def scenario() -> None:
            client = aioredis.Redis.from_url(server.url)
            handling = asyncio.Event()

            async def handle(channel: str, data: bytes | str) -> None:
                handling.set()
                with contextlib.suppress(asyncio.CancelledError):  # swallowed, as a library may
                    await asyncio.sleep(60)

            async def subscribed(first: bool) -> None:
                await client.publish("acp:test", b"hello")

            follower = asyncio.create_task(
                follow(
                    client,
                    ("acp:test",),
                    handle,
                    subscribed=subscribed,
                    closed=lambda: False,
                    lost=lambda error: None,
                )
            )
            await asyncio.wait_for(handling.wait(), 10)
            follower.cancel()
            done, _ = await asyncio.wait({follower}, timeout=5)
            assert follower in done, "the follower outlived its cancel"
            assert follower.cancelled()
            await client.aclose()

        run(scenario, timeout=30)
