"""Connecting to a secured Redis: the ACL user's password, TLS, and no password in any log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from actors.store import StoreUnavailable
from cluster.redis_acl import acl_file
from cluster.shared_store import SharedStore
from cluster.store_access import StoreAccess
from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import TEST_CONFIG, eventually, run
from tests.proxy import free_port
from tests.redis_server import RedisServer, redis_server
from tests.test_security import pem_pair, write

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def acl(tmp_path: Path) -> Path:
    path = tmp_path / "users.acl"
    path.write_text(acl_file(PASSWORD))
    return path


@pytest.fixture
def secured(acl: Path) -> Iterator[RedisServer]:
    with redis_server("--aclfile", str(acl)) as redis:
        yield redis


def test_a_password_in_the_store_url_never_reaches_the_logs_through_an_outage(
    library: SoundLibrary, secured: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://acp:{PASSWORD}@127.0.0.1:{secured.port}/0"

    async def scenario() -> None:
        plane = ControlPlane(replace(TEST_CONFIG, store=url, replica_id="replica1"), library)
        await plane.start()
        try:
            assert plane.shared is not None
            device = SimulatedDevice(f"127.0.0.1:{plane.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            await device.wait_for_first_set(5)
            secured.stop()
            await eventually(lambda: plane.shared is not None and not plane.shared.reachable, timeout=10)
            assert not await device.press(Button.MODE)
            secured.start()
            await eventually(lambda: plane.shared is not None and plane.shared.reachable, timeout=10)
            await device.disconnect()
        finally:
            await plane.stop(1.0)

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert "redis://acp:***@127.0.0.1" in caplog.text, "the outage was logged, naming the store"
    assert PASSWORD not in caplog.text


def test_the_replicas_user_may_use_only_the_fleets_keys_and_no_admin_command(secured: RedisServer) -> None:
    async def scenario() -> None:
        async with aioredis.Redis.from_url(f"redis://acp:{PASSWORD}@127.0.0.1:{secured.port}/0") as client:
            await client.hset("acp:device:kitchen", "mode", "1")
            for refused in (
                client.set("other:key", "1"),
                client.flushall(),
                client.config_get("*"),
                client.keys("*"),
                client.publish("other-channel", "x"),
            ):
                with pytest.raises(NoPermissionError):
                    await refused
        async with aioredis.Redis.from_url(f"redis://127.0.0.1:{secured.port}/0") as anonymous:
            assert await anonymous.ping()
            with pytest.raises(NoPermissionError):
                await anonymous.hget("acp:device:kitchen", "mode")

    run(scenario)


def test_a_wrong_password_is_refused_at_start_without_showing_it(secured: RedisServer) -> None:
    async def scenario() -> None:
        store = SharedStore(StoreAccess(f"redis://acp@127.0.0.1:{secured.port}/0", "not-the-password"), "a")
        with pytest.raises(StoreUnavailable, match="invalid username-password pair") as refused:
            await store.open()
        assert "not-the-password" not in str(refused.value)

    run(scenario)


@pytest.fixture
def tls_redis(tmp_path: Path, acl: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    ca = pem_pair("store CA", None)
    cert, key = write(tmp_path / "redis", *pem_pair("localhost", ca))
    ca_cert, _ = write(tmp_path / "ca", *ca)
    tls_port = free_port()
    options = [
        *("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(ca_cert), "--tls-auth-clients", "no", "--aclfile", str(acl)),
    ]
    with redis_server(*options) as redis:
        yield redis, tls_port, ca_cert


def test_replicas_share_a_redis_over_tls_checked_against_the_ca_file(
    library: SoundLibrary, tls_redis: tuple[RedisServer, int, Path], tmp_path: Path
) -> None:
    _, tls_port, ca = tls_redis
    password_file = tmp_path / "redis.password"
    password_file.write_text(PASSWORD + "\n")
    url = f"rediss://acp@localhost:{tls_port}/0"

    async def scenario() -> None:
        config = replace(
            TEST_CONFIG,
            store=url,
            store_password_file=password_file,
            store_tls_ca_file=ca,
            replica_id="replica1",
        )
        plane = ControlPlane(config, library)
        await plane.start()
        try:
            device = SimulatedDevice(f"127.0.0.1:{plane.port}", "kitchen", play_in_real_time=False)
            await device.connect()
            assert await device.press(Button.MODE), "acked: saved in Redis over TLS"
            await device.disconnect()
        finally:
            await plane.stop(1.0)
        unverified = SharedStore(StoreAccess(url, PASSWORD), "replica2")
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            await unverified.open()
        later = SharedStore(StoreAccess(url, PASSWORD, ca), "replica2")
        await later.open()
        try:
            await later.claim("kitchen")
            state = later.load("kitchen")
            assert state is not None
            assert state.mode == 1
        finally:
            await later.aclose()

    run(scenario)


def test_the_outage_log_names_the_store_without_its_password_also_over_tls(
    tls_redis: tuple[RedisServer, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    redis, tls_port, ca = tls_redis

    async def scenario() -> None:
        store = SharedStore(StoreAccess(f"rediss://acp:{PASSWORD}@localhost:{tls_port}/0", None, ca), "a")
        await store.open()
        try:
            redis.stop()
            await eventually(lambda: not store.reachable, timeout=10)
            redis.start()
            await eventually(lambda: store.reachable, timeout=10)
            await asyncio.sleep(0)
        finally:
            await store.aclose()

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert f"rediss://acp:***@localhost:{tls_port}/0 is unreachable" in caplog.text
    assert PASSWORD not in caplog.text
