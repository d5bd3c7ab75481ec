"""Sounds managed at run time: uploads decoded once and played by name, mode assignments, and both kept
on the shelf across restarts. Real files, real PyAV decoding, real libopus."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from media.catalog import (
    AssignmentError,
    CatalogEntry,
    SoundCatalog,
    SoundConflict,
    SoundNameError,
    SoundSource,
    UnknownSound,
    decode_upload,
)
from media.decode import SoundFileError
from media.library import SoundLibrary, build_library
from media.opus import SAMPLE_RATE, decode_packets
from media.stored_packets import unpack
from tests.audio_files import dominant_frequency, write_tone

MODES = 3


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> SoundLibrary:
    sounds_dir = tmp_path_factory.mktemp("sounds")
    write_tone(sounds_dir / "1-chime.wav", 700.0, seconds=0.5)
    return build_library(MODES, frame_ms=20, sounds_dir=sounds_dir)


@pytest.fixture(scope="module")
def tone_files(tmp_path_factory: pytest.TempPathFactory) -> dict[float, bytes]:
    """Half-second WAVs of a few pitches, as an operator would upload them."""
    folder = tmp_path_factory.mktemp("uploads")
    return {
        freq: write_tone(folder / f"{freq:g}.wav", freq, seconds=0.5).read_bytes() for freq in (500.0, 1500.0)
    }


def upload(catalog: SoundCatalog, name: str, data: bytes) -> bool:
    """What the server does: check the name, decode (in a worker thread there), then install."""
    catalog.check_upload_name(name)
    return catalog.add(name, decode_upload(name, data, catalog.frame_ms), data)


def pitch(catalog: SoundCatalog, name: str) -> float:
    sound = catalog.named(name)
    assert sound is not None
    return dominant_frequency(decode_packets(sound.packets))


def test_an_upload_decodes_once_and_plays_by_name(
    library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, None)

    assert upload(catalog, "door.bell", tone_files[500.0]) is True

    sound = catalog.named("door.bell")
    assert sound is not None
    assert sound.frame_ms == 20
    assert sound.samples == SAMPLE_RATE // 2
    assert pitch(catalog, "door.bell") == pytest.approx(500.0, abs=3.0)
    assert CatalogEntry("door.bell", SoundSource.UPLOADED, 0.5, ()) in catalog.entries()


def test_the_library_sounds_are_listed_by_source_and_mode(library: SoundLibrary) -> None:
    catalog = SoundCatalog(library, None)
    listed = [(entry.name, entry.source, entry.modes) for entry in catalog.entries()]
    assert listed == [
        ("builtin-0", SoundSource.BUILT_IN, (0,)),
        ("1-chime", SoundSource.SOUNDS_DIR, (1,)),
        ("builtin-2", SoundSource.BUILT_IN, (2,)),
    ]
    assert catalog.assignments() == {0: "builtin-0", 1: "1-chime", 2: "builtin-2"}
    assert catalog.for_mode(1) is library.for_mode(1)


def test_replacing_an_upload_leaves_the_old_sound_intact_for_a_playback_holding_it(
    library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])
    playing = catalog.named("alert")
    assert playing is not None
    packets = playing.packets

    assert upload(catalog, "alert", tone_files[1500.0]) is False

    assert playing.packets is packets
    assert dominant_frequency(decode_packets(playing.packets)) == pytest.approx(500.0, abs=3.0)
    assert pitch(catalog, "alert") == pytest.approx(1500.0, abs=3.0)


def test_a_mode_assigned_an_upload_plays_its_replacement(
    library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])
    catalog.assign(2, "alert")

    upload(catalog, "alert", tone_files[1500.0])

    assert catalog.for_mode(2) is catalog.named("alert")


def test_undecodable_bytes_raise_a_sound_file_error_naming_the_problem() -> None:
    with pytest.raises(SoundFileError, match=r"^sound 'junk': not an audio file FFmpeg can decode \(.+\)$"):
        decode_upload("junk", b"this is a text file, not a sound\n" * 20, 20)


def test_an_upload_longer_than_allowed_is_refused(tone_files: dict[float, bytes]) -> None:
    with pytest.raises(SoundFileError, match=r"^sound 'long': longer than the 0\.25 s allowed$"):
        decode_upload("long", tone_files[500.0], 20, max_seconds=0.25)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "use 1 to 64 of the characters"),
        ("x" * 65, "use 1 to 64 of the characters"),
        ("door bell", "use 1 to 64 of the characters"),
        ("../escape", "use 1 to 64 of the characters"),
        ("bell\n", "use 1 to 64 of the characters"),
        ("cloché", "use 1 to 64 of the characters"),
        (".", "is not a sound name$"),
        ("..", "is not a sound name$"),
        ("builtin-7", "names starting 'builtin-' are built-in"),
    ],
)
def test_bad_names_are_refused_before_decoding(library: SoundLibrary, name: str, why: str) -> None:
    catalog = SoundCatalog(library, None)
    with pytest.raises(SoundNameError, match=why):
        catalog.check_upload_name(name)
    with pytest.raises(SoundNameError, match=why):
        decode_upload(name, b"never decoded", 20)


@pytest.mark.parametrize("name", ["x" * 64, "a", "0-door_bell.v2", "Builtin-1"])
def test_names_within_the_rules_are_accepted(library: SoundLibrary, name: str) -> None:
    SoundCatalog(library, None).check_upload_name(name)


@pytest.mark.parametrize(("name", "source"), [("builtin-0", "built-in"), ("1-chime", "sounds-dir")])
def test_a_library_sound_cannot_be_replaced_by_an_upload(
    library: SoundLibrary, tone_files: dict[float, bytes], name: str, source: str
) -> None:
    catalog = SoundCatalog(library, None)
    with pytest.raises(SoundConflict, match=f"'{name}' is a {source} sound; upload under another name"):
        catalog.check_upload_name(name)
    other = decode_upload("other", tone_files[500.0], 20)
    with pytest.raises(SoundConflict):
        catalog.add(name, other, tone_files[500.0])
    assert catalog.named(name) is library.named(name)


@pytest.mark.parametrize(("name", "source"), [("builtin-2", "built-in"), ("1-chime", "sounds-dir")])
def test_a_library_sound_cannot_be_removed(library: SoundLibrary, name: str, source: str) -> None:
    with pytest.raises(SoundConflict, match=f"'{name}' is a {source} sound; it cannot be deleted"):
        SoundCatalog(library, None).remove(name)


def test_an_upload_a_mode_plays_cannot_be_removed(
    library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])
    catalog.assign(0, "alert")
    catalog.assign(2, "alert")

    with pytest.raises(SoundConflict, match=r"'alert' is assigned to modes 0, 2; assign another sound first"):
        catalog.remove("alert")
    assert catalog.named("alert") is not None


def test_an_unassigned_upload_is_removed(library: SoundLibrary, tone_files: dict[float, bytes]) -> None:
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])
    playing = catalog.named("alert")

    catalog.remove("alert")

    assert catalog.named("alert") is None
    assert playing is not None
    assert len(playing.packets) == 25  # a playback holding it plays on
    assert [entry.name for entry in catalog.entries()] == ["builtin-0", "1-chime", "builtin-2"]


def test_removing_an_unknown_sound_is_an_unknown_sound(library: SoundLibrary) -> None:
    with pytest.raises(UnknownSound) as raised:
        SoundCatalog(library, None).remove("nothing")
    assert str(raised.value) == "no sound is named 'nothing'"
    assert isinstance(raised.value, KeyError)


def test_assigning_changes_what_a_mode_plays(library: SoundLibrary, tone_files: dict[float, bytes]) -> None:
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])

    catalog.assign(0, "alert")
    catalog.assign(2, "1-chime")

    assert catalog.for_mode(0) is catalog.named("alert")
    assert catalog.for_mode(2) is library.for_mode(1)
    assert catalog.assignments() == {0: "alert", 1: "1-chime", 2: "1-chime"}
    assert catalog.modes_of("1-chime") == [1, 2]
    assert catalog.modes_of("builtin-0") == []


@pytest.mark.parametrize(
    ("mode", "name", "message"),
    [
        (3, "builtin-0", r"mode 3 does not exist: modes are 0\.\.2"),
        (-1, "builtin-0", r"mode -1 does not exist: modes are 0\.\.2"),
        (0, "nothing", r"no sound is named 'nothing'"),
    ],
)
def test_assigning_a_mode_or_sound_that_does_not_exist_is_refused(
    library: SoundLibrary, mode: int, name: str, message: str
) -> None:
    catalog = SoundCatalog(library, None)
    with pytest.raises(AssignmentError, match=message):
        catalog.assign(mode, name)
    assert catalog.assignments() == {0: "builtin-0", 1: "1-chime", 2: "builtin-2"}


@pytest.mark.parametrize("mode", [-1, MODES])
def test_a_mode_out_of_range_is_refused_as_by_the_library(library: SoundLibrary, mode: int) -> None:
    with pytest.raises(IndexError, match=f"mode {mode} is out of range: the library has modes 0..2"):
        SoundCatalog(library, None).for_mode(mode)


def test_a_restart_keeps_uploads_and_assignments(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    before = SoundCatalog(library, tmp_path)
    upload(before, "alert", tone_files[500.0])
    upload(before, "spare", tone_files[1500.0])
    before.assign(0, "alert")
    before.assign(2, "1-chime")

    after = SoundCatalog(library, tmp_path)

    assert after.entries() == before.entries()
    assert after.assignments() == {0: "alert", 1: "1-chime", 2: "1-chime"}
    assert pitch(after, "spare") == pytest.approx(1500.0, abs=3.0)


def test_a_removed_upload_stays_removed_after_a_restart(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    before = SoundCatalog(library, tmp_path)
    upload(before, "alert", tone_files[500.0])
    before.remove("alert")

    assert SoundCatalog(library, tmp_path).named("alert") is None


def test_uploads_stored_at_another_frame_duration_wait_and_are_encoded_again_in_the_background(
    tmp_path: Path, tone_files: dict[float, bytes]
) -> None:
    upload(SoundCatalog(build_library(1, frame_ms=20), tmp_path), "alert", tone_files[500.0])

    catalog = SoundCatalog(build_library(1, frame_ms=60), tmp_path)
    assert catalog.named("alert") is None
    assert catalog.waiting == ["alert"]
    asyncio.run(catalog.restore_waiting())

    sound = catalog.named("alert")
    assert sound is not None
    assert sound.frame_ms == 60
    assert len(sound.packets) == 9  # 0.5 s in 60 ms packets, the last one padded
    assert catalog.waiting == []
    assert unpack((tmp_path / "uploads" / "alert.packets").read_bytes()).sound == sound


def test_a_mode_reassigned_its_own_sound_follows_the_library_after_a_restart(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, tmp_path)
    upload(catalog, "alert", tone_files[500.0])
    catalog.assign(2, "alert")
    catalog.assign(2, "builtin-2")

    assert (tmp_path / "assignments.json").read_text() == '{\n  "modes": {}\n}\n'


def test_a_stored_file_that_no_longer_decodes_is_skipped_with_a_warning(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    before = SoundCatalog(library, tmp_path)
    upload(before, "alert", tone_files[500.0])
    upload(before, "spare", tone_files[1500.0])
    before.assign(0, "alert")
    (tmp_path / "uploads" / "alert.sound").write_bytes(b"\0" * 64)

    with caplog.at_level(logging.WARNING, logger="media.catalog"):
        after = SoundCatalog(library, tmp_path)
        asyncio.run(after.restore_waiting())

    assert after.named("alert") is None
    assert after.named("spare") is not None
    assert after.for_mode(0) is library.for_mode(0)
    warned = [record.getMessage() for record in caplog.records]
    assert any("alert" in line and "of another file" in line for line in warned)
    assert any("alert.sound" in line and "not an audio file FFmpeg can decode" in line for line in warned)
    assert any("mode 0 to 'alert': no such sound now" in line for line in warned)


def test_an_assignment_to_a_mode_beyond_the_modes_is_skipped_after_a_restart(
    tmp_path: Path, tone_files: dict[float, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    before = SoundCatalog(build_library(3), tmp_path)
    upload(before, "alert", tone_files[500.0])
    before.assign(1, "alert")
    before.assign(2, "alert")

    with caplog.at_level(logging.WARNING, logger="media.catalog"):
        after = SoundCatalog(build_library(2), tmp_path)

    assert after.assignments() == {0: "builtin-0", 1: "alert"}
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == [
        "skipping the stored assignment of mode 2 to 'alert': modes are 0..1"
    ]


def test_unreadable_assignments_are_ignored_with_a_warning(
    tmp_path: Path, library: SoundLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "assignments.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="media.catalog"):
        catalog = SoundCatalog(library, tmp_path)
    assert catalog.assignments() == {0: "builtin-0", 1: "1-chime", 2: "builtin-2"}
    assert "ignoring the mode assignments" in caplog.text


def test_a_stored_upload_now_named_like_a_sounds_dir_file_is_skipped(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "1-chime.sound").write_bytes(tone_files[1500.0])
    with caplog.at_level(logging.WARNING, logger="media.catalog"):
        catalog = SoundCatalog(library, tmp_path)
    assert catalog.named("1-chime") is library.for_mode(1)
    assert "skipping stored sound" in caplog.text
    assert "'1-chime' is a sounds-dir sound" in caplog.text


def test_files_are_written_whole_with_no_temporary_left_behind(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    catalog = SoundCatalog(library, tmp_path)
    upload(catalog, "alert", tone_files[500.0])
    catalog.assign(0, "alert")

    assert sorted(path.name for path in tmp_path.rglob("*")) == [
        "alert.packets",
        "alert.sound",
        "assignments.json",
        "uploads",
    ]
    assert (tmp_path / "uploads" / "alert.sound").read_bytes() == tone_files[500.0]


def test_a_temporary_left_by_a_crash_is_removed_at_start(tmp_path: Path, library: SoundLibrary) -> None:
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / ".alert.sound.x1y2.tmp").write_bytes(b"half an upload")
    catalog = SoundCatalog(library, tmp_path)
    assert catalog.named("alert") is None
    assert list((tmp_path / "uploads").iterdir()) == []


def test_without_a_shelf_nothing_is_written(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = SoundCatalog(library, None)
    upload(catalog, "alert", tone_files[500.0])
    catalog.assign(0, "alert")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "stored",
    ['{"modes": {"x": "alert", "0": 5, "1": ["alert"]}}', '{"modes": ["alert"]}', '{"other": 1}', "[]"],
)
def test_assignments_of_the_wrong_shape_are_skipped_not_fatal(
    tmp_path: Path, library: SoundLibrary, stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "assignments.json").write_text(stored)
    with caplog.at_level(logging.WARNING, logger="media.catalog"):
        catalog = SoundCatalog(library, tmp_path)
    assert catalog.assignments() == {0: "builtin-0", 1: "1-chime", 2: "builtin-2"}
    assert caplog.records


def test_uploads_decode_in_parallel_threads_alike(tone_files: dict[float, bytes]) -> None:
    with ThreadPoolExecutor(4) as pool:
        sounds = list(pool.map(lambda _: decode_upload("alert", tone_files[500.0], 20), range(4)))
    assert len({sound.packets for sound in sounds}) == 1


def test_a_restart_loads_the_stored_packets_instead_of_decoding_the_file(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    before = SoundCatalog(library, tmp_path)
    upload(before, "alert", tone_files[500.0])
    stored = tmp_path / "uploads" / "alert.sound"
    stored.write_bytes(b"\0" * stored.stat().st_size)  # would not decode: only the packets can be used

    after = SoundCatalog(library, tmp_path)

    assert after.waiting == []
    assert after.named("alert") == before.named("alert")


@pytest.mark.parametrize("damage", ["missing", "flipped byte", "cut short", "of another file"])
def test_an_upload_whose_packets_cannot_be_used_waits_then_is_encoded_again(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes], damage: str
) -> None:
    upload(SoundCatalog(library, tmp_path), "alert", tone_files[500.0])
    packets = tmp_path / "uploads" / "alert.packets"
    good = packets.read_bytes()
    if damage == "missing":
        packets.unlink()
    elif damage == "flipped byte":
        packets.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    elif damage == "cut short":
        packets.write_bytes(good[: len(good) // 2])
    else:
        (tmp_path / "uploads" / "alert.sound").write_bytes(tone_files[1500.0] + b"\0")

    catalog = SoundCatalog(library, tmp_path)
    assert catalog.named("alert") is None
    assert catalog.waiting == ["alert"]
    assert "alert" not in [entry.name for entry in catalog.entries()]
    asyncio.run(catalog.restore_waiting())

    assert catalog.waiting == []
    assert pitch(catalog, "alert") == pytest.approx(1500.0 if damage == "of another file" else 500.0, abs=3.0)
    assert SoundCatalog(library, tmp_path).named("alert") == catalog.named("alert")  # packets stored again


def test_a_mode_assigned_a_waiting_upload_plays_it_once_it_is_encoded_again(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    before = SoundCatalog(library, tmp_path)
    upload(before, "alert", tone_files[500.0])
    before.assign(0, "alert")
    (tmp_path / "uploads" / "alert.packets").unlink()

    catalog = SoundCatalog(library, tmp_path)
    assert catalog.for_mode(0) is library.for_mode(0)
    assert catalog.modes_of("alert") == [0]
    catalog.assign(2, "1-chime")  # saving other assignments meanwhile keeps mode 0's
    assert SoundCatalog(library, tmp_path).modes_of("alert") == [0]
    asyncio.run(catalog.restore_waiting())

    assert catalog.for_mode(0).name == "alert"
    assert catalog.assignments() == {0: "alert", 1: "1-chime", 2: "1-chime"}


def test_a_waiting_upload_replaced_meanwhile_keeps_the_replacement(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    upload(SoundCatalog(library, tmp_path), "alert", tone_files[500.0])
    (tmp_path / "uploads" / "alert.packets").unlink()
    catalog = SoundCatalog(library, tmp_path)

    upload(catalog, "alert", tone_files[1500.0])
    asyncio.run(catalog.restore_waiting())

    assert pitch(catalog, "alert") == pytest.approx(1500.0, abs=3.0)
    assert pitch(SoundCatalog(library, tmp_path), "alert") == pytest.approx(1500.0, abs=3.0)


def test_a_waiting_upload_can_be_deleted_and_is_not_restored(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    upload(SoundCatalog(library, tmp_path), "alert", tone_files[500.0])
    (tmp_path / "uploads" / "alert.packets").unlink()
    catalog = SoundCatalog(library, tmp_path)

    catalog.remove("alert")
    asyncio.run(catalog.restore_waiting())

    assert catalog.named("alert") is None
    assert list((tmp_path / "uploads").iterdir()) == []


def test_packets_left_behind_by_a_deleted_upload_are_removed_at_start(
    tmp_path: Path, library: SoundLibrary, tone_files: dict[float, bytes]
) -> None:
    upload(SoundCatalog(library, tmp_path), "alert", tone_files[500.0])
    (tmp_path / "uploads" / "alert.sound").unlink()  # a crash between the two unlinks of a delete

    catalog = SoundCatalog(library, tmp_path)

    assert catalog.named("alert") is None
    assert list((tmp_path / "uploads").iterdir()) == []
