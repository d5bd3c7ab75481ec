"""A real redis-server for the tests: a plain process on a free loopback port, stopped by its pid.

Append-only file with ``appendfsync always``, as deployments run it, so a test can restart
(or SIGKILL) it and find every write it acknowledged. ``sentinel_group``: a primary, its replica
and three redis-sentinel processes watching them, for the failover tests.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis

from tests.proxy import free_port

SERVICE = "acp"
"""The name the sentinels know the primary by."""


class RedisServer:
    executable = "redis-server"

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        """``extra``: more redis-server options (an ACL file, a TLS port)."""
        self.directory = directory
        self.port = port or free_port()
        self.extra = tuple(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        executable = shutil.which(self.executable) or f"/usr/bin/{self.executable}"
        return [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
                *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.executable} exited with {self.process.returncode}: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as probe,
            ):
                probe.sendall(b"PING\r\n")
                if probe.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise TimeoutError(
            f"{self.executable} did not answer on {self.port} within {timeout:g} s: {self.log()}"
        )

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(how)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="acp-redis-") as scratch:
        server = RedisServer(Path(scratch), extra=extra)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class RedisSentinel(RedisServer):
    """A redis-sentinel watching ``primary``; quick to call it down and to fail over (1 s each)."""

    executable = "redis-sentinel"

    def __init__(self, directory: Path, primary: RedisServer, down_after_ms: int = 1000) -> None:
        super().__init__(directory)
        self.watched_port = primary.port
        self.down_after_ms = down_after_ms
        self.id = secrets.token_hex(20)
        self.known: list[str] = []
        """Config lines naming the replica and the other sentinels, so none waits to discover them."""

    def command(self) -> list[str]:
        config = self.directory / "sentinel.conf"
        if not config.exists():  # sentinel rewrites it with what it learns: keep that on a restart
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"logfile {self.directory / 'redis.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.watched_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 1000\n"
                f"sentinel myid {self.id}\n" + "".join(f"{line}\n" for line in self.known)
            )
        executable = shutil.which(self.executable) or f"/usr/bin/{self.executable}"
        return [executable, str(config)]

    def primary_port(self) -> int:
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def knows(self) -> tuple[int, int]:
        """How many replicas and other sentinels this sentinel knows of."""
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            state = client.sentinel_master(SERVICE)
        return int(state["num-slaves"]), int(state["num-other-sentinels"])


class SentinelGroup:
    """A primary, its replicas, and three sentinels; ``url`` reaches the primary through them.

    With saves waiting for one replica (``WAIT 1``), writes resume after a failover only if the
    promoted replica has a replica of its own: two replicas, or the old primary back."""

    def __init__(self, directory: Path, replicas: int = 1) -> None:
        quick_sync = ("--repl-diskless-sync-delay", "0")  # a replica (re)joins at once, not after 5 s
        self.servers: list[RedisServer] = []
        for number in range(1 + replicas):
            (directory / f"redis{number}").mkdir()
            self.servers.append(RedisServer(directory / f"redis{number}", extra=quick_sync))
        for replica in self.servers[1:]:
            replica.extra = (*quick_sync, "--replicaof", "127.0.0.1", str(self.servers[0].port))
        for name in ("s1", "s2", "s3"):
            (directory / name).mkdir()
        self.sentinels = [RedisSentinel(directory / name, self.servers[0]) for name in ("s1", "s2", "s3")]
        for sentinel in self.sentinels:
            sentinel.known = [
                f"sentinel known-replica {SERVICE} 127.0.0.1 {replica.port}" for replica in self.servers[1:]
            ] + [
                f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other.port} {other.id}"
                for other in self.sentinels
                if other is not sentinel
            ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self, timeout: float = 20.0) -> None:
        for server in self.servers:
            server.start()
        replicas = len(self.servers) - 1
        self.wait_until(
            lambda: self.replicas_in_sync(self.servers[0]) == replicas, timeout, "the replicas synced"
        )
        for sentinel in self.sentinels:
            sentinel.start()

        def watching() -> bool:
            known = [sentinel.knows() for sentinel in self.sentinels]
            return all(seen >= replicas and others >= 2 for seen, others in known)

        self.wait_until(watching, timeout, "every sentinel knows the replicas and the other sentinels")

    def primary(self) -> RedisServer:
        """The server the sentinels name as primary now."""
        port = self.sentinels[0].primary_port()
        return next(server for server in self.servers if server.port == port)

    def replica(self) -> RedisServer:
        """A replica of the primary (the first that is running)."""
        primary = self.primary()
        return next(server for server in self.servers if server is not primary and server.process is not None)

    @staticmethod
    def replicas_in_sync(server: RedisServer) -> int:
        with redis.Redis(port=server.port, socket_timeout=2) as client:
            info = client.info("replication")
        return sum(
            1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online"
        )

    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError, StopIteration):
                if condition():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"not within {timeout:g} s: {what}")

    def stop(self) -> None:
        for process in (*self.sentinels, *self.servers):
            process.stop()


@contextlib.contextmanager
def sentinel_group(replicas: int = 1) -> Iterator[SentinelGroup]:
    with tempfile.TemporaryDirectory(prefix="acp-sentinel-") as scratch:
        group = SentinelGroup(Path(scratch), replicas)
        try:
            group.start()
            yield group
        finally:
            group.stop()
