"""The perimeter watch in a running edge agent: synthetic fence video served over HTTP, analysed by the
agent, intrusions sent through the durable outbox over a real Mosquitto to a real hub.

One agent watches three fence cameras of its checkpoint: an intruder walks into segment s-01's picture;
segment s-02's picture has only distractors (lighting step, shake, animals, leaves, rain) and is read
as an MJPEG stream; s-03's camera does not answer at all. Expected: one perimeter-intrusion alarm on s-01 with its snapshot at the hub,
nothing on s-02, s-03 reported down (device_offline), and the agent still running.
"""

from __future__ import annotations

import asyncio

import pytest

from efence.embedded_broker import free_port
from simulators.cameras import FrameHttpServer
from simulators.perimeter_video import Intruder, Scenario, VideoFeed
from tests.vision.edge_harness import AGENT, ZONE, VisionSite

FPS = 5.0


def _camera(cam_id: str, url: str, **kw) -> dict:
    return {
        "id": cam_id,
        "stream_url": url,
        "checkpoint": "gate",
        "source": "snapshot",
        "analysis_fps": FPS,
        "min_area_px": 300,  # 0.4 % of 320x240
        "persistence_frames": 4,
        "warmup_frames": 10,
        "stale_after_s": 1.0,
        **kw,
    }


@pytest.fixture
def servers():
    started: list[FrameHttpServer] = []

    def start(feed) -> FrameHttpServer:
        server = FrameHttpServer(feed, fps=FPS)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def test_intruder_alarms_on_its_segment_distractors_do_not_dead_camera_is_down(
    tmp_path, mosquitto_url, servers
):
    intruder = servers(
        VideoFeed(
            Scenario(
                frames=50,
                intruders=[Intruder(enter_frame=25, start=(0.15, 0.95), stop=(0.3, 0.7), walk_frames=10)],
                leaves=6,
                seed=3,
            ),
            fps=FPS,
        )
    )
    distractors = servers(
        VideoFeed(
            Scenario(
                frames=50,
                lighting="step",
                lighting_frame=25,
                shake_px=2.0,
                animals=3,
                leaves=10,
                rain=0.3,
                seed=5,
            ),
            fps=FPS,
        )
    )
    fence = [
        {"id": "s-01", "name": "North 1", "length_m": 100, "cameras": [_camera("cam-1", intruder.url())]},
        {
            "id": "s-02",
            "name": "North 2",
            "length_m": 100,
            "cameras": [
                # read as an MJPEG stream by OpenCV's capture thread (the other cameras: snapshots)
                _camera("cam-2", distractors.url("/video.mjpg"), source="stream")
            ],
        },
        {
            "id": "s-03",
            "name": "North 3",
            "length_m": 100,
            "cameras": [_camera("cam-3", f"http://127.0.0.1:{free_port()}/snapshot.jpg")],
        },
        # watched by another checkpoint's agent: this agent must leave it alone
        {
            "id": "s-04",
            "name": "North 4",
            "length_m": 100,
            "cameras": [{**_camera("cam-4", distractors.url()), "checkpoint": None}],
        },
    ]
    async with VisionSite(tmp_path, mosquitto_url, fence=fence) as site:
        watches = {w.camera.id: w for w in site.agent.perimeter}
        assert set(watches) == {"cam-1", "cam-2", "cam-3"}

        alarms = await site.wait_for(
            lambda: site.alarms("perimeter_intrusion"), 40, "a perimeter-intrusion alarm at the hub"
        )
        assert [a["subject"] for a in alarms] == [f"{ZONE}/s-01"]
        details = alarms[0]["details"]
        assert details["segment"] == "s-01" and details["camera_id"] == "cam-1"
        incident = details["incident_id"]
        assert incident.startswith(f"{AGENT}/perimeter-")
        [event] = site.events("perimeter")
        assert event["_correlation_id"] == incident
        # the intruder's picture is at the hub, linked to the incident
        names = await site.wait_for(lambda: site.evidence(incident), 20, "the intrusion snapshot at the hub")
        assert names == ["cam-1-snapshot.jpg"]

        # the distractor video has played out (50 frames at 5 fps) without raising anything
        await site.wait_for(
            lambda: watches["cam-2"].health.counters["frames_analysed"] >= 50, 30, "cam-2 video"
        )
        await site.wait_for(lambda: watches["cam-3"].health.observed == "down", 20, "cam-3 reported down")
        await site.wait_for(
            lambda: [a for a in site.alarms("device_offline") if a["device_id"] == "cam-3"],
            20,
            "a device_offline alarm for the dead fence camera",
        )
        await asyncio.sleep(1.0)
        assert [a["subject"] for a in site.alarms("perimeter_intrusion")] == [f"{ZONE}/s-01"]
        assert len(site.events("perimeter")) == 1
        assert watches["cam-1"].health.observed == "up" and watches["cam-2"].health.observed == "up"
        assert site.agent_alive()
