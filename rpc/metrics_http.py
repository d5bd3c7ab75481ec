"""The metrics port: Prometheus's WSGI app on its own thread, held to a few connections that must ask quickly.

prometheus_client's ``start_http_server`` gives every connection a thread that waits for its
request line with no timeout. The port answers anyone, so idle sockets to it took every file
descriptor (152 of them at a limit of 160) and gRPC stopped accepting devices; at EMFILE its
accept loop spun, taking CPU from the event loop. Here a connection must send its request within
``READ_TIMEOUT``, at most ``MAX_CONNECTIONS`` are served at once (more are closed at accept, and
count in the descriptor reserve, ``rpc.descriptors``), and at EMFILE the accept loop pauses.
It stays a thread of its own, so metrics can be scraped while the event loop is overloaded.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 8
READ_TIMEOUT = 5.0
"""Seconds each read of a request may wait (StreamRequestHandler's socket timeout)."""
OUT_OF_DESCRIPTORS_PAUSE = 1.0

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is not worth a log line."""


class _CappedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _QuietHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in _OUT_OF_RESOURCES:
                time.sleep(OUT_OF_DESCRIPTORS_PAUSE)  # this server's own thread: no spinning
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that was too slow or went away is not our error (socketserver prints a traceback)."""
        error = sys.exc_info()[1]
        if not isinstance(error, (TimeoutError, ConnectionError)):
            logger.warning("a metrics request from %s failed", client_address[0], exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


def start_metrics_server(port: int, host: str, registry: CollectorRegistry) -> WSGIServer:
    """Binds now (a port taken fails the start) and serves on a daemon thread."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server = _CappedServer((str(address[0]), port), family)
    server.set_app(make_wsgi_app(registry))
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
