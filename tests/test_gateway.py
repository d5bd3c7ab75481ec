"""The actor→asyncio bridge: replies arrive on the loop; a missing reply fails in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.messages import RouteButton
from actors.state import Button, ButtonInput
from rpc.gateway import FleetGateway


class Answering(pykka.ThreadingActor):
    """Stands in for the supervisor: acks every press, or never answers when told to be silent."""

    def __init__(self, silent: bool) -> None:
        super().__init__()
        self.silent = silent

    def on_receive(self, message: Any) -> None:
        if isinstance(message, RouteButton) and not self.silent:
            message.reply(True)


@pytest.fixture
def actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def press(silent: bool, ack_timeout: float) -> tuple[bool, float]:
    async def scenario() -> tuple[bool, float]:
        gateway = FleetGateway(Answering.start(silent), asyncio.get_running_loop(), ack_timeout=ack_timeout)
        started = time.monotonic()
        accepted = await gateway.press("kitchen", 1, ButtonInput(Button.MODE), started)
        return accepted, time.monotonic() - started

    return asyncio.run(scenario())


@pytest.mark.usefixtures("actors")
def test_an_answered_press_is_accepted() -> None:
    accepted, _ = press(silent=False, ack_timeout=5.0)
    assert accepted


@pytest.mark.usefixtures("actors")
def test_a_press_nobody_answers_is_refused_after_the_ack_timeout() -> None:
    accepted, waited = press(silent=True, ack_timeout=0.2)
    assert not accepted
    assert 0.2 <= waited < 2.0
