"""How a replica reaches the shared store: its URL, the password kept out of it, TLS, and the
URL as it may be shown.

The password may be in the URL (``redis://USER:PASSWORD@HOST:PORT/DB``) or, better, in a file
(``--store-password-file``), so it is in neither the process's arguments nor its environment.
``rediss://`` connects with TLS, checked against ``--store-tls-ca-file`` when one is given.
``redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE`` asks Redis Sentinel for the service's primary
(``cluster.sentinel``), so a failover moves the replicas to the new primary; the password, the ACL
user and ``rediss+sentinel://``'s TLS apply to the data nodes.
Whatever is logged or put in an error shows the URL through ``redacted``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from cluster.sentinel import primary_client, sentinel_target
from cluster.validation import REPLICA_NAME

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
SCHEMES = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)
TLS_SCHEMES = ("rediss://", "rediss+sentinel://")
HIDDEN = "***"
_SECRET_QUERY = re.compile(r"([?&](?:password|pass|pwd)=)[^&#]*", re.IGNORECASE)


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***``; the user name stays (it says which ACL user).

    Works on any text with a ``scheme://user:password@`` or a ``password=`` query: a URL too
    malformed to parse is still shown without its secret."""
    shown = _SECRET_QUERY.sub(rf"\g<1>{HIDDEN}", url)
    scheme, separator, rest = shown.partition("://")
    if not separator:
        return shown
    end = len(rest)
    for stop in ("?", "#"):
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    at = rest.rfind("@", 0, end)
    if at == -1:
        return shown
    user, colon, _ = rest[:at].partition(":")
    userinfo = f"{user}:{HIDDEN}" if colon else user
    return f"{scheme}://{userinfo}{rest[at:]}"


def on_this_machine(url: str) -> bool:
    """A unix socket, or a host name or address of the loopback interface."""
    if url.startswith("unix://"):
        return True
    if url.startswith(SENTINEL_SCHEMES):
        try:
            return all(_loopback(host) for host, _ in sentinel_target(url).sentinels)
        except ValueError:
            return False
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return _loopback(host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.password) or bool(re.search(r"[?&]password=[^&#]", parts.query))


def check_store_settings(
    url: str,
    password_file: Path | None,
    tls_ca_file: Path | None,
    secret_file: Path | None,
    replica_id: str,
) -> None:
    """The store's settings agree with each other (files are read at start-up, not here).

    A store beyond this machine needs the replicas' shared secret: whoever can write to such a
    Redis could otherwise command every device. On one machine it may be left out (anyone who
    can reach a loopback Redis is a user of that machine already); the server warns then."""
    if replica_id and not REPLICA_NAME.fullmatch(replica_id):
        raise ValueError(
            f"the replica id {replica_id[:40]!r} must be 1..128 of the characters a-z A-Z 0-9 . _ : / @ -"
        )
    if not url:
        if password_file is not None or tls_ca_file is not None or secret_file is not None:
            raise ValueError("the store's password, CA and secret files need a store (--store)")
        return
    if not url.startswith(SCHEMES):
        raise ValueError(
            f"the store must be a redis://HOST:PORT/DB (or rediss://, unix://,"
            f" redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE) URL, not {redacted(url)!r};"
            " leave it empty for the SQLite file --state-db"
        )
    if tls_ca_file is not None and not url.startswith(TLS_SCHEMES):
        raise ValueError(
            "a CA file for the store (--store-tls-ca-file) needs a rediss:// URL (or rediss+sentinel://)"
        )
    if url.startswith(SENTINEL_SCHEMES):
        sentinel_target(url)
    if password_file is not None and has_password(url):
        raise ValueError(
            f"the store's password is given twice: in {redacted(url)} and in --store-password-file"
        )
    if secret_file is None and not on_this_machine(url):
        raise ValueError(
            f"the store {redacted(url)} is beyond this machine: give the replicas' shared secret"
            " (--store-secret-file), or anyone who can write to it could command every device"
        )


def read_password(path: Path) -> str:
    """The file's first line; a start-up error names the file, never its content."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read the shared store's password file {path}: {reason}") from None
    if not lines or not lines[0]:
        raise ValueError(f"the shared store's password file {path} is empty")
    return lines[0]


@dataclass(frozen=True)
class StoreAccess:
    url: str
    password: str | None = field(default=None, repr=False)
    """From ``--store-password-file``; None: the URL's, if it has one."""
    tls_ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.password is not None and has_password(self.url):
            raise ValueError(
                f"the shared store's password is given twice: in {redacted(self.url)} and in a file"
            )

    @classmethod
    def from_files(cls, url: str, password_file: Path | None, tls_ca_file: Path | None) -> StoreAccess:
        return cls(url, None if password_file is None else read_password(password_file), tls_ca_file)

    def __str__(self) -> str:
        return redacted(self.url)

    @property
    def authenticates(self) -> bool:
        """Whether the store is asked for a password (from the file or the URL)."""
        return self.password is not None or has_password(self.url)

    @property
    def on_this_machine(self) -> bool:
        return on_this_machine(self.url)

    def client(self, **options: Any) -> aioredis.Redis:
        """A connection pool; ``options`` as redis-py's (timeouts, health checks). Through
        Sentinel, the pool asks for the primary at each new connection (``cluster.sentinel``)."""
        if self.password is not None:
            options["password"] = self.password
        if self.tls_ca_file is not None:
            options["ssl_ca_certs"] = str(self.tls_ca_file)
        if self.url.startswith(SENTINEL_SCHEMES):
            return primary_client(sentinel_target(self.url), **options)
        return aioredis.Redis.from_url(self.url, **options)
