"""Where a device's state waits between connections."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from actors.state import DeviceState


class StateStore(Protocol):
    def load(self, device_id: str) -> DeviceState | None: ...

    def save(self, device_id: str, state: DeviceState) -> None: ...


class MemoryStateStore:
    """Keeps the most recently seen devices; the least recently used are forgotten past ``capacity``."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, DeviceState] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, device_id: str) -> DeviceState | None:
        with self._lock:
            state = self._states.get(device_id)
            if state is not None:
                self._states.move_to_end(device_id)
            return state

    def save(self, device_id: str, state: DeviceState) -> None:
        with self._lock:
            self._states[device_id] = state
            self._states.move_to_end(device_id)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def __len__(self) -> int:
        return len(self._states)
