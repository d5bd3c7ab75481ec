"""Redis as a trust boundary: replicas behind the shipped ACL user, and a writer who has Redis
access (that user's password) but not the replicas' secret.

For each kind of message the replicas exchange, the writer publishes forged ones (sealed under
another key, under none, and in the plain JSON of old): none is acted on, each is counted, no
request fails. Genuine ones still work; a genuine relayed command replayed is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from actors.leds import STATUS_IDLE, mode_leds
from cluster.fleet_share import FLEET, live_key
from cluster.redis_acl import acl_file
from cluster.relay import requests_channel
from cluster.replica_auth import MessageSeal
from cluster.shared_audit import AUDIT
from cluster.shared_store import CHANGES, DEVICES, REPLICAS, device_key
from cluster.sound_share import ASSIGNMENTS, SOUND_CHANGES, SOUNDS
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.audio_files import write_tone
from tests.live import TEST_CONFIG, eventually, run, shows
from tests.redis_server import RedisServer, redis_server
from tests.scrape import sample, scrape

PASSWORD = "a-redis-password-for-the-tests"


@dataclass
class SecuredRedis:
    redis: RedisServer
    files: Path

    @property
    def url(self) -> str:
        return f"redis://acp@127.0.0.1:{self.redis.port}/0"

    def attacker(self) -> aioredis.Redis:
        """Redis access with the replicas' own ACL user, and no replicas' secret."""
        return aioredis.Redis.from_url(f"redis://acp:{PASSWORD}@127.0.0.1:{self.redis.port}/0")


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredRedis]:
    acl = tmp_path / "users.acl"
    acl.write_text(acl_file(PASSWORD))
    (tmp_path / "redis.password").write_text(PASSWORD + "\n")
    (tmp_path / "replica.secret").write_text(secrets.token_hex(32) + "\n")
    with redis_server("--aclfile", str(acl)) as redis:
        yield SecuredRedis(redis, tmp_path)


@asynccontextmanager
async def replicas(
    library: SoundLibrary, secured: SecuredRedis, *names: str
) -> AsyncIterator[list[ControlPlane]]:
    async with AsyncExitStack() as stack:
        planes = []
        for name in names:
            config = replace(
                TEST_CONFIG,
                store=secured.url,
                store_password_file=secured.files / "redis.password",
                store_secret_file=secured.files / "replica.secret",
                replica_id=name,
                admin_port=0,
                state_db=str(secured.files / name / "state.sqlite3"),
            )
            plane = ControlPlane(config, library)
            await plane.start()
            stack.push_async_callback(plane.stop, 1.0)
            planes.append(plane)
        yield planes


def forgeries(sender: str, kind: str, body: Any) -> list[str]:
    """The same message as a writer without the secret can make it: sealed under a key of its own,
    sealed under none, and as plain JSON after the sender's name."""
    return [
        MessageSeal(sender, secrets.token_bytes(32)).seal(kind, body),
        MessageSeal(sender, None).seal(kind, body),
        f"{sender}\n{json.dumps(body)}",
    ]


def rejected(plane: ControlPlane, kind: str) -> int:
    assert plane.shared is not None
    return plane.shared.rejections.total(kind)


def api(plane: ControlPlane) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}", timeout=10)


async def held_by(client: httpx.AsyncClient, device_id: str, replica: str) -> None:
    async def check() -> bool:
        reply = await client.get(f"/api/devices/{device_id}")
        return reply.status_code == 200 and reply.json()["replica"] == replica

    async with asyncio.timeout(5):
        while not await check():
            await asyncio.sleep(0.02)


async def publish_all(client: aioredis.Redis, channel: str, messages: list[str]) -> None:
    for message in messages:
        await client.publish(channel, message)


def test_forged_relayed_mode_and_play_commands_are_not_run_and_are_counted(
    library: SoundLibrary, secured: SecuredRedis
) -> None:
    async def scenario() -> None:
        async with replicas(library, secured, "replica1", "replica2") as (one, two), api(one) as client:
            device = SimulatedDevice(f"127.0.0.1:{two.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await held_by(client, "kitchen", "replica2")
            attacker = secured.attacker()
            request = {"to": "replica2", "device_id": "kitchen", "who": "mallory", "role": "operator"}
            forged = [
                *forgeries("replica1", "relay-request", {**request, "command": {"kind": "mode", "mode": 3}}),
                *forgeries(
                    "replica1",
                    "relay-request",
                    {**request, "command": {"kind": "play", "sound": None, "mode": None, "interrupt": True}},
                ),
            ]
            await publish_all(attacker, requests_channel("replica2"), forged)
            await eventually(lambda: rejected(two, "relay-request") == len(forged), timeout=5)
            await asyncio.sleep(0.3)  # anything run would have reached the device by now
            assert shows((STATUS_IDLE.rgba, *mode_leds(0)))(device.leds)
            assert device.recordings == []
            entries = (await client.get("/api/audit")).json()["entries"]
            assert [entry for entry in entries if entry["action"] == "relayed"] == []
            metrics = scrape(two.metrics_port or 0)
            labels = {"kind": "relay-request", "reason": "unauthenticated"}
            assert sample(metrics, "acp_store_messages_rejected_total", **labels) == len(forged)

            genuine = await client.post("/api/devices/kitchen/mode", json={"mode": 3})
            assert genuine.json()["result"] == "applied", genuine.text
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(3))), 5)
            await attacker.aclose()
            await device.disconnect()

    run(scenario)


def test_a_genuine_relayed_command_replayed_is_refused(library: SoundLibrary, secured: SecuredRedis) -> None:
    async def scenario() -> None:
        async with replicas(library, secured, "replica1", "replica2") as (one, two), api(one) as client:
            device = SimulatedDevice(f"127.0.0.1:{two.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await held_by(client, "kitchen", "replica2")
            attacker = secured.attacker()
            listener = attacker.pubsub()
            await listener.subscribe(requests_channel("replica2"))
            assert (await client.post("/api/devices/kitchen/mode", json={"mode": 2})).json()[
                "result"
            ] == "applied"
            async with asyncio.timeout(5):
                while (
                    heard := await listener.get_message(ignore_subscribe_messages=True, timeout=1)
                ) is None:
                    pass
            assert await device.press(Button.MODE)
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(3))), 5)
            await attacker.publish(requests_channel("replica2"), heard["data"])
            await eventually(lambda: rejected(two, "relay-request") == 1, timeout=5)
            assert two.shared is not None
            assert two.shared.rejections.counts[("relay-request", "replayed")] == 1
            await asyncio.sleep(0.3)
            assert shows((STATUS_IDLE.rgba, *mode_leds(3)))(device.leds), (
                "the replayed mode 2 was not set again"
            )
            await listener.aclose()  # type: ignore[no-untyped-call]
            await attacker.aclose()
            await device.disconnect()

    run(scenario)


def test_a_relayed_command_is_audited_where_it_ran_naming_who_asked_and_from_which_replica(
    library: SoundLibrary, secured: SecuredRedis
) -> None:
    async def scenario() -> None:
        async with replicas(library, secured, "replica1", "replica2") as (one, two), api(one) as client:
            device = SimulatedDevice(f"127.0.0.1:{two.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            await held_by(client, "kitchen", "replica2")
            assert (await client.post("/api/devices/kitchen/mode", json={"mode": 4})).status_code == 200

            async def relayed() -> list[dict[str, Any]]:
                entries = (await client.get("/api/audit")).json()["entries"]
                return [entry for entry in entries if entry["action"] == "relayed"]

            async with asyncio.timeout(5):
                while not (entries := await relayed()):
                    await asyncio.sleep(0.05)
            [entry] = entries
            assert (entry["who"], entry["role"], entry["target"], entry["devices"]) == (
                "local",
                "operator",
                "kitchen",
                ["kitchen"],
            )
            assert entry["result"] == {
                "command": {"kind": "mode", "mode": 4},
                "from": "replica1",
                "results": {"applied": 1},
            }
            await device.disconnect()

    run(scenario)


def test_forged_snapshots_and_tags_show_no_ghost_device_and_the_listing_never_fails(
    library: SoundLibrary, secured: SecuredRedis
) -> None:
    ghost = {
        "device_id": "ghost",
        "connected": True,
        "mode": 1,
        "desired_mode": None,
        "status": "idle",
        "playing": None,
        "leds": ["#000000"] * 6,
        "last_seen": None,
        "connected_since": None,
        "peer": None,
        "tags": [1, 2],
        "replica": "replica2",
    }

    async def scenario() -> None:
        async with replicas(library, secured, "replica1", "replica2") as (one, _), api(one) as client:
            device = SimulatedDevice(f"127.0.0.1:{one.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            attacker = secured.attacker()
            snapshots = forgeries("replica2", "snapshots", [ghost, {**ghost, "tags": ["fine"]}])
            await publish_all(attacker, FLEET, snapshots)
            changes = forgeries("replica2", "field", {"field": "tags", "id": "kitchen", "value": "[1,2]"})
            await publish_all(attacker, CHANGES, changes)
            await eventually(lambda: rejected(one, "snapshot") == len(snapshots), timeout=5)
            await eventually(lambda: rejected(one, "change") == len(changes), timeout=5)
            listing = await client.get("/api/devices", params={"q": "x"})
            assert listing.status_code == 200, listing.text
            everything = (await client.get("/api/devices")).json()["devices"]
            assert [(d["device_id"], d["tags"]) for d in everything] == [("kitchen", [])]
            await attacker.aclose()
            await device.disconnect()

    run(scenario)


def test_a_forged_claim_or_removal_does_not_end_the_victims_streams(
    library: SoundLibrary, secured: SecuredRedis
) -> None:
    async def scenario() -> None:
        async with replicas(library, secured, "replica1", "replica2") as (one, _):
            device = SimulatedDevice(f"127.0.0.1:{one.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            attacker = secured.attacker()
            forged = [
                *forgeries("replica2", "claim", {"claim": "kitchen", "epoch": 1_000_000}),
                *forgeries("replica2", "removed", {"removed": ["kitchen"]}),
            ]
            await publish_all(attacker, CHANGES, forged)
            await eventually(lambda: rejected(one, "change") == len(forged), timeout=5)
            with pytest.raises(TimeoutError):
                await device.wait_for_stream_end("events", timeout=1.0)
            assert await device.press(Button.MODE), "still owned: the save went through"
            await device.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)
            await attacker.aclose()
            await device.disconnect()

    run(scenario)


def test_a_forged_sound_change_installs_and_assigns_nothing(
    library: SoundLibrary, secured: SecuredRedis, tmp_path: Path
) -> None:
    evil = write_tone(tmp_path / "evil.wav", freq=440, seconds=0.5).read_bytes()

    async def scenario() -> None:
        async with replicas(library, secured, "replica1") as (one,):
            attacker = secured.attacker()
            await attacker.hset(SOUNDS, "evil", evil)
            digest = hashlib.sha256(evil).hexdigest()
            forged = [
                *forgeries(
                    "replica2",
                    "sound-change",
                    {"kind": "added", "name": "evil", "mode": None, "sha256": digest},
                ),
                *forgeries(
                    "replica2",
                    "sound-change",
                    {"kind": "assigned", "name": "evil", "mode": 0, "sha256": None},
                ),
                json.dumps({"r": "replica2", "kind": "added", "name": "evil", "mode": None}),
            ]
            await publish_all(attacker, SOUND_CHANGES, forged)
            await eventually(lambda: rejected(one, "sound-change") == len(forged), timeout=5)
            assert one.sounds.named("evil") is None
            assert one.sounds.for_mode(0).name != "evil"
            await attacker.aclose()

    run(scenario)


def test_damaged_stored_values_are_dropped_and_counted_and_the_api_still_answers(
    library: SoundLibrary, secured: SecuredRedis
) -> None:
    async def scenario() -> None:
        attacker = secured.attacker()
        async with attacker.pipeline(transaction=False) as pipe:
            pipe.sadd(DEVICES, "kitchen", "bad\nid")
            pipe.hset(device_key("kitchen"), mapping={"mode": "2", "next": "1", "tags": "[1,2]", "seen": "x"})
            pipe.zadd(AUDIT, {"999 not an entry": 999})
            pipe.sadd(REPLICAS, "replica2", "not a name")
            pipe.set("acp:replica:replica2", "1", px=60_000)
            pipe.hset(live_key("replica2"), "ghost", "forged")
            pipe.hset(ASSIGNMENTS, "zero", "bell")
            await pipe.execute()
        async with replicas(library, secured, "replica1") as (one,), api(one) as client:
            listing = await client.get("/api/devices", params={"q": "x"})
            assert listing.status_code == 200, listing.text
            assert [
                (d["device_id"], d["mode"], d["tags"])
                for d in (await client.get("/api/devices")).json()["devices"]
            ] == [("kitchen", 2, [])]
            audit = await client.get("/api/audit")
            assert (audit.status_code, audit.json()["entries"]) == (200, [])
            for kind in (
                "device-record",
                "device-id",
                "audit-entry",
                "replica-name",
                "live-snapshot",
                "assignment",
            ):
                assert rejected(one, kind) >= 1, kind
        await attacker.aclose()

    run(scenario)
