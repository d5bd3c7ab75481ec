"""Starting a server under test as its own process, and reading its CPU, memory and threads from /proc.

The server logs to a file, never to a pipe we might not drain, so a chatty server can never stall
on a full pipe and distort what we measure.

Pinning: by default the server runs on core 0 and the load generator (its coordinator and every
worker process) on the other cores (core 1 on a 2-core machine), so neither steals the other's
CPU and the server's figures are per core. ``Pinning`` says which cores each side gets;
``pinned_command`` prefixes a command with ``taskset -c CORES`` (or sets the affinity in the
child before it runs, where taskset is missing), and ``affinity_of`` reads back what every thread
of a process was actually allowed, for the record.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class Pinning:
    """Which cores the server and the load generator run on; ``enabled=False`` leaves both unpinned."""

    enabled: bool = True
    server_cores: tuple[int, ...] = (0,)
    loadgen_cores: tuple[int, ...] = (1,)

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "server_cores": list(self.server_cores) if self.enabled else None,
            "loadgen_cores": list(self.loadgen_cores) if self.enabled else None,
        }


def usable_cores() -> tuple[int, ...]:
    """The cores this process may run on (before any pinning of its own)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cores(text: str) -> tuple[int, ...]:
    """``0``, ``1,2`` or ``1-3`` (taskset's list syntax)."""
    cores: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cores.update(range(int(low), int(high) + 1))
        else:
            cores.add(int(part))
    return tuple(sorted(cores))


def plan_pinning(
    pin: bool, server_cores: Sequence[int] | None = None, loadgen_cores: Sequence[int] | None = None
) -> Pinning:
    """Server on core 0, load generator on every other usable core, unless told otherwise.

    With one usable core there is nothing to separate: the plan is unpinned (and says so).
    """
    if not pin:
        return Pinning(enabled=False, server_cores=(), loadgen_cores=())
    cores = usable_cores()
    server = tuple(server_cores) if server_cores else cores[:1]
    loadgen = tuple(loadgen_cores) if loadgen_cores else tuple(c for c in cores if c not in server)
    if not server or not loadgen:
        print("bench: fewer than 2 usable cores; running unpinned", file=sys.stderr, flush=True)
        return Pinning(enabled=False, server_cores=(), loadgen_cores=())
    if set(server) & set(loadgen):
        raise ValueError(f"server cores {server} and load-generator cores {loadgen} overlap")
    return Pinning(enabled=True, server_cores=server, loadgen_cores=loadgen)


def pinned_command(command: list[str], cores: Sequence[int]) -> tuple[list[str], Callable[[], None] | None]:
    """The command run on ``cores``: ``taskset -c`` (it execs, so the pid stays the command's), or a
    ``preexec_fn`` setting the affinity in the child when taskset is not installed."""
    if not cores:
        return command, None
    cpu_list = ",".join(str(core) for core in cores)
    taskset = shutil.which("taskset")
    if taskset is not None:
        return [taskset, "-c", cpu_list, *command], None
    chosen = set(cores)

    def pin() -> None:
        os.sched_setaffinity(0, chosen)

    return command, pin


def pin_self(cores: Sequence[int]) -> None:
    """Pin this process (the coordinator) to the load generator's cores; threads started later follow."""
    if cores:
        os.sched_setaffinity(0, set(cores))


def affinity_of(pid: int) -> list[int] | None:
    """Every core any thread of ``pid`` may run on (the union over its threads): what pinning achieved."""
    cores: set[int] = set()
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return None
    for tid in tids:
        try:
            cores.update(os.sched_getaffinity(tid))
        except (ProcessLookupError, PermissionError, OSError):
            continue
    return sorted(cores) if cores else None


def core_busy_seconds() -> dict[int, float]:
    """Per core, the CPU seconds used so far (idle and iowait excluded), from /proc/stat's cpuN lines."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        fields = [int(value) for value in values]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy[int(name[3:])] = (sum(fields[:8]) - idle) / _CLOCK_TICKS
    return busy


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
    """Both servers on 127.0.0.1 with a free port; the project without metrics or a state file to skew it.

    Only settings both servers share are passed (none of the project's own tuning, such as ``--max-streams``).
    """
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
    if project_supports("admin_port"):
        project += ["--admin-port", "-1"]
    return [*project, *extra]


class ServerProcess:
    """A server under test: started, waited for until it serves, stopped with SIGTERM (SIGKILL if stuck)."""

    def __init__(self, command: list[str], log: Path, cores: Sequence[int] = ()) -> None:
        self.command = command
        self.log = log
        self.cores = tuple(cores)
        log.parent.mkdir(parents=True, exist_ok=True)
        run, preexec = pinned_command(command, self.cores)
        with log.open("wb") as sink:
            self.process = subprocess.Popen(run, cwd=ROOT, stdout=sink, stderr=sink, preexec_fn=preexec)
        self.pid = self.process.pid
        self.port = self._wait_serving(60.0)
        self.affinity = affinity_of(self.pid)
        """The cores the serving process's threads may use, read back once it serves."""

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
