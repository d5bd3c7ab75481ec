"""The control plane's lifecycle: build, start, serve, drain, stop, in that order.

Tests run it in-process on 127.0.0.1:0; ``actors.main`` runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

import grpc
import pykka
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from actors.commit import GroupCommit
from actors.config import ServerConfig
from actors.lease import Lease
from actors.messages import Drain, LeaseEnded, RetireAll
from actors.records import DAY, RecordLimits
from actors.runtime import ActorRuntime
from actors.store import StateStore, open_store
from actors.supervisor import SupervisorPolicy, start_supervisor
from admin.access import AccessPolicy, Tokens
from admin.app import OperatorSurface, create_app
from admin.audit import AuditLog, MemoryAuditLog, open_audit_log
from admin.commands import FleetCommands
from admin.events import EventHub
from admin.fleetview import FleetView
from admin.listener import ConnectionLimits
from admin.server import AdminServer
from cluster.fleet_share import FleetShare
from cluster.relay import CommandRelay
from cluster.relayed_audit import RelayedAudit
from cluster.replica_auth import load_replica_secret
from cluster.shared_audit import SharedAuditLog
from cluster.shared_store import SharedStore
from cluster.shelf_follower import follow_shelf
from cluster.sound_share import SoundShare
from cluster.store_access import StoreAccess
from cluster.worker_leases import LeasedSqliteStore, worker_owner
from media.admission import AdmissionPolicy, StreamAdmission
from media.catalog import SoundCatalog
from media.library import SoundLibrary, build_library
from media.loopload import LoopLoad
from media.packing import max_frames_per_packet
from media.transport import AudioTransport
from rpc.auth import DeviceAuthenticator, load_secret
from rpc.descriptors import open_descriptors, plan_budget, raise_descriptor_limit
from rpc.gateway import FleetGateway
from rpc.link import GrpcDeviceLink
from rpc.loopcall import call_on_loop
from rpc.metrics import AudioLoad, Metrics
from rpc.metrics_http import start_metrics_server
from rpc.registration import SERVICE_NAME, add_device_service
from rpc.servicer import DeviceService
from rpc.sweeper import RecordSweeper
from rpc.tracks import TrackBook, WirePacket

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""Devices send tiny messages; anything larger is refused by gRPC before it reaches us."""

DRAIN_SETTLE_SHARE = 0.5
"""Share of the grace period that devices get to receive their last LED state and end packets."""

RETIRE_DEADLINE_SHARE = 0.8
"""Point of the grace period by which every device actor has handed over its final state (the
retire handshake); the rest stops the server, the actors and the store."""


def grpc_options(config: ServerConfig) -> list[tuple[str, Any]]:
    """Keep-alive: a dead or half-open device is noticed within keepalive_time + keepalive_timeout."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", int(config.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout * 1000)),
        ("grpc.http2.ping_timeout_ms", int(config.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(config.min_client_ping_interval * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 1 if config.shares_port else 0),
        # Devices send a few bytes a second: the default 64 KiB receive window per stream is
        # plenty, and without BDP probing a flooding device cannot grow it to megabytes that
        # gRPC would accept (and spend CPU on) before flow control holds the sender back.
        ("grpc.http2.bdp_probe", 0),
    ]


class ControlPlane:
    def __init__(
        self, config: ServerConfig, library: SoundLibrary | None = None, store: StateStore | None = None
    ) -> None:
        self.config = config
        self.library = library or build_library(config.modes, config.frame_ms, config.sounds_dir)
        self.metrics = Metrics()
        self.shared: SharedStore | None = None
        if store is None and config.store:
            secret_file = config.store_secret_file
            store = self.shared = SharedStore(
                StoreAccess.from_files(config.store, config.store_password_file, config.store_tls_ca_file),
                replica_name(config),
                max_records=record_limits(config).max_records,
                secret=None if secret_file is None else load_replica_secret(secret_file),
                wait_replicas=config.store_wait_replicas,
                wait_ms=config.store_wait_ms,
            )
            self.metrics.watch_shared_store(
                lambda: self.shared is None or self.shared.reachable,
                self._outages,
                lambda: {} if self.shared is None else dict(self.shared.round_trips),
            )
            self.metrics.watch_store_rejections(self.shared.rejections.counts)
        self.worker_leases: LeasedSqliteStore | None = None
        """Among ``--workers``: device leases in the shared SQLite file."""
        if store is None and config.shares_port:
            store = self.worker_leases = LeasedSqliteStore(config.state_db, worker_owner(config.worker_index))
        self.store: StateStore = store if store is not None else open_store(config.state_db)
        self.sounds = SoundCatalog(self.library, sound_shelf(config.state_db))
        self.admin_tokens = Tokens.from_files(config.admin_token_file, config.admin_readonly_token_file)
        # Among replicas the audit log is Redis's (``start`` opens it); none is kept in a file here.
        self.audit: AuditLog = MemoryAuditLog() if config.store else open_audit_log(config.state_db)
        self.admission = StreamAdmission(
            AdmissionPolicy(
                max_streams=config.max_streams,
                lateness_limit=config.lateness_limit_ms / 1000,
                busy_target=config.stream_cpu_percent / 100,
                frame_duration=self.library.frame_ms / 1000,
                max_frames=max_frames_per_packet(self.library.frame_ms) if config.elastic_packets else 1,
                learn=config.learn_capacity,
            ),
            on_refused=self.metrics.playback_refused,
        )
        self.credentials = server_credentials(config)
        self.authenticator = (
            DeviceAuthenticator(load_secret(config.auth_secret_file)) if config.auth_secret_file else None
        )
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.admin_port: int | None = None
        self.fleet: FleetView | None = None
        self.events: EventHub | None = None
        self._admin: AdminServer | None = None
        self._server: grpc.aio.Server | None = None
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._runtime: ActorRuntime | None = None
        self._commits: GroupCommit | None = None
        self._load_watch: asyncio.Task[None] | None = None
        self.sweeper: RecordSweeper | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._transport: AudioTransport[WirePacket] | None = None
        self._metrics_server: Any = None
        self._links: weakref.WeakSet[GrpcDeviceLink] = weakref.WeakSet()
        self._stopped = asyncio.Event()
        self._share: FleetShare | None = None
        self._relay: CommandRelay | None = None
        self._sound_share: SoundShare | None = None
        self._restoring: asyncio.Task[None] | None = None
        self._health_changes: set[asyncio.Task[None]] = set()
        self._following_shelf: asyncio.Task[None] | None = None
        """Among ``--workers``: the sounds and assignments the other workers store (``cluster.shelf_follower``)."""

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        descriptor_limit = raise_descriptor_limit()
        tracks = TrackBook(self.library)
        admission, lateness = self.admission, self.metrics.pacing_lateness

        def on_lateness(seconds: float) -> None:
            lateness.observe(seconds)
            shed = admission.observe_lateness(seconds)
            if shed:
                transport.shed(shed)

        transport: AudioTransport[WirePacket] = AudioTransport(
            preroll=self.config.preroll_ms / 1000,
            tick=self.config.tick_ms / 1000,
            end_frame=tracks.end_packet,
            on_lateness=on_lateness,
            packing=admission.frames_per_packet,
        )
        self.metrics.watch_audio_load(
            lambda: AudioLoad(
                admission.busy,
                admission.packet_cost,
                admission.frames_per_packet(),
                admission.capacity,
                admission.active,
                transport.frames_pushed,
            )
        )
        # The actors take their turns on this loop's thread: no thread hand-off per press.
        runtime = ActorRuntime(loop, name="actors")
        if self.shared is not None:
            await self.shared.open()
        supervisor_ref: list[pykka.ActorRef[Any]] = []

        def lease_ended(lease: Lease) -> None:
            """The lease is over: another replica or worker owns the device now (its claim was
            published or seen, or a save was fenced)."""
            for ref in supervisor_ref:
                ref.tell(LeaseEnded(lease))

        if self.shared is not None:
            self.shared.on_lease_ended = lease_ended
        if self.worker_leases is not None:
            self.worker_leases.on_lease_ended = lease_ended
        commits = GroupCommit(
            self.store,
            runtime.call_soon,
            runtime.call_later,
            on_lease_ended=lease_ended,
            stale=self.shared.stale if self.shared is not None else None,
        )
        if self.shared is not None:
            self.shared.on_claimed = commits.forget
        if self.worker_leases is not None:
            self.worker_leases.on_claimed = commits.forget
        self.metrics.watch_commits(commits)
        events = EventHub(
            time.time,
            max_unread=self.config.events_max_unread,
            first_id=int(time.time() * 1000),
            keepalive=self.config.events_keepalive,
        )
        self.metrics.watch_event_readers(lambda: events.readers, lambda: events.dropped)
        # Named only among replicas: a lone server's devices show no replica.
        fleet = FleetView(
            events, time.time, loop, replica=self.shared.replica if self.shared is not None else ""
        )
        fleet.load(self.store.records())

        def link_factory(device_id: str, peer: str) -> GrpcDeviceLink:
            link = GrpcDeviceLink(device_id, peer, loop, transport, tracks, self.metrics, fleet.leds_shown)
            self._links.add(link)
            return link

        limits = record_limits(self.config)
        # Among replicas the claim in Redis enforces the cap (``SharedStore``), for the whole fleet.
        policy = SupervisorPolicy(
            max_devices=self.config.max_devices,
            records=limits if self.shared is None else RecordLimits(0, limits.retention),
        )
        supervisor = start_supervisor(
            runtime,
            self.sounds,
            commits,
            link_factory,
            policy,
            self.metrics,
            admission,
            fleet,
            on_routing=self._routing_changed,
        )
        supervisor_ref.append(supervisor)
        commands = FleetCommands(supervisor, loop)
        if self.shared is not None:
            self.shared.on_change = fleet.record_changed
            self.shared.on_removed = fleet.devices_removed
            shared = self.shared
            shared_audit = SharedAuditLog(shared.client, rejections=shared.rejections)
            shared_audit.start()
            self.audit = shared_audit
            seal, rejections = shared.seal, shared.rejections
            self._share = FleetShare(
                shared.client, shared.replica, fleet, shared.round_trips, seal=seal, rejections=rejections
            )
            self._sound_share = SoundShare(
                shared.client, shared.replica, self.sounds, seal=seal, rejections=rejections
            )
            self._relay = CommandRelay(
                shared.client,
                shared.replica,
                fleet,
                round_trips=shared.round_trips,
                seal=seal,
                rejections=rejections,
                audit=RelayedAudit(shared_audit.record),
            )
            fleet_share, sound_share = self._share, self._sound_share
            self.metrics.watch_waiting_writes(
                lambda: {
                    "fleet-snapshots": (
                        len(fleet_share.outbox),
                        fleet_share.outbox.dropped + fleet_share.unpublished,
                    ),
                    "sound-changes": (len(sound_share.writes), sound_share.writes.dropped),
                    "audit": (len(shared_audit.writes), shared_audit.writes.dropped),
                    "operator-writes": (shared.waiting_fields, shared.fields_dropped),
                }
            )
            try:
                await self._share.start()
                await self._sound_share.start()
                await self._relay.start(commands.send_here)
            except BaseException:
                await asyncio.to_thread(runtime.shutdown)
                commits.close()
                await self._leave_replicas(commits, loop.time() + 2.0)
                raise
            commands.forwarder = self._relay
        admin = None
        if self.config.admin_port >= 0:
            surface = OperatorSurface(
                fleet,
                events,
                commands,
                self.store,
                self.audit,
                self.sounds,
                time.time,
                int(self.config.admin_max_upload_mb * 1_000_000),
            )
            access = AccessPolicy.for_listener(
                self.admin_tokens,
                self.config.admin_host,
                self.config.admin_allowed_hosts.split(","),
                self.config.admin_allowed_origins.split(","),
                max_json_bytes=int(self.config.admin_max_json_mb * 1_000_000),
            )
            admin = AdminServer(create_app(surface, access), self.config.admin_host, self.config.admin_port)
        server = grpc.aio.server(options=grpc_options(self.config))
        add_device_service(
            DeviceService(
                FleetGateway(
                    supervisor,
                    loop,
                    connect_queue_limit=self.config.connect_queue_ms / 1000,
                    claims=self.shared if self.shared is not None else self.worker_leases,
                ),
                self.metrics,
                self.config.event_rate,
                self.config.event_burst,
                self.authenticator,
                event_abuse_seconds=self.config.event_abuse_seconds,
            ),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            if self.credentials is None:
                port = server.add_insecure_port(self.config.address)
            else:
                port = server.add_secure_port(self.config.address, self.credentials)
            await server.start()
            if self.config.metrics_port >= 0:
                self._metrics_server = start_metrics_server(
                    self.config.metrics_port, _http_host(self.config.host), self.metrics.registry
                )
                self.metrics_port = self._metrics_server.server_port
            budget = plan_budget(
                descriptor_limit,
                open_descriptors(),
                self.config.admin_max_connections if admin is not None else 0,
                self.config.admin_max_connections_per_client,
            )
            logger.info("%s", budget.describe())
            if admin is not None:
                self.admin_port = await admin.start(
                    ConnectionLimits(
                        budget.admin_connections, budget.admin_per_client, self.config.admin_header_timeout
                    )
                )
        except Exception:
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()
                self._metrics_server = None
            await server.stop(None)
            await asyncio.to_thread(runtime.shutdown)
            commits.close()
            await self._leave_replicas(commits, loop.time() + 2.0)
            raise
        if self.credentials is None and not self.config.loopback_only:
            logger.warning(
                "listening on %s without TLS: device traffic and tokens cross the network in plaintext "
                "(see --tls-cert, --tls-key)",
                self.config.host,
            )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._transport, self._supervisor, self._server, self.port = transport, supervisor, server, port
        self._runtime, self._commits = runtime, commits
        self.fleet, self.events, self._admin = fleet, events, admin
        if admin is not None and not self.admin_tokens.required:
            logger.info(
                "operator API and dashboard on http://127.0.0.1:%d/ (loopback only: no --admin-token-file)",
                self.admin_port,
            )
        elif admin is not None:
            logger.info("operator API and dashboard on port %d (bearer token required)", self.admin_port)
        self._load_watch = loop.create_task(
            _watch_load(admission, transport, LoopLoad(loop)), name="admission-load"
        )
        self.sweeper = RecordSweeper(supervisor, loop, limits.sweep_interval)
        if limits.retention:
            self._sweeping = loop.create_task(self.sweeper.run(), name="record-retention")
        logger.info("%s", describe_records(limits, self.authenticator is not None))
        if self.sounds.waiting:
            # Only now that devices are served: encoding a long sound again takes seconds.
            self._restoring = loop.create_task(self.sounds.restore_waiting(), name="sound-restore")
        if self.config.shares_port:
            self._following_shelf = loop.create_task(follow_shelf(self.sounds), name="shelf-follow")
        logger.info(
            "serving on %s:%d (metrics on %s): %d modes, %d ms packets, %d ms pre-roll",
            self.config.host,
            port,
            f"port {self.metrics_port}" if self.metrics_port is not None else "no port",
            self.library.modes,
            self.config.frame_ms,
            self.config.preroll_ms,
        )
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Drain, then stop.

        Health turns NOT_SERVING and new streams are refused; every device's playback ends with
        an ``is_end`` packet and its LEDs show the leaving colour; once they have reached the
        devices (or half the grace period has passed) every device is retired: the streams end
        with UNAVAILABLE and each final state is saved (the retire handshake) before any actor
        stops, and the store is flushed before it closes; the process is ready to exit within
        ``grace`` seconds.
        """
        grace = self.config.grace if grace is None else grace
        server, supervisor, transport = self._server, self._supervisor, self._transport
        runtime, commits = self._runtime, self._commits
        if server is None or supervisor is None or transport is None or runtime is None or commits is None:
            return
        self._server = self._supervisor = self._transport = self._runtime = self._commits = None
        self.sounds.close()  # uploads being decoded get 503 now; their children are killed
        if self._restoring is not None:
            self._restoring.cancel()
        if self._following_shelf is not None:
            self._following_shelf.cancel()
        if self._sweeping is not None:
            self._sweeping.cancel()
        if self._load_watch is not None:
            self._load_watch.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        connected = sum(1 for link in list(self._links) if link.end is None)
        logger.info("draining %s (grace %.1f s)", _devices(connected), grace)
        await self.health.enter_graceful_shutdown()
        if self.fleet is not None:
            self.fleet.server_leaving()
        with contextlib.suppress(pykka.ActorDeadError):  # a supervisor down for good routes nothing
            supervisor.tell(Drain())
        await self._settle(loop.time() + grace * DRAIN_SETTLE_SHARE)
        await _retire_every_device(supervisor, deadline - grace * (1 - RETIRE_DEADLINE_SHARE))
        try:
            timeout = max(deadline - loop.time(), 0.5)
            await asyncio.to_thread(lambda: supervisor.stop(block=True, timeout=timeout))
        except (pykka.ActorDeadError, pykka.Timeout):
            logger.warning("supervisor did not stop in time")
        await server.stop(max(deadline - loop.time(), 0.0))
        await transport.close()
        await asyncio.to_thread(runtime.shutdown, 5.0)  # the device actors have retired already
        await asyncio.sleep(0)  # the runtime lets go of this loop's thread
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        commits.close()
        await self._leave_replicas(commits, deadline + 2.0)
        if self.events is not None:
            self.events.close()
        if self._admin is not None:  # last: operators watch the drain until the end
            await self._admin.stop()
            self._admin = None
        self.audit.close()
        self._stopped.set()
        logger.info("stopped")

    def _routing_changed(self, routing: bool) -> None:
        """The supervisor died (False) or routes again (True): health says so (until the drain,
        after which the health service ignores every change)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if routing else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if not routing:
            logger.error("health NOT_SERVING: the supervisor cannot route")
        for service in ("", SERVICE_NAME):
            task = asyncio.get_running_loop().create_task(self.health.set(service, status))
            self._health_changes.add(task)
            task.add_done_callback(self._health_changes.discard)

    async def _leave_replicas(self, commits: GroupCommit, deadline: float) -> None:
        """Wait for Redis to answer the last batch, then stop sharing and close the store."""
        if self.shared is None:
            return
        loop = asyncio.get_running_loop()
        while not commits.idle and loop.time() < deadline:
            await asyncio.sleep(0.01)
            commits.commit()
        # Side by side, each bounded by its own short timeouts: a Redis outage at shutdown costs
        # the longest of them, not their sum.
        closing = [
            part.aclose() for part in (self._relay, self._share, self._sound_share) if part is not None
        ]
        if isinstance(self.audit, SharedAuditLog):
            closing.append(self.audit.aclose())
        await asyncio.gather(*closing)
        self._relay = self._share = self._sound_share = None
        await self.shared.aclose()

    def _outages(self) -> int:
        return 0 if self.shared is None else self.shared.outages

    async def _settle(self, deadline: float) -> None:
        """Wait for the last LED states and end packets to reach the devices, up to the deadline."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.02)
        while loop.time() < deadline and not all(link.settled for link in list(self._links)):
            await asyncio.sleep(0.02)

    @property
    def supervisor(self) -> pykka.ActorRef[Any]:
        if self._supervisor is None:
            raise RuntimeError("the control plane is not running")
        return self._supervisor

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _retire_every_device(supervisor: pykka.ActorRef[Any], deadline: float) -> None:
    """The retire handshake, before anything stops: each device actor hands over its final state
    and the supervisor saves it; at the deadline the supervisor saves the last state it knows of
    the others and names each in the log (its final state may be lost)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[tuple[str, ...]] = loop.create_future()

    def answered(overdue: tuple[str, ...]) -> None:
        if not answer.done():
            answer.set_result(overdue)

    timeout = max(deadline - loop.time(), 0.1)
    try:
        supervisor.tell(RetireAll(timeout, lambda overdue: call_on_loop(loop, answered, overdue)))
        async with asyncio.timeout(timeout + 0.5):
            overdue = await answer
    except (pykka.ActorDeadError, TimeoutError):
        logger.error("the supervisor did not retire the devices in time: states not yet saved are lost")
        return
    if overdue:
        logger.warning(
            "%s did not hand over a final state in time: %s", _devices(len(overdue)), ", ".join(overdue)
        )


LOAD_WATCH_INTERVAL = 0.1
"""How often admission control hears the loop's load: ten times a second, so packets grow
within a tenth of a second of a burst."""


async def _watch_load(
    admission: StreamAdmission, transport: AudioTransport[WirePacket], load: LoopLoad
) -> None:
    """Tell admission control how busy the loop was and how many packets the transport pushed."""
    loop = asyncio.get_running_loop()
    started, packets = loop.time(), transport.packets_pushed
    load.sample()
    while True:
        await asyncio.sleep(LOAD_WATCH_INTERVAL)
        now, pushed = loop.time(), transport.packets_pushed
        elapsed = now - started
        if elapsed > 0:
            admission.observe_load(load.sample(), (pushed - packets) / elapsed)
        started, packets = now, pushed


def sound_shelf(state_db: str) -> Path | None:
    """Uploaded sounds live beside the state store; a server that keeps no state keeps none."""
    return None if state_db == ":memory:" else Path(state_db).parent / "sounds"


_unnamed_replicas = itertools.count(1)


def replica_name(config: ServerConfig) -> str:
    """The configured name, else host name and port (and worker index): unique on one host."""
    if config.replica_id:
        return config.replica_id
    port = str(config.port) if config.port else f"{os.getpid()}-{next(_unnamed_replicas)}"
    worker = f"/{config.worker_index}" if config.worker_index >= 0 else ""
    return f"{socket.gethostname()}:{port}{worker}"


def _devices(count: int) -> str:
    return f"{count} device" if count == 1 else f"{count} devices"


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    client_ca = _read_pem(config.tls_client_ca, "client CA") if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read_pem(config.tls_key, "TLS key"), _read_pem(config.tls_cert, "TLS certificate"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {path}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ValueError(f"the {what} {path} is not PEM")
    return data


def _http_host(grpc_host: str) -> str:
    """gRPC writes IPv6 addresses in brackets; the HTTP server wants them bare."""
    return grpc_host.strip("[]")


def record_limits(config: ServerConfig) -> RecordLimits:
    """The cap and the retention hold while devices are not authenticated: then anyone can make
    up device_ids. With device authentication only devices an operator minted a token for get
    in, and their records are kept until an operator removes them."""
    if config.auth_secret_file is not None:
        return RecordLimits()
    return RecordLimits(config.max_device_records, config.device_retention_days * DAY)


def describe_records(limits: RecordLimits, authenticated: bool) -> str:
    if authenticated:
        return "device records: kept until an operator removes them (devices are authenticated)"
    cap = f"at most {limits.max_records}" if limits.max_records else "no cap on the number"
    kept = f"{limits.retention / DAY:g} days" if limits.retention else "until an operator removes them"
    return f"device records: {cap}, each kept {kept} after its device was last seen (devices are not authenticated)"
