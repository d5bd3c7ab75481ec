"""Shared fixtures: one real sound library per run (encoding is done once, as in the server)."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from media.library import SoundLibrary, build_library

pytest_plugins = ["pytester", "tests.log_secrets"]
"""pytester: the check that no secret reaches a log is itself tested by running a test that leaks one."""


@pytest.fixture(scope="session")
def library() -> SoundLibrary:
    return build_library(modes=5, frame_ms=20)


@pytest.fixture(autouse=True)
def no_actor_outlives_its_test() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
