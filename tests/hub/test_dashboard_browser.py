"""The dashboard in real headless Chromium: login, a live transaction, alarm acknowledgement, manual release,
and evidence images uploaded by the edge."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from edge_agent.evidence_upload import EvidenceUploader
from efence.contract import (
    CommandResult,
    NonceLedger,
    SignedCommand,
    Topics,
    decode,
    utcnow,
    verify_command,
)
from simulators.cameras import make_jpeg

from .hubkit import agent_status, event, fake_agent, running_hub, site_zone, tx_event, wait_for, wall_page

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/efence-dashboard.png")

pytestmark = pytest.mark.browser


async def test_login_live_transaction_alarm_ack_and_manual_release(tmp_path: Path, zone: str) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    key = b"b" * 32
    async with (
        running_hub(tmp_path, key_for=lambda aid: key if aid == f"{zone}/cp1" else None) as hub,
        fake_agent(zone) as agent,
        async_playwright() as pw,
    ):
        hub.create_user("duty", "duty-officer-1", "supervisor")
        await agent.status(agent_status(zone))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(hub.url + "/")
            await expect(page).to_have_url(hub.url + "/login.html")  # not logged in: sent to the login page
            await page.fill("#username", "duty")
            await page.fill("#password", "wrong-password")
            await page.click("#login-button")
            await expect(page.locator("#login-error")).to_be_visible()
            await page.fill("#password", "duty-officer-1")
            await page.click("#login-button")
            await expect(page.locator("#user-name")).to_contain_text("duty")
            await expect(page.locator(f'.lane[data-lane="{agent.agent_id}/L1"]')).to_be_visible()
            await expect(page.locator("#live-text")).to_contain_text("Live")

            # a decision at the lane appears in the feed and on the lane card without a reload
            await agent.send(
                tx_event(agent.agent_id, 1, "t-live", plate="沪A7E123", pass_no="Z2248I261128000000000777")
            )
            row = page.locator('#feed tr[data-tx="t-live"]')
            await expect(row).to_contain_text("沪A7E123")
            await expect(row).to_contain_text("放行")
            await expect(page.locator(f'.lane[data-lane="{agent.agent_id}/L1"] .plate')).to_have_text(
                "沪A7E123"
            )

            # a perimeter intrusion rings until an officer acknowledges it with a note
            await agent.send(
                event(agent.agent_id, 2, "perimeter", kind="intrusion", segment="F-07", detail="fibre")
            )
            alarm = page.locator(".alarm-item.ringing.critical").first
            await expect(alarm).to_contain_text("周界入侵")
            await alarm.locator("button[data-ack]").click()
            await page.fill("#ack-note", "patrol sent to F-07")
            await page.click("#ack-confirm")
            await expect(page.locator(".alarm-item.critical.acked")).to_contain_text("patrol sent to F-07")
            acked = [a for a in hub.store.list_alarms() if a["kind"] == "perimeter_intrusion"]
            assert acked[0]["acked_by"] == "duty" and acked[0]["ringing"] is False

            # a held vehicle: release it from the lane card; the agent receives a signed command
            await agent.send(
                tx_event(agent.agent_id, 3, "t-held", verdict="HOLD_MANUAL", reasons=["M1"], plate="沪B00001")
            )
            release = page.locator(
                f'.lane[data-lane="{agent.agent_id}/L1"] button[data-act="manual_release"]'
            )
            await release.click()
            await page.fill("#cmd-reason", "plate checked by eye")
            await page.click("#cmd-confirm")
            signed = decode(SignedCommand, await agent.next_on("commands"))
            cmd = verify_command(signed, key, agent_id=agent.agent_id, now=utcnow(), nonces=NonceLedger())
            assert cmd.action == "manual_release" and cmd.operator_id == "duty"
            assert cmd.params["transaction_id"] == "t-held" and cmd.reason_text == "plate checked by eye"
            await expect(page.locator("#cmd-dialog")).not_to_be_visible()
            result = CommandResult(
                command_id=cmd.command_id, agent_id=agent.agent_id, lane="L1", accepted=True, status="done"
            )
            await agent.client.publish(Topics.command_results(zone, "cp1"), result.to_bytes(), qos=1)
            await expect(page.locator(".toast.done")).to_contain_text("人工放行")
            await page.screenshot(path=str(SCREENSHOT))
            assert errors == []
        finally:
            await browser.close()


async def test_transaction_search_shows_uploaded_evidence_images(tmp_path: Path, zone: str) -> None:
    """An edge's uploader sends a plate picture to the running hub; an officer searches the plate, opens
    the transaction, sees the thumbnail actually decoded by the browser, and enlarges it."""
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    key = b"c" * 32
    agent_id = f"{zone}/cp1"
    tid = f"{agent_id}/L1-20261128T083000-000001"  # the real shape: zone/checkpoint/lane-time-seq
    jpeg = make_jpeg("HU A 66E88", width=320, height=96)
    async with (
        running_hub(tmp_path, key_for=lambda aid: key if aid == agent_id else None) as hub,
        fake_agent(zone) as agent,
        async_playwright() as pw,
    ):
        hub.create_user("viewer1", "viewer-password-1", "viewer")
        await agent.status(agent_status(zone))
        await agent.send(tx_event(agent_id, 1, tid, plate="沪A66E88", pass_no="Z2248I261128000000000888"))
        await wait_for(lambda: hub.store.get_transaction(tid))
        # the edge's uploader, over real HTTP, from the folder layout LaneRuntime._keep_evidence writes
        folder = tmp_path / "edge-evidence" / "20261128" / "L1"
        folder.mkdir(parents=True)
        picture = folder / f"{tid.replace('/', '_')}-cam-plate-plate.jpg"
        picture.write_bytes(jpeg)
        uploader = EvidenceUploader(agent_id, key, hub.url, tmp_path / "edge-evidence", scan_interval_s=3600)
        upload_task = asyncio.create_task(uploader.run())
        uploader.notify(picture)
        try:
            await wait_for(lambda: uploader.uploaded == 1, timeout=10)
        finally:
            upload_task.cancel()
            await asyncio.gather(upload_task, return_exceptions=True)

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, errors = await wall_page(
                browser, hub.url, "viewer1", "viewer-password-1", viewport=(1366, 768)
            )
            await expect(page.locator("#user-name")).to_contain_text("viewer1")
            await page.fill("#search-q", "66E88")
            await page.press("#search-q", "Enter")
            row = page.locator(f'#feed tr[data-tx="{tid}"]')
            await expect(row).to_contain_text("沪A66E88")
            await expect(row.locator(".tag")).to_contain_text(
                "图 1"
            )  # the search result says it has a picture
            await row.click()
            thumb = page.locator("#tx-dialog .evidence img")
            await expect(thumb).to_have_count(1)
            await expect(thumb).to_have_attribute("alt", "cam-plate-plate.jpg")
            # decoded by the browser, not merely an <img> pointing somewhere
            await page.wait_for_function(
                "() => { const i = document.querySelector('#tx-dialog .evidence img');"
                " return i && i.complete && i.naturalWidth === 320; }",
                timeout=5000,
            )
            await page.locator("#tx-dialog .evidence button.thumb").click()
            full = page.locator("#img-dialog img#img-full")
            await expect(page.locator("#img-dialog")).to_be_visible()
            await page.wait_for_function(
                "() => { const i = document.querySelector('#img-full'); return i.complete && i.naturalHeight === 96; }",
                timeout=5000,
            )
            box = await full.bounding_box()
            assert box is not None and box["width"] > 600  # enlarged, far beyond the 96 px thumbnail
            assert errors == []
        finally:
            await browser.close()


async def test_map_draws_fence_segments_from_config_and_an_intrusion_turns_its_segment_red(
    tmp_path: Path, zone: str
) -> None:
    """The wall map draws the zone's fence from the lat/lon paths of its firmware config, puts the
    checkpoint and its lane where the config says, and an intrusion on one segment turns exactly that
    segment red until it is acknowledged."""
    assert Path(CHROMIUM).exists(), "Debian chromium is required: apt-get install -y chromium"
    zones_dir = site_zone(tmp_path, zone)
    async with (
        running_hub(tmp_path, zones_dir=zones_dir) as hub,
        fake_agent(zone, "port-gate") as agent,
        async_playwright() as pw,
    ):
        hub.create_user("wall", "wall-screen-1", "viewer")
        await agent.status(agent_status(zone, "port-gate"))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page, errors = await wall_page(browser, hub.url, "wall", "wall-screen-1")
            tile = page.locator(f'.zone[data-zone="{zone}"]')
            segs = tile.locator("polyline.seg")
            await expect(segs).to_have_count(8)
            await expect(tile.locator('.seg[data-state="ok"]')).to_have_count(8)  # its checkpoint is online
            # drawn from the config's geometry, not a fixed outline: the segments differ in shape
            boxes = [await segs.nth(i).bounding_box() for i in range(8)]
            assert all(b and b["width"] + b["height"] > 20 for b in boxes)
            assert len({(round(b["x"]), round(b["y"])) for b in boxes if b}) == 8
            cp = tile.locator(f'g.cp[data-agent="{agent.agent_id}"] circle.cp-node.online')
            await expect(cp).to_be_visible()
            await expect(tile.locator(f'.lane-node[data-lane="{agent.agent_id}/L1"]')).to_be_visible()
            await expect(
                tile.locator(f'g.cp[data-agent="{zone}/bridge-gate"] .cp-node.unknown')
            ).to_have_count(1)
            # the configured port gate sits on the south fence (segment s-01 passes through its location)
            s01 = await tile.locator('.seg[data-segment="s-01"]').bounding_box()
            node = await cp.bounding_box()
            assert s01 and node
            assert s01["x"] - 10 <= node["x"] + node["width"] / 2 <= s01["x"] + s01["width"] + 10
            assert s01["y"] - 10 <= node["y"] + node["height"] / 2 <= s01["y"] + s01["height"] + 10

            await agent.send(event(agent.agent_id, 1, "perimeter", kind="intrusion", segment="n-02"))
            red = tile.locator('.seg[data-segment="n-02"]')
            await expect(red).to_have_attribute("data-state", "intrusion")
            # red (it pulses between the critical red and a lighter red; never the normal blue)
            stroke = await red.evaluate("el => getComputedStyle(el).stroke")
            r, g, b = (int(x) for x in re.findall(r"\d+", stroke)[:3])
            assert r == 255 and g == b and g < 160, stroke
            ok_stroke = await tile.locator('.seg[data-segment="s-01"]').evaluate(
                "el => getComputedStyle(el).stroke"
            )
            assert ok_stroke == "rgb(59, 143, 208)", ok_stroke
            await expect(tile.locator('.seg[data-state="ok"]')).to_have_count(7)
            await expect(tile.locator(".seg-label")).to_contain_text("n-02")
            await expect(tile).to_have_class("zone alarm")
            (alarm,) = [a for a in hub.store.list_alarms() if a["kind"] == "perimeter_intrusion"]
            hub.store.ack_alarm(alarm["id"], "duty", "patrol at n-02")
            hub.live.publish({"type": "alarm", "data": hub.store.list_alarms()[0]})
            await expect(red).to_have_attribute("data-state", "ok")
            await page.screenshot(path=str(tmp_path / "map.png"))
            assert errors == []
        finally:
            await browser.close()
