"""uvicorn's HTTP/1.1 protocol with a deadline on reading every request.

uvicorn times a connection only between requests (``timeout_keep_alive``, armed once a reply
has gone out): a connection that never sends a request, or stops halfway through its headers or
body, holds its socket forever. Here a request's headers must arrive within ``read_timeout`` of
the connection opening (or of the previous reply), and a body may not pause longer than that;
then the connection is closed. While the app works on a request (a long upload decode, a stream
of live events) no deadline runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class DeadlineHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        *,
        read_timeout: float,
        on_closed: Callable[[], None],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._read_timeout = read_timeout
        self._on_closed: Callable[[], None] | None = on_closed
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed()
        super().connection_lost(exc)

    # The parser's callbacks: headers complete, then the body arrives in pieces.

    def on_headers_complete(self) -> None:
        self._arm()  # from here on, the body may not pause for longer than the timeout
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()  # the app's turn: no deadline while it works
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined:  # the next request's headers are due within the timeout
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server holds the reading back, not the client
            self._arm()
            return
        self.transport.close()
