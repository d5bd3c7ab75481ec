"""The real server in-process with its operator API on a free loopback port, and an HTTP client for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from media.library import SoundLibrary
from rpc.server import ControlPlane
from simulator import SimulatedDevice
from tests.live import serving, target

JSON = {"Content-Type": "application/json"}


@dataclass
class Operated:
    plane: ControlPlane
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.plane.admin_port}"

    def device(self, device_id: str, **options: Any) -> SimulatedDevice:
        return SimulatedDevice(target(self.plane), device_id, play_in_real_time=False, **options)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, json={} if body is None else body, **kwargs)

    async def device_json(self, device_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/devices/{device_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def until_device(
        self, device_id: str, condition: Callable[[dict[str, Any]], bool], timeout: float = 5
    ) -> dict[str, Any]:
        """Polls the API (what an operator sees) until the device's JSON satisfies ``condition``."""
        async with asyncio.timeout(timeout):
            while True:
                response = await self.http.get(f"/api/devices/{device_id}")
                if response.status_code == 200 and condition(response.json()):
                    result: dict[str, Any] = response.json()
                    return result
                await asyncio.sleep(0.02)


@asynccontextmanager
async def operated(
    library: SoundLibrary, headers: dict[str, str] | None = None, **overrides: Any
) -> AsyncIterator[Operated]:
    async with (
        serving(library, **{"admin_port": 0, **overrides}) as plane,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{plane.admin_port}", headers=headers or {}, timeout=10
        ) as http,
    ):
        yield Operated(plane, http)


# Live events, read as a browser reads them.

Event = tuple[int, str, dict[str, Any]]


async def events(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> AsyncGenerator[Event]:
    """Parses the stream as a browser would: id, event and data lines, a blank line ends each."""
    async with http.stream("GET", "/api/events", headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "event" in fields:
                    yield int(fields["id"]), fields["event"], json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value


async def first(stream: AsyncIterator[Event], wanted: Callable[[Event], bool], timeout: float = 5) -> Event:
    async with asyncio.timeout(timeout):
        async for event in stream:
            if wanted(event):
                return event
    raise AssertionError("the stream ended")


def about(device_id: str, condition: Callable[[dict[str, Any]], bool]) -> Callable[[Event], bool]:
    return lambda e: e[1] == "device" and e[2]["device_id"] == device_id and condition(e[2])
