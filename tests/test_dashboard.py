"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against the real server,
with simulated devices over real gRPC.

``ACP_WRITE_SCREENSHOT=1`` also writes the README's picture, docs/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from actors.leds import STATUS_IDLE, mode_leds
from admin.fleetview import hex_colour
from media.library import SoundLibrary
from simulator import Button
from tests.admin_live import Operated, operated
from tests.audio_files import dominant_frequency, write_tone
from tests.live import holds_the_whole_sound, run

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def dashboard(op: Operated, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(op.url + "/")
        yield page
        assert errors == []


def card(page: Page, device_id: str) -> str:
    return f'[data-device-id="{device_id}"]'


async def connected(op: Operated, device_id: str) -> None:
    await op.until_device(device_id, lambda d: d["connected"] and d["leds"][1] != "#000000")


def test_the_dashboard_lists_connected_devices_with_their_led_colours(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen, op.device("hall"):
            await kitchen.press(Button.MODE)
            await kitchen.press(Button.MODE)
            await op.until_device("kitchen", lambda d: d["leds"][3] == hex_colour(mode_leds(2)[1]))
            await connected(op, "hall")
            async with dashboard(op) as page:
                for device_id in ("kitchen", "hall"):
                    await expect(page.locator(card(page, device_id))).to_be_visible()
                expected = (await op.device_json("kitchen"))["leds"]
                assert expected[1:] == [hex_colour(rgba) for rgba in (STATUS_IDLE.rgba, *mode_leds(2))]
                for index, colour in enumerate(expected):
                    led = page.locator(f'{card(page, "kitchen")} [data-led="{index}"]')
                    await expect(led).to_have_attribute("data-color", colour)
                await expect(page.locator(f'{card(page, "kitchen")} [data-field="mode"]')).to_contain_text(
                    "2"
                )

    run(scenario, timeout=90)


def test_a_card_changes_live_when_its_device_presses_mode(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            async with dashboard(op) as page:
                mode = page.locator(f'{card(page, "kitchen")} [data-field="mode"]')
                await expect(mode).to_contain_text("0")
                await kitchen.press(Button.MODE)
                await expect(mode).to_contain_text("1")
                led = page.locator(f'{card(page, "kitchen")} [data-led="3"]')
                await expect(led).to_have_attribute("data-color", hex_colour(mode_leds(1)[1]))

    run(scenario, timeout=90)


def test_a_removed_device_leaves_the_dashboard_live(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("hall"):
            async with op.device("kitchen"):
                await connected(op, "kitchen")
            await op.until_device("kitchen", lambda d: not d["connected"])
            await connected(op, "hall")
            async with dashboard(op) as page:
                await expect(page.locator(card(page, "kitchen"))).to_be_visible()
                assert (await op.http.delete("/api/devices/kitchen")).status_code == 204
                await expect(page.locator(card(page, "kitchen"))).to_have_count(0)
                await expect(page.locator(card(page, "hall"))).to_be_visible()

    run(scenario, timeout=90)


def test_clicking_play_makes_the_device_receive_its_sound(library: SoundLibrary) -> None:
    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            async with dashboard(op) as page:
                await page.locator(f'{card(page, "kitchen")} button[data-action="play"]').click()
                recording = (await kitchen.wait_for_recordings(1, 15))[0]
                assert holds_the_whole_sound(recording, library.for_mode(0))

    run(scenario, timeout=90)


def test_an_uploaded_sound_assigned_to_a_mode_plays_on_play(library: SoundLibrary, tmp_path: Path) -> None:
    bell = write_tone(tmp_path / "bell.wav", freq=660, seconds=1.2)

    async def scenario() -> None:
        async with operated(library) as op, op.device("kitchen") as kitchen:
            await connected(op, "kitchen")
            async with dashboard(op) as page:
                await page.locator("#sound-file").set_input_files(str(bell))
                await page.locator("#sound-name").fill("bell")
                await page.locator("#sound-upload").click()
                await op_until_sound(op, "bell")
                if await _is_input(page, "#assign-mode"):
                    await page.locator("#assign-mode").fill("0")
                else:
                    await page.locator("#assign-mode").select_option("0")
                await expect(page.locator("#assign-sound option[value='bell']")).to_have_count(1)
                await page.locator("#assign-sound").select_option("bell")
                await page.locator("#assign-button").click()
                await op_until_assigned(op, 0, "bell")
                await page.locator(f'{card(page, "kitchen")} button[data-action="play"]').click()
                recording = (await kitchen.wait_for_recordings(1, 15))[0]
                assert dominant_frequency(recording.pcm) == pytest.approx(660, abs=5)

    run(scenario, timeout=90)


def test_the_dashboard_asks_for_the_token_when_one_is_required(library: SoundLibrary, tmp_path: Path) -> None:
    token = "dashboard-token-0123456789"
    tokens = tmp_path / "operator.tokens"
    tokens.write_text(f"ops:{token}\n")

    async def scenario() -> None:
        async with (
            operated(library, headers={"Authorization": f"Bearer {token}"}, admin_token_file=tokens) as op,
            op.device("kitchen"),
        ):
            await connected(op, "kitchen")
            async with dashboard(op) as page:
                prompt = page.locator("input[type=password]")
                await expect(prompt).to_be_visible()
                await prompt.fill(token)
                await prompt.press("Enter")
                await expect(page.locator(card(page, "kitchen"))).to_be_visible()

    run(scenario, timeout=90)


def test_the_readme_screenshot_shows_a_live_fleet(library: SoundLibrary, tmp_path: Path) -> None:
    target = SCREENSHOT if os.environ.get("ACP_WRITE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"

    async def scenario() -> None:
        async with operated(library) as op:
            names = ["kitchen", "hall", "lobby-1", "lobby-2", "office", "patio", "garage", "studio"]
            devices = [op.device(name) for name in names]
            for dev in devices:
                await dev.connect()
            for dev in devices:
                await connected(op, dev.device_id)
            for n, dev in enumerate(devices):
                for _ in range(n % 5):
                    await dev.press(Button.MODE)
            await op.http.put("/api/devices/lobby-1/tags", json={"tags": ["lobby"]})
            await op.http.put("/api/devices/lobby-2/tags", json={"tags": ["lobby"]})
            await devices[1].press(Button.PLAY)
            await devices[3].press(Button.PLAY)
            await devices[-1].disconnect()
            await op.until_device("studio", lambda d: not d["connected"])
            async with dashboard(op, 1280, 800) as page:
                await expect(page.locator("[data-device-id]")).to_have_count(len(names))
                await expect(page.locator(f'{card(page, "hall")} [data-field="status"]')).to_contain_text(
                    "playing"
                )
                await page.screenshot(path=str(target))
            for dev in devices[:-1]:
                await dev.disconnect()

    run(scenario, timeout=90)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def _is_input(page: Page, selector: str) -> bool:
    return str(await page.locator(selector).evaluate("e => e.tagName")).lower() == "input"


async def op_until_sound(op: Operated, name: str) -> None:
    async with asyncio.timeout(15):
        while name not in [s["name"] for s in (await op.http.get("/api/sounds")).json()["sounds"]]:
            await asyncio.sleep(0.05)


async def op_until_assigned(op: Operated, mode: int, name: str) -> None:
    async with asyncio.timeout(15):
        while {"mode": mode, "sound": name} not in (await op.http.get("/api/modes")).json()["modes"]:
            await asyncio.sleep(0.05)
