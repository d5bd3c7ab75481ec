"""The standard benchmark suite: the project server and the bare baseline, step by step, in one run.

    python -m bench.suite --quick      # about 3 minutes
    python -m bench.suite              # the full suite, under 30 minutes on 2 cores

Every step runs once per server, the two back to back, each against a freshly started server, so
both meet the same machine in the same state. It writes ``bench/results/results.json`` (every
report, the capacity table and a summary with project/bare ratios) and PNG plots beside it:
latency CDFs, lateness over time and the capacity curve. Servers' logs go to
``bench/results/logs/``.

Steps: a connect storm; an idle fleet with probe devices (press→LED, Play→first packet,
Stop→end with everyone idle); optionally a large idle fleet (RSS per device, threads); a fleet
pressing Mode; Play/Stop churn; and the capacity curve: everyone streaming at each fleet size
and packet duration, with probes measuring press→LED meanwhile.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench.loadgen import LoadOptions, run_load
from bench.proc import ROOT, SERVER_KINDS, ServerKind

ON_TIME_P99_MS = 20.0
"""A fleet size is carried on time when p99 lateness is at most this and no packet underruns after pre-roll."""


@dataclass(frozen=True)
class Step:
    name: str
    options: LoadOptions

    def label(self) -> str:
        o = self.options
        return f"{self.name} {o.devices} devices {o.frame_ms} ms"


def plan(args: argparse.Namespace) -> list[Step]:
    """The steps of the suite; every size and duration is a flag, and --quick picks small ones."""
    base = LoadOptions(preroll_ms=args.preroll_ms, decode_sample=args.decode_sample, sample_interval=1.0)
    steps = [
        Step(
            "connect-storm",
            replace(
                base,
                scenario="connect-storm",
                devices=args.storm_devices,
                processes=_processes(args.storm_devices, 2),
                duration=2.0,
            ),
        ),
        Step(
            "idle",
            replace(
                base,
                scenario="idle",
                devices=args.idle_devices,
                processes=_processes(args.idle_devices, 2),
                duration=args.duration,
                probes=args.probes,
                raw=True,
            ),
        ),
    ]
    if args.idle_large:
        steps.append(
            Step(
                "idle-large",
                replace(
                    base,
                    scenario="idle",
                    devices=args.idle_large,
                    processes=_processes(args.idle_large, 2),
                    duration=min(args.duration, 10.0),
                    probes=args.probes,
                    connect_concurrency=200,
                ),
            )
        )
    steps += [
        Step(
            "mode-presses",
            replace(
                base,
                scenario="mode-presses",
                devices=args.mode_devices,
                processes=1,
                duration=args.duration,
                rate=1.0,
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
    ]
    for frame_ms in args.frames:
        for devices in args.capacity:
            steps.append(
                Step(
                    "streaming",
                    replace(
                        base,
                        scenario="streaming",
                        devices=devices,
                        processes=_processes(devices, 1, per_process=args.devices_per_process),
                        duration=args.stream_duration,
                        frame_ms=frame_ms,
                        probes=args.probes,
                        ramp=1.0,
                        raw=True,
                    ),
                )
            )
    return steps


def _processes(devices: int, least: int, per_process: int = 2500) -> int:
    """Worker processes: one core's worth of client per process; more only when one cannot hold them."""
    return max(least, math.ceil(devices / per_process)) if devices > 1 else 1


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    out_dir: Path = args.out_dir
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (out_dir / ".gitignore").write_text("logs/\n")
    steps = [step for step in plan(args) if args.steps is None or step.name in args.steps]
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    total = len(steps) * len(args.servers)
    for number, step in enumerate(steps):
        for server in args.servers:
            done = len(runs)
            elapsed = time.monotonic() - started
            print(
                f"[{done + 1}/{total}] {server}: {step.label()} (elapsed {elapsed:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            log = (
                logs
                / f"{number:02d}-{step.name}-{server}-{step.options.frame_ms}ms-{step.options.devices}.log"
            )
            options = replace(step.options, server=server, server_log=str(log))
            try:
                report = run_load(options)
            except Exception as error:  # one broken step must not lose the rest of the run
                print(f"    failed: {error}", file=sys.stderr, flush=True)
                runs.append(
                    {"step": step.name, "server": server, "options": _opts(options), "error": str(error)}
                )
                continue
            report.pop("raw_ms", None)
            runs.append({"step": step.name, "server": server, "report": report})
            print(f"    {_one_line(report)}", file=sys.stderr, flush=True)
    results: dict[str, Any] = {
        "suite": "quick" if args.quick else "full",
        "command": " ".join(["python -m bench.suite", *args.argv]),
        "machine": machine(),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "on_time": {"p99_lateness_ms": ON_TIME_P99_MS, "underruns_after_preroll": 0},
        "runs": runs,
    }
    results["capacity"] = capacity_table(runs)
    results["summary"] = summarize(runs, results["capacity"])
    return results


def _opts(options: LoadOptions) -> dict[str, Any]:
    return {"scenario": options.scenario, "devices": options.devices, "frame_ms": options.frame_ms}


def _one_line(report: dict[str, Any]) -> str:
    server = report["usage"].get("server", {})
    lateness = report["lateness"].get("p99_ms")
    return (
        f"cpu {server.get('cpu_percent_of_core')}% of a core, {server.get('cpu_us_per_packet')} us/packet;"
        f" loadgen {report['usage']['loadgen']['cpu_percent_of_core']}%;"
        f" others {report['usage'].get('machine', {}).get('others_percent_of_one_core')}%;"
        f" p99 lateness {lateness} ms; underruns after pre-roll {report['underruns_after_preroll']};"
        f" connected {report['connected_at_end']}/{report['devices']}"
    )


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


def capacity_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per streaming run: the capacity curve."""
    rows = []
    for run in runs:
        report = run.get("report")
        if run["step"] != "streaming" or report is None:
            continue
        server = report["usage"].get("server", {})
        p99 = report["lateness"].get("p99_ms")
        rows.append(
            {
                "server": run["server"],
                "frame_ms": report["options"]["frame_ms"],
                "devices": report["devices"],
                "connected": report["connected_at_end"],
                "server_cpu_percent": server.get("cpu_percent_of_core"),
                "server_cpu_us_per_packet": server.get("cpu_us_per_packet"),
                "packets_per_s": server.get("packets_per_s"),
                "expected_packets_per_s": round(report["devices"] * 1000 / report["options"]["frame_ms"], 1),
                "delivered_fraction": _delivered(report),
                "p99_lateness_ms": p99,
                "max_lateness_ms": report["lateness"].get("max_ms"),
                "underruns": report["underruns"],
                "underruns_after_preroll": report["underruns_after_preroll"],
                "devices_with_underruns": report["devices_with_underruns_after_preroll"],
                "on_time": p99 is not None
                and p99 <= ON_TIME_P99_MS
                and report["underruns_after_preroll"] == 0
                and report["connected_at_end"] == report["devices"],
                "probe_press_to_led_p99_ms": report["probe_latency"]["press_to_led"].get("p99_ms"),
                "probe_play_to_first_packet_p99_ms": report["probe_latency"]["play_to_first_packet"].get(
                    "p99_ms"
                ),
                "stop_to_end_p99_ms": report["latency"]["stop_to_end"].get("p99_ms"),
                "packets_after_stop": report["packets_after_stop"],
                "decode_errors": report["decode_errors"],
                "server_rss_kb_per_device": server.get("rss_kb_per_device"),
                "server_threads": server.get("threads_at_end"),
                "loadgen_cpu_percent": report["usage"]["loadgen"]["cpu_percent_of_core"],
                "others_cpu_percent": report["usage"].get("machine", {}).get("others_percent_of_one_core"),
            }
        )
    return rows


def _delivered(report: dict[str, Any]) -> float | None:
    """Packets the fleet received per second in the steady part (after the ramp) over the real-time rate."""
    options = report["options"]
    steady = [
        row["count"]
        for row in report["series"]["lateness"]
        if options["ramp"] + 1 <= row["t"] <= options["duration"] - 1
    ]
    if not steady:
        return None
    steady.sort()
    expected = float(report["devices"] * 1000 / options["frame_ms"])
    return round(float(steady[len(steady) // 2]) / expected, 3)


def summarize(runs: list[dict[str, Any]], capacity: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue's targets speak of, per server, and the project/bare ratios."""
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
                "press_to_led_p99_ms": large["probe_latency"]["press_to_led"].get("p99_ms"),
                "connect_phase_s": large["connect_phase_s"],
            }
        storm = _find(runs, "connect-storm", server)
        if storm is not None:
            figures["connect_storm"] = {
                **storm["storm"],
                "devices": storm["devices"],
                "connect_p50_ms": storm["connect"].get("p50_ms"),
                "connect_p99_ms": storm["connect"].get("p99_ms"),
                "server_cpu_s": storm["usage"].get("server", {}).get("cpu_s"),
            }
        modes = _find(runs, "mode-presses", server)
        if modes is not None:
            figures["mode_presses"] = {
                "devices": modes["devices"],
                "press_to_ack_p99_ms": modes["latency"]["press_to_ack"].get("p99_ms"),
                "press_to_led_p99_ms": modes["latency"]["press_to_led"].get("p99_ms"),
            }
        churn = _find(runs, "play-stop", server)
        if churn is not None:
            figures["play_stop"] = {
                "devices": churn["devices"],
                "play_to_first_packet_p99_ms": churn["latency"]["play_to_first_packet"].get("p99_ms"),
                "stop_to_end_p99_ms": churn["latency"]["stop_to_end"].get("p99_ms"),
                "packets_after_stop": churn["packets_after_stop"],
                "decode_errors": churn["decode_errors"],
            }
        rows = [row for row in capacity if row["server"] == server]
        for frame_ms in sorted({row["frame_ms"] for row in rows}):
            at_frame = [row for row in rows if row["frame_ms"] == frame_ms]
            on_time = [row["devices"] for row in at_frame if row["on_time"]]
            figures[f"streaming_{frame_ms}ms"] = {
                "capacity_on_time_devices": max(on_time) if on_time else 0,
                "points": {
                    str(row["devices"]): {
                        "cpu_us_per_packet": row["server_cpu_us_per_packet"],
                        "cpu_percent": row["server_cpu_percent"],
                        "p99_lateness_ms": row["p99_lateness_ms"],
                        "underruns_after_preroll": row["underruns_after_preroll"],
                        "probe_press_to_led_p99_ms": row["probe_press_to_led_p99_ms"],
                        "stop_to_end_p99_ms": row["stop_to_end_p99_ms"],
                    }
                    for row in at_frame
                },
            }
        summary[server] = figures
    summary["ratios_project_over_bare"] = _ratios(capacity)
    return summary


def _ratios(capacity: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU per packet and on-time capacity, project over bare, at each packet duration and size."""
    ratios: dict[str, Any] = {}
    for row in capacity:
        if row["server"] != "project":
            continue
        bare = next(
            (
                other
                for other in capacity
                if other["server"] == "bare"
                and other["frame_ms"] == row["frame_ms"]
                and other["devices"] == row["devices"]
            ),
            None,
        )
        if bare is None or not row["server_cpu_us_per_packet"] or not bare["server_cpu_us_per_packet"]:
            continue
        key = f"{row['frame_ms']}ms"
        ratios.setdefault(key, {})[str(row["devices"])] = {
            "cpu_per_packet": round(row["server_cpu_us_per_packet"] / bare["server_cpu_us_per_packet"], 3)
        }
    for key, points in ratios.items():
        frame_ms = int(key.removesuffix("ms"))
        capacities: dict[str, int] = {}
        for server in SERVER_KINDS:
            on_time = [
                row["devices"]
                for row in capacity
                if row["server"] == server and row["frame_ms"] == frame_ms and row["on_time"]
            ]
            capacities[server] = max(on_time) if on_time else 0
        points["capacity_on_time"] = {
            **capacities,
            "ratio": round(capacities["project"] / capacities["bare"], 3) if capacities["bare"] else None,
        }
    return ratios


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and short steps (about 3 minutes)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--servers", default="project,bare", help="comma-separated: project, bare")
    parser.add_argument("--capacity", help="streaming fleet sizes, comma-separated")
    parser.add_argument("--frames", help="packet durations in ms, comma-separated (default 20,60)")
    parser.add_argument("--stream-duration", type=float, help="seconds everyone streams at each point")
    parser.add_argument("--duration", type=float, help="seconds of the idle, mode and churn steps")
    parser.add_argument("--storm-devices", type=int)
    parser.add_argument("--idle-devices", type=int)
    parser.add_argument("--idle-large", type=int, help="devices of the large idle step (0: skip it)")
    parser.add_argument("--mode-devices", type=int)
    parser.add_argument("--churn-devices", type=int)
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--preroll-ms", type=int, default=150)
    parser.add_argument("--decode-sample", type=float, default=0.05)
    parser.add_argument(
        "--devices-per-process", type=int, default=1500, help="streaming devices per load-generator process"
    )
    parser.add_argument(
        "--steps",
        help="only these steps, comma-separated: connect-storm, idle, idle-large, mode-presses,"
        " play-stop, streaming",
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "capacity": "10,100,500" if quick else "10,100,200,300,500,700,1000,2000",
        "frames": "20,60",
        "stream_duration": 5.0 if quick else 20.0,
        "duration": 4.0 if quick else 15.0,
        "storm_devices": 500 if quick else 1000,
        "idle_devices": 500 if quick else 1000,
        "idle_large": 0 if quick else 10000,
        "mode_devices": 200 if quick else 500,
        "churn_devices": 100 if quick else 200,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.capacity = [int(value) for value in str(args.capacity).split(",") if value]
    args.frames = [int(value) for value in str(args.frames).split(",") if value]
    servers: list[ServerKind] = []
    for name in str(args.servers).split(","):
        if name not in SERVER_KINDS:
            parser.error(f"unknown server {name!r}; one of {SERVER_KINDS}")
        servers.append("project" if name == "project" else "bare")
    args.servers = servers
    args.steps = None if args.steps is None else set(str(args.steps).split(","))
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
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
