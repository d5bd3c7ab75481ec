"""Who may use the operator API, and what a web page the operator visits may not do.

An ASGI middleware in front of every route, so no route can forget it:

- ``Host`` must be given once and name this server (stops DNS rebinding);
- a CORS preflight is refused and no CORS header is ever sent;
- an action (anything but GET/HEAD) from an ``Origin`` other than the request's own (scheme,
  host and port) or a configured one, or with a content type a cross-site form can send without
  a preflight, is refused;
- with tokens configured, ``/api/`` needs a valid bearer token, checked in constant time,
  and a read-only token may only read;
- a JSON body larger than the limit is refused with 413 before the app reads it
  (``admin.bodies``); an upload's body is the upload route's to bound.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from admin.bodies import BodyTooLarge, ClientLeft, ReadToTheEnd, announced_body, read_within, replaying


class Role(enum.Enum):
    OPERATOR = "operator"
    READONLY = "readonly"


@dataclass(frozen=True, slots=True)
class Caller:
    who: str
    role: Role


LOCAL_OPERATOR = Caller("local", Role.OPERATOR)
"""Every caller when no token is configured (the listener then binds loopback only)."""

FORM_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
"""What an HTML form (or a no-preflight fetch) can send cross-site."""

READ_METHODS = ("GET", "HEAD")

MAX_JSON_BYTES = 1_000_000
"""The largest JSON body read by default (``--admin-max-json-mb``)."""

DEFAULT_PORTS = {"http": 80, "https": 443}


class TokenFileError(ValueError):
    """A token file cannot be read or holds no token; raised at start-up, naming the file."""


@dataclass(frozen=True, slots=True)
class _Token:
    digest: bytes
    caller: Caller


class Tokens:
    """Bearer tokens and whom they stand for. Only their SHA-256 digests are kept."""

    def __init__(self, tokens: Iterable[tuple[str, Caller]] = ()) -> None:
        self._tokens = tuple(_Token(_digest(token), caller) for token, caller in tokens)

    @classmethod
    def from_files(cls, operator: Path | None, readonly: Path | None) -> Tokens:
        pairs: list[tuple[str, Caller]] = []
        for path, role in ((operator, Role.OPERATOR), (readonly, Role.READONLY)):
            if path is not None:
                pairs.extend(read_token_file(path, role))
        return cls(pairs)

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def caller(self, presented: str) -> Caller | None:
        """Every configured token is compared, match or not: the time taken says nothing."""
        digest = _digest(presented)
        found: Caller | None = None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.digest) and found is None:
                found = token.caller
        return found


def read_token_file(path: Path, role: Role) -> list[tuple[str, Caller]]:
    """One token per non-empty line, ``NAME:TOKEN`` or a bare token (named by its digest)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise TokenFileError(f"cannot read the token file {path}: {error.strerror}") from None
    pairs: list[tuple[str, Caller]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, token = line.partition(":")
        if not separator:
            name, token = f"{role.value}-{_digest(line).hex()[:8]}", line
        if len(token) < 16:
            raise TokenFileError(f"a token in {path} is shorter than 16 characters")
        pairs.append((token, Caller(name.strip(), role)))
    if not pairs:
        raise TokenFileError(f"the token file {path} holds no token")
    return pairs


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class HostPort:
    name: str
    """Lower case; an IPv6 address without its brackets."""
    port: int | None


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    name: str
    port: int
    """The scheme's default port when the origin names none."""


_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str) -> HostPort | None:
    """``name``, ``name:port``, ``[ipv6]`` or ``[ipv6]:port``, and nothing else (None)."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] is not None else None
    if port is not None and port > 65535:
        return None
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return None
        return HostPort(match["ipv6"], port)
    return HostPort(match["name"], port)


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` with scheme http or https (a trailing slash is tolerated)."""
    scheme, separator, rest = value.strip().lower().partition("://")
    if not separator or scheme not in DEFAULT_PORTS:
        return None
    host = parse_host(rest.removesuffix("/"))
    if host is None:
        return None
    return Origin(scheme, host.name, host.port if host.port is not None else DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class AccessPolicy:
    tokens: Tokens
    allowed_hosts: frozenset[str]
    """Lower-case host names (no port) a request's Host may carry."""
    allowed_origins: frozenset[Origin]
    """Extra origins an action may come from, besides the request's own."""
    upload_prefix: str = "/api/sounds/"
    """Where a request body is a file of its own type rather than JSON."""
    max_json_bytes: int = MAX_JSON_BYTES

    @classmethod
    def for_listener(
        cls,
        tokens: Tokens,
        bind_host: str,
        extra_hosts: Sequence[str],
        extra_origins: Sequence[str],
        max_json_bytes: int = MAX_JSON_BYTES,
    ) -> AccessPolicy:
        hosts = {"localhost", "127.0.0.1", "::1"}
        bare = bind_host.strip("[]").lower()
        if bare not in ("", "0.0.0.0", "::"):
            hosts.add(bare)
        hosts.update(host.strip().strip("[]").lower() for host in extra_hosts if host.strip())
        origins = set()
        for text in extra_origins:
            if text.strip():
                origin = parse_origin(text)
                if origin is None:
                    raise ValueError(f"{text.strip()!r} is not an origin (scheme://host[:port])")
                origins.add(origin)
        return cls(tokens, frozenset(hosts), frozenset(origins), max_json_bytes=max_json_bytes)

    def host_allowed(self, host: str) -> bool:
        parsed = parse_host(host)
        return parsed is not None and parsed.name in self.allowed_hosts

    def origin_allowed(self, origin: str, host: str) -> bool:
        """The request's own origin (the scheme's host and port are those of its ``Host``), or a
        configured one."""
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self.allowed_origins:
            return True
        own = parse_host(host)
        if own is None or not self.host_allowed(host):
            return False
        own_port = own.port if own.port is not None else DEFAULT_PORTS[parsed.scheme]
        return (parsed.name, parsed.port) == (own.name, own_port)

    def is_upload(self, method: str, path: str) -> bool:
        return method == "PUT" and path.startswith(self.upload_prefix)


class AccessGuard:
    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self._app = app
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = announced_body(scope["headers"])
        read = ReadToTheEnd(body)
        receive, send = read.receive(receive), read.send(send)
        refusal, caller = self._check(scope)
        if refusal is not None:
            status, detail, headers = refusal
            await _refuse(send, status, detail, headers)
            return
        scope.setdefault("state", {})["caller"] = caller
        policy = self._policy
        # Only the API takes bodies: elsewhere (the dashboard's pages, no token asked) the app
        # answers without one, and the connection closes rather than wait for a body trickling in.
        reads_body = scope["path"].startswith("/api/") and not policy.is_upload(
            scope["method"], scope["path"]
        )
        if body.present and reads_body:
            too_large = f"the body is larger than the limit of {policy.max_json_bytes:,} bytes"
            if body.length is not None and body.length > policy.max_json_bytes:
                await _refuse(send, 413, too_large, [])
                return
            try:
                receive = replaying(await read_within(receive, policy.max_json_bytes), receive)
            except BodyTooLarge:
                await _refuse(send, 413, too_large, [])
                return
            except ClientLeft:
                return
        await self._app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[tuple[int, str, list[tuple[bytes, bytes]]] | None, Caller]:
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if len(hosts) > 1:
            return (400, "the request has more than one Host header", []), LOCAL_OPERATOR
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        method: str = scope["method"]
        path: str = scope["path"]
        policy = self._policy
        host = headers.get("host", "")
        if not policy.host_allowed(host):
            return (
                403,
                f"Host {host!r} is not this server's name (see --admin-allowed-hosts)",
                [],
            ), LOCAL_OPERATOR
        if method == "OPTIONS":
            return (403, "cross-origin requests are not allowed", []), LOCAL_OPERATOR
        acting = method not in READ_METHODS
        if acting:
            origin = headers.get("origin")
            if origin is not None and not policy.origin_allowed(origin, host):
                return (
                    (
                        403,
                        f"actions from the origin {origin!r} are not allowed (see --admin-allowed-origins)",
                        [],
                    ),
                    LOCAL_OPERATOR,
                )
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type in FORM_CONTENT_TYPES:
                return (
                    (415, f"content type {content_type!r} is not accepted: send application/json", []),
                    LOCAL_OPERATOR,
                )
            upload = policy.is_upload(method, path)
            if method in ("POST", "PUT") and not upload and content_type != "application/json":
                shown = content_type or "none"
                return (415, f"the body must be application/json (it was {shown})", []), LOCAL_OPERATOR
        caller = LOCAL_OPERATOR
        if policy.tokens.required and path.startswith("/api/"):
            scheme, _, presented = headers.get("authorization", "").partition(" ")
            found = policy.tokens.caller(presented.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                challenge = [(b"www-authenticate", b'Bearer realm="audio-control-plane"')]
                why = (
                    "a valid bearer token is required"
                    if presented
                    else "an Authorization: Bearer token is required"
                )
                return (401, why, challenge), LOCAL_OPERATOR
            caller = found
            if acting and caller.role is Role.READONLY:
                return (403, f"the token of {caller.who!r} is read-only", []), caller
        return None, caller


async def _refuse(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    response_headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


def caller_of(state: Any) -> Caller:
    """The caller the guard put in the request's state."""
    caller = getattr(state, "caller", None)
    return caller if isinstance(caller, Caller) else LOCAL_OPERATOR
