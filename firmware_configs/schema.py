"""Firmware configuration of one zone: Zone → Checkpoint → Lane → devices, plus the perimeter fence.

One YAML file per zone (`firmware_configs/zones/<zone-id>.yaml`). Secrets (command-signing keys, MQTT
passwords) are never written here: the config names a file or environment variable that holds them.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic import Field, model_validator

from firmware_configs.base import ConfigModel
from firmware_configs.devices import (
    ContainerCameraConfig,
    Device,
    IoBoardConfig,
    LedBoardConfig,
    PlateCameraConfig,
    RfidReaderConfig,
    WeighbridgeConfig,
)
from gate_controller.config import DrawPolicy, RulePolicy, Timeouts

T = TypeVar("T")

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")]


class Lane(ConfigModel):
    """One lane of a checkpoint with its devices."""

    id: Slug = Field(description="Lane id, unique within the checkpoint (`in-1`, `out-2`).")
    name: str = Field(description="Name shown on the wall screen, e.g. `1号进区车道`.")
    direction: Literal["I", "E"] = Field(
        description="Customs `ioTypecd` of the traffic this lane serves: `I` into the zone, `E` out of it."
    )
    line: Literal["first", "second"] = Field(
        description="`first` line (zone ↔ abroad, via port/airport) or `second` line (zone ↔ domestic China)."
    )
    vehicle_class: Literal["truck", "car"] = Field("truck", description="Cargo trucks or cars/persons.")
    gate_mode: Literal["single", "double"] = Field(
        "single", description="`single` gate, or one gate of a `double`-gate lane (pass status 3/4)."
    )
    gate_no: Literal[1, 2] = Field(1, description="For double-gate lanes: which gate this is (1 or 2).")
    timeouts: Timeouts = Field(
        default_factory=Timeouts,
        description="The lane controller's stage time limits: gather window, barrier timings, hold alarm. "
        "Lengthen `gather_s` for a lane whose cameras are read by the edge's own vision (seconds per frame).",
    )
    devices: list[Device] = Field(description="The lane's devices; the `type` key selects the driver.")

    @model_validator(mode="after")
    def _lane_is_complete(self) -> "Lane":
        ids = [d.id for d in self.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids must be unique within a lane; repeated: {', '.join(dupes)}")
        if len(self.of_type(IoBoardConfig)) != 1:
            raise ValueError("a lane needs exactly one io_board (loops, barrier, limit switches, light)")
        if self.vehicle_class == "truck":
            missing = [
                name
                for name, kind in (
                    ("plate_camera", PlateCameraConfig),
                    ("weighbridge", WeighbridgeConfig),
                    ("led_board", LedBoardConfig),
                )
                if not self.of_type(kind)
            ]
            if not any(r.role == "e_plate" for r in self.of_type(RfidReaderConfig)):
                missing.append("rfid_reader with role e_plate")
            if missing:
                raise ValueError(
                    "a truck lane needs automatic vehicle recognition, a weighbridge and an LED board; missing: "
                    + ", ".join(missing)
                )
        positions = [c.position for c in self.of_type(ContainerCameraConfig)]
        if len(positions) != len(set(positions)):
            raise ValueError("at most one container_camera per position (front, back)")
        return self

    def of_type(self, kind: type[T]) -> list[T]:
        """The lane's devices of one config class."""
        return [d for d in self.devices if isinstance(d, kind)]


class AgentSettings(ConfigModel):
    """How the checkpoint's edge agent reaches the hub and where it keeps its state."""

    broker_url: str = Field(
        "mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://",
        description="MQTT broker, `mqtt://host:port` or `mqtts://host:port`.",
    )
    hub_url: str = Field(
        "http://127.0.0.1:8080",
        pattern=r"^https?://",
        description="Hub HTTP base URL (record snapshots and deltas).",
    )
    data_dir: str = Field(
        "var/edge",
        description="Directory for the record cache, outbox and evidence (relative to the working directory).",
    )
    command_key_env: str = Field(
        "EFENCE_COMMAND_KEY",
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Environment variable holding this checkpoint's command-signing key (hex). Never put the key in the config.",
    )
    command_key_file: str | None = Field(
        None, description="File holding the command-signing key; read when the variable is unset."
    )
    device_http_host: str = Field(
        "0.0.0.0",
        description="Address the camera push receiver listens on (the lane network's interface, or 0.0.0.0).",
    )
    device_http_port: int = Field(
        8081, ge=1, le=65535, description="Port of the receiver that cameras push results to."
    )
    metrics_port: int | None = Field(
        9108, ge=1, le=65535, description="Prometheus metrics port; empty to disable."
    )
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the Prometheus metrics endpoint binds to. The endpoint has no authentication "
        "and shows lane, device and outbox state: keep 127.0.0.1 (scrape through a local agent or SSH "
        "tunnel) unless the address is on a management network that only the monitoring host can reach.",
    )
    status_interval_s: float = Field(
        10.0, gt=0, le=300, description="Heartbeat period of the retained status message."
    )
    max_record_age_s: float = Field(
        3600.0,
        gt=0,
        description="Offline with records older than this: no automatic release (fail closed to HOLD_MANUAL).",
    )
    outbox_capacity: int = Field(
        200_000, ge=1000, description="Most events kept while the hub is unreachable."
    )
    outbox_max_age_h: float = Field(
        72.0,
        gt=0,
        le=24 * 90,
        description="Telemetry waiting longer than this many hours is shed (tombstoned, counted); "
        "decisions, alarms and command audits are kept whatever their age.",
    )
    outbox_alarm_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Alarm when the outbox reaches this share of its capacity or of its age bound, well "
        "before anything could be dropped; cleared when back under half of it.",
    )


class Checkpoint(ConfigModel):
    """A checkpoint (卡口): one edge agent serving all its lanes."""

    id: Slug = Field(description="Checkpoint id, unique within the zone (`gate-1`).")
    name: str = Field(description="Name shown on the wall screen, e.g. `1号卡口`.")
    location: tuple[float, float] | None = Field(
        None, description="Latitude, longitude (WGS-84) for the map."
    )
    agent: AgentSettings = Field(default_factory=AgentSettings, description="Edge agent settings.")
    lanes: list[Lane] = Field(min_length=1, description="The checkpoint's lanes.")

    @model_validator(mode="after")
    def _unique_lanes(self) -> "Checkpoint":
        ids = [lane.id for lane in self.lanes]
        if len(ids) != len(set(ids)):
            raise ValueError("lane ids must be unique within a checkpoint")
        return self


@dataclass(frozen=True)
class SensorEndpoint:
    """A parsed `FenceSensor.endpoint`: `kind` is `modbus`, `socket` or `mqtt` (then `topic` is set)."""

    kind: Literal["modbus", "socket", "mqtt"]
    host: str = ""
    port: int = 0
    unit: int = 0
    input: int = 0
    topic: str = ""


_MODBUS_ENDPOINT = re.compile(r"^modbus://([^:/\s]+):(\d{1,5})/(\d{1,3})/(\d{1,5})$")
_SOCKET_ENDPOINT = re.compile(r"^socket://([^:/\s]+):(\d{1,5})/?$")


def parse_sensor_endpoint(endpoint: str) -> SensorEndpoint:
    """Parse `modbus://host:port/unit/input`, `socket://host:port` or an MQTT topic; ValueError says
    which form was expected."""
    if endpoint.startswith("modbus://"):
        m = _MODBUS_ENDPOINT.match(endpoint)
        if not m:
            raise ValueError(f"endpoint {endpoint!r}: expected modbus://host:port/unit/input")
        host, port, unit, di = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        if not (0 < port < 65536 and 0 < unit < 248):
            raise ValueError(f"endpoint {endpoint!r}: port 1..65535 and Modbus unit 1..247 expected")
        return SensorEndpoint("modbus", host, port, unit, di)
    if endpoint.startswith("socket://"):
        m = _SOCKET_ENDPOINT.match(endpoint)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"endpoint {endpoint!r}: expected socket://host:port")
        return SensorEndpoint("socket", m.group(1), int(m.group(2)))
    if "://" in endpoint or not endpoint or any(c in endpoint for c in "+# "):
        raise ValueError(
            f"endpoint {endpoint!r}: expected socket://host:port, modbus://host:port/unit/input or an MQTT "
            "topic (no wildcards)"
        )
    return SensorEndpoint("mqtt", topic=endpoint)


class FenceSensor(ConfigModel):
    """An electronic sensor watching a fence segment (docs/DEVICES.md, "Fence sensors")."""

    id: Slug = Field(description="Sensor id, unique within the zone.")
    type: Literal["vibration_fibre", "vibration_cable", "ir_beam", "microwave"] = Field(
        description="Sensing principle: vibration-sensing fibre (locates to 3–5 m), vibration cable, infrared beams, microwave."
    )
    endpoint: str = Field(
        description="Where its controller reports: `socket://host:port` (the fence line protocol, with "
        "location), `modbus://host:port/unit/input` (the controller's alarm relay wired to discrete input "
        "`input` of a Modbus/TCP IO module), or an MQTT topic (not read by an edge agent)."
    )
    locate_resolution_m: float | None = Field(
        None, gt=0, description="Fibre/cable: how precisely an event is located."
    )
    checkpoint: Slug | None = Field(
        None,
        description="Id of the checkpoint whose edge agent reads this sensor (it must reach the endpoint "
        "and it sends the alarms); empty: no edge agent reads it.",
    )
    controller_zone: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="socket: the controller's own zone/channel id for this sensor in the line protocol's "
        "`zone` field; empty: the sensor id.",
    )
    normally_closed: bool = Field(
        True,
        description="modbus: the alarm (and tamper) contact is closed (input reads 1) while all is well and "
        "opens on alarm, so a cut wire is an alarm too; false: normally open (input reads 1 on alarm).",
    )
    tamper_input: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="modbus: discrete input (same IO module and unit) wired to the controller's tamper "
        "contact (cover opened, cable cut); same polarity as the alarm contact. Empty: none wired.",
    )
    debounce_ms: int = Field(
        300,
        ge=0,
        le=10000,
        description="modbus: a contact change counts only once it has held this long (shorter chatter is "
        "ignored).",
    )
    poll_interval_ms: int = Field(
        100, ge=20, le=5000, description="modbus: how often the IO module's discrete inputs are read."
    )
    stale_after_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="No Modbus answer, or no line (not even a heartbeat) from a socket controller, for this "
        "long: the sensor is reported down (one device_offline alarm).",
    )
    realarm_after_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="socket: further intrusion lines for this sensor within this time of the last one sent "
        "are counted, not sent again (a climber shakes the fence for many seconds).",
    )

    @model_validator(mode="after")
    def _endpoint_fits(self) -> "FenceSensor":
        where = parse_sensor_endpoint(self.endpoint)
        if self.tamper_input is not None and where.kind != "modbus":
            raise ValueError(f"sensor {self.id!r}: tamper_input needs a modbus:// endpoint")
        if self.tamper_input is not None and self.tamper_input == where.input:
            raise ValueError(f"sensor {self.id!r}: tamper_input {self.tamper_input} is its alarm input")
        if self.checkpoint is not None and where.kind == "mqtt":
            raise ValueError(
                f"sensor {self.id!r}: endpoint {self.endpoint!r} is an MQTT topic, which no edge agent reads; "
                "give a socket:// or modbus:// endpoint, or leave `checkpoint` empty"
            )
        return self

    @property
    def where(self) -> SensorEndpoint:
        return parse_sensor_endpoint(self.endpoint)


class FenceCamera(ConfigModel):
    """A perimeter camera whose video is analysed for intruders."""

    id: Slug = Field(description="Camera id, unique within the zone.")
    stream_url: str = Field(description="RTSP/HTTP stream URL.")
    mask: list[list[tuple[int, int]]] = Field(
        default_factory=list,
        description="Polygons (pixel coordinates) to ignore: roads, trees, the zone's own yard.",
    )
    min_area_px: int = Field(400, ge=1, description="Smallest moving blob that can be an intruder.")
    persistence_frames: int = Field(
        5, ge=1, description="Frames a blob must persist before it is an intrusion."
    )
    checkpoint: Slug | None = Field(
        None,
        description="Id of the checkpoint whose edge agent analyses this camera (it must reach the stream "
        "and it sends the intrusion events); empty: no edge agent watches it (e.g. an NVR does).",
    )
    source: Literal["stream", "snapshot"] = Field(
        "stream",
        description="`stream`: `stream_url` is RTSP/HTTP MJPEG/USB read continuously; `snapshot`: an HTTP GET "
        "of `stream_url` answers one JPEG, fetched at `analysis_fps`.",
    )
    analysis_fps: float = Field(
        5.0,
        ge=0.2,
        le=25,
        description="Frames analysed per second (newer frames in between are skipped); persistence and "
        "warm-up count analysed frames.",
    )
    zone_polygon: list[tuple[int, int]] = Field(
        default_factory=list,
        description="Image polygon (pixels) of this segment's ground; an intruder whose feet are inside is "
        "on this segment. Empty: the whole frame.",
    )
    warmup_frames: int = Field(
        20, ge=1, le=1000, description="Analysed frames of background learning before any alarm."
    )
    stale_after_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="No new frame for this long counts as a failure; three in a row report the camera down.",
    )


class FenceSegment(ConfigModel):
    """A stretch of the perimeter fence, the unit an intrusion alarm is located to."""

    id: Slug = Field(description="Segment id, unique within the zone (`n-01`).")
    name: str = Field(description="Name shown on the map.")
    length_m: float = Field(gt=0, description="Length of the segment in metres.")
    path: list[tuple[float, float]] = Field(
        default_factory=list, description="Latitude/longitude points along the fence, for the map."
    )
    sensors: list[FenceSensor] = Field(
        default_factory=list, description="Electronic sensors on this segment."
    )
    cameras: list[FenceCamera] = Field(
        default_factory=list, description="Cameras covering this segment; an alarm pops up the first."
    )


class Fence(ConfigModel):
    """The zone's perimeter (电子围网)."""

    segments: list[FenceSegment] = Field(min_length=1, description="Fence segments around the zone.")


class Zone(ConfigModel):
    """One special customs supervision zone: the root of a firmware config file."""

    schema_version: Literal[1] = Field(1, description="Version of this config format.")
    id: Slug = Field(
        description="Zone id, e.g. `waigaoqiao-ftz`, `waigaoqiao-park`, `yangshan-port`, `pudong-airport`."
    )
    name: str = Field(description="English name.")
    name_zh: str = Field(description="Chinese name, as on the wall screen.")
    site_category: Literal["31", "32", "33", "34", "35", "36"] = Field(
        description="Customs site category code (31 bonded zone, 33 bonded logistics park, 34 bonded port area, 35 comprehensive bonded zone)."
    )
    checkpoints: list[Checkpoint] = Field(min_length=1, description="The zone's checkpoints.")
    fence: Fence = Field(description="The perimeter fence and its sensors.")
    rules: RulePolicy = Field(
        default_factory=RulePolicy,
        description="Release-rule tolerances and rates for every lane of the zone: first- and second-line "
        "profiles and overrides matched on zone, lane and pass type.",
    )
    draw: DrawPolicy = Field(
        default_factory=DrawPolicy,
        description="Random-inspection calibration (rule version, credit-grade factors) for the zone.",
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> "Zone":
        ids = [c.id for c in self.checkpoints]
        if len(ids) != len(set(ids)):
            raise ValueError("checkpoint ids must be unique within a zone")
        seg = [s.id for s in self.fence.segments]
        if len(seg) != len(set(seg)):
            raise ValueError("fence segment ids must be unique within a zone")
        known = set(ids)
        for segment in self.fence.segments:
            for camera in segment.cameras:
                if camera.checkpoint is not None and camera.checkpoint not in known:
                    raise ValueError(
                        f"fence camera {camera.id!r} on segment {segment.id!r}: checkpoint "
                        f"{camera.checkpoint!r} is not a checkpoint of this zone ({', '.join(sorted(known))})"
                    )
            for sensor in segment.sensors:
                if sensor.checkpoint is not None and sensor.checkpoint not in known:
                    raise ValueError(
                        f"fence sensor {sensor.id!r} on segment {segment.id!r}: checkpoint "
                        f"{sensor.checkpoint!r} is not a checkpoint of this zone ({', '.join(sorted(known))})"
                    )
        sensors = [s.id for seg in self.fence.segments for s in seg.sensors]
        dup = sorted({i for i in sensors if sensors.count(i) > 1})
        if dup:
            raise ValueError(f"fence sensor ids must be unique within a zone: {', '.join(dup)}")
        return self

    def fence_cameras_of(self, checkpoint_id: str) -> list[tuple[FenceSegment, FenceCamera]]:
        """The fence cameras whose `checkpoint` names this checkpoint: its agent watches them."""
        return [
            (segment, camera)
            for segment in self.fence.segments
            for camera in segment.cameras
            if camera.checkpoint == checkpoint_id
        ]

    def fence_sensors_of(self, checkpoint_id: str) -> list[tuple[FenceSegment, FenceSensor]]:
        """The fence sensors whose `checkpoint` names this checkpoint: its agent reads them."""
        return [
            (segment, sensor)
            for segment in self.fence.segments
            for sensor in segment.sensors
            if sensor.checkpoint == checkpoint_id
        ]

    def unwatched_fence_devices(self) -> list[str]:
        """Fence sensors and cameras no checkpoint's agent is named to read: valid, but nobody watches them."""
        return [
            f"fence segment {segment.id}: {what} {device.id} has no `checkpoint`, so no agent reads it"
            for segment in self.fence.segments
            for what, devices in (("sensor", segment.sensors), ("camera", segment.cameras))
            for device in devices
            if device.checkpoint is None
        ]

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        for c in self.checkpoints:
            if c.id == checkpoint_id:
                return c
        raise KeyError(f"zone {self.id!r} has no checkpoint {checkpoint_id!r}")
