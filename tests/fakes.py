"""Small recording stand-ins for the gRPC side of a device connection, for actor tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from actors.leds import LedFrame
from actors.ports import CloseCause, PlaybackEndCallback
from media.library import EncodedSound
from media.transport import PlaybackEnd

T = TypeVar("T")


class Recorder(Generic[T]):
    """Thread-safe list the test thread can wait on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def add(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def items(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[list[T]], bool], timeout: float = 5.0) -> list[T]:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._items), timeout):
                raise AssertionError(f"timed out; recorded {self._items!r}")
            return list(self._items)


class FakeLedOutlet:
    def __init__(self) -> None:
        self.frames: Recorder[LedFrame] = Recorder()

    def show(self, leds: LedFrame, caused_at: float | None = None) -> None:
        self.frames.add(leds)

    @property
    def latest(self) -> LedFrame:
        frames = self.frames.items
        assert frames, "no LED state shown yet"
        return frames[-1]


class FakeAudioOutlet:
    """Records commands; the test finishes a playback by calling its end callback."""

    def __init__(self) -> None:
        self.commands: Recorder[tuple[str, ...]] = Recorder()
        self.callbacks: list[PlaybackEndCallback] = []
        self.fail_next_play = False

    def play(self, sound: EncodedSound, on_end: PlaybackEndCallback) -> None:
        if self.fail_next_play:
            self.fail_next_play = False
            raise RuntimeError("injected failure in the audio outlet")
        self.callbacks.append(on_end)
        self.commands.add(("play", sound.name))

    def stop(self) -> None:
        self.commands.add(("stop",))

    def finish_latest(self) -> None:
        self.callbacks[-1](PlaybackEnd.COMPLETED)


class FakeLink:
    def __init__(self, device_id: str = "dev", peer: str = "ipv4:127.0.0.1:1000") -> None:
        self.device_id = device_id
        self._peer = peer
        self.led_outlet = FakeLedOutlet()
        self.audio_outlet = FakeAudioOutlet()
        self.closed: Recorder[tuple[CloseCause, str]] = Recorder()

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def leds(self) -> FakeLedOutlet:
        return self.led_outlet

    @property
    def audio(self) -> FakeAudioOutlet:
        return self.audio_outlet

    def close(self, cause: CloseCause, reason: str) -> None:
        self.closed.add((cause, reason))


class Replies:
    """Collects the values actors reply with."""

    def __init__(self) -> None:
        self.values: Recorder[object] = Recorder()

    def __call__(self, value: object) -> None:
        self.values.add(value)

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[object]:
        return self.values.wait_for(lambda items: len(items) >= count, timeout)

    def last(self, timeout: float = 5.0) -> object:
        return self.wait(len(self.values.items) or 1, timeout)[-1]
