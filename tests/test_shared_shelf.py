"""One sound shelf shared by several processes (``--workers``): two catalogs on one real
directory stand for two workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.catalog import SoundCatalog, decode_upload
from media.library import SoundLibrary, build_library
from tests.audio_files import write_tone

MODES = 4


@pytest.fixture(scope="module")
def library() -> SoundLibrary:
    return build_library(MODES, frame_ms=20)


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tone(tmp_path_factory.mktemp("uploads") / "tone.wav", 500.0, seconds=0.5).read_bytes()


def upload(catalog: SoundCatalog, name: str, data: bytes) -> None:
    catalog.add(name, decode_upload(name, data, catalog.frame_ms), data)


def test_an_upload_and_its_assignment_on_one_worker_are_taken_in_by_another(
    tmp_path: Path, library: SoundLibrary, tone: bytes
) -> None:
    first, second = SoundCatalog(library, tmp_path), SoundCatalog(library, tmp_path)
    before = second.shelf_signature()
    upload(first, "bell", tone)
    first.assign(1, "bell")
    assert second.shelf_signature() != before, "the change shows in the shelf's directory entries"
    second.follow_shelf()
    assert second.named("bell") is not None
    assert second.for_mode(1).name == "bell"


def test_assignments_made_on_two_workers_are_both_kept(
    tmp_path: Path, library: SoundLibrary, tone: bytes
) -> None:
    """Each change reads the shelf first, under its lock: no worker writes over another's."""
    first, second = SoundCatalog(library, tmp_path), SoundCatalog(library, tmp_path)
    upload(first, "bell", tone)
    first.assign(1, "bell")
    second.assign(2, "bell")  # not followed yet: the assignment itself reads the shelf
    first.follow_shelf()
    for catalog in (first, second, SoundCatalog(library, tmp_path)):
        assert catalog.for_mode(1).name == "bell"
        assert catalog.for_mode(2).name == "bell"


def test_an_upload_deleted_on_one_worker_is_gone_from_another(
    tmp_path: Path, library: SoundLibrary, tone: bytes
) -> None:
    first, second = SoundCatalog(library, tmp_path), SoundCatalog(library, tmp_path)
    upload(first, "bell", tone)
    second.follow_shelf()
    assert second.named("bell") is not None
    first.remove("bell")
    second.follow_shelf()
    assert second.named("bell") is None
