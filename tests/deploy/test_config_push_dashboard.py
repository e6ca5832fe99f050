"""The dashboard shows each checkpoint's running config version and push state, live, in headless
Chromium (the hub is real; the agent is an MQTT client publishing what a real agent publishes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from efence.contract import ConfigReport, Topics
from tests.hub.hubkit import agent_status, fake_agent, running_hub, wall_page
from tests.hub.test_dashboard_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

V1, V2 = "1a2b3c4d" + "0" * 56, "9f8e7d6c" + "1" * 56


async def test_dashboard_shows_running_config_version_and_push_state(tmp_path: Path, zone: str) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent, async_playwright() as pw:
        hub.create_user("duty", "duty-officer-1", "viewer")
        topic = Topics.config_report(agent.zone, agent.checkpoint)

        async def report(state: str, running: str, **kw: object) -> None:
            r = ConfigReport(agent_id=agent.agent_id, state=state, running_version=running, **kw)  # type: ignore[arg-type]
            await agent.client.publish(topic, r.to_bytes(), qos=1, retain=True)

        try:
            await agent.status(agent_status(zone).model_copy(update={"config_version": V1}))
            await report("applied", V1, version=V1)
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page, errors = await wall_page(browser, hub.url, "duty", "duty-officer-1")
                row = page.locator(f'#configs .config-row[data-agent="{agent.agent_id}"]')
                await expect(row.locator(".config-version")).to_have_text(V1[:8])
                await expect(row.locator(".config-push")).to_contain_text("applied")

                # a push on trial, then rolled back: the panel follows live, without a reload
                await agent.status(
                    agent_status(zone).model_copy(update={"config_version": V2, "config_on_trial": True})
                )
                await report("staged", V2, version=V2, on_trial=True)
                await expect(row.locator(".config-version")).to_have_text(V2[:8])
                await expect(row.locator(".config-push")).to_contain_text("pending")
                await agent.status(agent_status(zone).model_copy(update={"config_version": V1}))
                await report(
                    "rolled_back", V1, version=V2, detail="could not reconnect to the hub within 120 s"
                )
                await expect(row.locator(".config-version")).to_have_text(V1[:8])
                await expect(row.locator(".config-push")).to_contain_text("rolled back")
                await expect(row).to_have_attribute("title", "could not reconnect to the hub within 120 s")
                assert not errors, errors
            finally:
                await browser.close()
        finally:
            await agent.client.publish(topic, b"", qos=1, retain=True)  # no retained report left behind
