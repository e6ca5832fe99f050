"""`efence demo`: the whole system on one machine — broker, hub, an agent per checkpoint of all four zones,
a simulator for every configured device, and traffic — with real data crossing a real broker.

Nothing is faked: every device is a simulator speaking its real protocol on a loopback TCP port, every
agent drives its lanes through its real drivers, every record reaches the edges through the hub's real
import and replication, and every event lands in the hub's store over MQTT. The shipped zone configs
name site hardware (`socket://nport-….gate.local:4001`); `localize` rewrites each endpoint to the
simulator started for it, which is what a field engineer does on a bench.
"""

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.agent import EdgeAgent
from efence.contract import RecordKind
from efence.embedded_broker import embedded_broker, free_port
from firmware_configs.devices import (
    ContainerCameraConfig,
    IoBoardConfig,
    LedBoardConfig,
    PlateCameraConfig,
    RfidReaderConfig,
    WeighbridgeConfig,
)
from firmware_configs.loader import load_zones
from firmware_configs.schema import Checkpoint, Lane, Zone
from simulators.cameras import ContainerCameraSimulator, PlateCameraSimulator
from simulators.fence import FenceIoSimulator, scripted_intrusions
from simulators.io_board import IoBoardSimulator
from simulators.led_board import LedBoardSimulator
from simulators.rfid import RfidSimulator
from simulators.scene import LaneScene
from simulators.traffic import TrafficGenerator
from simulators.weighbridge import WeighbridgeSimulator

log = logging.getLogger("efence.demo")
PASS_LEAD_S = 4.0
DEMO_FENCE_FPS = 2.0
LOCAL = "127.0.0.1"
SERIAL_SIMS = {
    WeighbridgeConfig: WeighbridgeSimulator,
    RfidReaderConfig: RfidSimulator,
    LedBoardConfig: LedBoardSimulator,
}


@dataclass
class DemoSettings:
    broker: str | None = None  # None: start the embedded amqtt broker
    port: int = 8080
    data_dir: Path = Path("var/demo")
    zones: tuple[str, ...] = ()  # empty: all shipped zones
    headway_s: tuple[float, float] = (25.0, 50.0)  # time between vehicles on one lane
    first_vehicle_within_s: float = 12.0
    seed: int = 1
    admin_password: str | None = None
    fresh: bool = True
    perimeter: bool = True  # one synthetic fence camera per zone, watched by its first checkpoint
    fence_sensors: bool = True  # one beam sensor per zone on a simulated IO module, broken now and then
    fence_intrusion_every_s: float = 180.0  # mean time between two scripted beam breaks (all zones)


@dataclass
class LaneRig:
    """One simulated lane: its scene and the simulators rendering it."""

    zone: Zone
    checkpoint: Checkpoint
    lane: Lane
    scene: LaneScene
    sims: list[Any] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # device id → config updates

    @property
    def key(self) -> str:
        return f"{self.zone.id}/{self.checkpoint.id}/{self.lane.id}"


@dataclass
class DemoInfo:
    hub_url: str
    broker_url: str
    admin_password: str
    agents: int
    lanes: int
    devices: int


async def start_lane_rig(zone: Zone, checkpoint: Checkpoint, lane: Lane, seed: int) -> LaneRig:
    """Start a simulator for every device of the lane on a free loopback port, sharing one scene."""
    rig = LaneRig(zone, checkpoint, lane, LaneScene(seed=seed))
    for device in lane.devices:
        if isinstance(device, IoBoardConfig):
            sim = IoBoardSimulator(device, rig.scene)
            port = await sim.start(LOCAL, 0)
            rig.endpoints[device.id] = {
                "link": {
                    "kind": "tcp",
                    "host": LOCAL,
                    "port": port,
                    "framer": device.link.framer if device.link.kind == "tcp" else "rtu",
                }
            }
        elif type(device) in SERIAL_SIMS:
            sim = SERIAL_SIMS[type(device)](device, scene=rig.scene)
            port = await sim.serve_tcp(LOCAL, 0)
            rig.endpoints[device.id] = {
                "serial": {**device.serial.model_dump(), "port": f"socket://{LOCAL}:{port}"}
            }
        else:
            continue  # cameras push to the agent; they are started once the agent's receiver port is known
        rig.sims.append(sim)
    return rig


def localize(
    zone: Zone,
    rigs: dict[str, LaneRig],
    data_dir: Path,
    broker_url: str,
    hub_url: str,
    perimeter_url: str | None = None,
    fence_io: tuple[int, int] | None = None,
) -> tuple[Zone, dict[str, int]]:
    """The zone config with every device endpoint pointed at its simulator and every agent at the demo hub.

    With `fence_io`, the zone's first Modbus beam sensor reads that input of the demo's fence IO module
    and is read by the zone's first checkpoint. With `perimeter_url`, the zone's first fence camera reads that synthetic camera and is watched by the
    zone's first checkpoint (2 fps snapshots: a few ms of CPU per frame, one analysis thread per agent).
    """
    data = zone.model_dump(mode="json")
    cameras = [(seg, cam) for seg in data["fence"]["segments"] for cam in seg["cameras"]]
    if perimeter_url and cameras:
        cameras[0][1].update(
            stream_url=perimeter_url,
            checkpoint=data["checkpoints"][0]["id"],
            source="snapshot",
            analysis_fps=DEMO_FENCE_FPS,
            persistence_frames=3,
            warmup_frames=10,
            zone_polygon=[],
            mask=[],
        )
    beams = [sensor for seg in data["fence"]["segments"] for sensor in seg["sensors"]]
    beams = [b for b in beams if b["endpoint"].startswith("modbus://")]
    if fence_io and beams:  # (simulator port, its input for this zone): the zone's first beam sensor
        beams[0].update(
            endpoint=f"modbus://{LOCAL}:{fence_io[0]}/1/{fence_io[1]}",
            checkpoint=data["checkpoints"][0]["id"],
        )
    receiver_ports: dict[str, int] = {}
    for cp in data["checkpoints"]:
        port = free_port()
        receiver_ports[cp["id"]] = port
        cp["agent"].update(
            broker_url=broker_url,
            hub_url=hub_url,
            data_dir=str(data_dir / "edge" / zone.id / cp["id"]),
            command_key_file=str(data_dir / "keys" / f"{zone.id}.{cp['id']}.key"),
            device_http_host=LOCAL,
            device_http_port=port,
            metrics_port=None,
        )
        for lane in cp["lanes"]:
            rig = rigs[f"{zone.id}/{cp['id']}/{lane['id']}"]
            for device in lane["devices"]:
                device.update(rig.endpoints.get(device["id"], {}))
    return Zone.model_validate(data), receiver_ports


async def start_cameras(rig: LaneRig, receiver_port: int) -> None:
    for device in rig.lane.devices:
        if isinstance(device, PlateCameraConfig) and device.listen_path:
            sim = PlateCameraSimulator(
                device, rig.scene, f"http://{LOCAL}:{receiver_port}{device.listen_path}"
            )
        elif isinstance(device, ContainerCameraConfig) and device.listen_path:
            sim = ContainerCameraSimulator(
                device, rig.scene, f"http://{LOCAL}:{receiver_port}{device.listen_path}"
            )
        else:
            continue
        await sim.start()
        rig.sims.append(sim)


async def feed_traffic(rig: LaneRig, generator: TrafficGenerator, hub: Any, settings: DemoSettings) -> None:
    """Send vehicles down one lane: first their records to the hub (replicated to the edge), then the truck.

    A truck's previous pass that never crossed (it was held or refused) is voided, as customs would,
    so the lane never matches a stale pass.
    """
    rng = random.Random(f"{rig.key}/{settings.seed}")
    await asyncio.sleep(rng.uniform(1.0, settings.first_vehicle_within_s))
    while True:
        trip = generator.trip(rig.lane)
        records = list(trip.records)
        if trip.superseded_pass:
            old = await hub.store.acall(
                hub.store.get_record, rig.zone.id, RecordKind.GATE_PASS, trip.superseded_pass
            )
            if old and str(old.get("stucd")) in ("0", "1"):
                records.insert(0, ("gate_pass", trip.superseded_pass, {**old, "stucd": "6"}))
        await hub.import_records(rig.zone.id, records)
        # the pass is applied for well before the truck turns up: replication to the edge takes
        # milliseconds, but a loaded machine (CI) can stretch that, and a missing pass is a REFUSE (F1)
        await asyncio.sleep(PASS_LEAD_S)
        rig.scene.arrive(trip.vehicle)
        log.debug("%s: %s arrives (%s)", rig.key, trip.vehicle.plate, trip.anomaly or "clean")
        await asyncio.sleep(rng.uniform(*settings.headway_s))


async def start_fence_cameras(zones: list[Zone], stack: AsyncExitStack) -> dict[str, str]:
    """One synthetic fence camera per zone (HTTP snapshots), each showing an intruder now and then.

    One rendering of the video (about two seconds of CPU, off the event loop) is shared; each zone sees
    it shifted in time, so the zones' intruders do not all turn up at once. Without the vision extra
    the demo runs without perimeter cameras.
    """
    try:
        from simulators.cameras import FrameHttpServer
        from simulators.perimeter_video import VideoFeed, demo_scenario
    except ImportError as exc:
        log.info("demo: no perimeter cameras (%s); install the vision extra for them", exc)
        return {}
    feed = await asyncio.to_thread(VideoFeed, demo_scenario(frames=240), fps=DEMO_FENCE_FPS, loop=True)
    loop_s = 240 / DEMO_FENCE_FPS
    urls = {}
    for i, zone in enumerate(zones):
        server = FrameHttpServer(feed.shifted(i * loop_s / max(1, len(zones))), fps=DEMO_FENCE_FPS)
        server.start()
        stack.callback(server.stop)
        urls[zone.id] = server.url()
    return urls


def _command_keys(zones: list[Zone], key_dir: Path) -> dict[str, bytes]:
    key_dir.mkdir(parents=True, exist_ok=True)
    keys = {}
    for zone in zones:
        for cp in zone.checkpoints:
            path = key_dir / f"{zone.id}.{cp.id}.key"
            if not path.exists():
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            keys[f"{zone.id}/{cp.id}"] = bytes.fromhex(path.read_text().strip())
    return keys


async def run_demo(settings: DemoSettings, on_ready: Callable[[DemoInfo], None] | None = None) -> None:
    """Run everything until cancelled; `on_ready` is called once traffic starts."""
    from central_monitor.runner import HubRunner  # the hub is only this process's guest here

    data_dir = settings.data_dir
    if settings.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    zones = [z for z in load_zones() if not settings.zones or z.id in settings.zones]
    keys = _command_keys(zones, data_dir / "keys")
    password = settings.admin_password or secrets.token_urlsafe(12)

    async with AsyncExitStack() as stack:
        broker_url = settings.broker or await stack.enter_async_context(embedded_broker())
        hub = HubRunner(
            db_url=f"sqlite:///{data_dir / 'hub.sqlite'}",
            broker_url=broker_url,
            host=LOCAL,
            port=settings.port,
            command_keys=keys,
        )
        await stack.enter_async_context(hub)
        hub.ensure_admin("admin", password)
        hub_url = f"http://{LOCAL}:{settings.port}"

        generators = {z.id: TrafficGenerator(z, seed=settings.seed) for z in zones}
        for zone_id, gen in generators.items():
            await hub.import_records(zone_id, gen.base_records())

        rigs: dict[str, LaneRig] = {}
        for i, zone in enumerate(zones):
            for cp in zone.checkpoints:
                for j, lane in enumerate(cp.lanes):
                    rig = await start_lane_rig(zone, cp, lane, seed=settings.seed * 1000 + i * 100 + j)
                    rigs[rig.key] = rig
        fence_urls = await start_fence_cameras(zones, stack) if settings.perimeter else {}
        fence_io = None
        if settings.fence_sensors:  # one IO module carries every zone's beam contact (input 2 × zone)
            fence_io = FenceIoSimulator(unit=1, inputs=2 * len(zones))
            fence_port = await fence_io.start(LOCAL, 0)
            stack.push_async_callback(fence_io.stop)
        agents: list[EdgeAgent] = []
        for i, zone in enumerate(zones):
            local_zone, receiver_ports = localize(
                zone,
                rigs,
                data_dir,
                broker_url,
                hub_url,
                fence_urls.get(zone.id),
                (fence_port, 2 * i) if fence_io else None,
            )
            for cp in local_zone.checkpoints:
                agents.append(
                    EdgeAgent(
                        local_zone,
                        cp,
                        command_key=keys[f"{zone.id}/{cp.id}"],
                        device_http_port=receiver_ports[cp.id],
                    )
                )
                for lane in cp.lanes:
                    await start_cameras(rigs[f"{zone.id}/{cp.id}/{lane.id}"], receiver_ports[cp.id])

        info = DemoInfo(
            hub_url=hub_url,
            broker_url=broker_url,
            admin_password=password,
            agents=len(agents),
            lanes=len(rigs),
            devices=sum(len(r.lane.devices) for r in rigs.values()),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                for agent in agents:
                    tg.create_task(agent.run(), name=f"agent {agent.agent_id}")
                for rig in rigs.values():
                    for sim in rig.sims:
                        if hasattr(sim, "run"):
                            tg.create_task(sim.run(), name=f"sim {rig.key}")
                    tg.create_task(
                        feed_traffic(rig, generators[rig.zone.id], hub, settings),
                        name=f"traffic {rig.key}",
                    )
                if fence_io is not None:
                    tg.create_task(
                        scripted_intrusions(
                            fence_io,
                            [2 * i for i in range(len(zones))],
                            None,
                            [],
                            every_s=settings.fence_intrusion_every_s,
                            seed=settings.seed,
                        ),
                        name="fence intrusions",
                    )
                if on_ready:
                    on_ready(info)
        finally:
            for rig in rigs.values():
                for sim in rig.sims:
                    with contextlib.suppress(Exception):
                        await (sim.stop() if hasattr(sim, "stop") else sim.close())
