"""``--workers N``: N server processes sharing the gRPC port, under one parent that keeps them running.

gRPC's own way to use every core of a host (its ``multiprocessing`` example): each worker is a
whole server (its own actors, event loop and audio pacing) bound to the same port with
SO_REUSEPORT, so the kernel spreads connections over them and one device's connection stays in
one process. They share device state through the state DB. The parent serves nothing: it starts
the workers, restarts one that dies (a few times a minute at most, then gives up and stops the
rest), and on SIGTERM or SIGINT passes the signal on and waits for every worker to drain.

Each worker's metrics and operator API listen on their own port: the configured port plus the
worker's index (0 and -1 are passed on as they are).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from actors.config import ServerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    """Restarts of one worker allowed within ``window``; one more and the parent gives up."""
    window: float = 60.0


def may_restart(deaths: Sequence[float], now: float, policy: RestartPolicy) -> bool:
    """Whether a worker that died at these times (the latest included) may start again."""
    recent = [at for at in deaths if now - at <= policy.window]
    return len(recent) <= policy.max_restarts


def shifted_port(port: int, index: int) -> int:
    """Worker ``index``'s port for a listener configured at ``port`` (0: free, -1: off)."""
    return port if port <= 0 else port + index


_PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the kernel sends this process when its parent dies."""


def exit_with_master() -> None:
    """Have the kernel send this worker SIGTERM (a drain, as from the master) when the master dies.

    A master killed outright (SIGKILL, the OOM killer) cannot pass a signal on; without this its
    workers would serve on, unsupervised, beside the workers of the master started in its place.
    A master that died before this call leaves the worker to init: it stops at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("cannot ask to be stopped with the master: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def worker_command(argv: Sequence[str], config: ServerConfig, index: int) -> list[str]:
    """The parent's own command line, made into worker ``index``'s (later flags win in argparse)."""
    return [
        sys.executable,
        "-m",
        "actors.main",
        *argv,
        "--workers=1",
        f"--worker-index={index}",
        f"--metrics-port={shifted_port(config.metrics_port, index)}",
        f"--admin-port={shifted_port(config.admin_port, index)}",
    ]


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    deaths: list[float] = field(default_factory=list)


class GaveUp(RuntimeError):
    """A worker kept dying: restarting it again would only hide why."""


class WorkerPool:
    def __init__(
        self,
        config: ServerConfig,
        argv: Sequence[str],
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._argv = list(argv)
        self._policy = policy or RestartPolicy()
        self._clock = clock
        self._workers: list[_Worker] = []

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def start(self) -> None:
        for index in range(self._config.workers):
            self._workers.append(_Worker(index, self._spawn(index)))
        logger.info(
            "%d workers share port %d: pids %s",
            len(self._workers),
            self._config.port,
            ", ".join(map(str, self.pids)),
        )

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(self._argv, self._config, index))

    def watch(self) -> None:
        """Restart each worker found dead; raises GaveUp when one died too often."""
        for worker in self._workers:
            code = worker.process.poll()
            if code is None:
                continue
            now = self._clock()
            worker.deaths.append(now)
            if not may_restart(worker.deaths, now, self._policy):
                raise GaveUp(
                    f"worker {worker.index} died {len(worker.deaths)} times within"
                    f" {self._policy.window:g} s (last exit status {code})"
                )
            worker.process = self._spawn(worker.index)
            logger.warning(
                "worker %d (exit status %d) restarted as pid %d", worker.index, code, worker.process.pid
            )

    def stop(self, grace: float) -> None:
        """SIGTERM to every worker (each drains for ``grace``), then SIGKILL to any still running."""
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = self._clock() + grace + 10.0
        for worker in self._workers:
            try:
                worker.process.wait(max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()
                worker.process.wait()


def run_workers(config: ServerConfig, argv: Sequence[str]) -> int:
    """Until SIGTERM/SIGINT (0) or until a worker keeps dying (1)."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    pool = WorkerPool(config, argv)
    pool.start()
    status = 0
    try:
        while not stopping.wait(0.2):
            pool.watch()
    except GaveUp as error:
        logger.error("%s; stopping the others", error)
        status = 1
    finally:
        pool.stop(config.grace)
    return status
