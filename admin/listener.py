"""The operator API's accept loop: connections are taken only while the limits allow.

asyncio's own server accepts whatever arrives, so idle sockets can take every file descriptor
the process has, and at EMFILE its accept loop schedules a retry for every pending connection,
each logging a traceback (a flood of ``accept() out of system resource``). This loop stops
accepting at the cap (new connections wait in the kernel's backlog, holding no descriptor of
ours), closes at once a connection from an address that already holds its share, and at EMFILE
pauses for a second and says so in the log at most once a minute. While it is at the cap, a
connection that has waited ``PRESSURE_GRACE`` without sending a request yields its place: idle
sockets opened from many addresses are reaped in a second or two, not one header timeout per
cap's worth of them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ACCEPTS_PER_WAKE_UP = 64
"""Connections taken per readiness of the listening socket, so a burst cannot hold the loop."""

OUT_OF_DESCRIPTORS_PAUSE = 1.0
PRESSURE_GRACE = 1.0
"""At the cap, how long a connection may wait without sending a request before it yields its place."""
WARNING_INTERVAL = 60.0

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    max_per_client: int
    read_timeout: float
    """Seconds a connection has to send a request's headers; the longest pause in a body."""


class Slot:
    """One accepted connection's place, kept up to date by its protocol."""

    __slots__ = ("_client", "_listener", "_released", "close", "waiting_since")

    def __init__(self, listener: GatedListener, client: str) -> None:
        self._listener = listener
        self._client = client
        self._released = False
        self.waiting_since: float | None = None
        """Loop time since when the connection has been waiting for a request; None while one is in."""
        self.close: Callable[[], None] | None = None
        """Closes the connection: the protocol sets it once connected."""

    def release(self) -> None:
        """The connection is closed: its place is free (once, however often it is called)."""
        if not self._released:
            self._released = True
            self._listener._released(self, self._client)


ProtocolFactory = Callable[[Slot], asyncio.Protocol]
"""Makes the protocol of an accepted connection; it keeps the slot up to date and releases it once closed."""


class GatedListener:
    def __init__(self, sock: socket.socket, limits: ConnectionLimits, make_protocol: ProtocolFactory) -> None:
        self._sock = sock
        self._limits = limits
        self._make_protocol = make_protocol
        self._loop = asyncio.get_running_loop()
        self._per_client: Counter[str] = Counter()
        self._slots: set[Slot] = set()
        self._reaping: asyncio.TimerHandle | None = None
        self._reading = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        self._last_warning = -WARNING_INTERVAL
        self._out_of_descriptors = 0
        self.refused = 0
        """Connections closed at once because their address held its share."""
        self.reaped = 0
        """Connections closed at the cap because they had sent no request for PRESSURE_GRACE."""

    @property
    def open(self) -> int:
        return len(self._slots)

    def start(self) -> None:
        self._sock.setblocking(False)
        self._read()

    def close(self) -> None:
        """Stops accepting and closes the listening socket; open connections are the caller's."""
        self._closed = True
        self._pause()
        for timer in (self._resume, self._reaping):
            if timer is not None:
                timer.cancel()
        self._resume = self._reaping = None
        self._sock.close()

    def _read(self) -> None:
        if not self._reading and not self._closed and self._resume is None:
            self._reading = True
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE_UP):
            if self.open >= self._limits.max_connections:
                self._pause()  # the rest wait in the backlog until a connection closes
                self._reap_soon()
                return
            try:
                conn, address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    raise
                self._out_of_descriptors_for_now(error)
                return
            client = str(address[0]) if isinstance(address, tuple) else ""
            if self._per_client[client] >= self._limits.max_per_client:
                self.refused += 1
                conn.close()
                continue
            self._admit(conn, client)

    def _admit(self, conn: socket.socket, client: str) -> None:
        slot = Slot(self, client)
        self._slots.add(slot)
        self._per_client[client] += 1
        conn.setblocking(False)
        protocol = self._make_protocol(slot)

        async def connect() -> None:
            try:
                await self._loop.connect_accepted_socket(lambda: protocol, sock=conn)
            except OSError:
                conn.close()
                slot.release()

        self._loop.create_task(connect(), name="admin-accept")

    def _released(self, slot: Slot, client: str) -> None:
        self._slots.discard(slot)
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
        if self.open < self._limits.max_connections:
            self._read()

    def _reap_soon(self) -> None:
        if self._reaping is None and not self._closed:
            self._reaping = self._loop.call_later(PRESSURE_GRACE / 2, self._reap)

    def _reap(self) -> None:
        """At the cap: connections waiting for a request longer than the grace make room."""
        self._reaping = None
        if self.open < self._limits.max_connections:
            return
        since = self._loop.time() - PRESSURE_GRACE
        for slot in list(self._slots):
            if slot.waiting_since is not None and slot.waiting_since <= since and slot.close is not None:
                self.reaped += 1
                slot.close()
        self._reap_soon()  # their places free up as they close; look again

    def _out_of_descriptors_for_now(self, error: OSError) -> None:
        self._out_of_descriptors += 1
        self._pause()
        now = self._loop.time()
        if now - self._last_warning >= WARNING_INTERVAL:
            self._last_warning = now
            logger.warning(
                "the operator API cannot accept connections: %s (%d times since the last warning);"
                " it tries again every %g s",
                error.strerror,
                self._out_of_descriptors,
                OUT_OF_DESCRIPTORS_PAUSE,
            )
            self._out_of_descriptors = 0
        self._resume = self._loop.call_later(OUT_OF_DESCRIPTORS_PAUSE, self._resume_after_pause)

    def _resume_after_pause(self) -> None:
        self._resume = None
        if self.open < self._limits.max_connections:
            self._read()
