"""A supervisor that dies all the same (a failure outside its guard) is started again from its
sessions at once; one that keeps dying stays down, and health says NOT_SERVING."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.messages import DescribeFleet, FleetStatus
from actors.supervisor import SUPERVISOR_MAX_RESTARTS, SupervisorActor
from media.library import SoundLibrary
from rpc.registration import SERVICE_NAME
from rpc.server import ControlPlane
from simulator import Button, SimulatedDevice
from tests.live import fleet_status, run, serving, target, wait_for_fleet


@dataclass(frozen=True)
class Die:
    """Kills the supervisor outside its guard: a stand-in for a failure nobody foresaw."""


@pytest.fixture
def mortal_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    real = SupervisorActor.on_receive

    def on_receive(self: SupervisorActor, message: Any) -> Any:
        if isinstance(message, Die):
            raise RuntimeError("injected death of the supervisor")
        return real(self, message)

    monkeypatch.setattr(SupervisorActor, "on_receive", on_receive)


async def health_of(plane: ControlPlane, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target(plane)) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the published stubs omit the RPC methods
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(response.status)


@pytest.mark.usefixtures("mortal_supervisor")
def test_a_supervisor_that_dies_is_started_again_with_its_sessions_and_routing_goes_on(
    library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with (
            serving(library) as plane,
            SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen,
        ):
            assert await kitchen.press(Button.MODE)
            loop = asyncio.get_running_loop()
            described: asyncio.Future[FleetStatus] = loop.create_future()
            with caplog.at_level(logging.ERROR):
                plane.supervisor.tell(Die())
                plane.supervisor.tell(DescribeFleet(described.set_result))  # behind Die, in the same inbox
                assert await kitchen.press(Button.MODE), "the same session, routed by the new supervisor"
            async with asyncio.timeout(5):
                assert (await described).connected == 1, "a message the dead one had not handled is answered"
            assert any("started again with its 1 devices" in record.getMessage() for record in caplog.records)
            async with SimulatedDevice(target(plane), "hall", play_in_real_time=False) as hall:
                assert await hall.press(Button.MODE)
                assert (await fleet_status(plane)).connected == 2
            await wait_for_fleet(plane, lambda status: status.connected == 1)
            assert await health_of(plane) == health_pb2.HealthCheckResponse.SERVING
            assert await health_of(plane, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING

    run(scenario)


@pytest.mark.usefixtures("mortal_supervisor")
def test_a_supervisor_that_keeps_dying_stays_down_and_health_reports_not_serving(
    library: SoundLibrary,
) -> None:
    async def scenario() -> None:
        async with (
            serving(library) as plane,
            SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as kitchen,
        ):
            for _ in range(SUPERVISOR_MAX_RESTARTS):
                plane.supervisor.tell(Die())
                assert await kitchen.press(Button.MODE), "started again each time"
            assert await health_of(plane) == health_pb2.HealthCheckResponse.SERVING
            plane.supervisor.tell(Die())
            assert not await kitchen.press(Button.MODE), "down for good: nothing routes the press"
            assert await health_of(plane) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await health_of(plane, SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING

    run(scenario)
