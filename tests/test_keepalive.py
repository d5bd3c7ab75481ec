"""A device whose network silently disappears (a half-open connection) is noticed by keep-alive."""

from __future__ import annotations

import asyncio
import contextlib

from media.library import SoundLibrary
from simulator import Button, SimulatedDevice
from tests.live import fleet_status, run, serving, target, wait_for_fleet


class Blackhole:
    """A TCP relay on loopback that can stop forwarding without closing anything, like a cut cable."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self.cut = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.address = ""

    async def __aenter__(self) -> Blackhole:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self.cut.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on, keep the socket open
                sink.write(data)
                await sink.drain()


def test_a_half_open_device_is_dropped_by_keep_alive_and_its_state_kept(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, keepalive_time=1.0, keepalive_timeout=1.0) as plane:
            async with Blackhole(target(plane)) as network:
                device = SimulatedDevice(network.address, "kitchen", play_in_real_time=False)
                await device.connect()
                assert await device.press(Button.MODE)
                assert await device.press(Button.PLAY)
                await asyncio.sleep(0.2)
                assert (await fleet_status(plane)).connected == 1
                loop = asyncio.get_running_loop()
                cut_at = loop.time()
                network.cut.set()
                await wait_for_fleet(plane, lambda status: status.connected == 0, timeout=10)
                noticed = loop.time() - cut_at
                assert noticed < 4, f"keep-alive took {noticed:.1f} s"
                assert plane.store.load("kitchen") is not None
                assert plane.store.load("kitchen").mode == 1  # type: ignore[union-attr]
                await device.disconnect()
            async with SimulatedDevice(target(plane), "kitchen", play_in_real_time=False) as again:
                await again.wait_for_first_set(5)
                assert await again.press(Button.MODE)
                assert (await fleet_status(plane)).connected == 1

    run(scenario)
