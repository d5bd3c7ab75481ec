"""What the actors report about the fleet as it happens, for metrics; fire-and-forget, never a reply.

Methods are called from actor threads and must not block. The default does nothing, so the
actors run (and are tested) without any metrics backend.
"""

from __future__ import annotations

from media.transport import PlaybackEnd


class FleetObserver:
    def device_connected(self) -> None:
        pass

    def device_disconnected(self) -> None:
        pass

    def actor_restarted(self) -> None:
        pass

    def playback_started(self) -> None:
        pass

    def playback_ended(self, how: PlaybackEnd) -> None:
        pass
