"""The server's settings: command-line flags, each with a matching ACP_* environment variable."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.logs import LOG_FORMATS
from admin.access import parse_origin
from cluster.store_access import check_store_settings
from media.library import MAX_MODES
from media.opus import FRAME_DURATIONS_MS

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_STORE_WAIT_MS = 1500
"""Below the store's command timeout (2 s), so a WAIT that runs out is an answer, not an outage."""


def _flag(text: str) -> bool:
    """A yes/no setting: true/false, yes/no, on/off, 1/0."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


_flag.__name__ = "boolean"


def _worker_count(text: str) -> int:
    """A number of workers, or ``auto``: one per core this process may run on."""
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0))
    return int(text)


_worker_count.__name__ = "worker count"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "[::]"
    port: int = 50051
    modes: int = 5
    sounds_dir: Path | None = None
    frame_ms: int = 20
    preroll_ms: int = 150
    tick_ms: int = 10
    grace: float = 10.0
    max_devices: int = 100_000
    max_streams: int = 0
    learn_capacity: bool = True
    elastic_packets: bool = True
    stream_cpu_percent: int = 90
    lateness_limit_ms: int = 30
    connect_queue_ms: int = 500
    state_db: str = "state/devices.sqlite3"
    event_rate: float = 20.0
    event_burst: int = 40
    event_abuse_seconds: float = 10.0
    metrics_port: int = 9095
    admin_port: int = 8080
    admin_token_file: Path | None = None
    admin_readonly_token_file: Path | None = None
    admin_allowed_hosts: str = ""
    admin_allowed_origins: str = ""
    admin_max_upload_mb: float = 20.0
    admin_max_json_mb: float = 1.0
    admin_header_timeout: float = 5.0
    admin_max_connections: int = 256
    admin_max_connections_per_client: int = 32
    events_max_unread: float = 10.0
    """Seconds the oldest event a live-event reader has not read may wait before it is dropped."""
    events_keepalive: float = 15.0
    """Seconds of silence after which a live-event stream gets a comment (so proxies keep it)."""
    keepalive_time: float = 20.0
    keepalive_timeout: float = 10.0
    min_client_ping_interval: float = 10.0
    log_level: str = "INFO"
    log_format: str = "text"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_secret_file: Path | None = None
    max_device_records: int = 10_000
    """Without device authentication: device records kept at most (0: no cap)."""
    device_retention_days: float = 30.0
    """Without device authentication: days the record of a device not seen is kept (0: forever)."""
    store: str = ""
    """Empty: the SQLite file ``state_db``; ``redis://HOST:PORT/DB``: Redis, shared by replicas."""
    store_password_file: Path | None = None
    store_tls_ca_file: Path | None = None
    store_wait_replicas: int = 0
    """Redis replicas that must confirm a save (``WAIT``) before it is acked (0: none)."""
    store_wait_ms: int = 100
    store_secret_file: Path | None = None
    """The replicas' shared secret: what they say to each other through the store is signed with it."""
    replica_id: str = ""
    """This server's name among replicas (empty: host name and gRPC port)."""
    workers: int = 1
    worker_index: int = -1
    """Set by the parent of ``--workers N`` for each worker it starts (0..N-1); -1: not a worker."""

    @property
    def shares_port(self) -> bool:
        """A worker shares the gRPC port with its siblings (SO_REUSEPORT); a lone server never does,
        so a second server started by mistake on the same port fails instead of splitting devices."""
        return self.worker_index >= 0

    @property
    def loopback_only(self) -> bool:
        host = self.host.strip("[]")
        return host in ("localhost", "::1") or host.startswith("127.")

    @property
    def admin_host(self) -> str:
        """Without a token the operator API is for this machine only."""
        return self.host if self.admin_token_file is not None else "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")
        if not 1 <= self.modes <= MAX_MODES:
            raise ValueError(
                f"modes must be 1..{MAX_MODES} (the LEDs can show {MAX_MODES}), not {self.modes}"
            )
        if self.frame_ms not in FRAME_DURATIONS_MS:
            allowed = ", ".join(map(str, FRAME_DURATIONS_MS))
            raise ValueError(f"frame duration must be one of {allowed} ms, not {self.frame_ms}")
        if not 0 <= self.preroll_ms <= 2000:
            raise ValueError(f"pre-roll must be 0..2000 ms, not {self.preroll_ms}")
        if not 1 <= self.tick_ms <= 100:
            raise ValueError(f"scheduler tick must be 1..100 ms, not {self.tick_ms}")
        if self.grace < 0:
            raise ValueError(f"grace period must be >= 0 s, not {self.grace}")
        if self.max_devices < 1:
            raise ValueError(f"max devices must be >= 1, not {self.max_devices}")
        if self.max_streams < 0:
            raise ValueError(f"max streams must be >= 0 (0: no configured budget), not {self.max_streams}")
        if not 10 <= self.stream_cpu_percent <= 100:
            raise ValueError(
                f"the streams' CPU share must be 10..100 % of a core, not {self.stream_cpu_percent}"
            )
        if not 1 <= self.lateness_limit_ms <= 10_000:
            raise ValueError(f"the lateness limit must be 1..10000 ms, not {self.lateness_limit_ms}")
        if not 1 <= self.connect_queue_ms <= 60_000:
            raise ValueError(f"the connect queue limit must be 1..60000 ms, not {self.connect_queue_ms}")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port must be -1 (off) or 0..65535, not {self.metrics_port}")
        if not -1 <= self.admin_port <= 65535:
            raise ValueError(f"admin port must be -1 (off) or 0..65535, not {self.admin_port}")
        for origin in self.admin_allowed_origins.split(","):
            if origin.strip() and parse_origin(origin) is None:
                raise ValueError(f"{origin.strip()!r} is not an origin: http(s)://HOST[:PORT]")
        if self.admin_readonly_token_file is not None and self.admin_token_file is None:
            raise ValueError(
                "a read-only admin token (--admin-readonly-token-file) needs --admin-token-file too"
            )
        if not 0 < self.admin_max_upload_mb <= 1000:
            raise ValueError(f"the upload limit must be > 0 and <= 1000 MB, not {self.admin_max_upload_mb}")
        if not 0 < self.admin_max_json_mb <= 100:
            raise ValueError(f"the JSON body limit must be > 0 and <= 100 MB, not {self.admin_max_json_mb}")
        if not 0 < self.admin_header_timeout <= 600:
            raise ValueError(
                f"the admin header timeout must be > 0 and <= 600 s, not {self.admin_header_timeout}"
            )
        if self.admin_max_connections < 1 or self.admin_max_connections_per_client < 1:
            raise ValueError("the admin connection limits must be >= 1")
        if not 1 <= self.keepalive_time <= 3600 or not 1 <= self.keepalive_timeout <= 600:
            raise ValueError("keep-alive time must be 1..3600 s and its timeout 1..600 s")
        if self.min_client_ping_interval < 1:
            raise ValueError(
                f"the permitted client ping interval must be >= 1 s, not {self.min_client_ping_interval}"
            )
        if self.event_rate <= 0 or self.event_burst < 1:
            raise ValueError("the event rate must be > 0 and the burst >= 1")
        if self.event_abuse_seconds <= 0:
            raise ValueError(f"the event abuse period must be > 0 s, not {self.event_abuse_seconds}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("mutual TLS (--tls-client-ca) needs the server's own --tls-cert and --tls-key")
        if self.max_device_records < 0 or self.device_retention_days < 0:
            raise ValueError("the device record cap and retention must be >= 0 (0: none)")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be 1..256 (or auto), not {self.workers}")
        if self.workers > 1 and self.port == 0:
            raise ValueError("workers share one gRPC port: --workers needs a fixed --port, not 0")
        check_store_settings(
            self.store,
            self.store_password_file,
            self.store_tls_ca_file,
            self.store_secret_file,
            self.replica_id,
        )
        if self.store_wait_replicas < 0 or not 1 <= self.store_wait_ms <= MAX_STORE_WAIT_MS:
            raise ValueError(f"--store-wait-replicas must be >= 0 and --store-wait-ms 1..{MAX_STORE_WAIT_MS}")
        if self.store_wait_replicas and not self.store:
            raise ValueError("--store-wait-replicas needs a Redis store (--store)")
        if self.workers > 1 and self.state_db == ":memory:" and not self.store:
            raise ValueError("workers share device state through the state DB: --workers needs a file")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {LOG_FORMATS}, not {self.log_format}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {LOG_LEVELS}, not {self.log_level}")


_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("host", "ACP_HOST", str, "address to listen on ([::] is every interface)"),
    ("port", "ACP_PORT", int, "gRPC port (0 picks a free one)"),
    ("modes", "ACP_MODES", int, f"number of modes Mode cycles through (1..{MAX_MODES})"),
    (
        "sounds_dir",
        "ACP_SOUNDS_DIR",
        Path,
        "folder of sound files named <mode>.<ext> or <mode>-<label>.<ext>",
    ),
    (
        "frame_ms",
        "ACP_FRAME_MS",
        int,
        f"audio per Opus packet in ms, one of {', '.join(map(str, FRAME_DURATIONS_MS))}: 20 starts"
        " sooner and loses less to a dropped packet, larger packets cost the server less CPU",
    ),
    ("preroll_ms", "ACP_PREROLL_MS", int, "how far ahead of real time audio is streamed, in ms"),
    ("tick_ms", "ACP_TICK_MS", int, "audio scheduler tick in ms"),
    ("grace", "ACP_GRACE", float, "seconds to drain on SIGTERM/SIGINT before exiting"),
    (
        "max_devices",
        "ACP_MAX_DEVICES",
        int,
        "devices served at once; more are refused with RESOURCE_EXHAUSTED",
    ),
    (
        "max_streams",
        "ACP_MAX_STREAMS",
        int,
        "sounds streamed at once; more Plays are refused (acked false, led_1 busy); 0: no fixed budget",
    ),
    (
        "learn_capacity",
        "ACP_LEARN_CAPACITY",
        _flag,
        "measure how many streams stay on time from the loop's load and the pacing: grow packets,"
        " refuse and shed beyond it (true/false)",
    ),
    (
        "elastic_packets",
        "ACP_ELASTIC_PACKETS",
        _flag,
        "under load, join frames into packets of up to 120 ms (true/false; false keeps --frame-ms)",
    ),
    (
        "stream_cpu_percent",
        "ACP_STREAM_CPU_PERCENT",
        int,
        "share of the event loop's time the streams may take, at the largest packets, before new ones are refused",
    ),
    (
        "lateness_limit_ms",
        "ACP_LATENESS_LIMIT_MS",
        int,
        "pacing lateness (most overdue packet per tick) that means the audio is falling behind",
    ),
    (
        "connect_queue_ms",
        "ACP_CONNECT_QUEUE_MS",
        int,
        "a new stream refused with RESOURCE_EXHAUSTED when stream opens ahead of it wait longer than this",
    ),
    (
        "event_rate",
        "ACP_EVENT_RATE",
        float,
        "button events per second a device may send; faster senders are read slower (back-pressure)",
    ),
    ("event_burst", "ACP_EVENT_BURST", int, "events a device may send at once above its rate"),
    (
        "event_abuse_seconds",
        "ACP_EVENT_ABUSE_SECONDS",
        float,
        "seconds a device may stay over its event rate (its events waiting their turn, no pause of its own)"
        " before its event stream is ended with RESOURCE_EXHAUSTED",
    ),
    (
        "state_db",
        "ACP_STATE_DB",
        str,
        "SQLite file keeping device state across restarts (:memory: keeps none)",
    ),
    (
        "metrics_port",
        "ACP_METRICS_PORT",
        int,
        "Prometheus metrics HTTP port (0 picks a free one, -1 turns it off)",
    ),
    (
        "admin_port",
        "ACP_ADMIN_PORT",
        int,
        "operator API and dashboard HTTP port (0 picks a free one, -1 turns it off)",
    ),
    (
        "admin_token_file",
        "ACP_ADMIN_TOKEN_FILE",
        Path,
        "file of operator bearer tokens (one per line, NAME:TOKEN); without it the admin port binds"
        " 127.0.0.1 only",
    ),
    (
        "admin_readonly_token_file",
        "ACP_ADMIN_READONLY_TOKEN_FILE",
        Path,
        "file of read-only bearer tokens: they may read the API but not act",
    ),
    (
        "admin_allowed_hosts",
        "ACP_ADMIN_ALLOWED_HOSTS",
        str,
        "comma-separated host names the admin API answers to besides its own (a proxy in front)",
    ),
    (
        "admin_allowed_origins",
        "ACP_ADMIN_ALLOWED_ORIGINS",
        str,
        "comma-separated origins (scheme://host[:port]) actions may come from besides the API's own",
    ),
    ("admin_max_upload_mb", "ACP_ADMIN_MAX_UPLOAD_MB", float, "largest sound file an upload may be, in MB"),
    (
        "admin_max_json_mb",
        "ACP_ADMIN_MAX_JSON_MB",
        float,
        "largest JSON request body the operator API reads, in MB; a larger one is refused with 413",
    ),
    (
        "admin_header_timeout",
        "ACP_ADMIN_HEADER_TIMEOUT",
        float,
        "seconds an operator API connection has to send a request's headers (from connecting, or from"
        " its previous answer), and the longest pause in sending a body; then it is closed",
    ),
    (
        "admin_max_connections",
        "ACP_ADMIN_MAX_CONNECTIONS",
        int,
        "operator API connections open at once (fewer if the file descriptor limit is small);"
        " beyond it new ones wait to be accepted",
    ),
    (
        "admin_max_connections_per_client",
        "ACP_ADMIN_MAX_CONNECTIONS_PER_CLIENT",
        int,
        "operator API connections one client address may hold; more are closed at once"
        " (raise it behind a proxy, whose address all operators share)",
    ),
    ("keepalive_time", "ACP_KEEPALIVE_TIME", float, "seconds between keep-alive pings to each device"),
    (
        "keepalive_timeout",
        "ACP_KEEPALIVE_TIMEOUT",
        float,
        "seconds to wait for a ping's answer before dropping",
    ),
    (
        "min_client_ping_interval",
        "ACP_MIN_CLIENT_PING_INTERVAL",
        float,
        "shortest interval between pings a device may send",
    ),
    ("log_level", "ACP_LOG_LEVEL", str, f"one of {', '.join(LOG_LEVELS)}"),
    ("log_format", "ACP_LOG_FORMAT", str, f"one of {', '.join(LOG_FORMATS)}"),
    ("tls_cert", "ACP_TLS_CERT", Path, "PEM certificate chain: serve TLS instead of plaintext"),
    ("tls_key", "ACP_TLS_KEY", Path, "PEM private key of --tls-cert"),
    (
        "tls_client_ca",
        "ACP_TLS_CLIENT_CA",
        Path,
        "PEM CA bundle: require client certificates it signed (mTLS)",
    ),
    (
        "auth_secret_file",
        "ACP_AUTH_SECRET_FILE",
        Path,
        "file holding the secret for per-device tokens: every stream then needs device-token metadata",
    ),
    (
        "max_device_records",
        "ACP_MAX_DEVICE_RECORDS",
        int,
        "without --auth-secret-file: device records kept at most; a new device beyond them is refused"
        " with RESOURCE_EXHAUSTED, a known one always gets in (0: no cap)",
    ),
    (
        "device_retention_days",
        "ACP_DEVICE_RETENTION_DAYS",
        float,
        "without --auth-secret-file: days the record of a device not seen is kept before a sweep"
        " deletes it (0: kept until an operator removes it)",
    ),
    (
        "store",
        "ACP_STORE",
        str,
        "shared store for device state (redis://HOST:PORT/DB), so replicas serve one fleet;"
        " empty: the SQLite file --state-db",
    ),
    (
        "store_password_file",
        "ACP_STORE_PASSWORD_FILE",
        Path,
        "file holding the store's password (its first line), so it is in no URL, argument or log;"
        " name the ACL user in the URL: redis://USER@HOST:PORT/DB",
    ),
    (
        "store_tls_ca_file",
        "ACP_STORE_TLS_CA_FILE",
        Path,
        "PEM CA bundle the store's certificate must be signed by (with a rediss:// URL)",
    ),
    (
        "store_wait_replicas",
        "ACP_STORE_WAIT_REPLICAS",
        int,
        "Redis replicas that must hold a save (WAIT) before it is acked, so a Sentinel failover"
        " loses nothing acked; a save they do not confirm in time is retried (0: the primary's word)",
    ),
    (
        "store_wait_ms",
        "ACP_STORE_WAIT_MS",
        int,
        "milliseconds a save waits for --store-wait-replicas to confirm it",
    ),
    (
        "store_secret_file",
        "ACP_STORE_SECRET_FILE",
        Path,
        "file holding the replicas' shared secret (at least 16 bytes): relayed commands, claims and"
        " snapshots are signed with it; required unless the store is on this machine",
    ),
    (
        "replica_id",
        "ACP_REPLICA_ID",
        str,
        "this server's name among replicas sharing a store (empty: host name and gRPC port)",
    ),
    (
        "workers",
        "ACP_WORKERS",
        _worker_count,
        "server processes sharing the gRPC port under one parent that restarts any that dies"
        " (auto: one per core)",
    ),
    ("worker_index", "ACP_WORKER_INDEX", int, "set by --workers for each worker; leave unset"),
)


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags win over environment variables, which win over defaults. Bad values exit with status 2."""
    environ = os.environ if environ is None else environ
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="python -m actors.main",
        description="Streaming audio control plane: serves the device fleet over gRPC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    values: dict[str, object] = {}
    for name, env, kind, help_text in _FLAGS:
        default = getattr(defaults, name)
        if env in environ:
            try:
                default = kind(environ[env])
            except ValueError:
                parser.error(f"{env}={environ[env]!r} is not a valid {getattr(kind, '__name__', 'value')}")
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind, default=default, help=f"{help_text} [{env}]"
        )
    args = parser.parse_args(argv)
    values = vars(args)
    values["log_level"] = str(values["log_level"]).upper()
    values["log_format"] = str(values["log_format"]).lower()
    try:
        return ServerConfig(**values)  # type: ignore[arg-type]
    except ValueError as error:
        parser.error(str(error))
