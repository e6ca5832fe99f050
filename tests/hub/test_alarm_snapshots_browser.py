"""The linked camera on the wall, in real headless Chromium: an intrusion rings first, its fence snapshot is
uploaded after it by the edge's real uploader, and without a reload the alarm card shows the picture, the
red segment pops it on the map, a click enlarges it, and the alarm is still acknowledged as before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from edge_agent.evidence_upload import EvidenceUploader
from simulators.cameras import make_jpeg

from .hubkit import agent_status, event, fake_agent, running_hub, site_zone, wait_for, wall_page
from .test_dashboard_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

DECODED = "([sel, w]) => { const i = document.querySelector(sel); return !!i && i.complete && i.naturalWidth === w; }"


async def test_intrusion_snapshot_arrives_after_the_alarm_and_shows_in_card_and_map(
    tmp_path: Path, zone: str
) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    zones_dir = site_zone(tmp_path, zone)
    key = b"p" * 32
    agent_id = f"{zone}/port-gate"
    stamp = "20261128T083000-000001"
    incident = f"{agent_id}/perimeter-{stamp}"  # edge_agent.perimeter_watch's incident id
    jpeg = make_jpeg("INTRUDER N-02", width=640, height=360)
    async with (
        running_hub(
            tmp_path, zones_dir=zones_dir, key_for=lambda aid: key if aid == agent_id else None
        ) as hub,
        fake_agent(zone, "port-gate") as agent,
        async_playwright() as pw,
    ):
        hub.create_user("duty", "duty-officer-1", "operator")
        await agent.status(agent_status(zone, "port-gate"))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, errors = await wall_page(browser, hub.url, "duty", "duty-officer-1")
            await expect(page.locator("#live-text")).to_contain_text("Live")
            tile = page.locator(f'.zone[data-zone="{zone}"]')
            await expect(tile.locator("polyline.seg")).to_have_count(8)

            # the alarm rings before its snapshot is at the hub: the card and the map say it is coming
            snapshot_name = f"{agent_id.replace('/', '_')}_perimeter-{stamp}-cam-n-02-snapshot.jpg"
            await agent.send(
                event(
                    agent_id,
                    1,
                    "perimeter",
                    lane=None,
                    kind="intrusion",
                    source="video",
                    segment="n-02",
                    camera_id="cam-n-02",
                    incident_id=incident,
                    snapshot=snapshot_name,
                    detail="Intruder on fence segment n-02",
                )
            )
            card = page.locator(".alarm-item.ringing.critical").first
            await expect(card).to_contain_text("周界入侵")
            await expect(card.locator(".alarm-snaps.pending")).to_contain_text(
                "联动摄像机 Linked camera cam-n-02"
            )
            await expect(card.locator("img")).to_have_count(0)
            popup = tile.locator('foreignObject.cam-pop[data-segment="n-02"]')
            await expect(popup).to_contain_text("snapshot on its way")
            await expect(tile.locator('.seg[data-segment="n-02"]')).to_have_attribute(
                "data-state", "intrusion"
            )

            # the edge's uploader sends it from the folder perimeter_watch writes, over real HTTP
            folder = tmp_path / "edge-evidence" / "20261128" / "perimeter"
            folder.mkdir(parents=True)
            (folder / snapshot_name).write_bytes(jpeg)
            uploader = EvidenceUploader(
                agent_id, key, hub.url, tmp_path / "edge-evidence", scan_interval_s=3600
            )
            upload_task = asyncio.create_task(uploader.run())
            uploader.notify(folder / snapshot_name)
            try:
                await wait_for(lambda: uploader.uploaded == 1, timeout=10)
            finally:
                upload_task.cancel()
                await asyncio.gather(upload_task, return_exceptions=True)
            assert [e["name"] for e in hub.store.list_evidence(incident)] == ["cam-n-02-snapshot.jpg"]

            # no reload: the `evidence` push puts the decoded picture in the card and at the segment
            await expect(card.locator(".alarm-snaps img")).to_have_count(1)
            await page.wait_for_function(
                DECODED, arg=[".alarm-item.ringing .alarm-snaps img", 640], timeout=5000
            )
            await expect(popup.locator("img")).to_have_count(1)
            await page.wait_for_function(
                DECODED, arg=[f'.zone[data-zone="{zone}"] .cam-pop img', 640], timeout=5000
            )
            box = await popup.bounding_box()
            assert box is not None and box["width"] > 120, box  # a picture one can see across the room
            assert await page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
            await page.screenshot(path=str(tmp_path / "ringing.png"))

            # click → the image viewer the transaction evidence uses, large
            await card.locator(".alarm-snaps button.thumb").click()
            await expect(page.locator("#img-dialog")).to_be_visible()
            await page.wait_for_function(DECODED, arg=["#img-full", 640], timeout=5000)
            full = await page.locator("#img-full").bounding_box()
            assert full is not None and full["width"] > 600
            await page.locator("#img-dialog button[value=close]").click()
            await expect(page.locator("#img-dialog")).not_to_be_visible()
            # the map popup opens the same viewer
            await popup.locator("button.thumb").click()
            await expect(page.locator("#img-dialog")).to_be_visible()
            await page.locator("#img-dialog button[value=close]").click()

            # acknowledging works as before; the acknowledged card keeps its picture, the map lets go
            await card.locator("button[data-ack]").click()
            await page.fill("#ack-note", "patrol sent to n-02")
            await page.click("#ack-confirm")
            acked = page.locator(".alarm-item.critical.acked")
            await expect(acked).to_contain_text("patrol sent to n-02")
            await expect(acked.locator(".alarm-snaps img")).to_have_count(1)
            await expect(tile.locator(".cam-pop")).to_have_count(0)
            await expect(tile.locator('.seg[data-segment="n-02"]')).to_have_attribute("data-state", "ok")
            (alarm,) = [a for a in hub.store.list_alarms() if a["kind"] == "perimeter_intrusion"]
            assert alarm["acked_by"] == "duty" and len(alarm["evidence"]) == 1
            await page.screenshot(path=str(tmp_path / "alarm-snapshot.png"))
            assert errors == []
        finally:
            await browser.close()
