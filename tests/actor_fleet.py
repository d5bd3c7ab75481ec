"""Drives the real supervisor and device actors with fake button messages, no network."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.commit import GroupCommit
from actors.messages import (
    DescribeFleet,
    FleetStatus,
    OpenStream,
    RouteButton,
    StreamClosed,
    StreamGrant,
    StreamKind,
    StreamRefused,
)
from actors.runtime import ActorRuntime
from actors.state import Button, ButtonInput, Gesture
from actors.store import MemoryStateStore, StateStore
from actors.supervisor import SupervisorActor, SupervisorPolicy
from media.admission import StreamAdmission
from media.library import SoundLibrary
from tests.fakes import FakeLink, Replies

ALL_KINDS = (StreamKind.STATUS, StreamKind.EVENTS, StreamKind.AUDIO)


class ActorFleet:
    """The supervisor and its device actors on an actor runtime of their own (a thread and its loop)."""

    def __init__(
        self,
        library: SoundLibrary,
        policy: SupervisorPolicy | None = None,
        admission: StreamAdmission | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.runtime = ActorRuntime.on_own_thread("test-actors")
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.commits = GroupCommit(self.store, self.runtime.call_soon)
        self.links: list[FakeLink] = []
        self.admission = admission or StreamAdmission()
        self.supervisor: pykka.ActorRef[Any] = SupervisorActor.start(
            self.runtime, library, self.commits, self._make_link, policy, None, self.admission
        )
        self.grants: dict[tuple[str, StreamKind], StreamGrant] = {}

    def shutdown(self) -> None:
        self.runtime.shutdown()

    def _make_link(self, device_id: str, peer: str) -> FakeLink:
        link = FakeLink(device_id, peer)
        self.links.append(link)
        return link

    def link_of(self, device_id: str) -> FakeLink:
        return [link for link in self.links if link.device_id == device_id][-1]

    def open(
        self, device_id: str, kind: StreamKind, peer: str = "ipv4:127.0.0.1:1000"
    ) -> StreamGrant | StreamRefused:
        replies = Replies()
        self.supervisor.tell(OpenStream(device_id, peer, kind, replies))
        result = replies.last()
        assert isinstance(result, StreamGrant | StreamRefused)
        if isinstance(result, StreamGrant):
            self.grants[(device_id, kind)] = result
        return result

    def connect(self, device_id: str, peer: str = "ipv4:127.0.0.1:1000") -> FakeLink:
        for kind in ALL_KINDS:
            assert isinstance(self.open(device_id, kind, peer), StreamGrant)
        return self.link_of(device_id)

    def close(self, device_id: str, kind: StreamKind) -> None:
        grant = self.grants.pop((device_id, kind))
        self.supervisor.tell(StreamClosed(device_id, grant.session, grant.stream, kind))

    def disconnect(self, device_id: str) -> None:
        for kind in ALL_KINDS:
            self.close(device_id, kind)

    def press(self, device_id: str, button: Button, gesture: Gesture = Gesture.PRESS) -> bool:
        grant = self.grants[(device_id, StreamKind.EVENTS)]
        replies = Replies()
        self.supervisor.tell(RouteButton(device_id, grant.session, ButtonInput(button, gesture), replies))
        ack = replies.last()
        assert isinstance(ack, bool)
        return ack

    def status(self) -> FleetStatus:
        """Also a barrier: every message sent before it has been handled by the supervisor."""
        replies = Replies()
        self.supervisor.tell(DescribeFleet(replies))
        status = replies.last()
        assert isinstance(status, FleetStatus)
        return status

    def wait_for_status(self, predicate: Callable[[FleetStatus], bool], timeout: float = 5.0) -> FleetStatus:
        deadline = time.monotonic() + timeout
        while not predicate(status := self.status()):
            assert time.monotonic() < deadline, f"timed out; fleet is {status}"
            time.sleep(0.005)
        return status
