"""Camera simulators pushing to the real receiver (uvicorn on a socket) and Frigate via the real Mosquitto."""

import asyncio
import time
import uuid

import pytest

from edge_agent.device_receiver import DeviceReceiver
from edge_agent.drivers.container_camera import ContainerCameraDriver
from edge_agent.drivers.plate_camera import PlateCameraDriver
from edge_agent.observations import ContainerSighting, PlateSighting
from firmware_configs.devices import ContainerCameraConfig, PlateCameraConfig
from simulators.cameras import ContainerCameraSimulator, PlateCameraSimulator
from simulators.scene import LaneScene, VehicleSpec


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def agent():
    """A receiver on a real port with Hikvision, Dahua and two container cameras of one lane."""
    events: list = []
    configs = {
        "hik": PlateCameraConfig(
            id="plate-cam", type="plate_camera", protocol="hikvision-isapi", listen_path="/isapi/in-1"
        ),
        "dahua": PlateCameraConfig(
            id="plate-cam-2", type="plate_camera", protocol="dahua-itsapi", listen_path="/dahua/in-1"
        ),
        "front": ContainerCameraConfig(
            id="box-front",
            type="container_camera",
            position="front",
            protocol="http-push",
            listen_path="/box/in-1/front",
        ),
        "back": ContainerCameraConfig(
            id="box-back",
            type="container_camera",
            position="back",
            protocol="http-push",
            listen_path="/box/in-1/back",
        ),
    }
    drivers = {
        k: (ContainerCameraDriver if k in ("front", "back") else PlateCameraDriver)(
            c, events.append, lane="in-1"
        )
        for k, c in configs.items()
    }
    receiver = DeviceReceiver()
    receiver.mount_drivers(drivers.values())
    port = await receiver.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    sims: list = []

    def sim(kind: str, scene: LaneScene, **kw):
        cls = ContainerCameraSimulator if kind in ("front", "back") else PlateCameraSimulator
        s = cls(configs[kind], scene, base + configs[kind].listen_path, **kw)
        sims.append(s)
        return s

    yield sim, drivers, events
    for s in sims:
        await s.stop()
    await receiver.stop()


def plates(events):
    return [e for e in events if isinstance(e, PlateSighting)]


async def test_scene_arrival_drives_all_cameras(agent):
    sim, drivers, events = agent
    scene = LaneScene()
    cams = [
        sim("hik", scene, delay_s=0.01),
        sim("dahua", scene, delay_s=0.01),
        sim("front", scene, delay_s=0.02),
        sim("back", scene, delay_s=0.03),
    ]
    for cam in cams:
        await cam.start()
    scene.arrive(VehicleSpec(plate="沪A12345", containers=("CSQU3054383", "MWCU6059784")))
    scene.advance(time.monotonic())  # the truck drives on: every camera is told
    await wait_for(lambda: len(events) == 4)
    got = {(type(e).__name__, e.device_id): e for e in events}
    assert got["PlateSighting", "plate-cam"].plate == "沪A12345"
    assert got["PlateSighting", "plate-cam"].images["licensePlatePicture"][:2] == b"\xff\xd8"
    assert got["PlateSighting", "plate-cam-2"].plate == "沪A12345"
    assert got["ContainerSighting", "box-front"].number == "CSQU3054383"
    assert got["ContainerSighting", "box-back"].number == "MWCU6059784"
    assert all(s == 200 for cam in cams for s in cam.statuses)


async def test_simulator_faults(agent):
    sim, drivers, events = agent
    scene = LaneScene()
    hik, front = sim("hik", scene), sim("front", scene)
    await hik.start()
    await front.start()
    truck = VehicleSpec(plate="沪A12345", containers=("CSQU3054383", None))

    hik.faults.misread = True
    front.faults.misread = True
    assert await hik.push(truck) == 200 and await front.push(truck) == 200
    assert plates(events)[-1].plate == "沪A12348"  # a wrong but well-formed plate: the records will not match
    assert events[-1] == ContainerSighting(
        "box-front", "front", None, 0.95, events[-1].at, events[-1].images
    )  # check digit
    hik.faults.misread = front.faults.misread = False

    hik.faults.low_confidence = True
    truck2 = VehicleSpec(plate="沪B22222")
    assert await hik.push(truck2) == 200
    assert (plates(events)[-1].plate, plates(events)[-1].confidence) == (None, 0.40)
    hik.faults.low_confidence = False

    hik.faults.no_plate = True
    assert await hik.push(VehicleSpec(plate="沪C33333")) == 200
    assert plates(events)[-1].plate is None
    hik.faults.no_plate = False

    n = len(events)
    hik.faults.malformed = front.faults.malformed = True
    assert await hik.push(truck) == 400 and await front.push(truck) == 400
    assert len(events) == n and drivers["hik"].health.counters["frames_bad"] == 1
    hik.faults.malformed = front.faults.malformed = False

    hik.faults.repeat = 2
    assert await hik.push(VehicleSpec(plate="沪D44444")) == 200
    assert hik.statuses[-3:] == [200, 200, 200]
    assert [p.plate for p in plates(events)].count("沪D44444") == 1
    assert await front.push(VehicleSpec(plate="沪D44444")) is None  # no box at the front: nothing pushed


async def test_dahua_keepalive_from_simulator(agent):
    sim, drivers, events = agent
    dahua = sim("dahua", LaneScene(), keepalive_s=0.05)
    await dahua.start()
    await wait_for(lambda: len(dahua.statuses) >= 2)
    assert set(dahua.statuses) == {200} and events == []
    assert drivers["dahua"].health.observed == "up"


async def test_frigate_lpr_over_real_mosquitto():
    topic = f"efence-test/{uuid.uuid4().hex}/frigate/tracked_object_update"
    config = PlateCameraConfig(
        id="frigate-cam",
        type="plate_camera",
        protocol="frigate-mqtt",
        mqtt_topic=topic,
        mqtt_url="mqtt://127.0.0.1:1883",
        frigate_camera="gate_in_1",
    )
    events: list = []
    driver = PlateCameraDriver(config, events.append, lane="in-1")
    task = asyncio.create_task(driver.run())
    camera = PlateCameraSimulator(config, LaneScene())
    other = PlateCameraSimulator(config.model_copy(update={"frigate_camera": "other_cam"}), LaneScene())
    try:
        await asyncio.wait_for(driver.subscribed.wait(), 5)
        await camera.start()
        await other.start()
        await camera.push(VehicleSpec(plate="沪A·12345", plate_confidence=0.93))
        await other.push(VehicleSpec(plate="沪E55555"))  # another Frigate camera on the same topic: ignored
        camera.faults.malformed = True
        await camera.push(VehicleSpec(plate="沪A12345"))
        await wait_for(lambda: driver.health.counters["frames_bad"] == 1 and driver.counters["ignored"] == 1)
        (s,) = events
        assert (s.device_id, s.plate, s.confidence) == ("frigate-cam", "沪A12345", 0.93)
        assert s.source_event_id.startswith("frigate|")
    finally:
        await camera.stop()
        await other.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_standalone_camera_pushes_its_own_trucks(agent):
    sim, drivers, events = agent
    cam = sim("hik", None, delay_s=0.05)  # no scene: its own trucks, the first after about 1 s
    await cam.start()
    await wait_for(lambda: plates(events), timeout=4)
    await wait_for(lambda: cam.statuses)  # the sighting is stored before the camera gets its answer
    assert plates(events)[0].plate is not None and cam.statuses == [200]
