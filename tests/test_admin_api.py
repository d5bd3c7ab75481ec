"""The operator API against the real server in-process, with simulated devices over real gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors.leds import STATUS_IDLE, STATUS_PLAYING, mode_leds
from admin.fleetview import hex_colour
from media.library import SoundLibrary
from simulator import Button
from tests.admin_live import JSON, Operated, operated
from tests.live import holds_the_whole_sound, run, serving, shows


def colours(mode: int, status: int = STATUS_IDLE.rgba) -> list[str]:
    """led_1..led_5 as the API shows them."""
    return [hex_colour(rgba) for rgba in (status, *mode_leds(mode))]


async def connected(op: Operated, device_id: str) -> None:
    await op.until_device(device_id, lambda d: d["connected"] and d["leds"][1:] == colours(d["mode"]))


def test_a_connected_device_is_listed_with_its_mode_status_and_confirmed_leds(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await kitchen.press(Button.MODE)
            device = await op.until_device("kitchen", lambda d: d["leds"][1:] == colours(1))
            assert device["connected"] is True
            assert device["mode"] == 1
            assert device["status"] == "idle"
            assert device["playing"] is None
            assert device["peer"] is not None
            assert device["connected_since"] is not None
            assert device["leds"][0] == hex_colour(kitchen.leds[0])
            listing = (await op.http.get("/api/devices")).json()
            assert [d["device_id"] for d in listing["devices"]] == ["kitchen"]
            assert listing["total"] == 1
            assert listing["next"] is None

    run(scenario)


def test_a_device_never_seen_is_404(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.get("/api/devices/nobody")
            assert response.status_code == 404
            assert "nobody" in response.json()["detail"]

    run(scenario)


def test_an_unknown_route_is_404_naming_it(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            response = await op.http.get("/api/nothing-here")
            assert response.status_code == 404
            assert "/api/nothing-here" in response.json()["detail"]

    run(scenario)


def test_devices_filter_by_connected_mode_and_tag_and_page_through(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            devices = [op.device(f"dev-{n}") for n in range(5)]
            for dev in devices:
                await dev.connect()
            for dev in devices:
                await connected(op, dev.device_id)
            await devices[1].press(Button.MODE)
            await devices[4].disconnect()
            await op.until_device("dev-4", lambda d: not d["connected"])
            tagged = await op.http.put("/api/devices/dev-2/tags", json={"tags": ["lobby"]})
            assert tagged.status_code == 200

            async def ids(query: str) -> list[str]:
                body = (await op.http.get(f"/api/devices?{query}")).json()
                return [d["device_id"] for d in body["devices"]]

            await op.until_device("dev-1", lambda d: d["mode"] == 1)
            assert await ids("connected=false") == ["dev-4"]
            assert await ids("mode=1") == ["dev-1"]
            assert await ids("tag=lobby") == ["dev-2"]
            assert await ids("q=lob") == ["dev-2"]
            first = (await op.http.get("/api/devices?limit=2")).json()
            assert [d["device_id"] for d in first["devices"]] == ["dev-0", "dev-1"]
            assert first["total"] == 5
            assert first["next"] == "dev-1"
            rest = (await op.http.get("/api/devices?limit=10&after=dev-1")).json()
            assert [d["device_id"] for d in rest["devices"]] == ["dev-2", "dev-3", "dev-4"]
            assert rest["next"] is None
            for dev in devices:
                await dev.disconnect()

    run(scenario)


def test_setting_the_mode_changes_what_the_device_shows(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            response = await op.post("/api/devices/kitchen/mode", {"mode": 3})
            assert response.status_code == 200
            assert response.json()["result"] == "applied"
            assert response.json()["device"]["mode"] == 3
            await kitchen.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(3))), 5)

    run(scenario)


def test_a_mode_out_of_range_is_422_naming_the_field(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            for body in ({"mode": 5}, {"mode": -1}, {"mode": "two"}, {}, {"mode": 1, "extra": True}):
                response = await op.post("/api/devices/kitchen/mode", body)
                assert response.status_code == 422, body
                assert response.json()["detail"]
            fields = [
                e["field"]
                for e in (await op.post("/api/devices/kitchen/mode", {"mode": "x"})).json()["errors"]
            ]
            assert fields == ["body.mode"]
            assert (await op.device_json("kitchen"))["mode"] == 0

    run(scenario)


def test_bad_json_is_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            response = await op.http.post("/api/devices/kitchen/mode", content=b"{mode: 1", headers=JSON)
            assert response.status_code == 422
            assert response.json()["detail"]

    run(scenario)


def test_play_streams_the_modes_sound_to_the_device_and_stop_ends_it(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            response = await op.post("/api/devices/kitchen/play", {"mode": 1})
            assert response.status_code == 200
            assert response.json()["result"] == "started"
            await kitchen.wait_for_leds(shows((STATUS_PLAYING.rgba, *mode_leds(0))), 5)
            playing = await op.until_device("kitchen", lambda d: d["playing"] is not None)
            assert playing["playing"]["sound"] == "builtin-1"
            assert playing["status"] == "playing"
            stopped = await op.post("/api/devices/kitchen/stop")
            assert stopped.json()["result"] == "stopped"
            recordings = await kitchen.wait_for_recordings(1, 5)
            assert 0 < len(recordings[0].packets) < len(library.for_mode(1).packets)
            assert (await op.post("/api/devices/kitchen/stop")).json()["result"] == "idle"

    run(scenario)


def test_play_without_a_body_plays_the_current_modes_sound_to_the_end(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            response = await op.http.post("/api/devices/kitchen/play", headers=JSON)
            assert response.status_code == 200, response.text
            recordings = await kitchen.wait_for_recordings(1, 10)
            assert holds_the_whole_sound(recordings[0], library.for_mode(0))

    run(scenario)


def test_play_and_stop_on_an_offline_device_are_409(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            for action in ("play", "stop"):
                response = await op.post(f"/api/devices/kitchen/{action}")
                assert response.status_code == 409
                assert "offline" in response.json()["detail"]

    run(scenario)


def test_an_unknown_sound_is_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            response = await op.post("/api/devices/kitchen/play", {"sound": "no-such-sound"})
            assert response.status_code == 422
            assert "no-such-sound" in response.json()["detail"]
            both = await op.post("/api/devices/kitchen/play", {"sound": "builtin-1", "mode": 1})
            assert both.status_code == 422

    run(scenario)


def test_a_mode_set_while_offline_is_applied_when_the_device_reconnects(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            kitchen = op.device("kitchen")
            await kitchen.connect()
            await connected(op, "kitchen")
            await kitchen.disconnect()
            await op.until_device("kitchen", lambda d: not d["connected"])
            response = await op.post("/api/devices/kitchen/mode", {"mode": 2})
            assert response.status_code == 202
            assert response.json()["result"] == "desired"
            assert (await op.device_json("kitchen"))["desired_mode"] == 2
            await kitchen.connect()
            await kitchen.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            device = await op.until_device("kitchen", lambda d: d["connected"])
            assert device["mode"] == 2
            assert device["desired_mode"] is None
            await kitchen.disconnect()

    run(scenario)


def test_tags_and_a_desired_mode_survive_a_restart(library: SoundLibrary, tmp_path: Path) -> None:
    state_db = str(tmp_path / "state" / "devices.sqlite3")

    async def scenario() -> None:
        async with operated(library, state_db=state_db) as op:
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            await op.http.put("/api/devices/kitchen/tags", json={"tags": ["floor-1", "lobby"]})
            await op.post("/api/devices/kitchen/mode", {"mode": 4})
        async with operated(library, state_db=state_db) as op:
            device = await op.device_json("kitchen")
            assert device["tags"] == ["floor-1", "lobby"]
            assert device["desired_mode"] == 4
            assert device["connected"] is False
            assert device["last_seen"] is not None

    run(scenario)


def test_bad_tags_are_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            for tags in (["has space"], [""], ["x" * 65], [f"t{n}" for n in range(33)]):
                response = await op.http.put("/api/devices/kitchen/tags", json={"tags": tags})
                assert response.status_code == 422, tags
            assert (await op.http.put("/api/devices/nobody/tags", json={"tags": ["a"]})).status_code == 404

    run(scenario)


def test_an_announcement_reports_one_result_per_device(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            idle, busy, gone = op.device("idle"), op.device("busy"), op.device("gone")
            for dev in (idle, busy, gone):
                await dev.connect()
                await connected(op, dev.device_id)
            await gone.disconnect()
            await op.until_device("gone", lambda d: not d["connected"])
            await busy.press(Button.MODE)
            await busy.press(Button.PLAY)  # mode 1: a long sound
            await op.until_device("busy", lambda d: d["playing"] is not None)
            response = await op.post(
                "/api/announce",
                {"sound": "builtin-2", "target": {"devices": ["idle", "busy", "gone", "never"]}},
            )
            assert response.status_code == 200
            body = response.json()
            assert body["results"] == {
                "idle": "started",
                "busy": "busy",
                "gone": "offline",
                "never": "offline",
            }
            assert body["counts"]["started"] == 1
            assert body["counts"]["offline"] == 2
            recordings = await idle.wait_for_recordings(1, 10)
            assert holds_the_whole_sound(recordings[0], library.for_mode(2))
            interrupting = await op.post(
                "/api/announce", {"sound": "builtin-0", "target": {"all": True}, "interrupt": True}
            )
            assert interrupting.json()["results"]["busy"] == "started"
            for dev in (idle, busy):
                await dev.disconnect()

    run(scenario)


def test_an_announcement_to_a_tag_reaches_only_that_tag(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("a") as a, op.device("b"):
            await connected(op, "a")
            await connected(op, "b")
            await op.http.put("/api/devices/a/tags", json={"tags": ["hall"]})
            response = await op.post("/api/announce", {"sound": "builtin-0", "target": {"tag": "hall"}})
            assert response.json()["results"] == {"a": "started"}
            await a.wait_for_recordings(1, 10)

    run(scenario)


def test_an_announcement_needs_exactly_one_target(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            targets: list[dict[str, object]] = [{}, {"tag": "x", "all": True}, {"devices": []}]
            for target in targets:
                response = await op.post("/api/announce", {"sound": "builtin-0", "target": target})
                assert response.status_code == 422, target

    run(scenario)


def test_every_action_is_in_the_audit_log_with_who_and_result(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen"):
            await connected(op, "kitchen")
            await op.post("/api/devices/kitchen/mode", {"mode": 2})
            await op.post("/api/devices/kitchen/stop")
            entries = (await op.http.get("/api/audit")).json()["entries"]
            assert [(e["action"], e["devices"], e["result"]["result"]) for e in entries] == [
                ("stop", ["kitchen"], "idle"),
                ("mode", ["kitchen"], "applied"),
            ]
            assert entries[0]["who"] == "local"
            assert entries[0]["role"] == "operator"
            assert entries[0]["at"].endswith("Z")

    run(scenario)


def test_the_openapi_document_is_served(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            document = (await op.http.get("/api/openapi.json")).json()
            assert "/api/devices/{device_id}/mode" in document["paths"]
            assert "/api/announce" in document["paths"]

    run(scenario)


def test_the_admin_port_can_be_turned_off(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with serving(library, admin_port=-1) as plane:
            assert plane.admin_port is None

    run(scenario)


def test_actions_do_not_disturb_other_devices(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("bystander") as bystander, op.device("target"):
            await connected(op, "bystander")
            await connected(op, "target")
            await asyncio.gather(*(op.post("/api/devices/target/mode", {"mode": n % 5}) for n in range(20)))
            await op.post("/api/devices/target/mode", {"mode": 99})
            assert await bystander.press(Button.MODE)
            await bystander.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(1))), 5)

    run(scenario)


def test_a_device_id_with_a_slash_is_reachable_encoded_or_not(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("floor-1/kitchen") as kitchen:
            await connected(op, "floor-1/kitchen")
            shown = await op.http.get("/api/devices/floor-1%2Fkitchen")
            assert shown.status_code == 200, shown.text
            assert shown.json()["device_id"] == "floor-1/kitchen"
            assert (await op.http.get("/api/devices/floor-1/kitchen")).status_code == 200
            response = await op.post("/api/devices/floor-1%2Fkitchen/mode", {"mode": 2})
            assert response.status_code == 200, response.text
            await kitchen.wait_for_leds(shows((STATUS_IDLE.rgba, *mode_leds(2))), 5)
            tagged = await op.http.put("/api/devices/floor-1%2Fkitchen/tags", json={"tags": ["lobby"]})
            assert tagged.json()["device"]["tags"] == ["lobby"]

    run(scenario)


def test_ids_and_modes_too_large_for_any_store_are_422(library: SoundLibrary) -> None:
    huge = "9" * 30

    async def scenario() -> None:
        async with operated(library) as op:
            for path in (
                f"/api/audit?before={huge}",
                "/api/audit?before=1e20",
                f"/api/events?last_event_id={huge}",
                f"/api/devices?mode={huge}",
                f"/api/devices?mode={'9' * 5000}",
            ):
                response = await op.http.get(path)
                assert response.status_code == 422, (path, response.text)
            assigned = await op.http.put(f"/api/modes/{huge}", json={"sound": "builtin-0"})
            assert assigned.status_code == 422
            moded = await op.post("/api/devices/x/mode", {"mode": 10**30})
            assert moded.status_code == 422

    run(scenario)


def test_a_body_repeating_one_mistake_gets_one_short_422(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op:
            unknown = {"sound": "builtin-0", "target": {"all": True}, **{f"k{n}": 0 for n in range(10_000)}}
            bad_ids = {"sound": "builtin-0", "target": {"devices": [0] * 10_000}}
            for body, named in ((unknown, "'k0'"), (bad_ids, "devices 0, 1, 2, 3, 4 and 9995 more")):
                response = await op.post("/api/announce", body)
                assert response.status_code == 422
                assert len(response.content) < 2_000, len(response.content)
                assert named in response.json()["detail"]
                assert len(response.json()["errors"]) == 1

    run(scenario)
