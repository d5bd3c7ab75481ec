"""Counters the server keeps about its own work, read by tests and (later) by metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerStats:
    """Updated only on the event loop thread."""

    led_sets_sent: int = 0
    led_sets_failed: int = 0
    led_gets_failed: int = 0
    events_acked: int = 0
    events_nacked: int = 0
    audio_packets_sent: int = 0
    streams_refused: int = 0
