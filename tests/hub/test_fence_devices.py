"""Fence devices (perimeter cameras, later fence sensors) in the agent's status: the contract field, the
hub's device table and `device_offline` alarm (raised, cleared, re-armed and suppressed as for lane
devices), and end to end with a real agent whose fence camera goes down and comes back."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from central_monitor.store import PERIMETER, SqliteStore
from efence.contract import AgentStatus, ContractError, DeviceStatus, EventEnvelope, decode
from tests.hub.hubkit import agent_status

AGENT = "fz/cp1"


def status(online: bool = True, cam: str = "up", **kw: object) -> AgentStatus:
    base = agent_status("fz", online=online)
    fence = [
        DeviceStatus(
            device_id="cam-n-01", type="fence_camera", observed=cam, last_error=kw.pop("error", None)
        )  # type: ignore[arg-type]
    ]
    return base.model_copy(update={"fence_devices": fence if online else [], **kw})


def device(store: SqliteStore, device_id: str = "cam-n-01") -> dict:
    return next(d for d in store.list_devices() if d["device_id"] == device_id)


def offline_alarms(store: SqliteStore) -> list[dict]:
    return [a for a in store.list_alarms() if a["kind"] == "device_offline"]


# ------------------------------------------------------------------ contract
def test_fence_devices_are_additive_and_validated() -> None:
    old = json.loads(agent_status("fz").to_bytes())
    old.pop("fence_devices")  # what an agent from before this field sends
    assert decode(AgentStatus, json.dumps(old)).fence_devices == []
    new = decode(AgentStatus, status(cam="down").to_bytes())
    [cam] = new.fence_devices
    assert (cam.device_id, cam.type, cam.observed) == ("cam-n-01", "fence_camera", "down")
    bad = {**old, "fence_devices": [{"device_id": "cam-n-01", "type": "fence_camera", "observed": "broken"}]}
    with pytest.raises(ContractError, match=r"fence_devices\.0\.observed"):
        decode(AgentStatus, json.dumps(bad))
    with pytest.raises(ContractError, match=r"fence_devices\.0\.device_id"):
        decode(AgentStatus, json.dumps({**old, "fence_devices": [{"type": "fence_camera"}]}))


# ------------------------------------------------------------------ store
def test_a_fence_camera_is_a_device_of_its_agent_and_its_alarm_clears_and_rearms(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db", alarm_cooldown_s=0)
    try:
        store.apply_status(status())
        cam = device(store)
        assert (cam["agent_id"], cam["lane"], cam["type"], cam["effective"]) == (
            AGENT,
            PERIMETER,
            "fence_camera",
            "up",
        )
        assert {d["lane"] for d in store.list_devices()} == {"L1", PERIMETER}
        assert [lane["lane"] for lane in store.list_lanes()] == ["L1"]  # not a lane on the board

        # the agent's own device_offline event and its status say the same: one alarm
        store.ingest(
            [
                EventEnvelope.new(
                    agent_id=AGENT,
                    seq=1,
                    type="alarm",
                    payload={"alarm": "device_offline", "device_id": "cam-n-01", "segment": "n-01"},
                )
            ]
        )
        store.apply_status(status(cam="down", error="no frame for 10 s"))
        [alarm] = offline_alarms(store)
        assert alarm["ringing"] and alarm["cleared_at"] is None
        assert (alarm["device_id"], alarm["subject"], alarm["lane"]) == (
            "cam-n-01",
            f"{AGENT}/cam-n-01",
            None,
        )
        assert device(store)["effective"] == "down" and device(store)["last_error"] == "no frame for 10 s"

        store.apply_status(status(cam="up"))  # back: cleared by itself, waiting for an acknowledgement
        [alarm] = offline_alarms(store)
        assert alarm["cleared_at"] is not None and alarm["ringing"]
        assert device(store)["effective"] == "up"

        store.ack_alarm(alarm["id"], "duty", "camera cleaned")
        store.apply_status(status(cam="down"))  # down again after the cooldown: rings anew
        ringing = [a for a in offline_alarms(store) if a["ringing"]]
        assert len(ringing) == 1 and ringing[0]["id"] != alarm["id"]
    finally:
        store.close()


def test_while_the_agent_is_down_its_fence_devices_are_unknown_and_raise_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    try:
        store.apply_status(status())
        store.apply_status(status(online=False))  # last will: no devices in it
        assert device(store)["effective"] == "unknown"
        # a late device_offline event while the whole agent is down: one agent alarm suffices
        store.ingest(
            [
                EventEnvelope.new(
                    agent_id=AGENT,
                    seq=1,
                    type="device_health",
                    payload={"device_id": "cam-n-01", "type": "fence_camera", "observed": "down"},
                )
            ]
        )
        assert offline_alarms(store) == []
        assert [a["kind"] for a in store.list_alarms()] == ["agent_offline"]
        # an older agent's status (no fence_devices) leaves the row as it was
        store.apply_status(agent_status("fz"))
        assert device(store)["lane"] == PERIMETER
    finally:
        store.close()


def test_the_perimeter_watch_reports_its_health_as_a_device_status(tmp_path: Path) -> None:
    from edge_agent.outbox import Outbox
    from edge_agent.perimeter_watch import PerimeterWatch
    from firmware_configs.schema import FenceCamera, FenceSegment

    camera = FenceCamera(id="cam-n-01", stream_url="http://127.0.0.1:9/snapshot.jpg", checkpoint="cp1")
    segment = FenceSegment(id="n-01", name="North 1", length_m=100, cameras=[camera])
    outbox = Outbox(tmp_path / "outbox.sqlite", AGENT)
    try:
        watch = PerimeterWatch(AGENT, segment, camera, outbox, tmp_path / "evidence")
        assert watch.status().observed == "unknown"
        for _ in range(3):
            watch.health.failed("no frame for 10 s")
        s = watch.status()
        assert (s.device_id, s.type, s.observed, s.last_error) == (
            "cam-n-01",
            "fence_camera",
            "down",
            "no frame for 10 s",
        )
        assert s.counters["intrusions"] == 0
    finally:
        outbox.close()


# ------------------------------------------------------------------ end to end
class Switchable:
    """A fence camera's picture that can be switched off (answered 503, like a dead sensor)."""

    def __init__(self) -> None:
        from simulators.cameras import make_jpeg

        self.jpeg = make_jpeg("FENCE", width=320, height=240)
        self.on = threading.Event()
        self.on.set()

    def __call__(self) -> bytes | None:
        return self.jpeg if self.on.is_set() else None


async def test_a_fence_camera_goes_down_and_comes_back_at_the_hub(tmp_path: Path, mosquitto_url: str) -> None:
    """Real Mosquitto, real hub, a real `EdgeAgent` watching one snapshot camera (tests/vision harness)."""
    from simulators.cameras import FrameHttpServer
    from tests.vision.edge_harness import AGENT as VAGENT
    from tests.vision.edge_harness import VisionSite

    feed = Switchable()
    server = FrameHttpServer(feed, fps=5.0)
    server.start()
    camera = {
        "id": "cam-1",
        "stream_url": server.url(),
        "checkpoint": "gate",
        "source": "snapshot",
        "analysis_fps": 5.0,
        "warmup_frames": 5,
        "stale_after_s": 0.5,
    }
    fence = [{"id": "s-01", "name": "North 1", "length_m": 100, "cameras": [camera]}]
    try:
        async with VisionSite(tmp_path, mosquitto_url, fence=fence) as site:
            store = site.hub.store

            def cam(observed: str) -> dict | None:
                rows = [d for d in store.list_devices() if d["device_id"] == "cam-1"]
                return rows[0] if rows and rows[0]["effective"] == observed else None

            up = await site.wait_for(lambda: cam("up"), 20, "the fence camera up at the hub")
            assert (up["agent_id"], up["lane"], up["type"]) == (VAGENT, PERIMETER, "fence_camera")

            feed.on.clear()  # the camera dies
            down = await site.wait_for(lambda: cam("down"), 20, "the fence camera down at the hub")
            assert "503" in (down["last_error"] or "")  # why, as the agent saw it
            alarms = await site.wait_for(
                lambda: [a for a in store.list_alarms() if a["kind"] == "device_offline"],
                10,
                "a device_offline alarm",
            )
            assert [(a["device_id"], a["ringing"], a["cleared_at"]) for a in alarms] == [
                ("cam-1", True, None)
            ]

            feed.on.set()  # back
            await site.wait_for(lambda: cam("up"), 20, "the fence camera up again at the hub")
            [alarm] = await site.wait_for(
                lambda: [a for a in store.list_alarms() if a["kind"] == "device_offline" and a["cleared_at"]],
                10,
                "the device_offline alarm cleared",
            )
            assert alarm["id"] == alarms[0]["id"] and alarm["ringing"]  # cleared; acknowledging stays human
            await asyncio.sleep(0)
    finally:
        server.stop()
