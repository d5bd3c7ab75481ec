"""An announcement to a whole idle fleet: do all devices get the whole clip, and how soon?

    python -m bench.announce --devices 700 --sound builtin-3

The project server runs pinned (core 0) with its operator API on a free loopback port; the load
generator (``bench.loadgen``'s idle scenario, core 1) connects the fleet and two probe devices that
press Mode, Play and Stop throughout. Once every device is connected this posts one
``POST /api/announce`` with ``{"all": true}`` and then reads, from the devices' own clips, how many
held the whole sound from ``is_start`` to ``is_end``, when each started and how long each took,
and the probes' press→ack meanwhile. One JSON report on stdout (and ``--out``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.loadgen import LoadOptions, run_load
from bench.stats import summary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.load(reply)


def _connected(api: str) -> int:
    try:
        return int(_get(f"{api}/api/devices?connected=true&limit=1")["total"])
    except OSError:
        return -1


def announce_when_connected(api: str, wanted: int, sound: str, settle: float, out: dict[str, Any]) -> None:
    deadline = time.monotonic() + 300
    while _connected(api) < wanted and time.monotonic() < deadline:
        time.sleep(0.25)
    out["connected_before"] = _connected(api)
    time.sleep(settle)
    out["posted_at"] = time.monotonic()
    reply = _post(f"{api}/api/announce", {"sound": sound, "target": {"all": True}})
    out["answered_at"] = time.monotonic()
    out["counts"] = reply["counts"]


def clip_figures(clips: list[list[float]], posted_at: float, length: float) -> dict[str, Any]:
    """Clips that started after the post: whole (all the audio, within length + 2 s) or not."""
    after = [clip for clip in clips if clip[0] >= posted_at]
    whole = [clip for clip in after if clip[2] >= length - 0.001 and clip[1] - clip[0] <= length + 2.0]
    starts = [clip[0] - posted_at for clip in after]
    spans = [clip[1] - clip[0] for clip in after]
    return {
        "clips": len(after),
        "whole_within_length_plus_2s": len(whole),
        "start_after_post": summary(starts),
        "start_to_end": summary(spans),
        "last_end_after_post_s": round(max((clip[1] - posted_at for clip in after), default=0.0), 3),
    }


def run_announcement(
    devices: int,
    sound: str = "builtin-3",
    sound_seconds: float = 3.3,
    processes: int = 1,
    settle: float = 2.0,
    server_args: list[str] | None = None,
) -> dict[str, Any]:
    """One announcement to ``devices`` idle devices; the figures (see the module's docstring)."""
    admin_port = _free_port()
    api = f"http://127.0.0.1:{admin_port}"
    posted: dict[str, Any] = {}
    poster = threading.Thread(
        target=announce_when_connected, args=(api, devices + 2, sound, settle, posted), daemon=True
    )
    poster.start()
    options = LoadOptions(
        scenario="idle",
        devices=devices,
        processes=processes,
        duration=settle + sound_seconds + 8.0,
        probes=2,
        server_args=["--admin-port", str(admin_port), *(server_args or [])],
    )
    report = run_load(options)
    poster.join(timeout=5)
    if "posted_at" not in posted:
        raise RuntimeError("the announcement was never posted (the devices did not all connect)")
    clips = [clip for worker in report.get("_clips", []) for clip in worker]
    return {
        "devices": devices,
        "sound": sound,
        "announce_counts": posted["counts"],
        "announce_reply_s": round(posted["answered_at"] - posted["posted_at"], 3),
        **clip_figures(clips, posted["posted_at"], sound_seconds),
        "probe_press_to_ack": report["probe_latency"]["press_to_ack"],
        "lateness": report["lateness"],
        "underruns_after_preroll": report["underruns_after_preroll"],
        "errors": report["errors"],
        "counters": report["counters"],
        "usage": {
            "server": report["usage"].get("server"),
            "loadgen": report["usage"].get("loadgen"),
            "machine": report["usage"].get("machine"),
        },
        "pinning": report["pinning"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=700)
    parser.add_argument("--sound", default="builtin-3", help="a sound the server knows (builtin-3: 3.3 s)")
    parser.add_argument("--sound-seconds", type=float, default=3.3, help="its length")
    parser.add_argument("--processes", type=int, default=1, help="load-generator processes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before the announcement")
    parser.add_argument("--server-args", default="", help="extra server flags, space-separated")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        result = run_announcement(
            args.devices,
            args.sound,
            args.sound_seconds,
            args.processes,
            args.settle,
            args.server_args.split(),
        )
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
