"""PNG plots of a suite's results: latency CDFs, lateness over time, the capacity curve and overload.

Drawn with matplotlib's Agg backend (no display needed), from ``results.json`` alone, so a
results file can be re-plotted later: ``python -m bench.plots bench/results/results.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found,unused-ignore]  # an optional extra of the bench

matplotlib.use("Agg")  # no display: the backend must be chosen before pyplot is imported

import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

COLOURS = {"project": "tab:blue", "bare": "tab:orange"}
FRAME_STYLES: dict[int, Any] = {
    20: "-",
    60: "--",
    120: ":",
    40: "-.",
    10: (0, (1, 3)),
    80: (0, (5, 1)),
    100: (0, (3, 1, 1, 1)),
}
LATENCIES = (
    ("press_to_ack", "press → ack"),
    ("press_to_led", "press Mode → LED SET"),
    ("play_to_first_packet", "Play → first packet"),
    ("stop_to_end", "Stop → end packet"),
)


def plot_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        latency_cdfs(results, out_dir / "latency_cdf.png"),
        lateness_over_time(results, out_dir / "lateness_over_time.png"),
        capacity_curve(results, out_dir / "capacity.png"),
        overload_bars(results, out_dir / "overload.png"),
    ]


def _runs(results: dict[str, Any], step: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (run["server"], run["report"]) for run in results["runs"] if run["step"] == step and "report" in run
    ]


def latency_cdfs(results: dict[str, Any], path: Path) -> Path:
    """Per latency, a CDF per server and per situation: idle probes, a busy fleet, probes while streaming."""
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    sources: list[tuple[str, str, str]] = [
        ("idle", "probe_", "idle fleet (probes)"),
        ("press-storm", "", "fleet pressing Mode"),
        ("play-stop", "", "Play/Stop churn"),
    ]
    streaming = _runs(results, "capacity")
    for axis, (name, title) in zip(axes.flat, LATENCIES, strict=True):
        for step, prefix, situation in sources:
            for server, report in _runs(results, step):
                points = report.get("cdf", {}).get(prefix + name)
                if points:
                    _cdf(axis, points, f"{server}: {situation}, {report['devices']} devices", server, step)
        # Probes while everyone streams: the largest fleet each server carried on time at 20 ms.
        for server in COLOURS:
            mine = [r for s, r in streaming if s == server and r["probe_latency"][name].get("count")]
            if mine:
                report = max(mine, key=lambda r: (r["options"]["frame_ms"] == 20, r["devices"]))
                points = report.get("cdf", {}).get("probe_" + name)
                if points:
                    label = (
                        f"{server}: probes, {report['devices']} streaming @{report['options']['frame_ms']} ms"
                    )
                    _cdf(axis, points, label, server, "streaming")
        axis.set_title(title)
        axis.set_xscale("log")
        axis.set_xlabel("ms (log)")
        axis.set_ylabel("fraction")
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # a partial run may have nothing here
            axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("Latency at the device, project vs bare baseline")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _cdf(axis: Any, points: list[list[float]], label: str, server: str, step: str) -> None:
    styles = {"idle": "-", "press-storm": "--", "play-stop": "-.", "streaming": ":"}
    xs = [max(point[0], 0.01) for point in points]
    ys = [point[1] for point in points]
    axis.step(xs, ys, where="post", label=label, color=COLOURS.get(server), linestyle=styles.get(step, "-"))


def lateness_over_time(results: dict[str, Any], path: Path) -> Path:
    """Per-second p99 lateness of every streaming run, one panel per packet duration."""
    runs = _runs(results, "capacity")
    frames = sorted({report["options"]["frame_ms"] for _, report in runs}) or [20]
    figure, axes = plt.subplots(1, len(frames), figsize=(7 * len(frames), 5), squeeze=False)
    sizes = sorted({report["devices"] for _, report in runs})
    palette = plt.get_cmap("viridis")
    for axis, frame_ms in zip(axes[0], frames, strict=True):
        for server, report in runs:
            if report["options"]["frame_ms"] != frame_ms:
                continue
            series = report["series"]["lateness"]
            colour = palette(sizes.index(report["devices"]) / max(1, len(sizes) - 1))
            axis.plot(
                [row["t"] for row in series],
                [row["p99_ms"] for row in series],
                color=colour,
                linestyle="-" if server == "project" else "--",
                label=f"{server} {report['devices']}",
            )
        axis.axhline(results.get("on_time", {}).get("p99_lateness_ms", 20.0), color="red", linewidth=0.8)
        axis.set_yscale("symlog", linthresh=10)
        axis.set_title(f"p99 lateness per second, {frame_ms} ms packets (solid: project, dashed: bare)")
        axis.set_xlabel("seconds since the fleet started")
        axis.set_ylabel("ms (symlog; -pre-roll = on schedule)")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def capacity_curve(results: dict[str, Any], path: Path) -> Path:
    """Streaming devices → server CPU, p99 lateness and underruns, project vs bare, per packet duration."""
    rows = [row for row in results.get("capacity", []) if row.get("step", "capacity") == "capacity"]
    figure, axes = plt.subplots(1, 4, figsize=(22, 5))
    panels = (
        ("server_cpu_percent", "server CPU (% of one core)", "linear"),
        ("delivered_fraction", "packets delivered ÷ real-time rate (steady state)", "linear"),
        ("p99_lateness_ms", "p99 lateness (ms, symlog)", "symlog"),
        ("underruns_after_preroll", "underruns after pre-roll (60 ms jitter buffer)", "symlog"),
    )
    for axis, (key, title, scale) in zip(axes, panels, strict=True):
        for server in COLOURS:
            for frame_ms in sorted({row["frame_ms"] for row in rows}):
                points = sorted(
                    (row["devices"], row[key])
                    for row in rows
                    if row["server"] == server and row["frame_ms"] == frame_ms and row[key] is not None
                )
                if points:
                    axis.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        marker="o",
                        color=COLOURS[server],
                        linestyle=FRAME_STYLES.get(frame_ms, "-"),
                        label=f"{server}, {frame_ms} ms packets",
                    )
        if key == "p99_lateness_ms":
            axis.axhline(results.get("on_time", {}).get("p99_lateness_ms", 20.0), color="red", linewidth=0.8)
        axis.set_xscale("log")
        if scale == "symlog":
            axis.set_yscale("symlog", linthresh=10)
        axis.set_xlabel("devices streaming")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    pinning = results.get("pinning", {})
    where = (
        f"server on core(s) {pinning.get('server_cores')}, load generator on {pinning.get('loadgen_cores')}"
        if pinning.get("enabled")
        else "server and load generator unpinned, sharing the machine's cores"
    )
    figure.suptitle(f"Capacity: everyone streaming ({where})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def overload_bars(results: dict[str, Any], path: Path) -> Path:
    """Per overload size and server: devices asking to stream, admitted, on time, refused."""
    entries = results.get("targets", {}).get("overload", [])
    figure, axis = plt.subplots(figsize=(10, 5))
    keys = (
        ("asked", "asked to stream"),
        ("admitted", "admitted"),
        ("on_time_devices", "admitted and on time"),
        ("refused_never_admitted", "refused"),
    )
    labels: list[str] = []
    width = 0.2
    position = 0
    for entry in entries:
        for server in COLOURS:
            figures = entry.get(server)
            if not figures:
                continue
            for offset, (key, name) in enumerate(keys):
                axis.bar(
                    position + (offset - 1.5) * width,
                    figures.get(key) or 0,
                    width,
                    color=f"C{offset}",
                    label=name if position == 0 else None,
                )
            labels.append(f"{server}\n{entry['devices']} devices ({entry.get('times_project_capacity')}x)")
            position += 1
    axis.set_xticks(range(len(labels)), labels)
    axis.set_ylabel("devices")
    axis.set_title("Overload: devices asking to stream vs admitted, on time and refused (20 ms packets)")
    axis.grid(True, axis="y", alpha=0.3)
    if labels:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else Path(__file__).resolve().parent / "results" / "results.json"
    for path in plot_all(json.loads(source.read_text()), source.parent):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
