"""The standard benchmark suite: the project server and the bare baseline, step by step, in one run.

    python -m bench.suite --quick      # about 5 minutes: every step, small sizes
    python -m bench.suite              # the full suite, about 20-25 minutes on 2 cores

Pinned by default: every server runs on core 0 and the load generator on the other cores (core 1
on a 2-core machine), so a server's figures are what one core carries; ``--no-pin`` runs both
unpinned (``results.json`` records the cores each side was given and read back from /proc).

Every step runs once per server, the two back to back against freshly started servers, so both
meet the machine in the same state: this machine's speed drifts, so every target is a ratio to the
bare server measured in the same run. Steps:

- ``connect-storm``: N devices connect at once.
- ``idle``: an idle fleet with probe devices (press→ack, press→LED, Play→first packet, Stop→end).
- ``idle-large``: a large idle fleet (RSS per device, threads).
- ``press-storm``: 1,000 devices pressing Mode, ~2,000 presses/s: press→LED, server CPU per press.
- ``play-stop``: Play/Stop churn.
- ``flood``: one device writes ~150k Mode presses without waiting for acks while probe devices
  measure press→ack; the flooder's cost is the server's CPU meanwhile.
- ``capacity``: streaming capacity at 20, 60 and 120 ms packets, searched per server: each size
  streams everyone for ``--stream-duration`` and is on time or not; on time grows the next size
  (by the CPU headroom), late shrinks it, and once both sides of the knee are known it bisects
  (geometric midpoint, rounded to 2 significant digits) until they are within ``--resolution``.
  ``--capacity 200,300`` measures a fixed list instead.
- ``cpu-per-packet``: both servers at one load both keep on time (80 % of the smaller capacity
  at 20 ms): CPU per packet side by side.
- ``overload``: ``--overload`` times the project's 20 ms capacity (twice it by default) ask to stream,
  on both servers: admitted / refused / on time, refused Plays' ack latency, Stop→end, errors.

On time: p99 lateness ≤ 20 ms, no underrun past the pre-roll with a 60 ms jitter buffer, every
device connected and streaming (none refused in the end: a refused Play is pressed again after
``--refused-retry`` seconds, and a device that never got a stream makes the size not on time).

It writes ``bench/results/results.json`` (every report, the capacity table, a per-server summary
and ``targets``: each figure of the issue's targets with the project/bare ratio) and PNG plots
beside it. Servers' logs go to ``bench/results/logs/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench.loadgen import LoadOptions, run_load
from bench.proc import ROOT, SERVER_KINDS, Pinning, ServerKind, parse_cores, pin_self, plan_pinning
from media.opus import FRAME_DURATIONS_MS

ON_TIME_P99_MS = 20.0
"""A fleet size is carried on time when p99 lateness is at most this and no packet underruns after pre-roll."""
LOADGEN_SATURATED_PERCENT = 95.0
"""A load-generator core busier than this measures the load generator as much as the server."""
STEPS = (
    "connect-storm",
    "idle",
    "idle-large",
    "press-storm",
    "play-stop",
    "flood",
    "capacity",
    "cpu-per-packet",
    "overload",
)


@dataclass(frozen=True)
class Step:
    name: str
    options: LoadOptions

    def label(self) -> str:
        o = self.options
        return f"{self.name} {o.devices} devices {o.frame_ms} ms"


@dataclass
class Runner:
    """Runs steps against each server, back to back, and keeps every report."""

    args: argparse.Namespace
    pinning: Pinning
    runs: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def base(self) -> LoadOptions:
        args = self.args
        return LoadOptions(
            preroll_ms=args.preroll_ms,
            decode_sample=args.decode_sample,
            sample_interval=1.0,
            pin=self.pinning.enabled,
            server_cores=list(self.pinning.server_cores) or None,
            loadgen_cores=list(self.pinning.loadgen_cores) or None,
            refused_retry=args.refused_retry,
        )

    def processes(self, devices: int, least: int, per_process: int = 2500) -> int:
        """Worker processes: one core's worth of client per process, never more than its cores."""
        wanted = max(least, math.ceil(devices / per_process)) if devices > 1 else 1
        if self.pinning.enabled:
            wanted = min(wanted, len(self.pinning.loadgen_cores))
        return max(1, wanted)

    def run(self, step: Step, server: ServerKind) -> dict[str, Any] | None:
        number = len(self.runs)
        elapsed = time.monotonic() - self.started
        print(
            f"[{number + 1}] {server}: {step.label()} (elapsed {elapsed:.0f} s)", file=sys.stderr, flush=True
        )
        o = step.options
        log = self.args.out_dir / "logs" / f"{number:03d}-{step.name}-{server}-{o.frame_ms}ms-{o.devices}.log"
        options = replace(o, server=server, server_log=str(log))
        try:
            report = run_load(options)
        except Exception as error:  # one broken step must not lose the rest of the run
            print(f"    failed: {error}", file=sys.stderr, flush=True)
            self.runs.append(
                {"step": step.name, "server": server, "options": _opts(options), "error": str(error)}
            )
            return None
        report.pop("raw_ms", None)
        self.runs.append({"step": step.name, "server": server, "report": report})
        print(f"    {_one_line(report)}", file=sys.stderr, flush=True)
        return report

    def pair(self, step: Step) -> dict[ServerKind, dict[str, Any] | None]:
        return {server: self.run(step, server) for server in self.args.servers}


def fixed_steps(runner: Runner) -> list[Step]:
    """The steps whose sizes do not depend on a measured capacity."""
    args = runner.args
    base = runner.base()
    return [
        Step(
            "connect-storm",
            replace(
                base,
                scenario="connect-storm",
                devices=args.storm_devices,
                processes=runner.processes(args.storm_devices, 2),
                duration=2.0,
            ),
        ),
        Step(
            "idle",
            replace(
                base,
                scenario="idle",
                devices=args.idle_devices,
                processes=runner.processes(args.idle_devices, 2),
                duration=args.duration,
                probes=args.probes,
                raw=True,
            ),
        ),
        Step(
            "idle-large",
            replace(
                base,
                scenario="idle",
                devices=args.idle_large,
                processes=runner.processes(args.idle_large, 2),
                duration=min(args.duration, 10.0),
                probes=args.probes,
                connect_concurrency=200,
            ),
        ),
        Step(
            "press-storm",
            replace(
                base,
                scenario="mode-presses",
                devices=args.press_devices,
                processes=1,
                duration=args.duration,
                rate=args.press_rate,
                raw=True,
            ),
        ),
        Step(
            "play-stop",
            replace(
                base,
                scenario="play-stop",
                devices=args.churn_devices,
                processes=1,
                duration=args.duration,
                raw=True,
            ),
        ),
        Step(
            "flood",
            replace(
                base,
                scenario="flood",
                devices=1,
                processes=1,
                duration=args.flood_duration,
                probes=args.flood_probes,
                probe_interval=0.2,
                flood_events=args.flood_events,
                raw=True,
            ),
        ),
    ]


def streaming_step(runner: Runner, name: str, devices: int, frame_ms: int) -> Step:
    args = runner.args
    return Step(
        name,
        replace(
            runner.base(),
            scenario="streaming",
            devices=devices,
            processes=runner.processes(devices, 1, per_process=args.devices_per_process),
            duration=args.stream_duration,
            frame_ms=frame_ms,
            probes=args.probes,
            ramp=args.ramp,
            raw=True,
        ),
    )


def nice(value: float) -> int:
    """Two significant digits (237 → 240, 1234 → 1200): sizes both servers' searches tend to share."""
    n = max(1, round(value))
    scale: int = 10 ** max(0, len(str(n)) - 2)
    return max(1, round(n / scale) * scale)


@dataclass
class Search:
    """The on-time knee of one server at one packet duration: grow while on time, shrink while late,
    then bisect between the largest on-time and the smallest late size."""

    next: int
    max_points: int
    resolution: float
    least: int = 10
    most: int = 20_000
    low: int | None = None
    high: int | None = None
    points: int = 0
    done: bool = False

    def record(
        self, devices: int, on_time: bool, cpu_percent: float | None, admitted_on_time: int = 0
    ) -> None:
        """``admitted_on_time``: when a size failed only because Plays were refused, how many the
        server did carry on time (its own admission's estimate): the next size goes near it."""
        self.points += 1
        if on_time:
            self.low = max(self.low or 0, devices)
        else:
            self.high = min(self.high or self.most + 1, devices)
        if self.low is not None and self.high is not None:
            if self.high <= self.low * (1 + self.resolution):
                self.done = True
                return
            following = nice(math.sqrt(self.low * self.high))
        elif self.low is not None:
            # On time so far: grow by the CPU headroom (to ~95 % of a core), 1.3x to 2x per point.
            headroom = 95.0 / cpu_percent if cpu_percent else 1.5
            following = nice(devices * min(2.0, max(1.3, headroom)))
        else:
            following = nice(max(devices * 0.6, 0.95 * admitted_on_time))
        following = min(self.most, following)
        if (
            self.points >= self.max_points
            or following in (self.low, self.high, devices)
            or following < self.least
            or (self.low is not None and following <= self.low)
        ):
            self.done = True
            return
        self.next = following

    @property
    def capacity(self) -> int:
        return self.low or 0


def run_capacity(runner: Runner) -> dict[int, dict[str, int]]:
    """Per packet duration, each server's on-time capacity; both servers' searches advance in turn."""
    args = runner.args
    capacities: dict[int, dict[str, int]] = {}
    previous: tuple[int, dict[str, int]] | None = None
    for frame_ms in args.frames:
        if args.capacity:
            for devices in args.capacity:
                runner.pair(streaming_step(runner, "capacity", devices, frame_ms))
            rows = [row for row in capacity_table(runner.runs) if row["frame_ms"] == frame_ms]
            capacities[frame_ms] = {
                server: max(
                    (row["devices"] for row in rows if row["server"] == server and row["on_time"]), default=0
                )
                for server in args.servers
            }
            continue
        searches: dict[ServerKind, Search] = {}
        for server in args.servers:
            if previous is None or not previous[1].get(server):
                start = nice(args.capacity_start * (frame_ms / 20) ** 0.8)
            else:
                start = nice(previous[1][server] * (frame_ms / previous[0]) ** 0.8)
            searches[server] = Search(start, args.capacity_points, args.resolution, most=args.capacity_max)
        while not all(search.done for search in searches.values()):
            for server, search in searches.items():
                if search.done:
                    continue
                report = runner.run(streaming_step(runner, "capacity", search.next, frame_ms), server)
                if report is None:
                    search.done = True
                    continue
                row = capacity_row(report)
                admitted = (
                    row["admitted"] or 0 if row["on_time_admitted"] and row["refused_never_admitted"] else 0
                )
                search.record(row["devices"], row["on_time"], row["server_cpu_percent"], admitted)
        capacities[frame_ms] = {server: search.capacity for server, search in searches.items()}
        previous = (frame_ms, capacities[frame_ms])
        print(f"    capacity at {frame_ms} ms: {capacities[frame_ms]}", file=sys.stderr, flush=True)
    return capacities


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    out_dir: Path = args.out_dir
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    (out_dir / ".gitignore").write_text("logs/\n")
    pinning = plan_pinning(not args.no_pin, args.server_cores, args.loadgen_cores)
    pin_self(pinning.loadgen_cores)
    runner = Runner(args, pinning)
    wanted = set(args.steps)
    for step in fixed_steps(runner):
        if step.name in wanted and step.options.devices > 0:
            runner.pair(step)
    capacities: dict[int, dict[str, int]] = {}
    if "capacity" in wanted:
        capacities = run_capacity(runner)
    notes: list[str] = []
    cpu_frame = 20 if 20 in args.frames else (args.frames[0] if args.frames else 20)
    if "cpu-per-packet" in wanted:
        known = capacities.get(cpu_frame, {})
        if args.cpu_devices:
            devices = args.cpu_devices
        elif known and all(known.get(server) for server in args.servers):
            devices = max(10, nice(0.8 * min(known[server] for server in args.servers)))
        else:
            devices = 0
            notes.append(
                "cpu-per-packet skipped: no on-time capacity for every server (or give --cpu-devices)"
            )
        if devices:
            runner.pair(streaming_step(runner, "cpu-per-packet", devices, cpu_frame))
    if "overload" in wanted:
        base = args.overload_base or capacities.get(cpu_frame, {}).get("project", 0)
        if not base:
            notes.append(
                "overload skipped: no project capacity at 20 ms (run capacity or give --overload-base)"
            )
        for factor in args.overload if base else []:
            runner.pair(streaming_step(runner, "overload", max(2, nice(base * factor)), cpu_frame))
    results: dict[str, Any] = {
        "suite": "quick" if args.quick else "full",
        "command": " ".join(["python -m bench.suite", *args.argv]),
        "machine": machine(),
        "pinning": pinning.as_dict(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - runner.started, 1),
        "on_time": {
            "p99_lateness_ms": ON_TIME_P99_MS,
            "underruns_after_preroll": 0,
            "jitter_buffer_ms": 60,
            "refused_never_admitted": 0,
            "all_connected": True,
        },
        "notes": notes,
        "runs": runner.runs,
    }
    results["capacity"] = capacity_table(runner.runs)
    results["capacities"] = {str(frame): value for frame, value in capacities.items()}
    results["summary"] = summarize(runner.runs, results["capacity"])
    results["targets"] = targets(runner.runs, results["capacity"], capacities, args)
    return results


def _opts(options: LoadOptions) -> dict[str, Any]:
    return {"scenario": options.scenario, "devices": options.devices, "frame_ms": options.frame_ms}


def _one_line(report: dict[str, Any]) -> str:
    server = report["usage"].get("server", {})
    machine_ = report["usage"].get("machine", {})
    streams = report.get("streams", {})
    line = (
        f"server {server.get('cpu_percent_of_core')}% of a core;"
        f" loadgen core {machine_.get('loadgen_cores_busy_percent', '-')}%;"
        f" others {machine_.get('others_percent_of_one_core')}%;"
        f" connected {report['connected_at_end']}/{report['devices']}; errors {report.get('errors_total')}"
    )
    if report["scenario"] == "streaming":
        line += (
            f"; {server.get('cpu_us_per_packet')} us/packet; p99 lateness {report['lateness'].get('p99_ms')} ms;"
            f" underruns after pre-roll {report['underruns_after_preroll']};"
            f" admitted {streams.get('admitted')}, refused {streams.get('refused_never_admitted')}"
        )
    elif report["scenario"] == "mode-presses":
        line += (
            f"; {server.get('presses_per_s')} presses/s, {server.get('cpu_us_per_press')} us/press;"
            f" press→LED p99 {report['latency']['press_to_led'].get('p99_ms')} ms"
        )
    elif report["scenario"] == "flood":
        flood = report.get("flood", {})
        line += (
            f"; flood written {flood.get('events_written')}, answered {flood.get('events_answered_per_s')}/s,"
            f" ended {flood.get('stream_ended')}, reconnects {flood.get('reconnects')},"
            f" probes press→ack p99 {flood.get('probe_press_to_ack_during_flood', {}).get('p99_ms')} ms"
        )
    return line


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


def _find(runs: list[dict[str, Any]], step: str, server: str, **options: Any) -> dict[str, Any] | None:
    for run in runs:
        report: dict[str, Any] | None = run.get("report")
        if run["step"] != step or run["server"] != server or report is None:
            continue
        if all(report["options"].get(key) == value for key, value in options.items()):
            return report
    return None


def _findall(runs: list[dict[str, Any]], step: str, server: str) -> list[dict[str, Any]]:
    return [
        run["report"] for run in runs if run["step"] == step and run["server"] == server and "report" in run
    ]


def capacity_row(report: dict[str, Any]) -> dict[str, Any]:
    """One streaming run as a point of the capacity curve, with whether it was on time."""
    server = report["usage"].get("server", {})
    machine_ = report["usage"].get("machine", {})
    streams = report.get("streams", {})
    p99 = report["lateness"].get("p99_ms")
    devices = report["devices"]
    on_time_admitted = p99 is not None and p99 <= ON_TIME_P99_MS and report["underruns_after_preroll"] == 0
    everyone = (
        report["connected_at_end"] == devices
        and streams.get("admitted", devices) == devices
        and streams.get("refused_never_admitted", 0) == 0
    )
    loadgen_core = machine_.get("loadgen_cores_busy_percent")
    return {
        "frame_ms": report["options"]["frame_ms"],
        "devices": devices,
        "connected": report["connected_at_end"],
        "admitted": streams.get("admitted"),
        "refused_never_admitted": streams.get("refused_never_admitted"),
        "refused_plays": streams.get("refused_plays"),
        "on_time_devices": streams.get("on_time"),
        "refused_connects": sum(report.get("refused_connects", {}).values()),
        "server_cpu_percent": server.get("cpu_percent_of_core"),
        "server_cpu_us_per_packet": server.get("cpu_us_per_packet"),
        "packets_per_s": server.get("packets_per_s"),
        "expected_packets_per_s": round(devices * 1000 / report["options"]["frame_ms"], 1),
        "delivered_fraction": _delivered(report),
        "p99_lateness_ms": p99,
        "max_lateness_ms": report["lateness"].get("max_ms"),
        "underruns": report["underruns"],
        "underruns_after_preroll": report["underruns_after_preroll"],
        "devices_with_underruns": report["devices_with_underruns_after_preroll"],
        "on_time": on_time_admitted and everyone,
        "on_time_admitted": on_time_admitted,
        "on_time_strict": on_time_admitted and everyone and not streams.get("refused_plays"),
        "probe_press_to_led_p99_ms": report["probe_latency"]["press_to_led"].get("p99_ms"),
        "probe_play_to_first_packet_p99_ms": report["probe_latency"]["play_to_first_packet"].get("p99_ms"),
        "play_refused_ack_p99_ms": report["latency"]["play_refused_ack"].get("p99_ms"),
        "stop_to_end_p99_ms": report["latency"]["stop_to_end"].get("p99_ms"),
        "packets_after_stop": report["packets_after_stop"],
        "decode_errors": report["decode_errors"],
        "errors_total": report.get("errors_total"),
        "errors": report.get("errors"),
        "server_rss_kb_per_device": server.get("rss_kb_per_device"),
        "server_threads": server.get("threads_at_end"),
        "loadgen_cpu_percent": report["usage"]["loadgen"]["cpu_percent_of_core"],
        "loadgen_core_busy_percent": loadgen_core,
        "loadgen_saturated": loadgen_core is not None and loadgen_core >= LOADGEN_SATURATED_PERCENT,
        "server_core_others_percent": machine_.get("server_cores_others_percent"),
        "others_cpu_percent": machine_.get("others_percent_of_one_core"),
    }


def capacity_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per streaming run (capacity, cpu-per-packet and overload steps)."""
    rows = []
    for run in runs:
        report = run.get("report")
        if report is None or report["scenario"] != "streaming":
            continue
        rows.append({"server": run["server"], "step": run["step"], **capacity_row(report)})
    return rows


def _delivered(report: dict[str, Any]) -> float | None:
    """Packets the fleet received per second in the steady part (after the ramp) over the real-time rate
    of the streams admitted (a refused device streams nothing)."""
    options = report["options"]
    steady = [
        row["count"]
        for row in report["series"]["lateness"]
        if options["ramp"] + 1 <= row["t"] <= options["duration"] - 1
    ]
    if not steady:
        return None
    steady.sort()
    streams = report.get("streams", {}).get("admitted") or report["devices"]
    expected = float(streams * 1000 / options["frame_ms"])
    return round(float(steady[len(steady) // 2]) / expected, 3)


def summarize(runs: list[dict[str, Any]], capacity: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of every step, per server."""
    summary: dict[str, Any] = {}
    for server in SERVER_KINDS:
        figures: dict[str, Any] = {}
        idle = _find(runs, "idle", server)
        if idle is not None:
            figures["idle_devices"] = idle["devices"]
            for name in ("press_to_ack", "press_to_led", "play_to_first_packet", "stop_to_end"):
                figures[f"idle_{name}_p99_ms"] = idle["probe_latency"][name].get("p99_ms")
            figures["idle_rss_kb_per_device"] = idle["usage"].get("server", {}).get("rss_kb_per_device")
            figures["idle_streams_alive"] = f"{idle['streams_alive_at_end']}/{idle['devices']}"
        large = _find(runs, "idle-large", server)
        if large is not None:
            usage = large["usage"].get("server", {})
            figures["idle_large"] = {
                "devices": large["devices"],
                "connected": large["connected_at_end"],
                "streams_alive": large["streams_alive_at_end"],
                "rss_kb_per_device": usage.get("rss_kb_per_device"),
                "rss_mb": round(usage.get("rss_kb_at_end", 0) / 1024, 1),
                "threads": usage.get("threads_at_end"),
                "cpu_percent": usage.get("cpu_percent_of_core"),
                "press_to_led_p99_ms": large["probe_latency"]["press_to_led"].get("p99_ms"),
                "connect_phase_s": large["connect_phase_s"],
                "refused_connects": large.get("refused_connects"),
            }
        storm = _find(runs, "connect-storm", server)
        if storm is not None:
            figures["connect_storm"] = {
                **storm["storm"],
                "devices": storm["devices"],
                "refused": sum(storm.get("refused_connects", {}).values()),
                "connect_p50_ms": storm["connect"].get("p50_ms"),
                "connect_p99_ms": storm["connect"].get("p99_ms"),
                "server_cpu_s": storm["usage"].get("server", {}).get("cpu_s"),
            }
        presses = _find(runs, "press-storm", server)
        if presses is not None:
            figures["press_storm"] = _press_figures(presses)
        churn = _find(runs, "play-stop", server)
        if churn is not None:
            figures["play_stop"] = {
                "devices": churn["devices"],
                "play_to_first_packet_p99_ms": churn["latency"]["play_to_first_packet"].get("p99_ms"),
                "stop_to_end_p99_ms": churn["latency"]["stop_to_end"].get("p99_ms"),
                "refused_plays": churn["streams"]["refused_plays"],
                "packets_after_stop": churn["packets_after_stop"],
                "decode_errors": churn["decode_errors"],
                "errors_total": churn["errors_total"],
            }
        flood = _find(runs, "flood", server)
        if flood is not None:
            figures["flood"] = _flood_summary(flood)
        rows = [row for row in capacity if row["server"] == server and row["step"] == "capacity"]
        for frame_ms in sorted({row["frame_ms"] for row in rows}):
            at_frame = sorted(
                (row for row in rows if row["frame_ms"] == frame_ms), key=lambda row: row["devices"]
            )
            on_time = [row["devices"] for row in at_frame if row["on_time"]]
            figures[f"capacity_{frame_ms}ms"] = {
                "capacity_on_time_devices": max(on_time) if on_time else 0,
                "points": {
                    str(row["devices"]): {
                        key: row[key]
                        for key in (
                            "on_time",
                            "on_time_admitted",
                            "admitted",
                            "refused_never_admitted",
                            "server_cpu_us_per_packet",
                            "server_cpu_percent",
                            "p99_lateness_ms",
                            "underruns_after_preroll",
                            "loadgen_core_busy_percent",
                            "loadgen_saturated",
                            "probe_press_to_led_p99_ms",
                            "stop_to_end_p99_ms",
                            "errors_total",
                        )
                    }
                    for row in at_frame
                },
            }
        summary[server] = figures
    return summary


def _press_figures(report: dict[str, Any]) -> dict[str, Any]:
    server = report["usage"].get("server", {})
    return {
        "devices": report["devices"],
        "presses_per_s": server.get("presses_per_s"),
        "press_to_led_p50_ms": report["latency"]["press_to_led"].get("p50_ms"),
        "press_to_led_p99_ms": report["latency"]["press_to_led"].get("p99_ms"),
        "press_to_ack_p99_ms": report["latency"]["press_to_ack"].get("p99_ms"),
        "server_cpu_percent": server.get("cpu_percent_of_core"),
        "server_cpu_us_per_press": server.get("cpu_us_per_press"),
        "loadgen_core_busy_percent": report["usage"].get("machine", {}).get("loadgen_cores_busy_percent"),
        "errors_total": report.get("errors_total"),
    }


def _flood_summary(report: dict[str, Any]) -> dict[str, Any]:
    flood = dict(report.get("flood", {}))
    during = flood.pop("probe_press_to_ack_during_flood", {})
    flood["probe_press_to_ack_p50_ms"] = during.get("p50_ms")
    flood["probe_press_to_ack_p99_ms"] = during.get("p99_ms")
    flood["probe_presses"] = during.get("count", 0)
    flood["server_cpu_percent_window"] = report["usage"].get("server", {}).get("cpu_percent_of_core")
    flood["errors_total"] = report.get("errors_total")
    return flood


def _ratio(project: float | None, bare: float | None) -> float | None:
    if project is None or not bare:
        return None
    return round(project / bare, 3)


def _overload_figures(report: dict[str, Any]) -> dict[str, Any]:
    row = capacity_row(report)
    return {
        "asked": report["streams"]["asked"],
        "admitted": row["admitted"],
        "refused_never_admitted": row["refused_never_admitted"],
        "refused_then_admitted": report["streams"]["refused_then_admitted"],
        "refused_plays": row["refused_plays"],
        "refused_connects": row["refused_connects"],
        "on_time_devices": row["on_time_devices"],
        "admitted_p99_lateness_ms": row["p99_lateness_ms"],
        "admitted_underruns_after_preroll": row["underruns_after_preroll"],
        "devices_with_underruns": row["devices_with_underruns"],
        "refused_play_ack_p99_ms": row["play_refused_ack_p99_ms"],
        "stop_to_end_p99_ms": row["stop_to_end_p99_ms"],
        "probe_press_to_led_p99_ms": row["probe_press_to_led_p99_ms"],
        "server_cpu_percent": row["server_cpu_percent"],
        "errors_total": row["errors_total"],
        "errors": row["errors"],
        "loadgen_saturated": row["loadgen_saturated"],
    }


def targets(
    runs: list[dict[str, Any]],
    capacity: list[dict[str, Any]],
    capacities: dict[int, dict[str, int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Each figure the issue's targets speak of, both servers, and the project/bare ratio."""
    out: dict[str, Any] = {}
    by_frame: dict[str, Any] = {}
    base = capacities.get(20, {})
    for frame_ms, caps in sorted(capacities.items()):
        entry: dict[str, Any] = dict(caps)
        entry["project_over_bare"] = _ratio(caps.get("project"), caps.get("bare"))
        if frame_ms != 20 and base:
            entry["project_over_own_20ms"] = _ratio(caps.get("project"), base.get("project"))
            entry["bare_over_own_20ms"] = _ratio(caps.get("bare"), base.get("bare"))
        saturated = [
            row["devices"]
            for row in capacity
            if row["step"] == "capacity" and row["frame_ms"] == frame_ms and row["loadgen_saturated"]
        ]
        entry["loadgen_saturated_at_devices"] = sorted(set(saturated))
        by_frame[f"{frame_ms}ms"] = entry
    out["capacity_per_core"] = by_frame
    cpu = {
        server: _findall(runs, "cpu-per-packet", server)[-1]
        for server in SERVER_KINDS
        if _findall(runs, "cpu-per-packet", server)
    }
    if cpu:
        rows = {server: capacity_row(report) for server, report in cpu.items()}
        any_row = next(iter(rows.values()))
        project_us = rows.get("project", {}).get("server_cpu_us_per_packet")
        bare_us = rows.get("bare", {}).get("server_cpu_us_per_packet")
        out["cpu_per_packet"] = {
            "frame_ms": any_row["frame_ms"],
            "devices": any_row["devices"],
            "project_us": project_us,
            "bare_us": bare_us,
            "project_over_bare": _ratio(project_us, bare_us),
            "on_time": {server: row["on_time"] for server, row in rows.items()},
        }
    overload = []
    project_runs, bare_runs = _findall(runs, "overload", "project"), _findall(runs, "overload", "bare")
    for index in range(max(len(project_runs), len(bare_runs))):
        project = project_runs[index] if index < len(project_runs) else None
        bare = bare_runs[index] if index < len(bare_runs) else None
        some = project if project is not None else bare
        assert some is not None
        base_capacity = args.overload_base or capacities.get(some["options"]["frame_ms"], {}).get("project")
        overload.append(
            {
                "devices": some["devices"],
                "frame_ms": some["options"]["frame_ms"],
                "times_project_capacity": round(some["devices"] / base_capacity, 2)
                if base_capacity
                else None,
                "project": _overload_figures(project) if project is not None else None,
                "bare": _overload_figures(bare) if bare is not None else None,
            }
        )
    out["overload"] = overload
    presses = {server: _find(runs, "press-storm", server) for server in SERVER_KINDS}
    if any(presses.values()):
        figures = {server: _press_figures(report) for server, report in presses.items() if report is not None}
        project_f, bare_f = figures.get("project", {}), figures.get("bare", {})
        out["press_storm"] = {
            **figures,
            "project_over_bare": {
                key: _ratio(project_f.get(key), bare_f.get(key))
                for key in ("press_to_led_p50_ms", "press_to_led_p99_ms", "server_cpu_us_per_press")
            },
        }
    floods = {server: _find(runs, "flood", server) for server in SERVER_KINDS}
    if any(floods.values()):
        figures = {server: _flood_summary(report) for server, report in floods.items() if report is not None}
        idle = {server: _find(runs, "idle", server) for server in SERVER_KINDS}
        for server, report in idle.items():
            if report is not None and server in figures:
                figures[server]["idle_probe_press_to_ack_p99_ms"] = report["probe_latency"][
                    "press_to_ack"
                ].get("p99_ms")
        project_f, bare_f = figures.get("project", {}), figures.get("bare", {})
        out["flood"] = {
            **figures,
            "project_over_bare": {
                key: _ratio(project_f.get(key), bare_f.get(key))
                for key in ("probe_press_to_ack_p99_ms", "server_cpu_percent_during_flood")
            },
        }
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and short steps (a few minutes)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--servers", default="project,bare", help="comma-separated: project, bare")
    parser.add_argument("--steps", help=f"only these steps, comma-separated: {', '.join(STEPS)}")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the load generator")
    parser.add_argument("--server-cores", help="cores of the servers (default 0)")
    parser.add_argument("--loadgen-cores", help="cores of the load generator (default: every other core)")
    parser.add_argument(
        "--frames", help="capacity: packet durations in ms, comma-separated (default 20,60,120)"
    )
    parser.add_argument(
        "--capacity", help="capacity: fixed fleet sizes, comma-separated, instead of a search"
    )
    parser.add_argument(
        "--capacity-start", type=int, help="capacity: first size at 20 ms (others scale from it)"
    )
    parser.add_argument(
        "--capacity-points", type=int, help="capacity: most sizes per server and packet duration"
    )
    parser.add_argument("--capacity-max", type=int, default=20_000, help="capacity: largest size tried")
    parser.add_argument(
        "--resolution", type=float, default=0.15, help="capacity: stop when late/on-time sizes are this close"
    )
    parser.add_argument("--stream-duration", type=float, help="seconds everyone streams at each size")
    parser.add_argument(
        "--ramp", type=float, default=1.0, help="seconds over which a fleet's Plays are spread"
    )
    parser.add_argument(
        "--refused-retry", type=float, default=1.0, help="seconds before a refused Play is pressed again"
    )
    parser.add_argument(
        "--cpu-devices", type=int, help="cpu-per-packet: size (default 80 %% of the smaller capacity)"
    )
    parser.add_argument(
        "--overload", help="overload: multiples of the project's 20 ms capacity, comma-separated (default 2)"
    )
    parser.add_argument(
        "--overload-base", type=int, help="overload: capacity to multiply, instead of the measured one"
    )
    parser.add_argument("--duration", type=float, help="seconds of the idle, press-storm and churn steps")
    parser.add_argument("--storm-devices", type=int)
    parser.add_argument("--idle-devices", type=int)
    parser.add_argument("--idle-large", type=int, help="devices of the large idle step (0: skip it)")
    parser.add_argument("--press-devices", type=int, help="press-storm: devices (default 1,000)")
    parser.add_argument(
        "--press-rate", type=float, default=2.0, help="press-storm: Mode presses/s per device"
    )
    parser.add_argument("--churn-devices", type=int)
    parser.add_argument("--flood-events", type=int, help="flood: events the flooder writes (default 150,000)")
    parser.add_argument("--flood-duration", type=float, help="flood: seconds at most")
    parser.add_argument(
        "--flood-probes", type=int, default=4, help="flood: probe devices measuring press→ack"
    )
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--preroll-ms", type=int, default=150)
    parser.add_argument("--decode-sample", type=float, default=0.05)
    parser.add_argument(
        "--devices-per-process", type=int, default=1500, help="streaming devices per load-generator process"
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "frames": "20,60,120",
        "capacity_start": 100 if quick else 200,
        "capacity_points": 3 if quick else 5,
        "stream_duration": 5.0 if quick else 15.0,
        "overload": "2",
        "duration": 4.0 if quick else 15.0,
        "storm_devices": 300 if quick else 1000,
        "idle_devices": 300 if quick else 1000,
        "idle_large": 0 if quick else 10000,
        "press_devices": 300 if quick else 1000,
        "churn_devices": 100 if quick else 200,
        "flood_events": 20_000 if quick else 150_000,
        "flood_duration": 13.0 if quick else 25.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.capacity = [int(value) for value in str(args.capacity).split(",") if value] if args.capacity else []
    args.frames = [int(value) for value in str(args.frames).split(",") if value]
    for frame_ms in args.frames:
        if frame_ms not in FRAME_DURATIONS_MS:
            parser.error(f"--frames: {frame_ms} is not one of {FRAME_DURATIONS_MS}")
    args.overload = [float(value) for value in str(args.overload).split(",") if value]
    servers: list[ServerKind] = []
    for name in str(args.servers).split(","):
        if name not in SERVER_KINDS:
            parser.error(f"unknown server {name!r}; one of {SERVER_KINDS}")
        servers.append("project" if name == "project" else "bare")
    args.servers = servers
    steps = list(STEPS) if args.steps is None else str(args.steps).split(",")
    for step in steps:
        if step not in STEPS:
            parser.error(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    args.steps = steps
    args.server_cores = parse_cores(args.server_cores) if args.server_cores else None
    args.loadgen_cores = parse_cores(args.loadgen_cores) if args.loadgen_cores else None
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = run_suite(args)
    out: Path = args.out_dir / "results.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}", file=sys.stderr)
    if not args.no_plots:
        from bench.plots import plot_all

        for path in plot_all(results, args.out_dir):
            print(f"plot: {path}", file=sys.stderr)
    print(json.dumps(results["targets"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
