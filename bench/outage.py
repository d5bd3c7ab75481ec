"""Memory while the shared store is away: devices churning through a Redis outage.

    .venv/bin/python -m bench.outage --devices 1000 --seconds 60

One replica's cluster parts (the shared store, the fleet share, the sound share, the audit log)
run in this process against a real redis-server, which is paused (SIGSTOP: every command waits
for its timeout, the worst case for what piles up) for ``--seconds`` while every device changes
state every 50 ms, operators retag a tenth of the devices and are audited each tick, and sounds
are re-uploaded. Reports the process's RSS growth over the outage, the longest each queue got,
what was dropped, and whether every queue drained once Redis was back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.state import DeviceState
from admin.audit import AuditEntry
from admin.events import EventHub
from admin.fleetview import FleetView
from bench.proc import read_proc
from cluster.fleet_share import FleetShare
from cluster.shared_audit import SharedAuditLog
from cluster.shared_store import SharedStore
from cluster.sound_share import SoundShare
from media.catalog import SoundCatalog, SoundChange
from media.library import SoundLibrary, build_library
from tests.redis_server import RedisServer

TICK = 0.05
UPLOAD_BYTES = 200_000
UPLOAD_NAMES = 5


@dataclass
class Replica:
    """One replica's parts that queue writes for Redis."""

    store: SharedStore
    fleet: FleetView
    fleet_share: FleetShare
    catalog: SoundCatalog
    sounds: SoundShare
    audit: SharedAuditLog

    def waiting(self) -> dict[str, int]:
        return {
            "fleet-snapshots": len(self.fleet_share.outbox),
            "sound-changes": len(self.sounds.writes),
            "audit": len(self.audit.writes),
            "operator-writes": self.store.waiting_fields,
        }

    def dropped(self) -> dict[str, int]:
        return {
            "fleet-snapshots": self.fleet_share.outbox.dropped + self.fleet_share.unpublished,
            "sound-changes": self.sounds.writes.dropped,
            "audit": self.audit.writes.dropped,
            "operator-writes": self.store.fields_dropped,
        }


async def open_replica(url: str, library: SoundLibrary) -> Replica:
    store = SharedStore(url, "churning")
    await store.open()
    fleet = FleetView(EventHub(time.time), time.time, asyncio.get_running_loop(), replica="churning")
    share = FleetShare(store.client, "churning", fleet, seal=store.seal, rejections=store.rejections)
    await share.start()
    catalog = SoundCatalog(library, None)
    sounds = SoundShare(store.client, "churning", catalog, seal=store.seal, rejections=store.rejections)
    await sounds.start()
    audit = SharedAuditLog(store.client, rejections=store.rejections)
    audit.start()
    return Replica(store, fleet, share, catalog, sounds, audit)


async def close_replica(replica: Replica) -> None:
    await replica.audit.aclose()
    await replica.sounds.aclose()
    await replica.fleet_share.aclose()
    replica.catalog.close()
    await replica.store.aclose()


@dataclass
class Churned:
    ticks: int = 0
    longest: dict[str, int] = field(default_factory=dict)


async def churn(replica: Replica, devices: int, ticks: int, churned: Churned | None = None) -> Churned:
    """Every device changes state each tick; a tenth are retagged (and audited); every tenth
    tick a sound is uploaded again. ``churned.longest`` is each queue's longest."""
    churned = churned or Churned()
    ids = [f"device-{n:05d}" for n in range(devices)]
    if churned.ticks == 0:
        for device_id in ids:
            replica.fleet.device_online(device_id, "bench", DeviceState())
    upload = bytes(UPLOAD_BYTES)
    for _ in range(ticks):
        tick = churned.ticks = churned.ticks + 1
        for device_id in ids:
            replica.fleet.device_changed(device_id, DeviceState(mode=tick % 5, next_playback_id=tick), None)
        for device_id in ids[tick % 10 :: 10]:
            replica.store.save_tags(device_id, [f"tag-{tick}"])
        replica.audit.record(
            AuditEntry(time.time(), "bench", "operator", "tags.set", "", tuple(ids[:10]), {})
        )
        if tick % 10 == 0 and replica.catalog.on_change is not None:
            replica.catalog.on_change(
                SoundChange("added", f"upload-{tick // 10 % UPLOAD_NAMES}", data=upload)
            )
        await asyncio.sleep(TICK)
        for queue, length in replica.waiting().items():
            churned.longest[queue] = max(length, churned.longest.get(queue, 0))
    return churned


def rss_mb() -> float:
    sample = read_proc(os.getpid())
    return 0.0 if sample is None else sample.rss_kb / 1024


async def outage(redis: RedisServer, devices: int, seconds: float) -> dict[str, Any]:
    library = build_library(modes=5)
    replica = await open_replica(redis.url, library)
    try:
        churned = await churn(replica, devices, int(2 / TICK))  # warmed up, with Redis there
        before = rss_mb()
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            await churn(replica, devices, int(seconds / TICK), churned)
        finally:
            redis.process.send_signal(signal.SIGCONT)
        during = rss_mb()
        outage_seconds = time.monotonic() - started
        drained = await _drained(replica, timeout=30.0)
        return {
            "devices": devices,
            "outage_seconds": round(outage_seconds, 1),
            "rss_before_mb": round(before, 1),
            "rss_end_of_outage_mb": round(during, 1),
            "rss_growth_mb": round(during - before, 1),
            "longest_queues": churned.longest,
            "dropped": replica.dropped(),
            "drained_after_outage": drained,
        }
    finally:
        await close_replica(replica)


async def _drained(replica: Replica, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(replica.waiting().values()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acp-bench-outage-") as scratch:
        redis = RedisServer(Path(scratch))
        redis.start()
        try:
            report = asyncio.run(outage(redis, args.devices, args.seconds))
        finally:
            redis.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
