"""Who may use the operator API, and what a web page the operator visits may not do.

An ASGI middleware in front of every route, so no route can forget it:

- ``Host`` must name this server (stops DNS rebinding);
- a CORS preflight is refused and no CORS header is ever sent;
- an action (anything but GET/HEAD) from a foreign ``Origin``, or with a content type a
  cross-site form can send without a preflight, is refused;
- with tokens configured, ``/api/`` needs a valid bearer token, checked in constant time,
  and a read-only token may only read.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


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


@dataclass(frozen=True)
class AccessPolicy:
    tokens: Tokens
    allowed_hosts: frozenset[str]
    """Lower-case host names (no port) a request's Host may carry."""
    allowed_origins: frozenset[str]
    """Extra origins (scheme://host[:port]) an action may come from."""
    upload_prefix: str = "/api/sounds/"
    """Where a request body is a file of its own type rather than JSON."""

    @classmethod
    def for_listener(
        cls, tokens: Tokens, bind_host: str, extra_hosts: Sequence[str], extra_origins: Sequence[str]
    ) -> AccessPolicy:
        hosts = {"localhost", "127.0.0.1", "::1"}
        bare = bind_host.strip("[]").lower()
        if bare not in ("", "0.0.0.0", "::"):
            hosts.add(bare)
        hosts.update(host.strip().strip("[]").lower() for host in extra_hosts if host.strip())
        origins = {origin.strip().rstrip("/").lower() for origin in extra_origins if origin.strip()}
        return cls(tokens, frozenset(hosts), frozenset(origins))

    def host_allowed(self, host: str) -> bool:
        return _host_name(host) in self.allowed_hosts

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        scheme, separator, rest = origin.partition("://")
        return bool(separator) and scheme in ("http", "https") and self.host_allowed(rest)


def _host_name(host: str) -> str:
    """``example:8080`` -> ``example``; ``[::1]:8080`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AccessGuard:
    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self._app = app
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        refusal, caller = self._check(scope)
        if refusal is not None:
            status, detail, headers = refusal
            await _refuse(send, status, detail, headers)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self._app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[tuple[int, str, list[tuple[bytes, bytes]]] | None, Caller]:
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
            if origin is not None and not policy.origin_allowed(origin):
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
            upload = method == "PUT" and path.startswith(policy.upload_prefix)
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
