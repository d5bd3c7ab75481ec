"""Load generator: N simulated devices, each on its own TCP connection, spread over worker processes.

    python -m bench.loadgen --scenario streaming --devices 500 --processes 2 --duration 20
    python -m bench.loadgen --scenario idle --devices 1000 --probes 2 --server bare
    python -m bench.loadgen --scenario soak --devices 500 --duration 1800 --sample-interval 5 --out soak.json

It starts the server under test itself (``--server project`` or ``bare``) unless ``--target`` points
at one already running (give ``--server-pid`` to sample it). Each worker process
(``bench.fleet``) connects its devices, then all start the scenario at one shared instant; the
coordinator samples the server's and the workers' CPU, RSS and threads from /proc meanwhile, and
merges everything into one JSON report. Probe devices (``--probes``) run in a worker of their own,
pressing Mode, Play and Stop in turn, so their latencies are not queued behind a busy fleet worker.

Scenarios: connect-storm, idle, mode-presses, play-stop, streaming, soak (see ``bench.fleet``).
Lateness of packet i of a recording is arrival_i - (arrival_0 + i * frame); an underrun is a
packet later than the 60 ms jitter buffer, counted over all packets and over those past the pre-roll.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from bench.fleet import Spec
from bench.proc import (
    ROOT,
    SERVER_KINDS,
    ProcSample,
    ServerKind,
    ServerProcess,
    established_connections,
    machine_busy_seconds,
    read_proc,
    server_command,
)
from bench.stats import cdf_points, per_second, summary

SCENARIOS = ("connect-storm", "idle", "mode-presses", "play-stop", "streaming", "soak")
LATENCIES = ("press_to_ack", "press_to_led", "play_to_first_packet", "stop_to_end")


@dataclass
class LoadOptions:
    scenario: str = "idle"
    devices: int = 10
    processes: int = 1
    duration: float = 10.0
    server: ServerKind = "project"
    target: str | None = None
    server_pid: int | None = None
    server_args: list[str] = field(default_factory=list)
    server_log: str = "bench/results/server.log"
    frame_ms: int = 20
    preroll_ms: int = 150
    modes: int = 5
    jitter_buffer_ms: float = 60.0
    decode_sample: float = 0.05
    probes: int = 0
    probe_interval: float = 0.5
    rate: float = 1.0
    ramp: float = 1.0
    think: float = 5.0
    reconnect_prob: float = 0.05
    connect_concurrency: int = 100
    sample_interval: float = 2.0
    raw: bool = False
    seed: int = 1


class Sampler:
    """Reads /proc of the server and the workers every interval on a thread of its own."""

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: dict[str, list[ProcSample]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> dict[str, ProcSample | None]:
        taken = {name: read_proc(pid) for name, pid in self.pids.items()}
        for name, reading in taken.items():
            if reading is not None:
                self.samples[name].append(reading)
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


class Worker:
    """One ``bench.fleet`` process, driven line by line."""

    def __init__(self, spec: Spec, spec_file: Path) -> None:
        spec_file.write_text(json.dumps(asdict(spec)))
        self.spec = spec
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", str(spec_file)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def expect(self, word: str) -> str:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline().strip()
        if not line.startswith(word):
            self.process.kill()
            raise RuntimeError(f"worker {self.spec.worker}: expected {word!r}, got {line!r} (see its stderr)")
        return line[len(word) :].strip()

    def tell(self, line: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def result(self) -> dict[str, Any]:
        self.process.wait(60)
        report: dict[str, Any] = json.loads(Path(self.spec.out).read_text())
        lateness = np.load(report.pop("lateness_file"))
        report["lateness"] = lateness
        return report


def run_load(options: LoadOptions) -> dict[str, Any]:
    """Run one scenario against one server and return the merged report."""
    if options.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {options.scenario!r}; one of {SCENARIOS}")
    server: ServerProcess | None = None
    pid = options.server_pid
    target = options.target
    if target is None:
        command = server_command(
            options.server, options.frame_ms, options.preroll_ms, options.modes, options.server_args
        )
        server = ServerProcess(command, Path(options.server_log))
        pid, target = server.pid, f"127.0.0.1:{server.port}"
        print(f"loadgen: {options.server} server pid {pid} serving on {target}", file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="loadgen-") as scratch:
            return _drive(options, target, pid, server, Path(scratch))
    finally:
        if server is not None:
            server.stop()


def _drive(
    options: LoadOptions, target: str, pid: int | None, server: ServerProcess | None, scratch: Path
) -> dict[str, Any]:
    started = time.monotonic()
    base = read_proc(pid) if pid is not None else None
    workers = []
    processes = max(1, min(options.processes, options.devices))
    for number in range(processes):
        count = options.devices // processes + (1 if number < options.devices % processes else 0)
        workers.append(
            Worker(_spec(options, target, str(number), count, False, scratch), scratch / f"{number}.json")
        )
    if options.probes > 0 and options.scenario != "connect-storm":
        workers.append(Worker(_spec(options, target, "p", options.probes, True, scratch), scratch / "p.json"))
    pids = {f"worker-{worker.spec.worker}": worker.process.pid for worker in workers}
    if pid is not None:
        pids["server"] = pid
    sampler = Sampler(pids, options.sample_interval)
    ready = [json.loads(worker.expect("ready")) for worker in workers]
    connected_at = time.monotonic()
    port = int(target.rsplit(":", 1)[1])
    connections_at_ready = established_connections(port) if target.startswith("127.0.0.1:") else None
    sampler.start()
    go = time.monotonic() + 0.3
    for worker in workers:
        worker.tell(f"go {go!r}")
    time.sleep(max(0.0, go - time.monotonic()))
    at_go = sampler.sample()
    busy_go, self_go = machine_busy_seconds(), time.process_time()
    for worker in workers:
        worker.expect("finished")
    at_end = sampler.sample()
    busy_end, self_end = machine_busy_seconds(), time.process_time()
    finished = time.monotonic()
    sampler.stop()
    for worker in workers:
        worker.tell("close")
    reports = [worker.result() for worker in workers]
    returncode = server.stop() if server is not None else None
    report = _merge(options, reports, ready, go)
    report.update(
        target=target,
        server_kind=options.server if server is not None else "external",
        server_command=server.command if server is not None else None,
        server_log=str(server.log) if server is not None else None,
        server_log_problems=server.log_problems() if server is not None else None,
        server_exit_code=returncode,
        connect_phase_s=round(connected_at - started, 3),
        tcp_connections_at_ready=connections_at_ready,
        window_s=round(finished - go, 3),
    )
    usage = report["usage"] = _usage(sampler, base, at_go, at_end, report, go)
    # Whatever else ran on the machine meanwhile (other jobs, the kernel's softirqs) skews the figures.
    machine = busy_end - busy_go
    ours = usage.get("server", {}).get("cpu_s", 0.0) + usage["loadgen"]["cpu_s"] + (self_end - self_go)
    window = report["window_s"]
    usage["machine"] = {
        "cores": os.cpu_count(),
        "busy_percent_of_one_core": round(100 * machine / window, 1) if window > 0 else None,
        "others_percent_of_one_core": round(100 * (machine - ours) / window, 1) if window > 0 else None,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
    }
    return report


def _spec(options: LoadOptions, target: str, worker: str, devices: int, probe: bool, scratch: Path) -> Spec:
    return Spec(
        worker=worker,
        target=target,
        devices=devices,
        scenario=options.scenario,
        duration=options.duration,
        frame_ms=options.frame_ms,
        preroll_ms=options.preroll_ms,
        modes=options.modes,
        out=str(scratch / f"result-{worker}.json"),
        jitter_buffer_ms=options.jitter_buffer_ms,
        decode_sample=options.decode_sample,
        rate=options.rate,
        ramp=options.ramp,
        think=options.think,
        reconnect_prob=options.reconnect_prob,
        probe=probe,
        probe_interval=options.probe_interval,
        connect_concurrency=options.connect_concurrency,
        seed=options.seed,
    )


def _merge(
    options: LoadOptions, reports: list[dict[str, Any]], ready: list[dict[str, int]], go: float
) -> dict[str, Any]:
    fleet = [report for report in reports if not report["probe"]]
    probes = [report for report in reports if report["probe"]]
    samples: dict[str, list[float]] = {}
    counters: dict[str, int] = {}
    for worker in reports:
        for name, values in worker["samples"].items():
            samples.setdefault(name, []).extend(values)
        prefix = "probe_" if worker["probe"] else ""
        for name, value in worker["counters"].items():
            counters[prefix + name] = counters.get(prefix + name, 0) + value
    lateness = np.concatenate([report["lateness"] for report in fleet], axis=1) if fleet else np.zeros((2, 0))
    times, values = lateness[0].astype(np.float64), lateness[1].astype(np.float64)
    in_window = (times >= 0) & (times <= options.duration)
    packets_window = sum(report["at_end"]["packets"] - report["at_go"]["packets"] for report in reports)
    report: dict[str, Any] = {
        "scenario": options.scenario,
        "options": asdict(options),
        "devices": options.devices,
        "processes": len(fleet),
        "probes": options.probes if probes else 0,
        "connected_at_ready": sum(item["connected"] for item in ready[: len(fleet)]),
        "connected_at_end": sum(report["at_end"]["connected"] for report in fleet),
        "streams_alive_at_end": sum(report["at_end"]["alive"] for report in fleet),
        "decoding_devices": sum(report["decoding_devices"] for report in fleet),
        "latency": {},
        "probe_latency": {},
        "connect": summary(samples.get("connect", []) + samples.get("storm", [])),
        "channel_ready": summary(
            samples.get("connect_channel_ready", []) + samples.get("storm_channel_ready", [])
        ),
        "reconnect": summary(samples.get("reconnect", [])),
        "lateness": summary(values),
        "lateness_in_window": summary(values[in_window]),
        "packets_timed": int(values.size),
        "packets_in_window": int(packets_window),
        "underruns": counters.get("underruns", 0),
        "underruns_after_preroll": counters.get("underruns_after_preroll", 0),
        "devices_with_underruns_after_preroll": sum(report["underrun_devices"] for report in fleet),
        "packets_after_stop": counters.get("packets_after_stop", 0)
        + counters.get("probe_packets_after_stop", 0),
        "decode_errors": counters.get("decode_errors", 0) + counters.get("probe_decode_errors", 0),
        "counters": dict(sorted(counters.items())),
        "loadgen_loop_lag": {
            f"worker-{report['worker']}": summary(report["loop_lag"])
            for report in reports
            if report["loop_lag"]
        },
        "loadgen_gc_pauses": {
            f"worker-{report['worker']}": {
                "count": len(report["gc_pauses"]),
                "max_ms": round(1000 * max((pause for _, _, pause in report["gc_pauses"]), default=0.0), 2),
                "total_ms": round(1000 * sum(pause for _, _, pause in report["gc_pauses"]), 1),
            }
            for report in reports
        },
        "series": {
            "lateness": per_second(times, values),
            "loadgen_loop_lag": {
                f"worker-{report['worker']}": per_second(
                    np.asarray(report["loop_lag_at"]), np.asarray(report["loop_lag"])
                )
                for report in reports
                if report["loop_lag"]
            },
            "loadgen_gc_pauses": {f"worker-{report['worker']}": report["gc_pauses"] for report in reports},
        },
    }
    for name in LATENCIES:
        report["latency"][name] = summary(samples.get(name, []))
        report["probe_latency"][name] = summary(samples.get(f"probe_{name}", []))
    if options.scenario == "connect-storm":
        storm = samples.get("storm", [])
        done_at = [t for report in fleet for t in report["connected_at"]]
        report["storm"] = {
            "served": len(storm),
            "failed": options.devices - len(storm),
            "served_within_1s": sum(1 for value in storm if value <= 1.0),
            "last_served_after_s": round(max(done_at), 3) if done_at else None,
        }
    if options.raw:
        report["raw_ms"] = {
            name: [round(value * 1000, 3) for value in values_]
            for name, values_ in sorted(samples.items())
            if not name.endswith("channel_ready")
        }
        report["cdf"] = {name: cdf_points(values_) for name, values_ in sorted(samples.items())}
    return report


def _usage(
    sampler: Sampler,
    base: ProcSample | None,
    at_go: dict[str, ProcSample | None],
    at_end: dict[str, ProcSample | None],
    report: dict[str, Any],
    go: float,
) -> dict[str, Any]:
    """Server and load-generator CPU over the scenario window, memory, threads, and the time series."""
    usage: dict[str, Any] = {}
    window = report["window_s"]
    server_go, server_end = at_go.get("server"), at_end.get("server")
    if server_go is not None and server_end is not None:
        cpu = server_end.cpu_s - server_go.cpu_s
        packets = report["packets_in_window"]
        rss = [sample.rss_kb for sample in sampler.samples["server"]]
        threads = [sample.threads for sample in sampler.samples["server"]]
        connected = max(report["connected_at_end"], report["connected_at_ready"], 1)
        usage["server"] = {
            "cpu_s": round(cpu, 3),
            "cpu_percent_of_core": round(100 * cpu / window, 1) if window > 0 else None,
            "cpu_us_per_packet": round(1e6 * cpu / packets, 2) if packets else None,
            "packets_per_s": round(packets / window, 1) if window > 0 else None,
            "rss_kb_idle_server": base.rss_kb if base is not None else None,
            "rss_kb_at_go": server_go.rss_kb,
            "rss_kb_at_end": server_end.rss_kb,
            "rss_kb_max": max(rss),
            "rss_kb_per_device": (
                round((server_end.rss_kb - base.rss_kb) / connected, 2) if base is not None else None
            ),
            "rss_kb_growth_per_minute": _rss_slope(sampler.samples["server"], server_go.t, server_end.t),
            "threads_at_go": server_go.threads,
            "threads_at_end": server_end.threads,
            "threads_max": max(threads),
        }
    loadgen_cpu = 0.0
    for name, sample_go in at_go.items():
        sample_end = at_end.get(name)
        if name.startswith("worker-") and sample_go is not None and sample_end is not None:
            loadgen_cpu += sample_end.cpu_s - sample_go.cpu_s
    usage["loadgen"] = {
        "cpu_s": round(loadgen_cpu, 3),
        "cpu_percent_of_core": round(100 * loadgen_cpu / window, 1) if window > 0 else None,
    }
    series: dict[str, list[dict[str, float]]] = {}
    for name, unordered in sampler.samples.items():
        samples = sorted(unordered, key=lambda sample: sample.t)
        rows = []
        for before, after in itertools.pairwise(samples):
            span = after.t - before.t
            rows.append(
                {
                    "t": round(after.t - go, 3),
                    "cpu_percent": round(100 * (after.cpu_s - before.cpu_s) / span, 1) if span > 0 else 0.0,
                    "cpu_s": round(after.cpu_s, 3),
                    "rss_kb": after.rss_kb,
                    "threads": after.threads,
                }
            )
        series[name] = rows
    report["series"]["processes"] = series
    return usage


def _rss_slope(samples: list[ProcSample], start: float, end: float) -> float | None:
    """RSS growth over the second half of the window (after warm-up), KB per minute: a leak shows here."""
    half = start + (end - start) / 2
    points = [(sample.t, sample.rss_kb) for sample in samples if half <= sample.t <= end]
    if len(points) < 4:
        return None
    times, rss = np.array(points, dtype=np.float64).T
    slope = float(np.polyfit(times, rss, 1)[0])
    return round(slope * 60, 1)


def parse_args(argv: list[str] | None) -> tuple[LoadOptions, Path | None]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = LoadOptions()
    parser.add_argument("--scenario", choices=SCENARIOS, default=defaults.scenario)
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--processes", type=int, default=defaults.processes, help="worker processes")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds of the scenario")
    parser.add_argument("--server", choices=SERVER_KINDS, default=defaults.server, help="server to start")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for the started server")
    parser.add_argument("--server-log", default=defaults.server_log)
    parser.add_argument("--target", help="a server already running, HOST:PORT (then none is started)")
    parser.add_argument("--server-pid", type=int, help="pid of the --target server, to sample its /proc")
    parser.add_argument("--frame-ms", type=int, default=defaults.frame_ms, choices=(10, 20, 40, 60))
    parser.add_argument("--preroll-ms", type=int, default=defaults.preroll_ms)
    parser.add_argument("--modes", type=int, default=defaults.modes)
    parser.add_argument("--jitter-buffer-ms", type=float, default=defaults.jitter_buffer_ms)
    parser.add_argument("--decode-sample", type=float, default=defaults.decode_sample)
    parser.add_argument("--probes", type=int, default=defaults.probes, help="extra devices measuring latency")
    parser.add_argument("--probe-interval", type=float, default=defaults.probe_interval)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="mode-presses: presses/s per device"
    )
    parser.add_argument(
        "--ramp", type=float, default=defaults.ramp, help="seconds over which Plays are spread"
    )
    parser.add_argument(
        "--think", type=float, default=defaults.think, help="soak: mean seconds between actions"
    )
    parser.add_argument("--reconnect-prob", type=float, default=defaults.reconnect_prob)
    parser.add_argument("--connect-concurrency", type=int, default=defaults.connect_concurrency)
    parser.add_argument("--sample-interval", type=float, default=defaults.sample_interval)
    parser.add_argument("--raw", action="store_true", help="keep every latency sample in the report")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, help="write the JSON report here instead of stdout")
    args = parser.parse_args(argv)
    if args.target is not None and args.server_pid is None:
        parser.error("--target needs --server-pid to sample the server (or use the started one)")
    options = LoadOptions(
        scenario=args.scenario,
        devices=args.devices,
        processes=args.processes,
        duration=args.duration,
        server=args.server,
        target=args.target,
        server_pid=args.server_pid,
        server_args=args.server_arg,
        server_log=args.server_log,
        frame_ms=args.frame_ms,
        preroll_ms=args.preroll_ms,
        modes=args.modes,
        jitter_buffer_ms=args.jitter_buffer_ms,
        decode_sample=args.decode_sample,
        probes=args.probes,
        probe_interval=args.probe_interval,
        rate=args.rate,
        ramp=args.ramp,
        think=args.think,
        reconnect_prob=args.reconnect_prob,
        connect_concurrency=args.connect_concurrency,
        sample_interval=args.sample_interval,
        raw=args.raw,
        seed=args.seed,
    )
    return options, args.out


def main(argv: list[str] | None = None) -> int:
    options, out = parse_args(argv)
    report = run_load(options)
    text = json.dumps(report, indent=1)
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
