"""The server's Prometheus metrics, in a registry of its own (one per server, so tests can run several).

Counters bumped for every audio packet or LED request are plain integers updated on the event
loop and read at scrape time, so the hot path pays an increment, not a lock. Everything the
actors report arrives through the ``FleetObserver`` methods from their threads; prometheus
objects are thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from actors.commit import GroupCommit
from actors.lease import STALE_ANSWER, STALE_EVICTION, STALE_SAVE
from actors.observer import FleetObserver
from media.transport import PlaybackEnd

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics(FleetObserver):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.audio_packets_sent = 0
        self.led_sets_sent = 0
        self.led_sets_failed = 0
        self.led_gets_failed = 0
        self.led_changes_coalesced = 0
        self.streams_refused = 0
        self.connects_shed = 0
        self._commits: GroupCommit | None = None
        self._event_readers: Callable[[], int] | None = None
        self._store_reachable: Callable[[], bool] | None = None
        self._store_outages: Callable[[], int] | None = None
        self._store_round_trips: Callable[[], dict[str, int]] | None = None
        self._store_rejections: Mapping[tuple[str, str], int] | None = None
        self._event_readers_dropped: Callable[[], int] | None = None
        self._waiting_writes: Callable[[], dict[str, tuple[int, int]]] | None = None
        self._audio_load: Callable[[], AudioLoad] | None = None

        registry = self.registry
        self.connected_devices = Gauge(
            "acp_connected_devices", "Devices with at least one open stream", registry=registry
        )
        self.open_streams = Gauge("acp_open_streams", "Open device streams", ["kind"], registry=registry)
        self.events = Counter(
            "acp_device_events", "Device events received", ["button", "type"], registry=registry
        )
        self.nacks = Counter(
            "acp_device_events_nacked",
            "Events acked false: unsupported (unknown button, type or kind) or refused by the device actor",
            ["reason"],
            registry=registry,
        )
        self.events_throttled = Counter(
            "acp_device_events_throttled",
            "Events that waited for their turn (sent faster than --event-rate); nothing else is read meanwhile",
            registry=registry,
        )
        self.event_floods_ended = Counter(
            "acp_event_floods_ended",
            "Event streams ended with RESOURCE_EXHAUSTED: the device stayed over its rate for --event-abuse-seconds",
            registry=registry,
        )
        self.playbacks = Counter(
            "acp_playbacks", "Playbacks by what happened to them", ["outcome"], registry=registry
        )
        self.actor_restarts = Counter(
            "acp_actor_restarts", "Device actors restarted after a failure", registry=registry
        )
        self.button_to_led = Histogram(
            "acp_button_to_led_seconds",
            "From a button event reaching the server to the device confirming the LED state it caused",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pacing_lateness = Histogram(
            "acp_pacing_lateness_seconds",
            "How late the audio scheduler pushed the most overdue packet, once per tick",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)
        registry.register(_HotCounters(self))

    # FleetObserver, called from actor threads.

    def device_connected(self) -> None:
        self.connected_devices.inc()

    def device_disconnected(self) -> None:
        self.connected_devices.dec()

    def actor_restarted(self) -> None:
        self.actor_restarts.inc()

    def playback_started(self) -> None:
        self.playbacks.labels("started").inc()

    def playback_ended(self, how: PlaybackEnd) -> None:
        self.playbacks.labels(how.value).inc()

    def playback_refused(self) -> None:
        """Admission control refused a Play: the server carries all the audio it can keep on time."""
        self.playbacks.labels("refused").inc()

    def watch_commits(self, commits: GroupCommit) -> None:
        self._commits = commits

    def watch_shared_store(
        self,
        reachable: Callable[[], bool],
        outages: Callable[[], int],
        round_trips: Callable[[], dict[str, int]],
    ) -> None:
        """The shared store (Redis): reachable now, how many outages it had, requests sent by purpose."""
        self._store_reachable, self._store_outages = reachable, outages
        self._store_round_trips = round_trips

    def watch_store_rejections(self, counts: Mapping[tuple[str, str], int]) -> None:
        """What was read from the shared store and refused, by (kind, reason); read at each scrape."""
        self._store_rejections = counts

    def watch_audio_load(self, load: Callable[[], AudioLoad]) -> None:
        """Admission control's model and the transport's counts, read at each scrape."""
        self._audio_load = load

    def watch_waiting_writes(self, queues: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """What waits for the shared store and what was dropped, by queue: (waiting, dropped)."""
        self._waiting_writes = queues

    def watch_event_readers(self, readers: Callable[[], int], dropped: Callable[[], int]) -> None:
        """The operator API's live-event readers: how many are connected, how many were dropped."""
        self._event_readers, self._event_readers_dropped = readers, dropped


@dataclass(frozen=True)
class AudioLoad:
    """What admission control measures and decides, for the metrics."""

    busy: float
    packet_cost: float
    frames_per_packet: int
    capacity: int | None
    streaming: int
    frames_pushed: int


class _HotCounters(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield _counter("acp_audio_packets_sent", "Audio packets handed to gRPC", m.audio_packets_sent)
        led = CounterMetricFamily(
            "acp_led_sets", "LED SET requests by the device's answer", labels=["result"]
        )
        led.add_metric(["sent"], m.led_sets_sent)
        led.add_metric(["failed"], m.led_sets_failed)
        yield led
        yield _counter("acp_led_gets_failed", "GET requests answered without a state", m.led_gets_failed)
        yield _counter(
            "acp_led_changes_coalesced",
            "LED states replaced by a newer one before they were sent",
            m.led_changes_coalesced,
        )
        yield _counter(
            "acp_streams_refused", "Streams refused: server full, draining or shedding", m.streams_refused
        )
        yield _counter(
            "acp_connects_shed",
            "Streams refused at once because the opens ahead of them waited too long (connect storm)",
            m.connects_shed,
        )
        if m._audio_load is not None:
            load = m._audio_load()
            yield GaugeMetricFamily(
                "acp_loop_busy_ratio",
                "Share of the last interval the event loop spent working",
                value=load.busy,
            )
            yield GaugeMetricFamily(
                "acp_audio_packet_cost_seconds",
                "Loop time one audio packet costs, as admission control measures it",
                value=load.packet_cost,
            )
            yield GaugeMetricFamily(
                "acp_audio_frames_per_packet",
                "Frames the streams' next packets carry (elastic packets: 1 idle, up to 120 ms)",
                value=load.frames_per_packet,
            )
            yield GaugeMetricFamily(
                "acp_audio_capacity_streams",
                "Streams admission control admits at once now (-1: no limit)",
                value=-1 if load.capacity is None else load.capacity,
            )
            yield GaugeMetricFamily("acp_audio_streams", "Streams playing now", value=load.streaming)
            yield _counter("acp_audio_frames_sent", "Audio frames pushed to the streams", load.frames_pushed)
        if m._event_readers is not None and m._event_readers_dropped is not None:
            yield GaugeMetricFamily(
                "acp_admin_event_readers",
                "Readers of the operator API's live events",
                value=m._event_readers(),
            )
            yield _counter(
                "acp_admin_event_readers_dropped",
                "Live-event readers dropped for falling behind (devices never wait for them)",
                m._event_readers_dropped(),
            )
        if m._store_reachable is not None and m._store_outages is not None:
            yield GaugeMetricFamily(
                "acp_store_reachable",
                "1 while the shared store answers, 0 during an outage (saves then wait)",
                value=1 if m._store_reachable() else 0,
            )
            yield _counter(
                "acp_store_outages", "Times the shared store became unreachable", m._store_outages()
            )
        if m._store_round_trips is not None:
            trips = CounterMetricFamily(
                "acp_store_round_trips", "Requests sent to the shared store, by purpose", labels=["purpose"]
            )
            for purpose, count in sorted(m._store_round_trips().items()):
                trips.add_metric([purpose], count)
            yield trips
        if m._waiting_writes is not None:
            waiting = GaugeMetricFamily(
                "acp_store_writes_waiting",
                "Writes waiting for the shared store (coalesced and bounded while it is away), by queue",
                labels=["queue"],
            )
            dropped = CounterMetricFamily(
                "acp_store_writes_dropped",
                "Writes the shared store never got: dropped from a full queue, or (fleet snapshots)"
                " refused by an outage and published again by the feed's repair, by queue",
                labels=["queue"],
            )
            for queue, (count, lost) in sorted(m._waiting_writes().items()):
                waiting.add_metric([queue], count)
                dropped.add_metric([queue], lost)
            yield waiting
            yield dropped
        if m._store_rejections is not None:
            rejected = CounterMetricFamily(
                "acp_store_messages_rejected",
                "Messages and stored values read from the shared store and refused (forged, replayed,"
                " stale or malformed), by kind and reason",
                labels=["kind", "reason"],
            )
            for (kind, reason), count in sorted(dict(m._store_rejections).items()):
                rejected.add_metric([kind, reason], count)
            yield rejected
        if m._commits is not None:
            yield _counter(
                "acp_state_saves_lease_ended",
                "Saves the store refused: the device's lease had ended (another server holds it now)",
                m._commits.lease_ended_saves,
            )
            yield _counter("acp_state_saves", "Device states saved", m._commits.saves)
            stale = CounterMetricFamily(
                "acp_stale_lease_dropped",
                "What belonged to an older lease of a device and was dropped, by kind: a save (never"
                " sent, or sent again, under a newer lease), an eviction (a newer session stays) or a"
                " store's answer (a refusal that ends nothing newer)",
                labels=["kind"],
            )
            for kind in (STALE_SAVE, STALE_EVICTION, STALE_ANSWER):
                stale.add_metric([kind], m._commits.stale.dropped[kind])
            yield stale
            yield _counter(
                "acp_state_commits",
                "Store transactions (saves that arrive together share one)",
                m._commits.commits,
            )


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
