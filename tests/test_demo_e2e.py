"""End to end: the demo stack on a real Mosquitto — simulators → drivers → lane controllers → outbox →
MQTT → hub store → `GET /api/transactions` — with transactions from all four zones, then a clean stop."""

import asyncio
import time

import httpx

from efence.demo import DemoInfo, DemoSettings, run_demo
from efence.embedded_broker import free_port

ZONES = {"waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport"}
VERDICTS = {"RELEASE", "HOLD_MANUAL", "HOLD_INSPECTION", "REFUSE"}


async def _login(client: httpx.AsyncClient, password: str) -> dict[str, str]:
    resp = await client.post("/api/login", json={"username": "admin", "password": password})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['token']}"}


async def test_demo_stack_delivers_transactions_from_all_four_zones(mosquitto_url, tmp_path):
    port = free_port()
    settings = DemoSettings(
        broker=mosquitto_url,
        port=port,
        data_dir=tmp_path / "demo",
        headway_s=(6.0, 12.0),
        first_vehicle_within_s=3.0,
        admin_password="e2e-secret-pw",
    )
    ready: list[DemoInfo] = []
    task = asyncio.create_task(run_demo(settings, ready.append))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 150
            while not ready and time.monotonic() < deadline:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.5)
            assert ready, "demo never became ready"
            assert ready[0].agents == 9 and ready[0].lanes == 22

            # nothing but health and login without a token
            assert (await client.get("/api/transactions")).status_code == 401
            health = (await client.get("/api/health")).json()
            assert health["broker"]["connected"] is True and health["ok"] is True, health
            headers = await _login(client, "e2e-secret-pw")

            zones_seen: set[str] = set()
            rows: list[dict] = []
            while time.monotonic() < deadline and zones_seen != ZONES:
                assert not task.done(), task.exception()
                rows = (await client.get("/api/transactions", params={"limit": 500}, headers=headers)).json()
                zones_seen = {r["zone"] for r in rows}
                await asyncio.sleep(2)
            assert zones_seen == ZONES, f"transactions only from {zones_seen}"

            for row in rows:
                assert {"zone", "checkpoint", "lane", "plate", "verdict", "reasons"} <= row.keys()
                assert row["verdict"] in VERDICTS
                assert row["verdict"] != "RELEASE" or row["reasons"] == []
            stamps = [r.get("decided_at") or r.get("observed_at") for r in rows]
            assert all(stamps) and stamps == sorted(stamps, reverse=True), "newest first"
            released = [r for r in rows if r["verdict"] == "RELEASE"]
            assert released, "clean trucks must be released"
            assert all(r["offline"] is False for r in released), "with the hub up, decisions are online"

            # camera images travel from the edge's evidence folder to the hub and are linked to transactions
            while time.monotonic() < deadline and not any(r.get("evidence_count") for r in rows):
                await asyncio.sleep(2)
                rows = (await client.get("/api/transactions", params={"limit": 500}, headers=headers)).json()
            with_images = [r for r in rows if r.get("evidence_count")]
            assert with_images, "no evidence image reached the hub"
            detail = (
                await client.get(f"/api/transactions/{with_images[0]['transaction_id']}", headers=headers)
            ).json()
            image = await client.get(detail["evidence"][0]["url"], headers=headers)
            assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"  # a JPEG

            one = rows[0]
            filtered = (
                await client.get(
                    "/api/transactions", params={"zone": one["zone"], "plate": one["plate"]}, headers=headers
                )
            ).json()
            assert filtered and all(r["zone"] == one["zone"] and r["plate"] == one["plate"] for r in filtered)
    finally:
        started = time.monotonic()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=15)
        stop_s = time.monotonic() - started
    assert done, "the demo did not stop"
    assert stop_s < 5.0, f"stopping took {stop_s:.1f} s"
