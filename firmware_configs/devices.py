"""Typed configuration of every lane device, one model per driver `type`.

The `Device` union is discriminated on `type`, so an unknown device type, or a key that belongs to
another type, is reported with its path. Each driver in `edge_agent.drivers` registers under the same
`type` key (see `edge_agent.drivers.registry`).
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from firmware_configs.base import ConfigModel

DeviceId = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$",
        description="Device id, unique within its lane: lower-case letters, digits, '-' or '_'.",
    ),
]


# --------------------------------------------------------------------------- connections
class SerialLink(ConfigModel):
    """A serial line: a local port, or a serial-over-IP URL that pyserial understands."""

    port: str = Field(
        description="Serial port (`/dev/ttyS1`, `/dev/ttyUSB0`, `/dev/pts/7`) or a serial-over-IP URL "
        "(`socket://host:port` for a raw TCP serial server such as a Moxa NPort, `rfc2217://host:port`).",
        min_length=1,
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="Line speed in baud, as set on the device."
    )
    framing: str = Field(
        "8N1",
        pattern=r"^[78][NEO][12]$",
        description="Data bits, parity (N/E/O) and stop bits, e.g. `8N1` or `7E1` (Toledo default).",
    )

    @property
    def bytesize(self) -> int:
        return int(self.framing[0])

    @property
    def parity(self) -> str:
        return self.framing[1]

    @property
    def stopbits(self) -> int:
        return int(self.framing[2])


class ModbusTcpLink(ConfigModel):
    """Modbus over TCP, either Modbus/TCP proper or RTU frames tunnelled through a serial server."""

    kind: Literal["tcp"] = Field(description="Transport kind: `tcp`.")
    host: str = Field(min_length=1, description="Host name or address of the IO board or serial server.")
    port: int = Field(502, ge=1, le=65535, description="TCP port (502 for Modbus/TCP).")
    framer: Literal["socket", "rtu"] = Field(
        "socket",
        description="`socket` for Modbus/TCP (MBAP header), `rtu` for RTU frames over a TCP serial server.",
    )


class ModbusRtuLink(ConfigModel):
    """Modbus RTU over an RS-485 line."""

    kind: Literal["rtu"] = Field(description="Transport kind: `rtu`.")
    serial: SerialLink = Field(description="The RS-485 serial line.")


ModbusLink = Annotated[ModbusTcpLink | ModbusRtuLink, Field(discriminator="kind")]


# --------------------------------------------------------------------------- common
class DeviceBase(ConfigModel):
    """Fields every device has."""

    id: DeviceId
    description: str = Field(
        "", description="Free text for the field engineer: make, model, mounting position."
    )
    enabled: bool = Field(
        True, description="Operator switch: a disabled device is neither polled nor alarmed on."
    )
    failures_before_down: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive failures (timeouts, bad frames, refused connects) before the device is reported down.",
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=600, description="Upper bound of the exponential reconnect back-off, in seconds."
    )


# --------------------------------------------------------------------------- IO board
class IoInputs(ConfigModel):
    """Discrete-input numbers (0-based wire addresses) of the loop detectors and limit switches."""

    arming_loop: int = Field(
        ge=0, le=65535, description="Loop before the barrier (presence): starts a transaction."
    )
    safety_loop: int = Field(
        ge=0,
        le=65535,
        description="Loop under the arm (presence): the barrier never closes while it is occupied.",
    )
    exit_loop: int = Field(
        ge=0, le=65535, description="Loop beyond the arm: the vehicle has passed once it clears."
    )
    arm_up: int = Field(ge=0, le=65535, description="Limit switch: arm fully up.")
    arm_down: int = Field(ge=0, le=65535, description="Limit switch: arm fully down.")


class IoOutputs(ConfigModel):
    """Output channels: coil numbers (coil boards, 0-based) or relay channels (command-register boards, 1-based)."""

    barrier_open: int = Field(
        ge=0, le=65535, description="Pulse output wired to the barrier controller's OPEN input."
    )
    barrier_close: int = Field(
        ge=0, le=65535, description="Pulse output wired to the barrier controller's CLOSE input."
    )
    light_green: int = Field(ge=0, le=65535, description="Traffic light, green lamp.")
    light_red: int = Field(ge=0, le=65535, description="Traffic light, red lamp.")


class IoBoardConfig(DeviceBase):
    """A Modbus IO board carrying the loop detectors, barrier relays, limit switches and traffic light."""

    type: Literal["io_board"] = Field(description="Device type: Modbus IO board.")
    link: ModbusLink = Field(description="How to reach the board.")
    unit: int = Field(1, ge=1, le=247, description="Modbus unit (device/slave) id.")
    output_mode: Literal["coils", "command_register"] = Field(
        "coils",
        description="`coils`: FC05 write-single-coil outputs. `command_register`: R421A08-style boards, FC06 to "
        "register = channel with the command in the high byte (01 open, 02 close, 05 momentary).",
    )
    inputs: IoInputs = Field(description="Which discrete input carries which loop or limit switch.")
    outputs: IoOutputs = Field(description="Which output drives which relay.")
    pulse_ms: int = Field(
        700,
        ge=100,
        le=3000,
        description="Length of an open/close pulse; barrier controllers expect 0.5–1 s dry-contact pulses.",
    )
    debounce_ms: int = Field(
        80,
        ge=0,
        le=1000,
        description="A loop input must hold a new level this long before it counts (50–100 ms typical).",
    )
    poll_interval_ms: int = Field(50, ge=10, le=1000, description="How often the discrete inputs are read.")
    stale_after_ms: int = Field(
        1000,
        ge=100,
        le=10000,
        description="Inputs not read successfully for this long are unknown, and an unknown safety loop counts as occupied.",
    )
    register_pulse: Literal["momentary", "open_close"] = Field(
        "momentary",
        description="`command_register` boards only: how a barrier pulse is sent. `momentary` (FC06 command 05): the "
        "board itself releases the relay after about 1 s, so a crashed agent cannot hold a contact closed; "
        "`open_close`: command 01, wait `pulse_ms`, command 02.",
    )

    @model_validator(mode="after")
    def _distinct_channels(self) -> "IoBoardConfig":
        ins = list(self.inputs.model_dump().values())
        outs = list(self.outputs.model_dump().values())
        if len(set(ins)) != len(ins):
            raise ValueError("inputs: two signals share one discrete input")
        if len(set(outs)) != len(outs):
            raise ValueError("outputs: two signals share one output channel")
        return self


# --------------------------------------------------------------------------- weighbridge
class WeighbridgeConfig(DeviceBase):
    """A weighbridge indicator streaming or answering weight frames over a serial line."""

    type: Literal["weighbridge"] = Field(description="Device type: weighbridge indicator.")
    serial: SerialLink = Field(description="Serial line of the indicator.")
    protocol: Literal["toledo", "yaohua", "yaohua-reversed", "yaohua-command", "sma"] = Field(
        description="`toledo` Mettler Toledo continuous; `yaohua` XK3190 tF=0 12-byte frames; `yaohua-reversed` the "
        "`=` reversed-digit format; `yaohua-command` XK3190 request/response; `sma` SMA SCP-0499."
    )
    checksum: bool = Field(True, description="Toledo only: the indicator appends the checksum byte.")
    address: int = Field(1, ge=0, le=99, description="Indicator address for request/response protocols.")
    poll_interval_ms: int = Field(
        200, ge=50, le=5000, description="Request period for request/response protocols."
    )
    stable_window_s: float = Field(
        1.5, gt=0, le=30, description="Software stability: readings must stay within the tolerance this long."
    )
    stable_tolerance_kg: float = Field(
        20, ge=0, le=1000, description="Software stability: allowed spread of readings in the window."
    )
    empty_threshold_kg: float = Field(
        200, ge=0, le=5000, description="Below this gross weight the bridge counts as empty."
    )
    signal_lost_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="No valid frame for this long while the port is open: signal lost, weight unknown.",
    )
    capacity_kg: float = Field(
        100_000, gt=0, description="Bridge capacity; a reading above it is a fault, not a weight."
    )


# --------------------------------------------------------------------------- RFID
class RfidReaderConfig(DeviceBase):
    """An RFID reader: UHF e-plate / e-seal reader, or a 125 kHz driver-card reader."""

    type: Literal["rfid_reader"] = Field(description="Device type: RFID reader.")
    role: Literal["e_plate", "e_seal", "driver_card"] = Field(
        description="What the reads mean to the lane: vehicle electronic plate, container electronic seal, or driver IC card."
    )
    serial: SerialLink = Field(description="Serial line (or socket:// URL) of the reader.")
    protocol: Literal["chafon", "em4100", "ascii-epc"] = Field(
        description="`chafon` UHFReader18/288 binary protocol; `em4100` 125 kHz ASCII frames; `ascii-epc` one EPC per line."
    )
    reader_address: int = Field(0, ge=0, le=255, description="Chafon reader address (0xFF broadcasts).")
    poll_interval_ms: int = Field(300, ge=50, le=5000, description="Chafon inventory command period.")
    em4100_check: Literal["xor", "sum"] = Field(
        "xor", description="EM4100: check over the data bytes (XOR or sum)."
    )
    em4100_frame_length: Literal[14, 16] = Field(14, description="EM4100: 14- or 16-byte frames.")
    dedupe_window_s: float = Field(
        3.0, ge=0, le=60, description="Repeated reads of one tag within this window count once."
    )


# --------------------------------------------------------------------------- cameras and LED
class VisionCapture(ConfigModel):
    """How the edge's own vision pipeline takes frames from a `vision` camera (docs/VISION.md, "Edge wiring")."""

    source: Literal["stream", "snapshot"] = Field(
        "stream",
        description="`stream`: `stream_url` is a continuous stream (`rtsp://`, HTTP MJPEG, a video file, or a "
        "USB device number such as `0`) read by a capture thread into a ring buffer; `snapshot`: an HTTP GET "
        "of `stream_url` answers one JPEG, fetched only when the arming loop triggers.",
    )
    frames: int = Field(3, ge=1, le=10, description="Frames read per vehicle once the arming loop triggers.")
    min_agree: int = Field(
        2,
        ge=1,
        le=10,
        description="Frames that must read the same text; fewer, or a rival text read as often, is unreadable "
        "(manual review).",
    )
    frame_interval_s: float = Field(
        0.3, ge=0.05, le=5, description="Snapshot source: pause between the snapshots of one burst."
    )
    timeout_s: float = Field(
        4.0,
        gt=0,
        le=30,
        description="Longest wait for a burst's frames; what arrived by then is read, nothing is unreadable.",
    )
    buffer_frames: int = Field(
        4,
        ge=1,
        le=30,
        description="Stream source: frames kept (newest); older ones are dropped, so a slow reader never "
        "builds a backlog.",
    )
    stale_after_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Stream source: no frame for this long counts as a failure (toward "
        "`failures_before_down`); snapshot source: the URL is probed this often while idle.",
    )

    @model_validator(mode="after")
    def _agree_within_frames(self) -> "VisionCapture":
        if self.min_agree > self.frames:
            raise ValueError(f"min_agree ({self.min_agree}) cannot exceed frames ({self.frames})")
        return self


class PlateCameraConfig(DeviceBase):
    """A plate (ANPR) camera: pushes its own results, or is read by the edge's vision pipeline."""

    type: Literal["plate_camera"] = Field(description="Device type: plate camera.")
    protocol: Literal["hikvision-isapi", "dahua-itsapi", "frigate-mqtt", "vision"] = Field(
        description="How results arrive: Hikvision ISAPI ANPR push, Dahua ITSAPI push, Frigate `lpr` over MQTT, "
        "or `vision` (the edge reads plates itself from `stream_url`)."
    )
    listen_path: str | None = Field(
        None,
        pattern=r"^/[A-Za-z0-9/_-]*$",
        description="HTTP path the camera posts to, on the agent's device receiver (push protocols).",
    )
    mqtt_topic: str | None = Field(None, description="Frigate: topic carrying this camera's events.")
    stream_url: str | None = Field(
        None, description="RTSP/HTTP stream or snapshot URL (vision protocol, evidence)."
    )
    min_confidence: float = Field(
        0.85, ge=0, le=1, description="Reads below this confidence count as unreadable (rule M1)."
    )
    vision: VisionCapture = Field(
        default_factory=VisionCapture,
        description="`vision` protocol: how frames are taken and how many must agree.",
    )
    dedupe_window_s: float = Field(
        5.0,
        ge=0,
        le=120,
        description="The same plate from this camera within this window is one sighting (cameras re-post and "
        "re-trigger); a re-post of the same event is always dropped.",
    )
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://",
        description="Frigate: the broker Frigate publishes to (`mqtt://host:port`, optionally `user:pass@`).",
    )
    frigate_camera: str | None = Field(
        None,
        description="Frigate: only events of this Frigate camera name; None takes every event on the topic.",
    )

    @model_validator(mode="after")
    def _endpoint_for_protocol(self) -> "PlateCameraConfig":
        if self.protocol in ("hikvision-isapi", "dahua-itsapi") and not self.listen_path:
            raise ValueError(f"listen_path is required for protocol {self.protocol!r}")
        if self.protocol == "frigate-mqtt" and not self.mqtt_topic:
            raise ValueError("mqtt_topic is required for protocol 'frigate-mqtt'")
        if self.protocol == "vision" and not self.stream_url:
            raise ValueError("stream_url is required for protocol 'vision'")
        return self


class ContainerCameraConfig(DeviceBase):
    """A container-number camera looking at the front or back box."""

    type: Literal["container_camera"] = Field(description="Device type: container-number camera.")
    position: Literal["front", "back"] = Field(description="Which box it reads.")
    protocol: Literal["http-push", "vision"] = Field(
        description="`http-push`: the camera posts its reading; `vision`: the edge reads the number from `stream_url`."
    )
    listen_path: str | None = Field(
        None, pattern=r"^/[A-Za-z0-9/_-]*$", description="HTTP path for `http-push`."
    )
    stream_url: str | None = Field(None, description="Stream or snapshot URL for `vision`.")
    min_confidence: float = Field(
        0.80, ge=0, le=1, description="Reads below this confidence count as unreadable (rule M2)."
    )
    vision: VisionCapture = Field(
        default_factory=VisionCapture,
        description="`vision` protocol: how frames are taken and how many must agree.",
    )
    dedupe_window_s: float = Field(
        5.0, ge=0, le=120, description="The same number from this camera within this window is one sighting."
    )

    @model_validator(mode="after")
    def _endpoint_for_protocol(self) -> "ContainerCameraConfig":
        if self.protocol == "http-push" and not self.listen_path:
            raise ValueError("listen_path is required for protocol 'http-push'")
        if self.protocol == "vision" and not self.stream_url:
            raise ValueError("stream_url is required for protocol 'vision'")
        return self


class LedBoardConfig(DeviceBase):
    """The lane's LED text board."""

    type: Literal["led_board"] = Field(description="Device type: LED text board.")
    serial: SerialLink = Field(description="Serial line (or socket:// URL) of the board controller.")
    protocol: Literal["efence-text"] = Field(
        "efence-text", description="Text protocol of the board controller (see docs/PROTOCOL_LED.md)."
    )
    encoding: Literal["gb18030", "utf-8"] = Field("gb18030", description="Character encoding of the text.")
    lines: int = Field(2, ge=1, le=8, description="Text lines on the board.")


Device = Annotated[
    IoBoardConfig
    | WeighbridgeConfig
    | RfidReaderConfig
    | PlateCameraConfig
    | ContainerCameraConfig
    | LedBoardConfig,
    Field(discriminator="type"),
]

DEVICE_TYPES: tuple[str, ...] = (
    "io_board",
    "weighbridge",
    "rfid_reader",
    "plate_camera",
    "container_camera",
    "led_board",
)
