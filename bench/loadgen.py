"""Load generator: N simulated devices, each on its own TCP connection, spread over worker processes.

    python -m bench.loadgen --scenario streaming --devices 500 --processes 2 --duration 20
    python -m bench.loadgen --scenario idle --devices 1000 --probes 2 --server bare
    python -m bench.loadgen --scenario soak --devices 500 --duration 1800 --sample-interval 5 --out soak.json

It starts the server under test itself (``--server project`` or ``bare``) unless ``--target`` points
at one already running (give ``--server-pid`` to sample it). By default the server it starts runs on
core 0 (``taskset -c 0``) and the load generator (this process and its workers) on the other cores;
``--no-pin`` turns that off, ``--server-cores`` / ``--loadgen-cores`` choose others, and the report's
``pinning`` says what each side was allowed (read back from /proc). Each worker process
(``bench.fleet``) connects its devices, then all start the scenario at one shared instant; the
coordinator samples the server's and the workers' CPU, RSS and threads from /proc meanwhile, and
merges everything into one JSON report. Probe devices (``--probes``) run in a worker of their own,
pressing Mode, Play and Stop in turn, so their latencies are not queued behind a busy fleet worker.

Scenarios: connect-storm, idle, mode-presses, play-stop, streaming, soak, flood (see ``bench.fleet``).
A Play acked false is a refused Play and a stream answered RESOURCE_EXHAUSTED at connect a refused
connect: both are counted apart from errors (``streams``, ``refused``, ``errors`` in the report).
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
    Pinning,
    ProcSample,
    ServerKind,
    ServerProcess,
    affinity_of,
    core_busy_seconds,
    established_connections,
    machine_busy_seconds,
    parse_cores,
    pin_self,
    pinned_command,
    plan_pinning,
    read_proc,
    server_command,
)
from bench.stats import cdf_points, per_second, summary
from media.opus import FRAME_DURATIONS_MS

SCENARIOS = ("connect-storm", "idle", "mode-presses", "play-stop", "streaming", "soak", "flood")
LATENCIES = ("press_to_ack", "press_to_led", "play_to_first_packet", "stop_to_end", "play_refused_ack")
_REFUSALS = ("connect_refused", "storm_refused", "reconnect_refused")


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
    pin: bool = True
    server_cores: list[int] | None = None
    """None: core 0 (see ``bench.proc.plan_pinning``)."""
    loadgen_cores: list[int] | None = None
    """None: every usable core but the server's."""
    connect_retries: int = 5
    refused_retry: float = 0.0
    flood_events: int = 150_000
    flood_reconnect: bool = True
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

    def __init__(self, spec: Spec, spec_file: Path, cores: tuple[int, ...] = ()) -> None:
        spec_file.write_text(json.dumps(asdict(spec)))
        self.spec = spec
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command, preexec = pinned_command([sys.executable, "-m", "bench.fleet", str(spec_file)], cores)
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
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
    pinning = plan_pinning(options.pin, options.server_cores, options.loadgen_cores)
    pin_self(pinning.loadgen_cores)
    if target is None:
        command = server_command(
            options.server, options.frame_ms, options.preroll_ms, options.modes, options.server_args
        )
        server = ServerProcess(command, Path(options.server_log), pinning.server_cores)
        pid, target = server.pid, f"127.0.0.1:{server.port}"
        where = f" on cores {list(pinning.server_cores)}" if pinning.enabled else ""
        print(
            f"loadgen: {options.server} server pid {pid} serving on {target}{where}",
            file=sys.stderr,
            flush=True,
        )
    try:
        with tempfile.TemporaryDirectory(prefix="loadgen-") as scratch:
            return _drive(options, target, pid, server, Path(scratch), pinning)
    finally:
        if server is not None:
            server.stop()


def _drive(
    options: LoadOptions,
    target: str,
    pid: int | None,
    server: ServerProcess | None,
    scratch: Path,
    pinning: Pinning,
) -> dict[str, Any]:
    started = time.monotonic()
    base = read_proc(pid) if pid is not None else None
    workers = []
    processes = max(1, min(options.processes, options.devices))
    cores = pinning.loadgen_cores
    for number in range(processes):
        count = options.devices // processes + (1 if number < options.devices % processes else 0)
        workers.append(
            Worker(
                _spec(options, target, str(number), count, False, scratch), scratch / f"{number}.json", cores
            )
        )
    if options.probes > 0 and options.scenario != "connect-storm":
        workers.append(
            Worker(_spec(options, target, "p", options.probes, True, scratch), scratch / "p.json", cores)
        )
    pids = {f"worker-{worker.spec.worker}": worker.process.pid for worker in workers}
    affinity = {
        "server": (server.affinity if server is not None else affinity_of(pid) if pid is not None else None),
        "coordinator": sorted(os.sched_getaffinity(0)),
        **{name: affinity_of(worker_pid) for name, worker_pid in pids.items()},
    }
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
    busy_go, self_go, cores_go = machine_busy_seconds(), time.process_time(), core_busy_seconds()
    for worker in workers:
        worker.expect("finished")
    at_end = sampler.sample()
    busy_end, self_end, cores_end = machine_busy_seconds(), time.process_time(), core_busy_seconds()
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
        pinning={**pinning.as_dict(), "affinity": affinity},
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
    if window > 0:
        per_core = {
            core: round(100 * (cores_end[core] - cores_go.get(core, 0.0)) / window, 1) for core in cores_end
        }
        usage["machine"]["per_core_busy_percent"] = {str(core): value for core, value in per_core.items()}
        if pinning.enabled:
            server_core = sum(per_core.get(core, 0.0) for core in pinning.server_cores)
            usage["machine"]["server_cores_busy_percent"] = round(server_core, 1)
            usage["machine"]["loadgen_cores_busy_percent"] = round(
                sum(per_core.get(core, 0.0) for core in pinning.loadgen_cores) / len(pinning.loadgen_cores), 1
            )
            server_cpu = usage.get("server", {}).get("cpu_percent_of_core")
            if server_cpu is not None:
                # What else ran on the server's core meanwhile (other jobs, softirqs of the loopback).
                usage["machine"]["server_cores_others_percent"] = round(server_core - server_cpu, 1)
    if options.scenario == "flood":
        report["flood"] = _flood_figures(report, sampler)
    return report


def _flood_figures(report: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """The flooder's throughput and cost, and the probes' press→ack while it flooded."""
    counters = report["counters"]
    window = report.pop("_flood_window", None)
    timed: list[tuple[float, float]] = report.pop("_probe_timed_press_to_ack", [])
    go: float = report.pop("_go")
    figures: dict[str, Any] = {
        "events_written": counters.get("flood_written", 0),
        "acked_true": counters.get("flood_acked", 0),
        "acked_false": counters.get("flood_nacked", 0),
        "stream_ended": {
            name.removeprefix("flood_stream_ended_"): value
            for name, value in counters.items()
            if name.startswith("flood_stream_ended_")
        },
        "reconnects": counters.get("flood_reconnects", 0),
        "write_stalls_over_5ms": report["latency"].get("flood_write_stall", {}).get("count", 0),
        "window_s": None,
    }
    if not window or len(window) != 2:
        return figures
    start, end = window
    span = max(end - start, 1e-9)
    figures["window_s"] = round(span, 3)
    figures["events_written_per_s"] = round(figures["events_written"] / span, 1)
    figures["events_answered_per_s"] = round((figures["acked_true"] + figures["acked_false"]) / span, 1)
    probes = [value for at, value in timed if start <= at <= end]
    figures["probe_press_to_ack_during_flood"] = summary(probes)
    samples = sorted(sampler.samples.get("server", []), key=lambda sample: sample.t)
    inside = [sample for sample in samples if start <= sample.t - go <= end]
    if len(inside) >= 2:
        cpu = inside[-1].cpu_s - inside[0].cpu_s
        seconds = inside[-1].t - inside[0].t
        figures["server_cpu_percent_during_flood"] = round(100 * cpu / seconds, 1) if seconds > 0 else None
        flood_cpu = cpu * span / seconds
        answered = figures["acked_true"] + figures["acked_false"]
        written = figures["events_written"]
        # The flooder's cost per event it pushed, and per event the server took in and answered.
        figures["server_cpu_us_per_written_event"] = round(1e6 * flood_cpu / written, 2) if written else None
        figures["server_cpu_us_per_answered_event"] = (
            round(1e6 * flood_cpu / answered, 2) if answered else None
        )
    return figures


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
        connect_retries=options.connect_retries,
        refused_retry=options.refused_retry,
        flood_events=options.flood_events,
        flood_reconnect=options.flood_reconnect,
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
    presses_window = sum(report["at_end"]["presses"] - report["at_go"]["presses"] for report in fleet)
    streams = {
        name: sum(report["streams"][name] for report in fleet)
        for name in ("asked", "admitted", "refused_never_admitted", "refused_then_admitted", "on_time")
    }
    streams["refused_plays"] = sum(report["streams"]["refused_plays"] for report in fleet)
    refused_connects = {name: counters.get(name, 0) for name in _REFUSALS if counters.get(name)}
    errors = {name: value for name, value in counters.items() if value and _is_error(name)}
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
        "loadgen_event_loop": sorted({report["event_loop"] for report in reports}),
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
        "presses_in_window": int(presses_window),
        "streams": streams,
        "refused_connects": refused_connects,
        "devices_not_connected": options.devices - sum(item["connected"] for item in ready[: len(fleet)])
        if options.scenario != "connect-storm"
        else None,
        "errors": errors,
        "errors_total": sum(errors.values()),
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
    if options.scenario == "flood":
        report["latency"]["flood_write_stall"] = summary(samples.get("flood_write_stall", []))
        windows = [report["flood_window"] for report in fleet if len(report["flood_window"]) == 2]
        report["_flood_window"] = windows[0] if windows else None
        report["_probe_timed_press_to_ack"] = [
            tuple(item) for worker in probes for item in worker["timed"].get("press_to_ack", [])
        ]
        report["_go"] = go
    if options.scenario == "connect-storm":
        storm = samples.get("storm", [])
        done_at = [t for report in fleet for t in report["connected_at"]]
        report["storm"] = {
            "served": len(storm),
            "failed": options.devices - len(storm),
            "served_within_1s": sum(1 for value in storm if value <= 1.0),
            "last_served_after_s": round(max(done_at), 3) if done_at else None,
        }
    report["_clips"] = [worker.get("clips", []) for worker in fleet]
    if options.raw:
        report["raw_ms"] = {
            name: [round(value * 1000, 3) for value in values_]
            for name, values_ in sorted(samples.items())
            if not name.endswith("channel_ready")
        }
        report["cdf"] = {name: cdf_points(values_) for name, values_ in sorted(samples.items())}
    return report


def _is_error(name: str) -> bool:
    """Counters that mean something went wrong (refusals, nacks and the flood's own ends are not)."""
    name = name.removeprefix("probe_")
    return (
        name.startswith(("stream_error_", "stream_end_"))
        or name.endswith("_timeouts")
        or "_failed_" in name
        or name
        in (
            "decode_errors",
            "duration_mismatches",
            "bad_toc",
            "packets_after_stop",
            "end_without_start",
            "status_unknown_request",
            "not_in_mode_1",
        )
    )


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
            "cpu_us_per_press": (
                round(1e6 * cpu / report["presses_in_window"], 2) if report["presses_in_window"] else None
            ),
            "presses_per_s": round(report["presses_in_window"] / window, 1) if window > 0 else None,
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
    parser.add_argument("--frame-ms", type=int, default=defaults.frame_ms, choices=FRAME_DURATIONS_MS)
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
    parser.add_argument(
        "--no-pin", action="store_true", help="run server and load generator unpinned (default: pinned apart)"
    )
    parser.add_argument("--server-cores", help="cores of the started server, e.g. 0 (default: 0)")
    parser.add_argument(
        "--loadgen-cores", help="cores of the load generator, e.g. 1 or 1-3 (default: the rest)"
    )
    parser.add_argument("--connect-retries", type=int, default=defaults.connect_retries)
    parser.add_argument(
        "--refused-retry",
        type=float,
        default=defaults.refused_retry,
        help="streaming: seconds before a refused Play is pressed again (0: never)",
    )
    parser.add_argument("--flood-events", type=int, default=defaults.flood_events)
    parser.add_argument("--no-flood-reconnect", action="store_true")
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
        pin=not args.no_pin,
        server_cores=list(parse_cores(args.server_cores)) if args.server_cores else None,
        loadgen_cores=list(parse_cores(args.loadgen_cores)) if args.loadgen_cores else None,
        connect_retries=args.connect_retries,
        refused_retry=args.refused_retry,
        flood_events=args.flood_events,
        flood_reconnect=not args.no_flood_reconnect,
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
