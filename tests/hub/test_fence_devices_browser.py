"""The dashboard's device health with a fence camera, in real headless Chromium: counted in the KPI and
its zone, shown apart as fence, listed as down while down, and back to all-up live when it returns."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from efence.contract import AgentStatus, DeviceStatus

from .hubkit import agent_status, fake_agent, running_hub, wall_page
from .test_dashboard_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser


def with_fence(zone: str, observed: str) -> AgentStatus:
    cam = DeviceStatus(device_id="cam-n-01", type="fence_camera", observed=observed, last_error="no frame")  # type: ignore[arg-type]
    return agent_status(zone).model_copy(update={"fence_devices": [cam]})


async def test_device_health_counts_and_names_a_down_fence_camera(tmp_path: Path, zone: str) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent, async_playwright() as pw:
        hub.create_user("duty", "duty-officer-1", "viewer")
        await agent.status(with_fence(zone, "down"))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, errors = await wall_page(browser, hub.url, "duty", "duty-officer-1")
            await expect(page.locator("#live-text")).to_contain_text("Live")
            # three lane devices up, the fence camera down
            await expect(page.locator("#kpi-devices")).to_have_text("3/4")
            fence = page.locator("#devices .dev-fence")
            await expect(fence).to_contain_text("周界")
            await expect(fence).to_contain_text("0/1")
            await expect(page.locator("#devices .dev-down")).to_contain_text("周界 fence cam-n-01")

            await agent.status(with_fence(zone, "up"))  # back: the wall follows without a reload
            await expect(page.locator("#kpi-devices")).to_have_text("4/4")
            await expect(fence).to_contain_text("1/1")
            await expect(page.locator("#devices .dev-down")).to_have_count(0)
            assert errors == []
        finally:
            await browser.close()
