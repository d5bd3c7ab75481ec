"""Starting a server under test as its own process, and reading its CPU, memory and threads from /proc.

The server logs to a file, never to a pipe we might not drain, so a chatty server can never stall
on a full pipe and distort what we measure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
ServerKind = Literal["project", "bare"]
SERVER_KINDS: tuple[ServerKind, ...] = ("project", "bare")
_SERVING = re.compile(r"serving on 127\.0\.0\.1:(\d+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds so far (user + system), resident KB, thread count."""

    t: float
    cpu_s: float
    rss_kb: int
    threads: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_proc(pid: int) -> ProcSample | None:
    """None once the process is gone: a sampler must not die with the thing it watches."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # After the ")" closing the command name: state is field 0, utime 11, stime 12, num_threads 17.
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    rss_kb = int(statm.split()[1]) * _PAGE_KB
    return ProcSample(time.monotonic(), cpu, rss_kb, int(fields[17]))


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (all cores, idle and iowait excluded)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


def established_connections(port: int) -> int:
    """TCP connections the server side holds on ``port``: proof that N devices made N connections."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 01 is ESTABLISHED.
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def project_supports(option: str) -> bool:
    """Whether the project server has a setting (e.g. state_db), so the bench works before and after it lands."""
    from actors.config import ServerConfig

    return option in ServerConfig.__dataclass_fields__


def server_command(
    kind: ServerKind, frame_ms: int, preroll_ms: int, modes: int, extra: list[str]
) -> list[str]:
    """Both servers on 127.0.0.1 with a free port; the project without metrics or a state file to skew it."""
    common = [
        "--port",
        "0",
        "--frame-ms",
        str(frame_ms),
        "--preroll-ms",
        str(preroll_ms),
        "--modes",
        str(modes),
    ]
    if kind == "bare":
        return [sys.executable, "-m", "bench.bare_server", "--host", "127.0.0.1", *common, *extra]
    project = [sys.executable, "-m", "actors.main", "--host", "127.0.0.1", "--metrics-port", "-1", *common]
    if project_supports("state_db"):
        project += ["--state-db", ":memory:"]
    return [*project, *extra]


class ServerProcess:
    """A server under test: started, waited for until it serves, stopped with SIGTERM (SIGKILL if stuck)."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.command = command
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=sink)
        self.pid = self.process.pid
        self.port = self._wait_serving(60.0)

    def _wait_serving(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = _SERVING.search(self.log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise RuntimeError(f"server did not start ({' '.join(self.command)}); see {self.log}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_problems(self) -> dict[str, int]:
        """WARNING and ERROR lines in the server's log: a run with errors is not a clean measurement."""
        text = self.log.read_text(errors="replace")
        return {level: text.count(f" {level} ") for level in ("WARNING", "ERROR", "CRITICAL")} | {
            "Traceback": text.count("Traceback")
        }
