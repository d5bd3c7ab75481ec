"""The shared store through Redis Sentinel: the sentinels name the primary, and every new
connection asks them again, so after a failover the replicas (and their change-feed
subscriptions, which reconnect) follow the new primary instead of the dead one.

``redis+sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``: USER and PASSWORD
(or ``--store-password-file``) are the data nodes' ACL user; ``rediss+sentinel://`` reaches the
data nodes over TLS. The sentinels themselves are asked without a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

SENTINEL_TIMEOUT = 1.0
"""Seconds a sentinel may take to answer before the next one is asked."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def sentinel_target(url: str) -> SentinelTarget:
    """The URL's parts; ValueError (without the password) when it is malformed."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError("a Sentinel store URL starts with redis+sentinel:// or rediss+sentinel://")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    userinfo, at, hosts_and_path = rest.rpartition("@")
    if not at:
        hosts_and_path = rest
    hosts, _, path = hosts_and_path.partition("/")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels: list[tuple[str, int]] = []
    for entry in hosts.split(","):
        host, colon, port = entry.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a sentinel must be HOST:PORT, not {entry[:60]!r}")
        sentinels.append((host, int(port)))
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("a Sentinel store URL names the service after the sentinels: .../SERVICE")
    if db and not db.isdigit():
        raise ValueError(f"the database after the service must be a number, not {db[:20]!r}")
    return SentinelTarget(
        tuple(sentinels), unquote(service), int(db or 0), username, password, scheme == "rediss+sentinel"
    )


class _PrimaryClient(aioredis.Redis):
    """The primary's client that also closes the sentinels' connections when it closes."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def primary_client(target: SentinelTarget, **options: Any) -> aioredis.Redis:
    """A client of the service's primary; ``options`` as redis-py's, for the data nodes."""
    if target.password is not None:
        options.setdefault("password", target.password)
    if target.username is not None:
        options["username"] = target.username
    if target.tls:
        options["ssl"] = True
    options["db"] = target.db
    timeouts = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(target.service, redis_class=_PrimaryClient, **options)
    assert isinstance(client, _PrimaryClient)
    client.sentinels = sentinel
    return client
