"""The admin listener's lifecycle: uvicorn serving the operator app on the server's own loop.

Started after the gRPC server and stopped last, so the operator sees the drain happen.
uvicorn's ``serve()`` would install its own signal handlers over the server's; its parts
(startup, the tick loop, shutdown) are run here in order instead. Connections are accepted by
``GatedListener`` (limits on connections, per client address) and served by
``DeadlineHttpProtocol`` (a deadline on reading each request), not by uvicorn's own listener,
so idle sockets cannot take the descriptors devices need.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from starlette.types import ASGIApp

from admin.listener import ConnectionLimits, GatedListener, Slot
from admin.protocol import DeadlineHttpProtocol

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 1
"""How long open requests get to finish once the admin listener stops."""

BACKLOG = 128
"""Connections the kernel holds for us while the listener is at its cap."""


class AdminServer:
    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._config = uvicorn.Config(
            app,
            http=DeadlineHttpProtocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            server_header=False,
        )
        self._host = host.strip("[]")
        self._port = port
        self._server: uvicorn.Server | None = None
        self._listener: GatedListener | None = None
        self._ticks: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self, limits: ConnectionLimits) -> int:
        """Binds now, so a port already taken fails the server's start, naming the port."""
        config = self._config
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            sock = socket.create_server(
                (self._host, self._port), family=family, dualstack_ipv6=self._host == "::", backlog=BACKLOG
            )
        except OSError as error:
            raise OSError(
                f"cannot listen for the admin API on {self._host}:{self._port}: {error.strerror}"
            ) from None
        # Replies go out as a header write and a body write: with Nagle's algorithm the body
        # waits for the client's delayed ACK of the headers (40 ms). Accepted sockets inherit this.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await server.startup(sockets=[])  # no listener of uvicorn's own: connections come from ours
        loop = asyncio.get_running_loop()

        def make_protocol(slot: Slot) -> asyncio.Protocol:
            return DeadlineHttpProtocol(
                config,
                server.server_state,
                server.lifespan.state,
                read_timeout=limits.read_timeout,
                slot=slot,
                _loop=loop,
            )

        listener = GatedListener(sock, limits, make_protocol)
        listener.start()
        self._server, self._listener = server, listener
        self.port = int(sock.getsockname()[1])
        self._ticks = loop.create_task(server.main_loop(), name="admin-http")
        return self.port

    @property
    def open_connections(self) -> int:
        return 0 if self._listener is None else self._listener.open

    async def stop(self) -> None:
        server, listener, ticks = self._server, self._listener, self._ticks
        if server is None or listener is None or ticks is None:
            return
        self._server = self._listener = self._ticks = None
        server.should_exit = True
        await ticks
        listener.close()
        await server.shutdown()
