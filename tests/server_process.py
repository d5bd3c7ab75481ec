"""The server as a separate process (``python -m actors.main``), for tests of signals, restarts and logs."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_ARGS = (
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--metrics-port",
    "-1",
    "--admin-port",
    "-1",
    "--state-db",
    ":memory:",
)


class ServerProcess:
    """Logs go to a file, never a pipe, so a chatty server can never block on a full pipe."""

    def __init__(self, log: Path, *args: str, descriptor_limit: int | None = None) -> None:
        """``descriptor_limit``: the process's RLIMIT_NOFILE, soft and hard (so it cannot raise it)."""
        self.log = log

        def limit_descriptors() -> None:
            if descriptor_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (descriptor_limit, descriptor_limit))

        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "actors.main", *BASE_ARGS, *args],
                cwd=ROOT,
                stderr=sink,
                preexec_fn=limit_descriptors if descriptor_limit is not None else None,
            )
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = re.search(r"serving on 127\.0\.0\.1:(\d+)", self.log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise AssertionError(f"the server did not start:\n{self.log.read_text(errors='replace')}")

    @property
    def admin_port(self) -> int:
        match = re.search(r"operator API and dashboard on http://127\.0\.0\.1:(\d+)/", self.output)
        assert match is not None, "the server has no operator API"
        return int(match.group(1))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``signum`` and wait for the exit; a server that hangs is killed and fails the test."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not exit within {timeout} s") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
