"""uvicorn's HTTP/1.1 protocol with a deadline on reading every request.

uvicorn times a connection only between requests (``timeout_keep_alive``, armed once a reply
has gone out): a connection that never sends a request, or stops halfway through its headers or
body, holds its socket forever. Here a request's headers must arrive within ``read_timeout`` of
the connection opening (or of the previous reply), and a body may not pause longer than that;
then the connection is closed. While the app works on a request (a long upload decode, a stream
of live events) no deadline runs.

A connection closed while the client is still sending a body it was answered before (a 413, say)
is closed lingering, as nginx does: our side of it is shut first, what still arrives is dropped
unread for up to ``LINGER_SECONDS``, then it is closed. Closing a socket with unread data makes the
kernel reset the connection, and a client busy writing its body would lose the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from admin.listener import Slot

MAX_HEADER_BYTES = 64 * 1024
"""The most a request line and its headers may take; more is refused with 431 and the connection
closed. uvicorn and httptools set no limit: without one, a client could make the server hold
hundreds of MB of header per connection within the header timeout, before any token is checked."""

LINGER_SECONDS = 2.0
"""How long the rest of an answered request's body is read and dropped before the connection is closed."""


class DeadlineHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        *,
        read_timeout: float,
        slot: Slot,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._read_timeout = read_timeout
        self._slot = slot
        self._deadline: asyncio.TimerHandle | None = None
        self._socket: asyncio.Transport | None = None
        self._lingering = False
        self._reading_headers = True
        self._header_bytes = 0
        """Bytes read while this request's headers were incomplete (a huge line is caught here)."""
        self._parsed_header_bytes = 0
        """Bytes of this request's URL and headers the parser has handed over (many small ones in one read)."""
        self._headers_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._socket = transport
        self.transport = _ClosesLingering(transport, self)
        self.flow = FlowControl(self.transport)
        self._slot.close = self._drop
        self._slot.waiting_since = self.loop.time()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # a lingering connection's bytes are dropped unread
            return
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted per piece read, so the parser holds at most the limit and one read beyond it.
        if self._reading_headers and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse_headers()

    def send_400_response(self, msg: str) -> None:
        if self._headers_too_large:  # the parser stopped at our signal, not at a malformed request
            self._refuse_headers()
        else:
            super().send_400_response(msg)

    def _refuse_headers(self) -> None:
        socket = self._socket
        if socket is None or socket.is_closing():
            return
        self._reading_headers = False
        if self.cycle is None or self.cycle.response_complete:  # no answer of an earlier request under way
            detail = b"the request's headers are larger than the limit of %d bytes" % MAX_HEADER_BYTES
            socket.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(detail), detail)
            )
        if not socket.can_write_eof():
            socket.close()
            return
        # Closed lingering: the client may still be sending its headers, and closing with them
        # unread would reset the connection before it reads the answer.
        self._lingering = True
        socket.write_eof()
        self._disarm()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self._expired)

    def eof_received(self) -> None:
        if self._lingering and self._socket is not None:
            self._socket.close()  # the client has sent all it will: nothing is left to reset

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._slot.release()
        super().connection_lost(exc)

    # The parser's callbacks: headers complete, then the body arrives in pieces.

    def on_message_begin(self) -> None:
        self._parsed_header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header_bytes(self, size: int) -> None:
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large = True
            raise _HeadersTooLarge  # stops the parser: its feed_data raises, and we answer 431

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._slot.waiting_since = None
        self._arm()  # from here on, the body may not pause for longer than the timeout
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_headers, self._header_bytes = True, 0  # the next request's headers count afresh
        self._disarm()  # the app's turn: no deadline while it works
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined:  # the next request's headers are due within the timeout
            self._slot.waiting_since = self.loop.time()
            self._arm()

    def _arm(self) -> None:
        if self._lingering:  # its own deadline runs
            return
        self._disarm()
        self._deadline = self.loop.call_later(self._read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._socket is None or self._socket.is_closing():
            return
        if self.flow.read_paused and not self._lingering:  # the server holds the reading back
            self._arm()
            return
        self._socket.close()

    def _drop(self) -> None:
        """Closed to make room (the listener is at its cap), while it waits for a request."""
        if self._socket is not None and not self._socket.is_closing():
            self._socket.close()

    def _body_unread(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected

    def _close(self) -> None:
        """Lingering if the request's body is still arriving; at once otherwise."""
        socket = self._socket
        if socket is None or socket.is_closing():
            return
        if self._lingering or not self._body_unread() or not socket.can_write_eof():
            socket.close()
            return
        self._lingering = True
        socket.write_eof()  # the answer goes out, then our FIN
        self.flow.resume_reading()
        self._disarm()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self._expired)


class _HeadersTooLarge(Exception):
    pass


class _ClosesLingering(asyncio.Transport):
    """The connection's transport as uvicorn sees it: the same, but ``close`` may linger."""

    def __init__(self, socket: asyncio.Transport, protocol: DeadlineHttpProtocol) -> None:
        super().__init__()
        self._socket = socket
        self._protocol = protocol

    def close(self) -> None:
        self._protocol._close()

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._socket.is_closing()

    def abort(self) -> None:
        self._socket.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._socket.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._socket.writelines(list_of_data)

    def write_eof(self) -> None:
        self._socket.write_eof()

    def can_write_eof(self) -> bool:
        return self._socket.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._socket.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._socket.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._socket.pause_reading()

    def resume_reading(self) -> None:
        self._socket.resume_reading()

    def is_reading(self) -> bool:
        return self._socket.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._socket.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._socket.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._socket.get_protocol()
