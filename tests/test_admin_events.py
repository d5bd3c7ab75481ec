"""The live-event hub: history, resume, coalescing, and readers that fall behind. No server, no sleeps."""

from __future__ import annotations

import asyncio

from admin.events import EventHub, Reader


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def hub(
    clock: ManualClock | None = None, history: int = 100, max_pending: int = 100, max_unread: float = 10
) -> EventHub:
    return EventHub(clock or ManualClock(), history=history, max_pending=max_pending, max_unread=max_unread)


def kinds(reader: Reader) -> list[tuple[str, dict[str, object]]]:
    return [(event.kind, event.data) for event in reader.pending.values()]


def test_a_new_reader_gets_only_new_events() -> None:
    events = hub()
    events.publish("device", "device:a", {"mode": 1})
    reader = events.join(None)
    events.publish("device", "device:a", {"mode": 2})
    assert kinds(reader) == [("device", {"mode": 2})]


def test_a_reader_resuming_gets_what_it_missed_in_order() -> None:
    events = hub()
    first = events.publish("device", "device:a", {"mode": 1})
    events.publish("device", "device:b", {"mode": 1})
    events.publish("sounds", "sounds", {})
    reader = events.join(first.id)
    assert [kind for kind, _ in kinds(reader)] == ["device", "sounds"]


def test_a_reader_resuming_from_beyond_the_history_is_told_to_start_over() -> None:
    events = hub(history=2)
    first = events.publish("device", "device:a", {"mode": 1})
    for mode in range(3):
        events.publish("device", f"device:{mode}", {"mode": mode})
    reader = events.join(first.id)
    assert kinds(reader) == [("reset", {})]


def test_a_burst_for_one_device_coalesces_to_its_latest_state() -> None:
    events = hub()
    reader = events.join(None)
    for mode in range(5):
        events.publish("device", "device:a", {"mode": mode})
    events.publish("device", "device:b", {"mode": 9})
    assert kinds(reader) == [("device", {"mode": 4}), ("device", {"mode": 9})]


def test_a_reader_with_too_many_pending_events_is_dropped() -> None:
    events = hub(max_pending=3)
    reader = events.join(None)
    for n in range(4):
        events.publish("device", f"device:{n}", {})
    assert reader.dropped
    assert reader.closed
    assert events.readers == 0
    assert events.dropped == 1


def test_a_reader_that_reads_nothing_for_too_long_is_dropped() -> None:
    clock = ManualClock()
    events = hub(clock, max_unread=10.0)
    reader = events.join(None)
    events.publish("device", "device:a", {})
    clock.now = 11
    events.publish("device", "device:a", {})
    assert reader.dropped


def test_the_stream_sends_pending_events_as_server_sent_events() -> None:
    async def scenario() -> bytes:
        events = hub()
        reader = events.join(None)
        events.publish("device", "device:a", {"mode": 1})
        stream = reader.stream()
        chunk = await anext(stream)
        events.close()
        rest = [part async for part in stream]
        assert rest == []
        return chunk

    chunk = asyncio.run(scenario())
    assert chunk == b'id: 1\nevent: device\ndata: {"mode": 1}\n\n'


def test_closing_the_hub_ends_every_stream() -> None:
    async def scenario() -> None:
        events = hub()
        reader = events.join(None)
        task = asyncio.ensure_future(anext(reader.stream(), None))
        await asyncio.sleep(0)
        events.close()
        assert await task is None

    asyncio.run(scenario())


def test_a_reader_resuming_from_an_id_this_hub_never_gave_is_told_to_start_over() -> None:
    events = hub()
    events.publish("device", "device:a", {"mode": 1})
    reader = events.join(10_000)  # an id from before a restart, say
    assert kinds(reader) == [("reset", {})]


def test_zero_asks_for_the_whole_history() -> None:
    events = EventHub(ManualClock(), first_id=5_000)
    events.publish("device", "device:a", {"mode": 1})
    events.publish("device", "device:b", {"mode": 2})
    reader = events.join(0)
    assert [data for _, data in kinds(reader)] == [{"mode": 1}, {"mode": 2}]


def test_a_quiet_reader_that_has_read_everything_is_never_dropped() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        events = hub(clock, max_unread=10.0)
        reader = events.join(None)
        stream = reader.stream()
        events.publish("device", "device:a", {"mode": 1})
        await anext(stream)
        clock.now = 600  # ten minutes with nothing to say
        events.publish("device", "device:a", {"mode": 2})
        assert not reader.dropped
        assert b'"mode": 2' in await anext(stream)
        events.close()

    asyncio.run(scenario())


def test_a_reader_is_judged_by_the_age_of_its_oldest_unread_event() -> None:
    clock = ManualClock()
    events = hub(clock, max_unread=10.0)
    reader = events.join(None)
    clock.now = 100  # quiet until now: not behind
    events.publish("device", "device:a", {"mode": 1})
    clock.now = 109
    events.publish("device", "device:a", {"mode": 2})  # replaces the unread one, which is 9 s old
    assert not reader.dropped
    clock.now = 111
    events.publish("device", "device:b", {"mode": 1})
    assert reader.dropped


def test_a_quiet_stream_sends_comment_keep_alives() -> None:
    async def scenario() -> bytes:
        events = EventHub(ManualClock(), keepalive=0.01)
        reader = events.join(None)
        stream = reader.stream()
        chunk = await anext(stream)
        events.close()
        return chunk

    assert asyncio.run(scenario()) == b": keep-alive\n\n"
