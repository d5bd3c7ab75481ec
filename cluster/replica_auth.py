"""What replicas say to each other through Redis, signed: a writer without the secret cannot forge it.

Every message a replica publishes (a relayed command and its answer, a claim, an operator's
change, fleet snapshots, sound changes) and each snapshot it keeps in Redis is sealed:

    <sender>\\n<HMAC-SHA256 hex>\\n<payload JSON: kind, from, id, at, body>

The HMAC is over the payload (with a fixed context) under the replicas' shared secret. A
reader verifies it before parsing anything, then checks that the payload is of the kind the
channel carries and from the sender it names, that it is fresh (``at`` within
``FRESHNESS_SECONDS`` of the reader's clock, so clocks must agree that well: NTP does) and
that its id was not seen before: a forged message is refused, and so is a genuine one replayed.
Stored snapshots are read long after they were written, so for them only the HMAC and the
sender are checked.

Without a secret (a store on this machine only: see ``actors.config``) the same format is
used under an empty key: nothing is authenticated then, but replays are still refused.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import json
import math
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cluster import validation
from cluster.rejections import MALFORMED, REPLAYED, STALE, UNAUTHENTICATED, Rejections

CONTEXT = b"acp replica message v1\n"
FRESHNESS_SECONDS = 30.0
MIN_SECRET_BYTES = 16
MAC_HEX = 64


class Refused(Exception):
    """A message not to act on; ``reason`` is one of ``cluster.rejections``' reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    sender: str
    id: str
    at: float
    body: Any


def load_replica_secret(path: Path) -> bytes:
    """A start-up error naming the file (never its content) when it is unreadable or too short."""
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        raise ValueError(f"cannot read the replicas' shared secret {path}: {error.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the replicas' shared secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def sender_of(data: bytes | str) -> str:
    """The sender a sealed message names, unverified: enough for a replica to skip its own."""
    head = data[:200]
    if isinstance(head, bytes):
        return head.partition(b"\n")[0].decode("utf-8", "replace")
    return head.partition("\n")[0]


class MessageSeal:
    """Seals this replica's messages and opens the others'; remembers ids seen while they are fresh."""

    def __init__(
        self,
        replica: str,
        secret: bytes | None,
        clock: Callable[[], float] = time.time,
        freshness: float = FRESHNESS_SECONDS,
    ) -> None:
        self.replica = replica
        self.authenticated = secret is not None
        self._key = secret or b""
        self._clock = clock
        self._freshness = freshness
        self._prefix = f"{secrets.token_hex(6)}-"
        self._numbers = itertools.count(1)
        self._seen: dict[tuple[str, str], float] = {}
        self._expiries: collections.deque[tuple[float, tuple[str, str]]] = collections.deque()

    def new_id(self) -> str:
        """Unique across this replica's restarts (the random prefix) and within one (the number)."""
        return f"{self._prefix}{next(self._numbers)}"

    def seal(self, kind: str, body: Any, message_id: str | None = None) -> str:
        """``message_id``: one the caller made (``new_id``) to match an answer to; else a new one."""
        return self.seal_json(kind, json.dumps(body, separators=(",", ":")), message_id)

    def seal_json(self, kind: str, body: str, message_id: str | None = None) -> str:
        """``body`` already encoded as JSON (a snapshot encoded once for every place it goes)."""
        head = json.dumps(
            {"kind": kind, "from": self.replica, "id": message_id or self.new_id(), "at": self._clock()},
            separators=(",", ":"),
        )
        payload = f'{head[:-1]},"body":{body}}}'
        return f"{self.replica}\n{self._mac(payload.encode())}\n{payload}"

    def open(
        self, kinds: str | Collection[str], data: bytes | str, limit: int, *, stored: bool = False
    ) -> Envelope:
        """The envelope of a genuine, fresh, first-seen message of one of ``kinds``; else ``Refused``.

        ``stored``: a value kept in Redis, read at any age: its HMAC and sender are checked, not its
        freshness or whether it was read before."""
        kind = kinds if isinstance(kinds, str) else "/".join(sorted(kinds))
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if len(raw) > limit:
            raise Refused(MALFORMED, f"{len(raw)} bytes, more than the {limit} a {kind} may have")
        header, _, rest = raw.partition(b"\n")
        mac, _, payload = rest.partition(b"\n")
        if len(mac) != MAC_HEX or not hmac.compare_digest(mac, self._mac(payload).encode()):
            raise Refused(UNAUTHENTICATED, f"a {kind} without a valid HMAC (header {header[:40]!r})")
        try:
            parsed = validation.json_object(payload, limit)
            envelope = _envelope(parsed)
        except validation.Malformed as error:
            raise Refused(MALFORMED, f"a signed {kind} that is not well formed: {error}") from None
        if envelope.kind not in ({kinds} if isinstance(kinds, str) else kinds):
            raise Refused(MALFORMED, f"a {envelope.kind[:30]!r} where a {kind} belongs")
        kind = envelope.kind
        if envelope.sender.encode() != header:
            raise Refused(MALFORMED, f"a {kind} whose header names another sender than {envelope.sender!r}")
        if stored:
            return envelope
        now = self._clock()
        if abs(now - envelope.at) > self._freshness:
            raise Refused(STALE, f"a {kind} from {envelope.sender} made {now - envelope.at:.0f} s ago")
        self._forget_expired(now)
        key = (envelope.sender, envelope.id)
        if key in self._seen:
            raise Refused(REPLAYED, f"a {kind} from {envelope.sender} seen before (id {envelope.id})")
        expiry = envelope.at + self._freshness
        self._seen[key] = expiry
        self._expiries.append((max(expiry, now), key))
        return envelope

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, CONTEXT + payload, hashlib.sha256).hexdigest()

    def _forget_expired(self, now: float) -> None:
        """Ids are kept as long as their message would be fresh: a replay after that is stale."""
        expiries = self._expiries
        while expiries and expiries[0][0] < now:
            _, key = expiries.popleft()
            if self._seen.get(key, math.inf) < now:
                del self._seen[key]


def _envelope(payload: dict[str, Any]) -> Envelope:
    if set(payload) != {"kind", "from", "id", "at", "body"}:
        raise validation.Malformed("not an envelope of kind, from, id, at and body")
    kind, message_id = payload["kind"], payload["id"]
    if not isinstance(kind, str) or len(kind) > 64:
        raise validation.Malformed("kind is not a short text")
    return Envelope(
        kind,
        validation.replica_name(payload["from"]),
        validation.short_text(message_id, "id", 64),
        validation.seconds(payload["at"], "at"),
        payload["body"],
    )


_Body = TypeVar("_Body")


def read_sealed(
    seal: MessageSeal,
    rejections: Rejections,
    kind: str,
    data: bytes | str,
    limit: int,
    check: Callable[[object], _Body],
    *,
    counted_as: str | None = None,
    where: str = "",
    stored: bool = False,
) -> tuple[Envelope, _Body] | None:
    """A sealed message of ``kind`` opened and its body checked by ``check``; or None, the refusal
    counted (as ``counted_as``, by default the kind) and logged. ``where`` says where a stored value
    was read from."""
    counted_as = counted_as or kind
    try:
        envelope = seal.open(kind, data, limit, stored=stored)
        body = check(envelope.body)
    except Refused as refused:
        rejections.reject(counted_as, refused.reason, f"{where}{refused}")
        return None
    except validation.Malformed as error:
        rejections.reject(counted_as, MALFORMED, f"{where or f'from {envelope.sender}: '}{error}")
        return None
    return envelope, body
