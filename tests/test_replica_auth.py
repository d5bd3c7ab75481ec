"""Sealed replica messages: a forged, tampered, stale or replayed one is refused, saying why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cluster.rejections import MALFORMED, REPLAYED, STALE, UNAUTHENTICATED, Rejections
from cluster.replica_auth import MessageSeal, Refused, load_replica_secret, sender_of

SECRET = b"s" * 32
LIMIT = 64 * 1024


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock | None = None) -> tuple[MessageSeal, MessageSeal]:
    clock = clock or Clock()
    return MessageSeal("replica-1", SECRET, clock), MessageSeal("replica-2", SECRET, clock)


def refusal(seal: MessageSeal, kind: str, data: str | bytes, **options: bool) -> str:
    with pytest.raises(Refused) as refused:
        seal.open(kind, data, LIMIT, **options)
    return refused.value.reason


def test_a_sealed_message_opens_with_the_same_secret() -> None:
    one, two = pair()
    envelope = two.open("claim", one.seal("claim", {"claim": "kitchen", "epoch": 3}), LIMIT)
    assert (envelope.kind, envelope.sender, envelope.body) == (
        "claim",
        "replica-1",
        {"claim": "kitchen", "epoch": 3},
    )
    assert sender_of(one.seal("claim", {})) == "replica-1"


def test_a_message_sealed_without_the_secret_is_unauthenticated() -> None:
    _, two = pair()
    forger = MessageSeal("replica-1", b"f" * 32, Clock())
    assert refusal(two, "claim", forger.seal("claim", {"claim": "kitchen", "epoch": 99})) == UNAUTHENTICATED
    unkeyed = MessageSeal("replica-1", None, Clock())
    assert refusal(two, "claim", unkeyed.seal("claim", {"claim": "kitchen", "epoch": 99})) == UNAUTHENTICATED
    assert refusal(two, "claim", 'replica-1\n{"claim": "kitchen", "epoch": 99}') == UNAUTHENTICATED
    assert refusal(two, "claim", b"\xff\xfe") == UNAUTHENTICATED


def test_a_tampered_message_is_unauthenticated() -> None:
    one, two = pair()
    sealed = one.seal("claim", {"claim": "kitchen", "epoch": 3})
    assert refusal(two, "claim", sealed.replace('"epoch":3', '"epoch":9')) == UNAUTHENTICATED


def test_a_genuine_message_replayed_is_refused() -> None:
    one, two = pair()
    sealed = one.seal("relay-request", {"device_id": "kitchen"})
    two.open("relay-request", sealed, LIMIT)
    assert refusal(two, "relay-request", sealed) == REPLAYED


def test_a_genuine_message_older_than_the_window_is_stale_and_so_is_one_from_the_future() -> None:
    clock = Clock()
    one, two = pair(clock)
    old = one.seal("relay-request", {})
    clock.now += 31
    assert refusal(two, "relay-request", old) == STALE
    clock.now -= 62
    assert refusal(two, "relay-request", old) == STALE


def test_a_replay_after_the_window_is_stale_and_the_ids_seen_are_forgotten() -> None:
    clock = Clock()
    one, two = pair(clock)
    sealed = one.seal("snapshots", [])
    two.open("snapshots", sealed, LIMIT)
    clock.now += 31
    two.open("snapshots", one.seal("snapshots", []), LIMIT)  # prunes the ids whose window passed
    assert refusal(two, "snapshots", sealed) == STALE
    assert len(two._seen) == 1


def test_a_message_of_another_kind_or_naming_another_sender_is_malformed() -> None:
    one, two = pair()
    assert refusal(two, "relay-request", one.seal("relay-reply", {})) == MALFORMED
    forged_header = "replica-3" + one.seal("claim", {}).removeprefix("replica-1")
    assert refusal(two, "claim", forged_header) == MALFORMED
    assert refusal(two, "claim", one.seal("claim", "x" * LIMIT)) == MALFORMED


def test_a_stored_value_is_read_at_any_age_but_only_if_genuine() -> None:
    clock = Clock()
    one, two = pair(clock)
    sealed = one.seal("live-snapshot", {"device_id": "kitchen"})
    clock.now += 86_400
    assert two.open("live-snapshot", sealed, LIMIT, stored=True).body == {"device_id": "kitchen"}
    assert two.open("live-snapshot", sealed, LIMIT, stored=True).sender == "replica-1"
    assert refusal(two, "live-snapshot", sealed.replace("kitchen", "ghost"), stored=True) == UNAUTHENTICATED


def test_a_body_encoded_once_is_sealed_as_the_same_json() -> None:
    one, two = pair()
    body = json.dumps([{"device_id": "a"}], separators=(",", ":"))
    assert two.open("snapshots", one.seal_json("snapshots", body), LIMIT).body == [{"device_id": "a"}]


def test_the_secret_file_must_hold_a_secret(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"tooshort\n")
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        load_replica_secret(short)
    with pytest.raises(ValueError, match="cannot read"):
        load_replica_secret(tmp_path / "missing")
    good = tmp_path / "good"
    good.write_bytes(SECRET + b"\n")
    assert load_replica_secret(good) == SECRET


def test_rejections_are_counted_each_and_logged_once_a_minute_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(0.0)
    rejections = Rejections(clock)
    with caplog.at_level(logging.WARNING, logger="cluster.rejections"):
        for _ in range(1000):
            rejections.reject("relay-request", UNAUTHENTICATED, "forged")
        rejections.reject("snapshot", MALFORMED, "bad tags")
        clock.now = 61.0
        rejections.reject("relay-request", UNAUTHENTICATED, "forged" + "x" * 1000)
    assert rejections.counts[("relay-request", UNAUTHENTICATED)] == 1001
    assert rejections.total() == 1002
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert "999 more ignored since the last notice" in lines[2]
    assert len(lines[2]) < 400, "a rejection's detail is quoted short"
