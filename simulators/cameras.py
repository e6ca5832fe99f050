"""Plate and container camera simulators that push what a real camera would, when a truck arrives.

They listen to `scene.on_arrival`; `delay_s` after a vehicle drives on they push, in the camera's own
protocol, what the camera "read" (`VehicleSpec.camera_plate`, `plate_confidence`, `containers`):

* `hikvision-isapi` — multipart/form-data POST to `target_url` with `anpr.xml` (an ISAPI
  `EventNotificationAlert`) and two generated JPEGs (`licensePlatePicture.jpg`, `detectionPicture.jpg`);
* `dahua-itsapi` — JSON POST to `target_url + "/NotificationInfo/TollgateInfo"` (and, with
  `keepalive_s`, heartbeats to `.../NotificationInfo/KeepAlive`), re-posting until `{"Result": true}`;
* `frigate-mqtt` — a `tracked_object_update` message of `type: lpr` published on `config.mqtt_topic`
  at `config.mqtt_url` (Frigate camera name `config.frigate_camera` or the device id);
* container `http-push` — efence container push v1 (see `edge_agent.drivers.container_camera`).

API (the demo builds one per configured camera of every lane)::

    cam = PlateCameraSimulator(config, scene, "http://127.0.0.1:8081" + config.listen_path)
    await cam.start()                      # subscribes to the scene (and connects MQTT for Frigate)
    status = await cam.push(vehicle)       # or push by hand; returns the HTTP status (0 for MQTT)
    cam.faults.misread = True              # one wrong character; low_confidence, no_plate, malformed, repeat
    await cam.stop()

    box = ContainerCameraSimulator(config, scene, "http://127.0.0.1:8081" + config.listen_path)

For cameras the edge reads itself (`protocol: vision`, fence cameras), `FrameHttpServer` serves frames
the way a plain IP camera does (`/snapshot.jpg`, `/video.mjpg`), from `PhotoFeed` (real photographs) or
`simulators.perimeter_video.VideoFeed` (synthetic fence video).

With `scene=None` a simulator runs its own scene with a truck every 20 s (standalone mode for a field
engineer pointing it at an agent). The payload builders (`hikvision_anpr_xml`, `hikvision_multipart`,
`dahua_tollgate_json`, `frigate_lpr_json`, `container_push_json`, `make_jpeg`) are plain functions,
shared with the tests and the benchmark.
"""

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from firmware_configs.devices import ContainerCameraConfig, PlateCameraConfig
from simulators.io_board import TruckFeeder
from simulators.scene import LaneScene, VehicleSpec

log = logging.getLogger("efence.sim.cameras")
CST = timezone(timedelta(hours=8))


@dataclass
class CameraFaults:
    """Faults switchable while the simulator runs."""

    misread: bool = False  # one character wrong (a container misread then fails its check digit)
    low_confidence: bool = False  # confidence 0.40
    no_plate: bool = False  # the camera saw the vehicle but found no plate / number
    malformed: bool = False  # a payload the receiver must reject
    repeat: int = 0  # re-post the same event this many extra times (cameras do when unanswered)


# --------------------------------------------------------------------------- payloads
_JPEG_CACHE: dict[str, bytes] = {}


def make_jpeg(text: str, *, width: int = 240, height: int = 80) -> bytes:
    """A small JPEG showing `text` (ASCII part only: OpenCV's Hershey fonts have no CJK)."""
    if text in _JPEG_CACHE:
        return _JPEG_CACHE[text]
    import cv2
    import numpy as np

    image = np.full((height, width, 3), (180, 60, 20), np.uint8)  # blue plate
    ascii_text = "".join(c for c in text if c.isascii()) or "?"
    cv2.putText(image, ascii_text, (10, height * 2 // 3), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid array
        raise RuntimeError("JPEG encoding failed")
    if len(_JPEG_CACHE) < 512:
        _JPEG_CACHE[text] = encoded.tobytes()
    return encoded.tobytes()


def hikvision_anpr_xml(
    plate: str,
    confidence: float,
    *,
    when: datetime | None = None,
    channel: int = 1,
    post_count: int = 1,
    ip: str = "192.168.1.64",
    plate_color: str = "blue",
) -> bytes:
    """An ISAPI `EventNotificationAlert` for one ANPR event (PROTOCOLS.md §6.1 fields)."""
    when = when or datetime.now(CST)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">
<ipAddress>{ip}</ipAddress>
<portNo>80</portNo>
<protocol>HTTP</protocol>
<macAddress>44:19:b6:00:00:01</macAddress>
<channelID>{channel}</channelID>
<dateTime>{when.isoformat(timespec="milliseconds")}</dateTime>
<activePostCount>{post_count}</activePostCount>
<eventType>ANPR</eventType>
<eventState>active</eventState>
<eventDescription>ANPR</eventDescription>
<channelName>Camera 01</channelName>
<ANPR>
<country>CHN</country>
<licensePlate>{plate}</licensePlate>
<line>1</line>
<direction>forward</direction>
<confidenceLevel>{round(confidence * 100)}</confidenceLevel>
<plateType>unknown</plateType>
<plateColor>{plate_color}</plateColor>
<licenseBright>0</licenseBright>
<vehicleType>truck</vehicleType>
<originalLicensePlate>{plate}</originalLicensePlate>
<vehicleListName>otherList</vehicleListName>
</ANPR>
</EventNotificationAlert>
""".encode()


def hikvision_multipart(
    xml: bytes, images: dict[str, bytes], *, xml_name: str = "anpr.xml", boundary: str | None = None
) -> tuple[str, bytes]:
    """(content type, body) of a multipart/form-data ANPR push."""
    boundary = boundary or f"boundary{uuid.uuid4().hex}"
    out = bytearray()
    parts = [(xml_name, "application/xml", xml)] + [(n, "image/jpeg", d) for n, d in images.items()]
    for name, ctype, data in parts:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'.encode()
        )
        out += f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def dahua_tollgate_json(
    plate: str,
    confidence: float,
    *,
    when: datetime | None = None,
    channel: int = 0,
    jpeg: bytes | None = None,
) -> bytes:
    """A Dahua ITSAPI `TollgateInfo` push (PROTOCOLS.md §6.2 fields)."""
    when = when or datetime.now(CST)
    picture: dict = {
        "Plate": {
            "PlateNumber": plate,
            "PlateColor": "Blue",
            "PlateType": "Normal",
            "Confidence": round(confidence * 100),
            "BoundingBox": [100, 200, 300, 260],
            "Channel": channel,
            "IsExist": bool(plate),
            "Region": "CHN",
            "UploadNum": 1,
        },
        "Vehicle": {"VehicleColor": "White", "VehicleType": "Truck", "VehicleSign": "", "VehicleSeries": ""},
        "SnapInfo": {
            "AccurateTime": when.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "Direction": "Approach",
            "AllowUser": False,
            "BlockUser": False,
            "TimeZone": 8,
        },
    }
    if jpeg is not None:
        picture["NormalPic"] = {"Content": base64.b64encode(jpeg).decode(), "PicName": "normal.jpg"}
    return json.dumps({"Picture": picture}, ensure_ascii=False).encode()


def frigate_lpr_json(plate: str, score: float, *, camera: str, event_id: str | None = None) -> bytes:
    """A Frigate `tracked_object_update` of type `lpr` (PROTOCOLS.md §6.3)."""
    now = time.time()
    return json.dumps(
        {
            "type": "lpr",
            "id": event_id or f"{now:.6f}-{uuid.uuid4().hex[:6]}",
            "name": None,
            "plate": plate,
            "score": round(score, 6),
            "camera": camera,
            "timestamp": now,
        },
        ensure_ascii=False,
    ).encode()


def container_push_json(
    number: str | None,
    confidence: float,
    *,
    position: str,
    event_id: str | None = None,
    jpeg: bytes | None = None,
) -> bytes:
    """An efence container push v1 body."""
    doc: dict = {
        "event_id": event_id or uuid.uuid4().hex,
        "time": datetime.now(CST).isoformat(timespec="milliseconds"),
        "position": position,
        "number": number,
        "confidence": round(confidence, 3),
    }
    if jpeg is not None:
        doc["image"] = base64.b64encode(jpeg).decode()
    return json.dumps(doc).encode()


def _misread(text: str) -> str:
    """Change the last digit: plates stay well-formed, container numbers fail the check digit."""
    for i in range(len(text) - 1, -1, -1):
        if text[i].isdigit():
            return text[:i] + str((int(text[i]) + 3) % 10) + text[i + 1 :]
    return text[:-1] + ("A" if text[-1] != "A" else "B")


# --------------------------------------------------------------------------- simulators
class _CameraSimulator:
    """Scene subscription, standalone scene, HTTP client and pending-push bookkeeping."""

    def __init__(
        self, scene: LaneScene | None, target_url: str | None, faults: CameraFaults | None, delay_s: float
    ):
        self.feeder: TruckFeeder | None = None
        if scene is None:
            scene = LaneScene()
            self.feeder = TruckFeeder(scene)
        self.scene = scene
        self.target_url = target_url
        self.faults = faults or CameraFaults()
        self.delay_s = delay_s
        self.sent = 0
        self.statuses: list[int] = []
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()
        self._scene_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=5.0)
        self.scene.on_arrival.append(self._on_arrival)
        if self.feeder is not None:
            self._scene_task = asyncio.create_task(self._advance_forever())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.scene.on_arrival.remove(self._on_arrival)
        tasks = [*self._tasks, *([self._scene_task] if self._scene_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _advance_forever(self) -> None:
        while True:
            now = time.monotonic()
            self.feeder.tick(now)
            self.scene.advance(now)
            if self.scene.phase.value == "waiting" and self.scene.vehicle is not None:
                self.scene.barrier.command(True)  # standalone: nobody else opens, so let trucks through
            elif self.scene.phase.value == "empty":
                self.scene.barrier.command(False)
            await asyncio.sleep(0.05)

    def _on_arrival(self, vehicle: VehicleSpec, now: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # scene advanced outside an event loop (pure tests): nothing to push
        task = loop.create_task(self._push_later(vehicle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_later(self, vehicle: VehicleSpec) -> None:
        await asyncio.sleep(self.delay_s)
        try:
            await self.push(vehicle)
        except Exception as exc:  # noqa: BLE001 — a simulator keeps going when the agent is down
            log.warning("camera simulator: push failed: %s", exc)

    async def push(self, vehicle: VehicleSpec) -> int | None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _post(self, url: str, content: bytes, content_type: str) -> int:
        if self._http is None:
            raise RuntimeError("simulator not started")
        status = 0
        for _ in range(1 + self.faults.repeat):
            response = await self._http.post(url, content=content, headers={"Content-Type": content_type})
            status = response.status_code
            self.sent += 1
            self.statuses.append(status)
        return status


class PlateCameraSimulator(_CameraSimulator):
    """A plate camera of `config.protocol`; see the module docstring."""

    def __init__(
        self,
        config: PlateCameraConfig,
        scene: LaneScene | None = None,
        target_url: str | None = None,
        *,
        faults: CameraFaults | None = None,
        delay_s: float = 0.3,
        keepalive_s: float = 0.0,
    ):
        super().__init__(scene, target_url, faults, delay_s)
        self.config = config
        self.keepalive_s = keepalive_s
        self._mqtt = None
        self._stack = contextlib.AsyncExitStack()
        self._rng = random.Random(config.id)
        if config.protocol in ("hikvision-isapi", "dahua-itsapi") and not target_url:
            raise ValueError(f"plate camera {config.id}: {config.protocol} needs a target_url")
        if config.protocol == "vision":
            raise ValueError(f"plate camera {config.id}: protocol 'vision' pushes nothing to simulate")

    async def start(self) -> None:
        await super().start()
        if self.config.protocol == "frigate-mqtt":
            from urllib.parse import urlsplit

            import aiomqtt

            url = urlsplit(self.config.mqtt_url)
            self._mqtt = await self._stack.enter_async_context(
                aiomqtt.Client(
                    url.hostname or "127.0.0.1",
                    port=url.port or 1883,
                    username=url.username,
                    password=url.password,
                )
            )
        if self.config.protocol == "dahua-itsapi" and self.keepalive_s > 0:
            task = asyncio.create_task(self._keepalive())
            self._tasks.add(task)

    async def stop(self) -> None:
        await super().stop()
        await self._stack.aclose()
        self._mqtt = None

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            with contextlib.suppress(httpx.HTTPError):
                await self._post(
                    self.target_url.rstrip("/") + "/NotificationInfo/KeepAlive", b"{}", "application/json"
                )

    def reading(self, vehicle: VehicleSpec) -> tuple[str, float]:
        """(plate text, confidence) this camera reports for the vehicle, after faults."""
        plate, confidence = vehicle.camera_plate, vehicle.plate_confidence
        if self.faults.misread:
            plate = _misread(plate)
        if self.faults.low_confidence:
            confidence = 0.40
        if self.faults.no_plate:
            plate = ""
        return plate, confidence

    async def push(self, vehicle: VehicleSpec) -> int | None:
        """Push one reading of `vehicle` now; returns the HTTP status (0 for MQTT)."""
        plate, confidence = self.reading(vehicle)
        protocol = self.config.protocol
        if protocol == "hikvision-isapi":
            if self.faults.malformed:
                content_type, body = hikvision_multipart(b"<EventNotificationAlert><eventType>ANPR", {})
            else:
                jpeg = make_jpeg(plate or "NO PLATE")
                xml = hikvision_anpr_xml(plate or "unknown", confidence if plate else 0.0)
                content_type, body = hikvision_multipart(
                    xml, {"licensePlatePicture.jpg": jpeg, "detectionPicture.jpg": jpeg}
                )
            return await self._post(self.target_url, body, content_type)
        if protocol == "dahua-itsapi":
            url = self.target_url.rstrip("/") + "/NotificationInfo/TollgateInfo"
            body = (
                b'{"Picture": '
                if self.faults.malformed
                else dahua_tollgate_json(plate, confidence, jpeg=make_jpeg(plate or "NO PLATE"))
            )
            return await self._post(url, body, "application/json")
        # frigate-mqtt
        if self._mqtt is None:
            raise RuntimeError("simulator not started")
        camera = self.config.frigate_camera or self.config.id
        body = b"not json" if self.faults.malformed else frigate_lpr_json(plate, confidence, camera=camera)
        for _ in range(1 + self.faults.repeat):
            await self._mqtt.publish(self.config.mqtt_topic, body, qos=1)
            self.sent += 1
        return 0


class ContainerCameraSimulator(_CameraSimulator):
    """A container camera pushing efence container push v1 for the box at `config.position`."""

    def __init__(
        self,
        config: ContainerCameraConfig,
        scene: LaneScene | None = None,
        target_url: str | None = None,
        *,
        faults: CameraFaults | None = None,
        delay_s: float | None = None,
    ):
        if config.protocol != "http-push" or not target_url:
            raise ValueError(f"container camera {config.id}: only http-push with a target_url is simulated")
        super().__init__(
            scene,
            target_url,
            faults,
            delay_s if delay_s is not None else (0.6 if config.position == "front" else 1.2),
        )
        self.config = config

    def reading(self, vehicle: VehicleSpec) -> tuple[str | None, float] | None:
        """(number, confidence) this camera reports, or None when its box position is empty."""
        number = vehicle.containers[0 if self.config.position == "front" else 1]
        if number is None:
            return None
        confidence = 0.40 if self.faults.low_confidence else 0.95
        if self.faults.misread:
            number = _misread(number)
        if self.faults.no_plate:
            return None, 0.0
        return number, confidence

    async def push(self, vehicle: VehicleSpec) -> int | None:
        """Push this camera's reading of `vehicle`; None when there is no box at its position."""
        reading = self.reading(vehicle)
        if reading is None:
            return None
        number, confidence = reading
        if self.faults.malformed:
            body = b'{"number": 42, "confidence": "high"}'
        else:
            body = container_push_json(
                number, confidence, position=self.config.position, jpeg=make_jpeg(number or "NONE")
            )
        return await self._post(self.target_url, body, "application/json")


# --------------------------------------------------------------------------- IP cameras over HTTP
class FrameHttpServer:
    """A plain IP camera's HTTP interface, for `vision` cameras and the perimeter watch to read.

    `GET /snapshot.jpg` answers the current frame as one JPEG (what `source: snapshot` fetches);
    `GET /video.mjpg` streams `multipart/x-mixed-replace` MJPEG at `fps` (what `cv2.VideoCapture` reads
    for `source: stream`). `frame()` is called for every answer and returns JPEG bytes, or None for
    "no picture" (answered 503, like a camera whose sensor failed). The server runs in daemon threads
    (`http.server.ThreadingHTTPServer`), so a test's or the demo's event loop never serves it. Set
    `quiet = True` to make it answer nothing at all (a camera that hangs).
    """

    def __init__(self, frame: Callable[[], bytes | None], *, fps: float = 5.0, host: str = "127.0.0.1"):
        self.frame = frame
        self.fps = fps
        self.host = host
        self.port = 0
        self.quiet = False
        self.requests = 0
        self._server: Any = None
        self._thread: Any = None

    def start(self, port: int = 0) -> int:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — stdlib signature
                log.debug("frame server %s: " + format, outer.port, *args)

            def do_GET(self) -> None:  # noqa: N802 — stdlib naming
                outer.requests += 1
                if outer.quiet:
                    time.sleep(30)  # a hung camera: the client's timeout must save it
                    return
                path = self.path.split("?", 1)[0]
                if path.endswith(".mjpg"):
                    self._stream()
                elif path.endswith((".jpg", ".jpeg")):
                    data = outer.frame()
                    if data is None:
                        self.send_error(503, "no picture")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send_error(404, "try /snapshot.jpg or /video.mjpg")

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not outer.quiet and outer._server is not None:
                        data = outer.frame()
                        if data is not None:
                            self.wfile.write(
                                b"--frame\r\nContent-Type: image/jpeg\r\n"
                                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                                + data
                                + b"\r\n"
                            )
                            self.wfile.flush()
                        time.sleep(1.0 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer((self.host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"frames:{self.port}", daemon=True
        )
        self._thread.start()
        return self.port

    def url(self, path: str = "/snapshot.jpg") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class PhotoFeed:
    """Frames for a `FrameHttpServer` from real photographs (e.g. `../shared/data/plates`).

    `show(path)` puts a vehicle in front of the camera; `show(None)` an empty lane (503, no picture).
    The file's bytes are served as they are: the photos are JPEGs already.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._jpeg: bytes | None = None
        self.show(path)

    def show(self, path: str | Path | None) -> None:
        self._jpeg = Path(path).read_bytes() if path is not None else None

    def __call__(self) -> bytes | None:
        return self._jpeg
