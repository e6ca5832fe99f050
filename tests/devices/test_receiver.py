"""The device receiver routing pushes to camera drivers: answers, store-first, rejection, de-duplication."""

import json
import logging

import httpx
import pytest

from edge_agent.device_receiver import DeviceReceiver
from edge_agent.drivers.container_camera import ContainerCameraDriver
from edge_agent.drivers.plate_camera import PlateCameraDriver
from edge_agent.observations import ContainerSighting, PlateSighting
from firmware_configs.devices import ContainerCameraConfig, PlateCameraConfig
from simulators.cameras import (
    container_push_json,
    dahua_tollgate_json,
    hikvision_anpr_xml,
    hikvision_multipart,
    make_jpeg,
)


def plate_cfg(device_id: str, protocol: str, path: str | None = None, **kw) -> PlateCameraConfig:
    extra = {"listen_path": path} if path else {}
    if protocol == "frigate-mqtt":
        extra = {"mqtt_topic": "t"}
    if protocol == "vision":
        extra = {"stream_url": "rtsp://x"}
    return PlateCameraConfig(id=device_id, type="plate_camera", protocol=protocol, **extra, **kw)


def box_cfg(position: str, path: str) -> ContainerCameraConfig:
    return ContainerCameraConfig(
        id=f"box-{position}",
        type="container_camera",
        position=position,
        protocol="http-push",
        listen_path=path,
    )


@pytest.fixture
def lane():
    events: list = []
    drivers = {
        "hik": PlateCameraDriver(
            plate_cfg("plate-cam", "hikvision-isapi", "/isapi/gate/in-1"), events.append, lane="in-1"
        ),
        "dahua": PlateCameraDriver(
            plate_cfg("plate-cam", "dahua-itsapi", "/dahua/gate/in-2"), events.append, lane="in-2"
        ),
        "front": ContainerCameraDriver(
            box_cfg("front", "/containers/in-1/front"), events.append, lane="in-1"
        ),
        "back": ContainerCameraDriver(box_cfg("back", "/containers/in-1/back"), events.append, lane="in-1"),
        "frigate": PlateCameraDriver(plate_cfg("frigate", "frigate-mqtt"), events.append),
        "vision": PlateCameraDriver(plate_cfg("vision", "vision"), events.append),
    }
    receiver = DeviceReceiver(max_body_bytes=200_000)
    assert receiver.mount_drivers(drivers.values()) == 4  # Frigate and vision take no HTTP pushes
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://agent")
    return receiver, drivers, events, client


def hik_push(plate: str = "沪A12345", confidence: float = 0.95, when=None, post_count: int = 1):
    jpeg = make_jpeg(plate)
    xml = hikvision_anpr_xml(plate, confidence, when=when, post_count=post_count)
    ctype, body = hikvision_multipart(xml, {"licensePlatePicture.jpg": jpeg, "detectionPicture.jpg": jpeg})
    return ctype, body, jpeg


async def test_hikvision_push_emits_sighting_with_evidence(lane):
    receiver, drivers, events, client = lane
    ctype, body, jpeg = hik_push("沪A·12345")
    r = await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and r.json() == {"result": "accepted"}
    (s,) = events
    assert isinstance(s, PlateSighting)
    assert (s.device_id, s.plate, s.confidence, s.plate_color) == ("plate-cam", "沪A12345", 0.95, "blue")
    assert s.images == {"licensePlatePicture": jpeg, "detectionPicture": jpeg}
    assert s.source_event_id.startswith("hik|1|")
    assert drivers["hik"].health.observed == "up"


async def test_store_first_then_answer(lane):
    receiver, drivers, events, client = lane

    def failing_store(obs):
        raise OSError("outbox full")

    drivers["hik"].emit = failing_store
    ctype, body, _ = hik_push()
    r = await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 500  # not stored → not acknowledged, so the camera re-posts
    assert receiver.counters["errors"] == 1
    drivers["hik"].emit = events.append
    r = await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and len(events) == 1


async def test_hikvision_repost_and_same_plate_deduplicated(lane):
    receiver, drivers, events, client = lane
    from datetime import datetime

    when = datetime(2026, 11, 28, 8, 15, 2)
    for count in (1, 2, 3):  # the camera re-uploads the same alarm
        ctype, body, _ = hik_push(when=when, post_count=count)
        r = await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200
    assert len(events) == 1 and drivers["hik"].counters["duplicates"] == 2
    ctype, body, _ = hik_push()  # a second trigger of the same truck, new event time, within the window
    assert (await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})).json() == {
        "result": "duplicate"
    }
    ctype, body, _ = hik_push("沪B54321")
    await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
    assert [e.plate for e in events] == ["沪A12345", "沪B54321"]


async def test_low_confidence_and_no_plate_are_unreadable(lane):
    receiver, drivers, events, client = lane
    for plate, conf in (("沪A12345", 0.5), ("unknown", 0.0), ("ABC123", 0.99)):
        ctype, body, _ = hik_push(plate, conf)
        assert (
            await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
        ).status_code == 200
    assert [(e.plate, e.confidence) for e in events] == [(None, 0.5), (None, 0.0), (None, 0.99)]
    assert drivers["hik"].counters["unreadable"] == 3


async def test_malformed_push_rejected_counted_and_logged(lane, caplog):
    receiver, drivers, events, client = lane
    caplog.set_level(logging.WARNING)
    r = await client.post(
        "/isapi/gate/in-1", content=b"<EventNotificationAlert>", headers={"Content-Type": "text/xml"}
    )
    assert r.status_code == 400 and "well-formed" in r.json()["error"]
    r = await client.post(
        "/dahua/gate/in-2/NotificationInfo/TollgateInfo",
        content=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["Result"] is False
    r = await client.post(
        "/containers/in-1/front", content=b'{"number": 7}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "number" in r.json()["error"]
    assert events == []
    assert drivers["hik"].health.counters["frames_bad"] == 1
    assert drivers["dahua"].health.counters["frames_bad"] == 1
    assert drivers["front"].health.counters["frames_bad"] == 1
    assert receiver.counters["status_400"] == 3
    assert any("plate-cam" in rec.getMessage() and "rejected" in rec.getMessage() for rec in caplog.records)
    assert any("box-front" in rec.getMessage() for rec in caplog.records)


async def test_dahua_tollgate_keepalive_and_repost(lane):
    receiver, drivers, events, client = lane
    body = dahua_tollgate_json("沪C88888", 0.97, jpeg=make_jpeg("C88888"))
    for _ in range(2):  # unanswered cameras re-send the same notification
        r = await client.post("/dahua/gate/in-2/NotificationInfo/TollgateInfo", content=body)
        assert r.status_code == 200 and r.json() == {"Result": True}
    r = await client.post("/dahua/gate/in-2/NotificationInfo/KeepAlive", content=b"{}")
    assert r.json() == {"Result": True}
    (s,) = events
    assert (s.plate, s.confidence) == ("沪C88888", 0.97) and s.images["normal"][:2] == b"\xff\xd8"


async def test_container_pushes(lane):
    receiver, drivers, events, client = lane

    async def push(path, number, conf=0.95, position="front", event_id=None):
        body = container_push_json(number, conf, position=position, event_id=event_id, jpeg=b"\xff\xd8x")
        return await client.post(path, content=body, headers={"Content-Type": "application/json"})

    r = await push("/containers/in-1/front", "CSQU 305438-3", event_id="a")
    assert r.json() == {"ok": True, "number": "CSQU3054383", "result": "accepted"}
    assert (await push("/containers/in-1/front", "CSQU3054383", event_id="a")).json()["result"] == "duplicate"
    assert (await push("/containers/in-1/back", "CSQU3054384", position="back")).json()[
        "number"
    ] is None  # check digit
    assert (await push("/containers/in-1/back", "MWCU6059784", conf=0.3, position="back")).json()[
        "number"
    ] is None
    r = await push("/containers/in-1/back", "TEXU3070079", position="front")
    assert r.status_code == 400 and "position" in r.json()["error"]
    boxes = [e for e in events if isinstance(e, ContainerSighting)]
    assert [(b.position, b.number) for b in boxes] == [
        ("front", "CSQU3054383"),
        ("back", None),
        ("back", None),
    ]
    assert boxes[0].images == {"container": b"\xff\xd8x"}


async def test_routing_errors(lane):
    receiver, drivers, events, client = lane
    assert (await client.post("/nowhere", content=b"x")).status_code == 404
    assert (await client.get("/isapi/gate/in-1")).status_code == 405
    assert (await client.post("/isapi/gate/in-1", content=b"x" * 300_000)).status_code == 413
    assert sorted((await client.get("/")).json()["paths"]) == sorted(receiver.routes)
    assert receiver.counters["unrouted"] == 1 and receiver.counters["too_large"] == 1
    with pytest.raises(ValueError, match="two devices"):
        receiver.mount(drivers["front"], "/isapi/gate/in-1")
    assert receiver.route("/isapi/gate/in-1/") is drivers["hik"]
    assert receiver.route("/isapi/gate") is None


async def test_receiver_over_real_socket(lane):
    receiver, drivers, events, client = lane
    port = await receiver.start("127.0.0.1", 0)
    try:
        ctype, body, _ = hik_push()
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"http://127.0.0.1:{port}/isapi/gate/in-1", content=body, headers={"Content-Type": ctype}
            )
        assert r.status_code == 200 and json.loads(r.content) == {"result": "accepted"}
    finally:
        await receiver.stop()
    assert len(events) == 1


async def test_disabled_camera_is_answered_but_not_emitted(lane):
    receiver, drivers, events, client = lane
    drivers["hik"].health.enabled = False
    drivers["front"].health.enabled = False
    ctype, body, _ = hik_push()
    r = await client.post("/isapi/gate/in-1", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200 and r.json() == {"result": "disabled"}
    r = await client.post(
        "/containers/in-1/front", content=container_push_json("CSQU3054383", 0.9, position="front")
    )
    assert r.status_code == 200 and r.json()["result"] == "disabled"
    assert events == []
