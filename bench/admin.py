"""Benchmarks of the operator surface: the HTTP API, the dashboard and the live events, against a
server process started for the purpose, pinned as the suite pins it (server on core 0; this
process, its load-generator workers, its HTTP clients and Chromium on the other cores).

    .venv/bin/python -m bench.admin --out-dir docs/benchmarks     # every step, ~10 minutes
    .venv/bin/python -m bench.admin --steps dashboard             # one step
    .venv/bin/python -m bench.admin --quick                       # fewer samples, shorter runs

Steps (each against a freshly started server with ``--admin-port 0`` and a state DB file):

- ``list``: ``GET /api/devices`` with 10,000 devices known to the server. The state DB is filled
  before the server starts through the project's own store (``SqliteStateStore.save_many`` and
  ``save_tags``); a few hundred of those devices then connect for real (the load generator's
  ``idle`` scenario). One request at a time over a kept-alive connection, timed from sending the
  request to the last byte of the reply: the first page at ``limit=100`` and ``limit=1000``, and
  two filtered queries. Target: p99 ≤ 200 ms.
- ``dashboard``: the same fleet; headless Chromium (Playwright) opens ``/`` in a fresh browser
  context (empty cache) several times, and each load is timed until the first device card
  (``[data-device-id]``) is visible: ``performance.now()`` in the page (from navigation start,
  polled every animation frame) and a wall-clock timer around ``goto`` + the wait. Target: median
  and worst ≤ 1 s. Without a dashboard (``/`` not served, or no card within the timeout) the
  step says "dashboard not available", and a full run tries it once more at its end.
- ``readers``: 1,000 devices stream (the load generator's ``streaming`` scenario: Plays spread
  over a ramp, refused Plays pressed again, probe devices pressing Mode, Play and Stop) with and
  without 5 live-event readers of ``/api/events`` (``--readers httpx``: 5 SSE clients in this
  process that first fetch ``/api/devices`` as a dashboard does; ``chromium``: 5 dashboard pages),
  alternating runs. Compared: the probes' press→LED p99 (pooled over the repeats), pacing lateness
  p99 as the load generator measures it (lateness + pre-roll: how far behind the server's send
  schedule a packet arrived, median over the repeats), and the server's own
  ``acp_pacing_lateness_seconds`` histogram. Target: with readers within 10 % of without.
- ``action``: an idle server and one simulated device (``simulator.SimulatedDevice``):
  ``POST /api/devices/{id}/mode`` timed until the device's LEDs show the mode (its
  ``led_history`` stamps), ``POST .../play`` until the first audio packet arrives, a few hundred
  of each. Target: p99 ≤ 20 ms.

Writes ``OUT_DIR/admin.json`` (every figure, the targets and whether each holds) and prints a
table; servers' logs go to ``OUT_DIR/logs/``. ``--profile STEP,...`` records the server with
py-spy during those steps (``OUT_DIR/logs/profile-STEP.txt``, collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from actors.state import DeviceState
from actors.store import SqliteStateStore
from admin.cli import SseParser
from bench.latency import showing
from bench.loadgen import LoadOptions, run_load
from bench.proc import (
    ROOT,
    Pinning,
    ServerProcess,
    parse_cores,
    pin_self,
    plan_pinning,
    read_proc,
    server_command,
)
from bench.stats import summary

STEPS = ("list", "dashboard", "readers", "action")
LIST_P99_MS = 200.0
FIRST_PAINT_MS = 1000.0
READERS_RATIO = 1.10
ACTION_P99_MS = 20.0
CARD = "[data-device-id]"
_ADMIN_PORT = re.compile(r"operator API and dashboard on http://127\.0\.0\.1:(\d+)/")
_METRICS_PORT = re.compile(r"metrics on port (\d+)")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
FIRST_CARD_JS = """() => {
    const card = document.querySelector('[data-device-id]');
    if (card === null) return false;
    const box = card.getBoundingClientRect();
    const style = getComputedStyle(card);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden' ? performance.now() : false;
}"""
"""Playwright's notion of visible (a non-empty box, not visibility:hidden), polled every frame."""
PAGE_FIGURES_JS = """() => {
    const paint = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
    const nav = performance.getEntriesByType('navigation')[0];
    return {
        first_contentful_paint_ms: paint ? paint.startTime : null,
        dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
        cards: document.querySelectorAll('[data-device-id]').length,
    };
}"""
COUNT_EVENTS_JS = """(() => {
    const Native = window.EventSource;
    const counts = {opened: 0, device: 0, other: 0, errors: 0};
    window.__benchEvents = counts;
    window.EventSource = class extends Native {
        constructor(...args) {
            super(...args);
            counts.opened += 1;
            this.addEventListener('device', () => { counts.device += 1; });
            for (const kind of ['announcement', 'sounds', 'reset']) {
                this.addEventListener(kind, () => { counts.other += 1; });
            }
            this.addEventListener('error', () => { counts.errors += 1; });
        }
    };
})();"""
"""Counts what a dashboard page's own EventSource receives, without touching the dashboard."""


# -- the server under test -------------------------------------------------------------------------


@dataclass
class Served:
    """A project server with its operator API on; stopped (and its profile ended) by ``stop``."""

    process: ServerProcess
    admin_port: int
    metrics_port: int | None
    state_db: Path
    profiler: subprocess.Popen[bytes] | None = None
    profile: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.process.port}"

    def stop(self) -> dict[str, Any]:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait()
        code = self.process.stop()
        return {
            "exit_code": code,
            "log": _shown(self.process.log),
            "log_problems": self.process.log_problems(),
            "affinity": self.process.affinity,
            "profile": str(self.profile) if self.profile is not None else None,
        }


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def start_server(
    args: argparse.Namespace,
    pinning: Pinning,
    name: str,
    state_db: Path,
    frame_ms: int = 20,
    metrics: bool = False,
) -> Served:
    """``bench.proc``'s project server, with the operator API on a free port and a state DB file."""
    extra = ["--state-db", str(state_db), "--admin-port", "0"]
    if metrics:
        extra += ["--metrics-port", "0"]
    command = server_command("project", frame_ms, args.preroll_ms, args.modes, extra)
    log = args.out_dir / "logs" / f"admin-{name}.log"
    process = ServerProcess(command, log, pinning.server_cores)
    text = log.read_text(errors="replace")
    admin = _ADMIN_PORT.search(text)
    if admin is None:
        process.stop()
        raise RuntimeError(f"the server did not say where its operator API is; see {log}")
    metrics_port = _METRICS_PORT.search(text)
    served = Served(
        process, int(admin.group(1)), int(metrics_port.group(1)) if metrics_port else None, state_db
    )
    if name.split("-")[0] in args.profile:
        served.profile = args.out_dir / "logs" / f"profile-{name}.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            print("bench.admin: py-spy not found; not profiling", file=sys.stderr)
        else:
            served.profiler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(process.pid),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--output",
                    str(served.profile),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    return served


def fill_store(path: Path, total: int, connected_ids: Sequence[str], modes: int) -> dict[str, Any]:
    """``total`` devices the server will find in its state DB: ``connected_ids`` (which the load
    generator connects) and offline ones, each with a mode, a last-seen time and 1-3 tags."""
    rng = random.Random(7)
    ids = list(connected_ids) + [f"dev-{index:05d}" for index in range(total - len(connected_ids))]
    started = time.perf_counter()
    store = SqliteStateStore(path)
    try:
        store.save_many(
            [(device_id, DeviceState(mode=rng.randrange(modes), next_playback_id=1)) for device_id in ids]
        )
        tagged = 0
        for index, device_id in enumerate(ids):
            tags = [f"floor-{index % 20}", f"zone-{index % 7}"]
            if index % 10 == 0:
                tags.append("lobby")
            store.save_tags(device_id, tags)
            tagged += 1
    finally:
        store.close()
    return {"devices": len(ids), "tagged": tagged, "seconds": round(time.perf_counter() - started, 2)}


class IdleFleet:
    """The load generator's ``idle`` scenario in a thread of its own: ``devices`` connected for real
    for ``duration`` seconds after they are all up; ``join`` returns its report."""

    def __init__(self, served: Served, options: LoadOptions) -> None:
        self.options = replace(options, target=served.target, server_pid=served.process.pid)
        self.report: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="idle-fleet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.report = run_load(self.options)
        except BaseException as error:  # reported by join, not lost in a thread
            self.error = error

    def wait_connected(self, client: httpx.Client, timeout: float = 120.0) -> int:
        """Until the server lists every device as connected (what the fleet view says, not the load
        generator)."""
        deadline = time.monotonic() + timeout
        connected = 0
        while time.monotonic() < deadline and self._thread.is_alive():
            reply = client.get("/api/devices", params={"connected": "true", "limit": 1})
            connected = int(reply.json()["total"])
            if connected >= self.options.devices:
                return connected
            time.sleep(0.2)
        if self.error is not None:
            raise RuntimeError(f"the load generator failed: {self.error}")
        raise RuntimeError(f"only {connected} of {self.options.devices} devices connected")

    def join(self) -> dict[str, Any]:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the load generator failed: {self.error}")
        assert self.report is not None
        return self.report


def idle_options(args: argparse.Namespace, pinning: Pinning, devices: int, duration: float) -> LoadOptions:
    return LoadOptions(
        scenario="idle",
        devices=devices,
        processes=1,
        duration=duration,
        pin=pinning.enabled,
        server_cores=list(pinning.server_cores) or None,
        loadgen_cores=list(pinning.loadgen_cores) or None,
        decode_sample=0.0,
        sample_interval=1.0,
        modes=args.modes,
    )


def fleet_ids(devices: int) -> list[str]:
    """The ids ``bench.fleet`` gives one worker's devices (worker "0")."""
    return [f"bench-0-{index}" for index in range(devices)]


def _fleet_brief(report: dict[str, Any]) -> dict[str, Any]:
    usage = report.get("usage", {})
    return {
        "devices": report["devices"],
        "connected_at_end": report["connected_at_end"],
        "errors_total": report["errors_total"],
        "server_cpu_percent_of_core": usage.get("server", {}).get("cpu_percent_of_core"),
        "per_core_busy_percent": usage.get("machine", {}).get("per_core_busy_percent"),
        "others_percent_of_one_core": usage.get("machine", {}).get("others_percent_of_one_core"),
        "pinning": report.get("pinning"),
    }


# -- step: GET /api/devices --------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    name: str
    params: dict[str, str]


def list_queries() -> list[Query]:
    return [
        Query("first page, limit=100", {"limit": "100"}),
        Query("first page, limit=1000", {"limit": "1000"}),
        Query("filtered: q=floor-1 (substring of id or tag), limit=100", {"q": "floor-1", "limit": "100"}),
        Query(
            "filtered: connected=false&tag=lobby, limit=1000",
            {"connected": "false", "tag": "lobby", "limit": "1000"},
        ),
    ]


def time_query(client: httpx.Client, query: Query, samples: int, budget: float, pid: int) -> dict[str, Any]:
    """One request at a time; each timed from sending to the reply's last byte."""
    for _ in range(5):  # warm-up: the first listing builds every device's JSON once
        client.get("/api/devices", params=query.params).raise_for_status()
    times: list[float] = []
    sizes: list[int] = []
    reply_shape: dict[str, Any] = {}
    cpu_before = read_proc(pid)
    started = time.monotonic()
    while len(times) < samples and time.monotonic() - started < budget:
        sent = time.perf_counter()
        reply = client.get("/api/devices", params=query.params)
        body = reply.content
        times.append(time.perf_counter() - sent)
        sizes.append(len(body))
        if reply.status_code != 200:
            raise RuntimeError(f"GET /api/devices {query.params}: {reply.status_code} {body[:200]!r}")
        if not reply_shape:
            page = json.loads(body)
            reply_shape = {"devices": len(page["devices"]), "total": page["total"], "next": page["next"]}
    elapsed = time.monotonic() - started
    cpu_after = read_proc(pid)
    cpu = cpu_after.cpu_s - cpu_before.cpu_s if cpu_before is not None and cpu_after is not None else None
    return {
        "query": query.name,
        "params": query.params,
        "latency": summary(times),
        "reply": reply_shape | {"bytes": int(np.median(sizes))},
        "server_cpu_ms_per_request": round(1000 * cpu / len(times), 2) if cpu is not None and times else None,
        "requests_per_s": round(len(times) / elapsed, 1) if elapsed > 0 else None,
    }


def small_reply(client: httpx.Client, url: str, samples: int = 50) -> dict[str, Any]:
    """``GET /api/whoami`` (a 33-byte reply) on the kept-alive connection and on a new connection each
    time: what a request costs apart from the listing (a gap between the two is the transport's)."""
    kept: list[float] = []
    fresh: list[float] = []
    for _ in range(samples):
        sent = time.perf_counter()
        client.get("/api/whoami").raise_for_status()
        kept.append(time.perf_counter() - sent)
        sent = time.perf_counter()
        httpx.get(url + "/api/whoami", timeout=10).raise_for_status()
        fresh.append(time.perf_counter() - sent)
    return {"kept_alive": summary(kept), "new_connection": summary(fresh)}


def step_list(args: argparse.Namespace, pinning: Pinning, scratch: Path) -> dict[str, Any]:
    queries = list_queries()
    db = scratch / "list.sqlite3"
    filled = fill_store(db, args.known, fleet_ids(args.connected), args.modes)
    served = start_server(args, pinning, "list", db)
    result: dict[str, Any] = {
        "known_devices": args.known,
        "connected_devices": args.connected,
        "store": filled,
    }
    try:
        budget = args.list_seconds
        fleet = IdleFleet(served, idle_options(args, pinning, args.connected, 15 + budget * len(queries)))
        with httpx.Client(base_url=served.url, timeout=30) as client:
            result["connected_seen"] = fleet.wait_connected(client)
            total = int(client.get("/api/devices", params={"limit": 1}).json()["total"])
            result["total_seen"] = total
            result["queries"] = [
                time_query(client, query, args.list_samples, budget, served.process.pid) for query in queries
            ]
            result["small_reply"] = small_reply(client, served.url)
        result["fleet"] = _fleet_brief(fleet.join())
    finally:
        result["server"] = served.stop()
    worst = max(query["latency"]["p99_ms"] for query in result["queries"])
    result["target"] = {
        "what": f"GET /api/devices p99 ≤ {LIST_P99_MS:g} ms with {args.known:,} devices known",
        "worst_p99_ms": worst,
        "holds": worst <= LIST_P99_MS and result["total_seen"] == args.known,
    }
    return result


# -- step: the dashboard's first paint ----------------------------------------------------------------


def dashboard_served(url: str) -> str | None:
    """None when ``/`` serves a page; else why not."""
    try:
        reply = httpx.get(url + "/", timeout=10)
    except httpx.HTTPError as error:
        return f"GET / failed: {error}"
    if reply.status_code != 200:
        return f"GET / answered {reply.status_code}"
    if "html" not in reply.headers.get("content-type", ""):
        return f"GET / is {reply.headers.get('content-type')!r}, not HTML"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (``playwright install`` is not needed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def descendants_affinity() -> dict[str, list[int]]:
    """The cores every process this one started may use (Chromium's included), by command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
        names[int(entry.name)] = name
    found: dict[str, set[int]] = {}
    stack = list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            found.setdefault(names[pid], set()).update(os.sched_getaffinity(pid))
        except OSError:
            continue
    return {name: sorted(cores) for name, cores in sorted(found.items())}


def load_dashboard(browser: Any, url: str, timeout_s: float) -> dict[str, Any]:
    """One load in a fresh context (no cache, no storage): until the first card is visible."""
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        started = time.perf_counter()
        page.goto(url + "/", wait_until="commit", timeout=timeout_s * 1000)
        handle = page.wait_for_function(FIRST_CARD_JS, polling="raf", timeout=timeout_s * 1000)
        wall = time.perf_counter() - started
        in_page = float(handle.json_value())
        figures: dict[str, Any] = page.evaluate(PAGE_FIGURES_JS)
        page.wait_for_timeout(1500)
        settled: dict[str, Any] = page.evaluate(PAGE_FIGURES_JS)
        return {
            "first_card_ms": round(in_page, 1),
            "wall_ms": round(wall * 1000, 1),
            "first_contentful_paint_ms": _round(settled["first_contentful_paint_ms"]),
            "dom_content_loaded_ms": _round(figures["dom_content_loaded_ms"]),
            "cards_at_first_card": figures["cards"],
            "cards_after_1_5_s": settled["cards"],
            "page_errors": errors,
        }
    finally:
        context.close()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def step_dashboard(args: argparse.Namespace, pinning: Pinning, scratch: Path) -> dict[str, Any]:
    db = scratch / "dashboard.sqlite3"
    filled = fill_store(db, args.known, fleet_ids(args.connected), args.modes)
    served = start_server(args, pinning, "dashboard", db)
    result: dict[str, Any] = {
        "known_devices": args.known,
        "connected_devices": args.connected,
        "store": filled,
    }
    try:
        missing = dashboard_served(served.url)
        if missing is not None:
            result["available"] = False
            result["why"] = f"dashboard not available: {missing}"
            return result
        fleet = IdleFleet(served, idle_options(args, pinning, args.connected, 20 + args.loads * 5))
        with httpx.Client(base_url=served.url, timeout=30) as client:
            result["connected_seen"] = fleet.wait_connected(client)
            result["total_seen"] = int(client.get("/api/devices", params={"limit": 1}).json()["total"])
        loads: list[dict[str, Any]] = []
        with chromium() as browser:
            result["browser"] = {"version": browser.version, "affinity": descendants_affinity()}
            from playwright.sync_api import TimeoutError as PlaywrightTimeout

            try:
                load_dashboard(browser, served.url, args.paint_timeout)  # warm-up: the browser's own start
                for _ in range(args.loads):
                    loads.append(load_dashboard(browser, served.url, args.paint_timeout))
            except PlaywrightTimeout:
                result["available"] = False
                result["why"] = (
                    f"dashboard not available: no {CARD} visible within {args.paint_timeout:g} s of opening /"
                )
        result["loads"] = loads
        result["fleet"] = _fleet_brief(fleet.join())
    finally:
        result["server"] = served.stop()
    if not loads:
        result.setdefault("available", False)
        return result
    result["available"] = True
    first = [load["first_card_ms"] for load in loads]
    wall = [load["wall_ms"] for load in loads]
    result["first_card_ms"] = {"median": round(float(np.median(first)), 1), "worst": max(first)}
    result["wall_ms"] = {"median": round(float(np.median(wall)), 1), "worst": max(wall)}
    result["target"] = {
        "what": f"dashboard first device card visible ≤ {FIRST_PAINT_MS:g} ms with {args.known:,} devices",
        "median_ms": result["first_card_ms"]["median"],
        "worst_ms": result["first_card_ms"]["worst"],
        "holds": max(first) <= FIRST_PAINT_MS,
    }
    return result


# -- step: live-event readers beside streaming devices -------------------------------------------------


@dataclass
class ReaderStats:
    fetched_devices: int = 0
    connects: int = 0
    ended_by_server: int = 0
    errors: int = 0
    events: Counter[str] = field(default_factory=Counter)
    lag_s: list[float] = field(default_factory=list)
    """Arrival (wall clock) minus the device's ``last_seen``: change → reader, coalescing included."""


class SseReaders:
    """``count`` live-event readers as a dashboard is one: fetch ``/api/devices``, then follow
    ``/api/events`` from that page's ``event_id``, reconnecting with ``Last-Event-ID``; on an event
    loop in a thread of this process."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stats = [ReaderStats() for _ in range(count)]
        self._subscribed = threading.Semaphore(0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-readers", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)
        deadline = time.monotonic() + timeout
        for _ in self.stats:
            if not self._subscribed.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise RuntimeError("live-event readers did not all subscribe")

    def stop(self) -> dict[str, Any]:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        events: Counter[str] = Counter()
        for stats in self.stats:
            events.update(stats.events)
        lags = [lag for stats in self.stats for lag in stats.lag_s]
        return {
            "kind": "httpx",
            "readers": len(self.stats),
            "events_per_reader": [sum(stats.events.values()) for stats in self.stats],
            "events": dict(events),
            "connects": sum(stats.connects for stats in self.stats),
            "ended_by_server": sum(stats.ended_by_server for stats in self.stats),
            "errors": sum(stats.errors for stats in self.stats),
            "devices_fetched_first": [stats.fetched_devices for stats in self.stats],
            "device_event_lag": summary(lags),
        }

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        timeout = httpx.Timeout(10.0, read=None)
        async with httpx.AsyncClient(base_url=self.url, timeout=timeout) as client:
            tasks = [asyncio.create_task(self._read(client, stats)) for stats in self.stats]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, client: httpx.AsyncClient, stats: ReaderStats) -> None:
        first = (await client.get("/api/devices", params={"limit": 1000})).json()
        stats.fetched_devices = len(first["devices"])
        parser = SseParser()
        parser.last_id = str(first["event_id"])
        while True:
            headers = {"Last-Event-ID": parser.last_id} if parser.last_id else {}
            try:
                async with client.stream("GET", "/api/events", headers=headers) as response:
                    response.raise_for_status()
                    stats.connects += 1
                    if stats.connects == 1:
                        self._subscribed.release()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        stats.events[event.event] += 1
                        if event.event == "device":
                            seen = json.loads(event.data).get("last_seen")
                            if seen:
                                stats.lag_s.append(time.time() - _epoch(seen))
                stats.ended_by_server += 1
            except httpx.HTTPError:
                stats.errors += 1
                await asyncio.sleep(0.5)
            parser.reset()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class DashboardReaders:
    """``count`` dashboard pages in headless Chromium, each a reader of ``/api/events`` through the
    page's own EventSource (counted by a script run before the page's)."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self._stack = contextlib.ExitStack()
        self._pages: list[Any] = []
        self.browser_info: dict[str, Any] = {}

    def start(self, timeout: float = 30.0) -> None:
        browser = self._stack.enter_context(chromium())
        self.browser_info = {"version": browser.version}
        for _ in range(self.count):
            context = browser.new_context()
            context.add_init_script(COUNT_EVENTS_JS)
            page = context.new_page()
            page.goto(self.url + "/")
            page.wait_for_selector(CARD, state="visible", timeout=timeout * 1000)
            page.wait_for_function("() => window.__benchEvents && window.__benchEvents.opened > 0")
            self._pages.append(page)
        self.browser_info["affinity"] = descendants_affinity()

    def wait(self, seconds: float) -> None:
        """Sleep without starving the pages: Playwright's sync API dispatches while it waits."""
        if self._pages:
            self._pages[0].wait_for_timeout(seconds * 1000)
        else:
            time.sleep(seconds)

    def stop(self) -> dict[str, Any]:
        counts = [page.evaluate("() => window.__benchEvents") for page in self._pages]
        cards = [page.locator(CARD).count() for page in self._pages]
        self._stack.close()
        return {
            "kind": "chromium",
            "readers": len(self._pages),
            "events_per_reader": [count["device"] + count["other"] for count in counts],
            "event_sources_opened": [count["opened"] for count in counts],
            "event_source_errors": [count["errors"] for count in counts],
            "cards_per_page": cards,
            "browser": self.browser_info,
        }


def scrape(port: int | None) -> dict[str, dict[float, float]]:
    """The server's pacing-lateness and button→LED histograms: cumulative count per upper bound."""
    if port is None:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    wanted = {"acp_pacing_lateness_seconds", "acp_button_to_led_seconds"}
    found: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found.setdefault(family.name, {})[float(sample.labels["le"])] = sample.value
    return found


class Scraper:
    """The server's histograms every ``interval`` on a thread, so a window can be cut out afterwards."""

    def __init__(self, port: int | None, interval: float = 1.0) -> None:
        self.port = port
        self.interval = interval
        self.snapshots: list[tuple[float, dict[str, dict[float, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def __enter__(self) -> Scraper:
        if self.port is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                self.snapshots.append((time.monotonic(), scrape(self.port)))
            if self._stop.wait(self.interval):
                return

    def window(self, start: float, end: float) -> dict[str, dict[str, Any]]:
        """p99 of each histogram between the first snapshot at or after ``start`` and the last at or
        before ``end`` (inside the window, to within one interval at each end)."""
        inside = [(t, data) for t, data in self.snapshots if start <= t <= end]
        if len(inside) < 2:
            return {}
        (first_t, first), (last_t, last) = inside[0], inside[-1]
        names = sorted(set(first) | set(last))
        return {
            name: histogram_p99(first.get(name, {}), last.get(name, {}))
            | {"seconds": round(last_t - first_t, 1)}
            for name in names
        }


def histogram_p99(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """p99 of what was observed between two scrapes, interpolated inside its bucket (coarse)."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return {"count": 0}
    rank = 0.99 * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return {"count": int(total), "p99_ms": None, "p99_above_ms": round(lower * 1000, 3)}
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return {"count": int(total), "p99_ms": round((lower + share * (bound - lower)) * 1000, 2)}
        lower, below = bound, cumulative
    return {"count": int(total)}


def streaming_options(args: argparse.Namespace, pinning: Pinning, served: Served) -> LoadOptions:
    return LoadOptions(
        scenario="streaming",
        devices=args.stream_devices,
        processes=1,
        duration=args.stream_duration,
        frame_ms=args.stream_frame_ms,
        preroll_ms=args.preroll_ms,
        modes=args.modes,
        probes=args.probes,
        ramp=args.ramp,
        refused_retry=1.0,
        decode_sample=args.decode_sample,
        sample_interval=1.0,
        raw=True,
        pin=pinning.enabled,
        server_cores=list(pinning.server_cores) or None,
        loadgen_cores=list(pinning.loadgen_cores) or None,
        target=served.target,
        server_pid=served.process.pid,
    )


def streaming_run(
    args: argparse.Namespace, pinning: Pinning, scratch: Path, number: int, readers: str | None
) -> dict[str, Any]:
    """One streaming run on a fresh server, with ``readers`` ("httpx", "chromium") or none."""
    name = f"readers-{number}-{readers or 'none'}"
    print(f"bench.admin: {name}", file=sys.stderr, flush=True)
    served = start_server(
        args, pinning, name, scratch / f"{name}.sqlite3", args.stream_frame_ms, metrics=True
    )
    run: dict[str, Any] = {"readers": readers}
    reader: SseReaders | DashboardReaders | None = None
    try:
        if readers == "httpx":
            reader = SseReaders(served.url, args.readers)
        elif readers == "chromium":
            reader = DashboardReaders(served.url, args.readers)
        if reader is not None:
            reader.start()
        options = streaming_options(args, pinning, served)
        box: dict[str, Any] = {}

        def load() -> None:
            box["called_at"] = time.monotonic()
            box["report"] = run_load(options)

        with Scraper(served.metrics_port) as scraper:
            if isinstance(reader, DashboardReaders):
                # Playwright's sync API belongs to this thread: the load runs beside it.
                thread = threading.Thread(target=load, name="streaming-load")
                thread.start()
                while thread.is_alive():
                    reader.wait(0.5)
                thread.join()
                if "report" not in box:
                    raise RuntimeError("the load generator failed (see its stderr)")
            else:
                load()
        report: dict[str, Any] = box["report"]
        # run_load's window: all devices ready after connect_phase_s, go 0.3 s later, window_s long.
        go = box["called_at"] + report["connect_phase_s"] + 0.3
        histograms = scraper.window(go, go + report["window_s"])
        if reader is not None:
            run["reader_figures"] = reader.stop()
            reader = None
    finally:
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.stop()
        run["server"] = served.stop()
    usage = report["usage"]
    lateness = report["lateness_in_window"]
    run.update(
        streams=report["streams"],
        refused_connects=report["refused_connects"],
        errors=report["errors"],
        underruns_after_preroll=report["underruns_after_preroll"],
        probe_press_to_led=report["probe_latency"]["press_to_led"],
        probe_play_to_first_packet=report["probe_latency"]["play_to_first_packet"],
        lateness_in_window=lateness,
        behind_schedule_p99_ms=round(lateness["p99_ms"] + args.preroll_ms, 2)
        if lateness.get("count")
        else None,
        server_pacing_lateness=histograms.get("acp_pacing_lateness_seconds", {"count": 0}),
        server_button_to_led=histograms.get("acp_button_to_led_seconds", {"count": 0}),
        server_cpu_percent_of_core=usage.get("server", {}).get("cpu_percent_of_core"),
        loadgen_cpu_percent_of_core=usage.get("loadgen", {}).get("cpu_percent_of_core"),
        per_core_busy_percent=usage.get("machine", {}).get("per_core_busy_percent"),
        others_percent_of_one_core=usage.get("machine", {}).get("others_percent_of_one_core"),
        pinning=report.get("pinning"),
        raw_probe_press_to_led_ms=report.get("raw_ms", {}).get("probe_press_to_led", []),
    )
    return run


def _condition(runs: list[dict[str, Any]]) -> dict[str, Any]:
    pooled = [value for run in runs for value in run["raw_probe_press_to_led_ms"]]
    behind = [run["behind_schedule_p99_ms"] for run in runs if run["behind_schedule_p99_ms"] is not None]
    pacing = [run["server_pacing_lateness"].get("p99_ms") for run in runs]
    cpu = [run["server_cpu_percent_of_core"] for run in runs if run["server_cpu_percent_of_core"] is not None]
    return {
        "runs": len(runs),
        "probe_press_to_led_pooled": summary([value / 1000 for value in pooled]),
        "probe_press_to_led_p99_per_run_ms": [run["probe_press_to_led"].get("p99_ms") for run in runs],
        "behind_schedule_p99_median_ms": round(float(np.median(behind)), 2) if behind else None,
        "behind_schedule_p99_per_run_ms": behind,
        "server_pacing_lateness_p99_per_run_ms": pacing,
        "server_button_to_led_p99_per_run_ms": [run["server_button_to_led"].get("p99_ms") for run in runs],
        "server_cpu_percent_median": round(float(np.median(cpu)), 1) if cpu else None,
        "admitted_per_run": [run["streams"]["admitted"] for run in runs],
        "on_time_per_run": [run["streams"]["on_time"] for run in runs],
    }


def step_readers(args: argparse.Namespace, pinning: Pinning, scratch: Path) -> dict[str, Any]:
    kind: str = args.readers_kind
    result: dict[str, Any] = {
        "devices": args.stream_devices,
        "frame_ms": args.stream_frame_ms,
        "duration_s": args.stream_duration,
        "ramp_s": args.ramp,
        "probes": args.probes,
        "readers": args.readers,
    }
    if kind == "chromium":
        served = start_server(args, pinning, "readers-check", scratch / "readers-check.sqlite3")
        try:
            missing = dashboard_served(served.url)
        finally:
            served.stop()
        if missing is not None:
            result["readers_fallback"] = (
                f"chromium asked for, but dashboard not available ({missing}): httpx readers"
            )
            kind = "httpx"
    result["readers_kind"] = kind
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order: tuple[str | None, ...] = (None, kind) if repeat % 2 == 0 else (kind, None)
        for readers in order:
            runs.append(streaming_run(args, pinning, scratch, len(runs), readers))
    without = _condition([run for run in runs if run["readers"] is None])
    with_readers = _condition([run for run in runs if run["readers"] is not None])
    for run in runs:
        run.pop("raw_probe_press_to_led_ms")
    result["runs"] = runs
    result["without_readers"] = without
    result["with_readers"] = with_readers
    led_without = without["probe_press_to_led_pooled"].get("p99_ms")
    led_with = with_readers["probe_press_to_led_pooled"].get("p99_ms")
    behind_without = without["behind_schedule_p99_median_ms"]
    behind_with = with_readers["behind_schedule_p99_median_ms"]
    led_ratio = _ratio(led_with, led_without)
    behind_ratio = _ratio(behind_with, behind_without)
    result["target"] = {
        "what": f"with {args.readers} live-event readers, press→LED p99 and pacing lateness p99 within "
        f"{round((READERS_RATIO - 1) * 100)} % of the same run without them",
        "press_to_led_p99_ms": {"without": led_without, "with": led_with, "ratio": led_ratio},
        "behind_schedule_p99_ms": {"without": behind_without, "with": behind_with, "ratio": behind_ratio},
        "holds": led_ratio is not None
        and behind_ratio is not None
        and led_ratio <= READERS_RATIO
        and behind_ratio <= READERS_RATIO,
    }
    return result


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


# -- step: API action → the device sees it -------------------------------------------------------------


async def _actions(url: str, target: str, samples: int, modes: int) -> dict[str, Any]:
    from simulator import SimulatedDevice

    device = SimulatedDevice(target, "bench-action-0", play_in_real_time=False)
    await device.connect()
    await device.wait_for_first_set(10)
    rng = random.Random(3)
    mode_to_led: list[float] = []
    mode_reply: list[float] = []
    play_to_packet: list[float] = []
    play_reply: list[float] = []
    stop_reply: list[float] = []
    path = f"/api/devices/{device.device_id}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        current = int((await client.get(path)).json()["mode"])
        for index in range(samples + 5):
            current = (current + 1) % modes
            shows = showing(current)
            sent = time.monotonic()
            reply = await client.post(path + "/mode", json={"mode": current})
            replied = time.monotonic()
            reply.raise_for_status()
            await device.wait_for_leds(shows, 5)
            applied = next(stamp for stamp, leds in device.led_history if stamp >= sent and shows(leds))
            if index >= 5:  # the first few warm the path up
                mode_to_led.append(applied - sent)
                mode_reply.append(replied - sent)
            await asyncio.sleep(rng.uniform(0.02, 0.06))
        for index in range(samples + 5):
            recordings = len(device.recordings)
            sent = time.monotonic()
            reply = await client.post(path + "/play", json={})
            replied = time.monotonic()
            reply.raise_for_status()
            deadline = sent + 5
            while len(device.recordings) <= recordings and time.monotonic() < deadline:
                await asyncio.sleep(0.001)  # the arrival is stamped by the device, not by this poll
            first = device.recordings[recordings].arrivals[0]
            if index >= 5:
                play_to_packet.append(first - sent)
                play_reply.append(replied - sent)
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            sent = time.monotonic()
            (await client.post(path + "/stop", json={})).raise_for_status()
            if index >= 5:
                stop_reply.append(time.monotonic() - sent)
            await asyncio.sleep(rng.uniform(0.02, 0.06))
    await device.disconnect()
    return {
        "mode_to_led": summary(mode_to_led),
        "play_to_first_packet": summary(play_to_packet),
        "mode_reply": summary(mode_reply),
        "play_reply": summary(play_reply),
        "stop_reply": summary(stop_reply),
    }


def step_action(args: argparse.Namespace, pinning: Pinning, scratch: Path) -> dict[str, Any]:
    served = start_server(args, pinning, "action", scratch / "action.sqlite3")
    result: dict[str, Any] = {"samples": args.action_samples}
    try:
        cpu_before = read_proc(served.process.pid)
        result |= asyncio.run(_actions(served.url, served.target, args.action_samples, args.modes))
        cpu_after = read_proc(served.process.pid)
        if cpu_before is not None and cpu_after is not None:
            result["server_cpu_s"] = round(cpu_after.cpu_s - cpu_before.cpu_s, 3)
    finally:
        result["server"] = served.stop()
    mode_p99 = result["mode_to_led"]["p99_ms"]
    play_p99 = result["play_to_first_packet"]["p99_ms"]
    result["target"] = {
        "what": f"API action → device sees it, idle: p99 ≤ {ACTION_P99_MS:g} ms",
        "mode_to_led_p99_ms": mode_p99,
        "play_to_first_packet_p99_ms": play_p99,
        "holds": max(mode_p99, play_p99) <= ACTION_P99_MS,
    }
    return result


# -- the run --------------------------------------------------------------------------------------------


def _git(*command: str) -> str:
    try:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "commit": _git("rev-parse", "HEAD").strip(),
        "uncommitted_server_files": [
            line[3:]
            for line in _git("status", "--porcelain", "--", "admin", "actors", "rpc", "media").splitlines()
        ],
    }


Runner = Callable[[argparse.Namespace, Pinning, Path], dict[str, Any]]
RUNNERS: dict[str, Runner] = {
    "list": step_list,
    "dashboard": step_dashboard,
    "readers": step_readers,
    "action": step_action,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    (args.out_dir / "logs").mkdir(parents=True, exist_ok=True)
    pinning = plan_pinning(not args.no_pin, args.server_cores, args.loadgen_cores)
    pin_self(pinning.loadgen_cores)
    results: dict[str, Any] = {
        "benchmark": "operator surface (bench.admin)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": args.argv,
        "machine": machine(),
        "pinning": pinning.as_dict() | {"this_process": sorted(os.sched_getaffinity(0))},
        "steps": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as scratch:
        for name in args.steps:
            print(
                f"bench.admin: step {name} (elapsed {time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            results["steps"][name] = _attempt(name, args, pinning, Path(scratch))
        dashboard = results["steps"].get("dashboard")
        if dashboard is not None and not dashboard.get("available") and len(args.steps) > 1:
            print("bench.admin: dashboard again, at the end of the run", file=sys.stderr, flush=True)
            again = _attempt("dashboard", args, pinning, Path(scratch))
            again["first_attempt"] = dashboard.get("why") or dashboard.get("error")
            results["steps"]["dashboard"] = again
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results["steps"])
    return results


def _attempt(name: str, args: argparse.Namespace, pinning: Pinning, scratch: Path) -> dict[str, Any]:
    try:
        return RUNNERS[name](args, pinning, scratch)
    except Exception as error:  # one broken step must not lose the others
        print(f"bench.admin: step {name} failed: {error!r}", file=sys.stderr, flush=True)
        return {"error": repr(error)}


def targets(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: what, the figure measured, holds (True / False / None: not measured)."""
    rows: list[dict[str, Any]] = []
    listing = steps.get("list")
    if listing is not None:
        if "target" in listing:
            for query in listing["queries"]:
                rows.append(
                    {
                        "target": f"GET /api/devices, {query['query']}: p99 ≤ {LIST_P99_MS:g} ms",
                        "measured": f"p99 {query['latency']['p99_ms']:.1f} ms (p50 {query['latency']['p50_ms']:.1f})",
                        "holds": query["latency"]["p99_ms"] <= LIST_P99_MS,
                    }
                )
        else:
            rows.append({"target": "GET /api/devices", "measured": listing.get("error"), "holds": None})
    dashboard = steps.get("dashboard")
    if dashboard is not None:
        what = f"dashboard first card ≤ {FIRST_PAINT_MS:g} ms"
        if "target" in dashboard:
            figure = dashboard["first_card_ms"]
            wall = dashboard["wall_ms"]
            rows.append(
                {
                    "target": what,
                    "measured": f"median {figure['median']:.0f} ms, worst {figure['worst']:.0f} ms "
                    f"(wall: {wall['median']:.0f} / {wall['worst']:.0f})",
                    "holds": dashboard["target"]["holds"],
                }
            )
        else:
            rows.append(
                {"target": what, "measured": dashboard.get("why") or dashboard.get("error"), "holds": None}
            )
    readers = steps.get("readers")
    if readers is not None:
        if "target" in readers:
            target = readers["target"]
            led, behind = target["press_to_led_p99_ms"], target["behind_schedule_p99_ms"]
            rows.append(
                {
                    "target": f"{readers['readers']} {readers['readers_kind']} readers: press→LED p99 "
                    f"within 10 %",
                    "measured": f"{led['with']} ms vs {led['without']} ms ({led['ratio']}x)",
                    "holds": led["ratio"] is not None and led["ratio"] <= READERS_RATIO,
                }
            )
            rows.append(
                {
                    "target": f"{readers['readers']} {readers['readers_kind']} readers: pacing lateness p99 "
                    f"within 10 %",
                    "measured": f"{behind['with']} ms vs {behind['without']} ms behind schedule ({behind['ratio']}x)",
                    "holds": behind["ratio"] is not None and behind["ratio"] <= READERS_RATIO,
                }
            )
        else:
            rows.append({"target": "live-event readers", "measured": readers.get("error"), "holds": None})
    action = steps.get("action")
    if action is not None:
        if "target" in action:
            for key, label in (
                ("mode_to_led", "POST mode → LEDs"),
                ("play_to_first_packet", "POST play → first packet"),
            ):
                figure = action[key]
                rows.append(
                    {
                        "target": f"{label}: p99 ≤ {ACTION_P99_MS:g} ms",
                        "measured": f"p99 {figure['p99_ms']:.1f} ms (p50 {figure['p50_ms']:.1f}, n={figure['count']})",
                        "holds": figure["p99_ms"] <= ACTION_P99_MS,
                    }
                )
        else:
            rows.append({"target": "API action → device", "measured": action.get("error"), "holds": None})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cells = [("target", "measured", "holds")] + [
        (row["target"], str(row["measured"]), {True: "yes", False: "NO", None: "-"}[row["holds"]])
        for row in rows
    ]
    widths = [max(len(cell[column]) for cell in cells) for column in range(3)]
    lines = ["  ".join(cell[column].ljust(widths[column]) for column in range(3)).rstrip() for cell in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--steps", help=f"comma-separated, of: {', '.join(STEPS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter runs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the load generator")
    parser.add_argument("--server-cores", help="cores of the server (default 0)")
    parser.add_argument("--loadgen-cores", help="cores of everything else (default: every other core)")
    parser.add_argument("--modes", type=int, default=5)
    parser.add_argument("--preroll-ms", type=int, default=150)
    parser.add_argument("--known", type=int, default=10_000, help="list, dashboard: devices in the state DB")
    parser.add_argument("--connected", type=int, default=300, help="list, dashboard: of those, connected")
    parser.add_argument("--list-samples", type=int, help="list: requests per query (default 300)")
    parser.add_argument("--list-seconds", type=float, default=15.0, help="list: at most this long per query")
    parser.add_argument("--loads", type=int, help="dashboard: page loads (default 9)")
    parser.add_argument(
        "--paint-timeout", type=float, default=15.0, help="dashboard: seconds to wait for a card"
    )
    parser.add_argument("--stream-devices", type=int, default=1000, help="readers: streaming devices")
    parser.add_argument("--stream-frame-ms", type=int, default=120, help="readers: packet duration")
    parser.add_argument("--stream-duration", type=float, help="readers: seconds of each run (default 25)")
    parser.add_argument(
        "--ramp", type=float, default=5.0, help="readers: seconds over which the Plays spread"
    )
    parser.add_argument(
        "--probes", type=int, default=8, help="readers: probe devices pressing Mode/Play/Stop"
    )
    parser.add_argument(
        "--decode-sample", type=float, default=0.01, help="readers: share of devices decoding"
    )
    parser.add_argument("--readers", type=int, default=5, help="readers: live-event readers")
    parser.add_argument(
        "--readers-kind",
        choices=("httpx", "chromium"),
        default="httpx",
        help="readers: SSE clients in this process, or dashboard pages in Chromium",
    )
    parser.add_argument("--repeats", type=int, help="readers: runs per condition, alternating (default 4)")
    parser.add_argument("--action-samples", type=int, help="action: samples of each action (default 300)")
    parser.add_argument("--profile", default="", help="steps whose server py-spy records, comma-separated")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "list_samples": 60 if quick else 300,
        "loads": 3 if quick else 9,
        "stream_duration": 12.0 if quick else 25.0,
        "repeats": 1 if quick else 4,
        "action_samples": 50 if quick else 300,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    steps = list(STEPS) if args.steps is None else [step for step in str(args.steps).split(",") if step]
    for step in steps:
        if step not in STEPS:
            parser.error(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    args.steps = steps
    args.profile = [step for step in str(args.profile).split(",") if step]
    args.server_cores = parse_cores(args.server_cores) if args.server_cores else None
    args.loadgen_cores = parse_cores(args.loadgen_cores) if args.loadgen_cores else None
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out: Path = args.out_dir / "admin.json"
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {out}", file=sys.stderr)
    print(table(results["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
