"""HAProxy in front of the servers under test: the shipped config, run as a plain process.

The config's `server` lines are replaced by the replicas of the test (one, or three), and its
listener is bound to a free loopback port; everything else is the file deployments use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "haproxy.cfg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` consecutive free ports (a server with workers listens on port + index)."""
    for _ in range(100):
        first = free_port()
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def config_for(replicas: Sequence[str], shipped: str | None = None) -> str:
    """The shipped config with one `server` line per replica (HOST:PORT) instead of its own."""
    text = SHIPPED_CONFIG.read_text() if shipped is None else shipped
    lines = [line for line in text.splitlines() if not line.strip().startswith("server replica")]
    servers = [f'    server replica{n} "{address}"' for n, address in enumerate(replicas, start=1)]
    return "\n".join(lines + servers) + "\n"


@contextlib.contextmanager
def haproxy(replicas: Sequence[str], timeout: float = 10.0) -> Iterator[str]:
    """HAProxy on a free loopback port in front of ``replicas``; yields its address."""
    executable = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="acp-haproxy-") as scratch:
        config = Path(scratch) / "haproxy.cfg"
        config.write_text(config_for(replicas))
        log = (Path(scratch) / "haproxy.log").open("wb")
        env = {**os.environ, "ACP_PROXY_BIND": f"127.0.0.1:{port}"}
        process = subprocess.Popen(
            [executable, "-db", "-f", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_listening(port, process, timeout, Path(log.name))
            yield f"127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"haproxy did not listen on {port} within {timeout:g} s: {log.read_text()}")
