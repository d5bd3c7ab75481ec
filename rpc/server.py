"""The control plane's lifecycle: build, start, serve, drain, stop, in that order.

Tests run it in-process on 127.0.0.1:0; ``actors.main`` runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pykka

from actors.config import ServerConfig
from actors.messages import Drain
from actors.store import MemoryStateStore, StateStore
from actors.supervisor import SupervisorActor, SupervisorPolicy
from media.library import SoundLibrary, build_library
from media.transport import AudioTransport
from rpc import comms_pb2 as pb
from rpc import comms_pb2_grpc
from rpc.gateway import FleetGateway
from rpc.link import GrpcDeviceLink
from rpc.metrics import Metrics
from rpc.servicer import DeviceService
from rpc.tracks import TrackBook

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""Devices send tiny messages; anything larger is refused by gRPC before it reaches us."""

DRAIN_FLUSH_SECONDS = 0.5
"""How long the last LED state and end packets get to reach devices before streams close."""


def grpc_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


class ControlPlane:
    def __init__(
        self, config: ServerConfig, library: SoundLibrary | None = None, store: StateStore | None = None
    ) -> None:
        self.config = config
        self.library = library or build_library(config.modes, config.frame_ms, config.sounds_dir)
        self.store: StateStore = store or MemoryStateStore()
        self.metrics = Metrics()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._transport: AudioTransport[pb.AudioPacket] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        tracks = TrackBook(self.library)
        transport: AudioTransport[pb.AudioPacket] = AudioTransport(
            preroll=self.config.preroll_ms / 1000,
            tick=self.config.tick_ms / 1000,
            end_frame=tracks.end_packet,
        )

        def link_factory(device_id: str, peer: str) -> GrpcDeviceLink:
            return GrpcDeviceLink(device_id, peer, loop, transport, tracks, self.metrics)

        policy = SupervisorPolicy(max_devices=self.config.max_devices)
        supervisor = SupervisorActor.start(self.library, self.store, link_factory, policy, self.metrics)
        server = grpc.aio.server(options=grpc_options())
        comms_pb2_grpc.add_DeviceServiceServicer_to_server(
            DeviceService(FleetGateway(supervisor, loop), self.metrics), server
        )
        try:
            port = server.add_insecure_port(self.config.address)
            await server.start()
        except Exception:
            supervisor.stop()
            raise
        self._transport, self._supervisor, self._server, self.port = transport, supervisor, server, port
        logger.info(
            "serving on %s:%d: %d modes, %d ms packets, %d ms pre-roll",
            self.config.host,
            port,
            self.library.modes,
            self.config.frame_ms,
            self.config.preroll_ms,
        )
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new streams, end playback with is_end, show the leaving LEDs, then close."""
        grace = self.config.grace if grace is None else grace
        server, supervisor, transport = self._server, self._supervisor, self._transport
        if server is None or supervisor is None or transport is None:
            return
        self._server = self._supervisor = self._transport = None
        logger.info("draining (grace %.1f s)", grace)
        try:
            supervisor.tell(Drain())
            await asyncio.sleep(min(DRAIN_FLUSH_SECONDS, grace / 2))
            await asyncio.to_thread(lambda: supervisor.stop(block=True, timeout=max(grace, 1.0)))
        except (pykka.ActorDeadError, pykka.Timeout):
            logger.warning("supervisor did not stop in time")
        await server.stop(grace / 2)
        await transport.close()
        await asyncio.to_thread(lambda: pykka.ActorRegistry.stop_all(block=True, timeout=5.0))
        self._stopped.set()
        logger.info("stopped")

    @property
    def supervisor(self) -> pykka.ActorRef[Any]:
        if self._supervisor is None:
            raise RuntimeError("the control plane is not running")
        return self._supervisor

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
