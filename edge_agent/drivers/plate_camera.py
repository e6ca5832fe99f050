"""Plate (ANPR) cameras that push their own results: Hikvision ISAPI, Dahua ITSAPI, Frigate `lpr` over MQTT.

Sans-I/O parsers turn one push into a `PlateRead`, an `Ignored` (heartbeat, other event type: answer
200, emit nothing) or a `PushRejected` (malformed: answer 400 with the reason). They never raise, for
any input — the hypothesis tests feed them garbage. The driver then:

* normalises the plate to GA 36-2018 form (`edge_agent.plates`): spaces, middle dots, hyphens and
  full-width letters removed; "no plate" words and anything not shaped like a Chinese plate → `None`;
* counts a read below `min_confidence` as unreadable (`plate=None`, the confidence kept) — rule M1;
* drops repeats: the same source event (Hikvision/Dahua re-post the same alarm when unanswered, key =
  channel + event time + plate) always, and the same plate within `dedupe_window_s`;
* keeps the pictures (`licensePlatePicture`, `detectionPicture`, Dahua `normal`/`cutout`) in the
  sighting's `images` as evidence, and emits a `PlateSighting` — *before* the HTTP answer is sent.

Protocols (PROTOCOLS.md §6): `hikvision-isapi` — multipart/form-data with an `anpr.xml` part (or a JSON
part, or a bare XML/JSON body) and JPEG parts; `dahua-itsapi` — JSON `Picture{Plate, SnapInfo,
NormalPic{Content base64}}`, answered `{"Result": true}` (also for its `KeepAlive`); `frigate-mqtt` —
the driver subscribes to `mqtt_topic` on `mqtt_url` and takes `tracked_object_update` messages of
`type: lpr` and `frigate/events` messages whose `after` carries `recognized_license_plate` (Frigate
sends no picture over MQTT, so those sightings have no images); `vision` — the edge reads the plate
itself from `stream_url` when the lane's arming loop triggers (`edge_agent.drivers.vision_camera`): the
agreed read, or an unreadable one with the frame as evidence, goes through the same `accept` path.

HTTP push drivers are mounted on `edge_agent.device_receiver.DeviceReceiver` by their `listen_path`.
"""

import asyncio
import base64
import binascii
import email.parser
import email.policy
import email.utils
import json
import logging
import math
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edge_agent.device_receiver import PushReply
from edge_agent.drivers.base import Driver, Emit, supervise
from edge_agent.drivers.registry import register
from edge_agent.drivers.vision_camera import VisionResult, VisionTriggered
from edge_agent.observations import PlateSighting
from edge_agent.plates import clean_plate_text, normalise_plate
from firmware_configs.devices import PlateCameraConfig


# --------------------------------------------------------------------------- parse results
@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate result as the camera reported it (not yet normalised or thresholded)."""

    plate_text: str | None
    confidence: float
    event_key: str
    images: dict[str, bytes] = field(default_factory=dict, repr=False)
    plate_color: str | None = None
    event_time: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message that carries no plate (heartbeat, other event type, other camera)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PushRejected:
    """A malformed push; `reason` goes back to the device in the 400 and into the log."""

    reason: str


ParseResult = PlateRead | Ignored | PushRejected


def _confidence(value: Any) -> float | None:
    """0–1 or 0–100 (Hikvision `confidenceLevel`) to 0–1; None if not a number in range."""
    try:
        c = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(c) or c < 0 or c > 100:
        return None
    return c / 100 if c > 1 else c


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value).strip()
    return None


# --------------------------------------------------------------------------- Hikvision ISAPI
def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml_to_dict(element: ET.Element) -> dict[str, Any]:
    """Namespace-free nested dict of an ISAPI alert (the JSON variant has the same shape)."""
    out: dict[str, Any] = {}
    for child in element:
        key = _local(child.tag)
        out[key] = _xml_to_dict(child) if len(child) else (child.text or "").strip()
    return out


def _parse_isapi_xml(data: bytes) -> dict[str, Any] | PushRejected:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return PushRejected("XML with a DTD or entities is not accepted")
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError: unknown declared encoding
        return PushRejected(f"anpr.xml is not well-formed XML ({exc})")
    if _local(root.tag) != "EventNotificationAlert":
        return PushRejected(f"XML root is {_local(root.tag)!r}, expected EventNotificationAlert")
    return _xml_to_dict(root)


def _parse_isapi_json(data: bytes) -> dict[str, Any] | PushRejected:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return PushRejected(f"JSON body does not parse ({exc})")
    if isinstance(doc, dict) and isinstance(doc.get("EventNotificationAlert"), dict):
        doc = doc["EventNotificationAlert"]
    if not isinstance(doc, dict):
        return PushRejected("JSON alert is not an object")
    return doc


def split_multipart(content_type: str, body: bytes) -> list[tuple[str, str, bytes]] | PushRejected:
    """(name, content type, payload) of each form-data part, parsed with the standard library."""
    if "boundary=" not in content_type:
        return PushRejected("multipart body without a boundary")
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    try:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)
    except Exception as exc:  # noqa: BLE001 — the email parser is lenient, but never trust it with garbage
        return PushRejected(f"multipart body does not parse ({type(exc).__name__})")
    if not message.is_multipart():
        return PushRejected("multipart body has no parts")
    parts = []
    for part in message.get_payload():
        if not hasattr(part, "get_param"):
            continue
        name = part.get_param("name", header="content-disposition") or part.get_filename() or ""
        if isinstance(name, tuple):  # RFC 2231 encoded parameter
            name = email.utils.collapse_rfc2231_value(name)
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            parts.append((str(name), part.get_content_type(), payload))
    if not parts:
        return PushRejected("multipart body has no parts")
    return parts


def parse_hikvision(content_type: str, body: bytes) -> ParseResult:
    """One Hikvision ISAPI ANPR push: multipart (`anpr.xml` + JPEGs), or a bare XML or JSON alert."""
    ctype = content_type.split(";")[0].strip().lower()
    images: dict[str, bytes] = {}
    if ctype.startswith("multipart/"):
        parts = split_multipart(content_type, body)
        if isinstance(parts, PushRejected):
            return parts
        alert_part = None
        for name, part_type, payload in parts:
            lname = name.lower()
            if lname.endswith((".xml", ".json")) or part_type in (
                "text/xml",
                "application/xml",
                "application/json",
            ):
                alert_part = alert_part or (lname, part_type, payload)
            elif part_type.startswith("image/") or lname.endswith((".jpg", ".jpeg")):
                images[name.rsplit(".", 1)[0] or f"picture{len(images)}"] = payload
        if alert_part is None:
            return PushRejected("multipart push without an anpr.xml (or JSON) part")
        lname, part_type, payload = alert_part
        is_json = lname.endswith(".json") or part_type == "application/json"
        doc = _parse_isapi_json(payload) if is_json else _parse_isapi_xml(payload)
    elif "json" in ctype or body.lstrip()[:1] == b"{":
        doc = _parse_isapi_json(body)
    elif "xml" in ctype or body.lstrip()[:1] == b"<":
        doc = _parse_isapi_xml(body)
    else:
        return PushRejected(f"unsupported content type {content_type!r}")
    if isinstance(doc, PushRejected):
        return doc
    return _hikvision_alert(doc, images)


def _hikvision_alert(doc: dict[str, Any], images: dict[str, bytes]) -> ParseResult:
    event_type = _text(doc.get("eventType"))
    if event_type is None:
        return PushRejected("alert without eventType")
    if event_type.upper() != "ANPR":
        return Ignored(f"event type {event_type!r}")  # heartbeats (videoloss) and other alarms
    anpr = doc.get("ANPR")
    if not isinstance(anpr, dict):
        return PushRejected("ANPR alert without an <ANPR> element")
    if "licensePlate" not in anpr:
        return PushRejected("ANPR alert without licensePlate")
    plate = _text(anpr.get("licensePlate"))
    if plate is None:
        return PushRejected("licensePlate is not text")
    confidence = _confidence(anpr.get("confidenceLevel"))
    if confidence is None:
        believe = _text(anpr.get("plateCharBelieve"))
        try:  # per-character confidences: the weakest character bounds the read
            confidence = min(int(x) for x in believe.split(",")) / 100 if believe else None
        except ValueError:
            confidence = None
        if confidence is None or not 0 <= confidence <= 1:
            return PushRejected("ANPR alert without a usable confidenceLevel")
    when = _text(doc.get("dateTime")) or ""
    channel = _text(doc.get("channelID")) or _text(doc.get("dynChannelID")) or ""
    return PlateRead(
        plate_text=plate,
        confidence=confidence,
        event_key=f"hik|{channel}|{when}|{plate}",
        images=images,
        plate_color=_text(anpr.get("plateColor")) or None,
        event_time=when or None,
    )


# --------------------------------------------------------------------------- Dahua ITSAPI
def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_dahua(body: bytes) -> ParseResult:
    """One Dahua ITSAPI `TollgateInfo` JSON push."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return PushRejected(f"JSON body does not parse ({exc})")
    if not isinstance(doc, dict) or not isinstance(doc.get("Picture"), dict):
        return PushRejected("TollgateInfo without a Picture object")
    picture = doc["Picture"]
    plate_info = picture.get("Plate")
    if not isinstance(plate_info, dict):
        return PushRejected("TollgateInfo without Picture.Plate")
    plate = plate_info.get("PlateNumber", "")
    if plate is not None and not isinstance(plate, str):
        return PushRejected("Picture.Plate.PlateNumber is not text")
    if plate_info.get("IsExist") is False:
        plate = None
    confidence = _confidence(plate_info.get("Confidence"))
    if confidence is None:
        return PushRejected("Picture.Plate.Confidence missing or out of range")
    snap = picture.get("SnapInfo") if isinstance(picture.get("SnapInfo"), dict) else {}
    when = _text(snap.get("AccurateTime")) or _text(snap.get("SnapTime")) or ""
    channel = _text(plate_info.get("Channel")) or ""
    images: dict[str, bytes] = {}
    for key, name in (("NormalPic", "normal"), ("CutoutPic", "cutout"), ("VehiclePic", "vehicle")):
        pic = picture.get(key)
        if isinstance(pic, dict) and "Content" in pic:
            content = _b64(pic["Content"])
            if content is None:
                return PushRejected(f"Picture.{key}.Content is not base64")
            images[name] = content
    return PlateRead(
        plate_text=plate.strip() if plate else None,
        confidence=confidence,
        event_key=f"dahua|{channel}|{when}|{plate}",
        images=images,
        plate_color=_text(plate_info.get("PlateColor")) or None,
        event_time=when or None,
    )


# --------------------------------------------------------------------------- Frigate
def parse_frigate(payload: bytes, *, camera: str | None = None) -> ParseResult:
    """One Frigate MQTT message: a `tracked_object_update` of type `lpr`, or an `events` update."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return PushRejected(f"message does not parse as JSON ({exc})")
    if not isinstance(doc, dict):
        return PushRejected("message is not a JSON object")
    if doc.get("type") == "lpr":
        obj, plate, score = doc, doc.get("plate"), doc.get("score")
        event_id = _text(doc.get("id")) or ""
    elif isinstance(doc.get("after"), dict):
        obj = doc["after"]
        plate = obj.get("recognized_license_plate")
        score = obj.get("recognized_license_plate_score")
        if isinstance(plate, list) and len(plate) == 2:  # some versions send [plate, score]
            plate, score = plate
        event_id = _text(obj.get("id")) or ""
        if plate in (None, ""):
            return Ignored("event without a recognised plate")
    elif isinstance(doc.get("type"), str):
        return Ignored(f"update type {doc['type']!r}")
    else:
        return PushRejected("neither an lpr update nor an event")
    if camera is not None and obj.get("camera") != camera:
        return Ignored(f"other camera {obj.get('camera')!r}")
    if not isinstance(plate, str):
        return PushRejected("plate is not text")
    confidence = _confidence(score)
    if confidence is None:
        return PushRejected("plate score missing or out of range")
    return PlateRead(plate_text=plate, confidence=confidence, event_key=f"frigate|{event_id}|{plate}")


# --------------------------------------------------------------------------- de-duplication
class Deduper:
    """Drops re-posted events (by key, remembered for the last `max_keys`) and a value repeated within a window.

    `check` has no side effect; `remember` is called only once the sighting is stored, so a push whose
    storing failed (answered 500) is not mistaken for a duplicate when the camera re-posts it.
    """

    def __init__(self, window_s: float, *, max_keys: int = 1024):
        self.window_s = window_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._last_value: dict[str, float] = {}

    def check(self, event_key: str, value: str | None, now: float) -> bool:
        """True if this is a re-post of a known event, or the same value within the window."""
        if event_key in self._keys:
            return True
        last = self._last_value.get(value) if value is not None else None
        return last is not None and now - last < self.window_s

    def remember(self, event_key: str, value: str | None, now: float) -> None:
        self._keys[event_key] = None
        self._keys.move_to_end(event_key)
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        if value is not None:  # unreadables are de-duplicated by event key only
            self._last_value[value] = now  # a vehicle re-triggering the camera extends the window
            if len(self._last_value) > self.max_keys:
                cutoff = now - self.window_s
                self._last_value = {v: t for v, t in self._last_value.items() if t >= cutoff}


# --------------------------------------------------------------------------- driver
@register("plate_camera")
class PlateCameraDriver(VisionTriggered, Driver):
    """A plate camera: HTTP push (Hikvision, Dahua), MQTT (Frigate), or a placeholder for `vision`."""

    config_type = PlateCameraConfig
    config: PlateCameraConfig

    vision_kind = "plate"

    def __init__(
        self,
        config: PlateCameraConfig,
        emit: Emit,
        *,
        lane: str = "",
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(config, emit, lane=lane, log=log)
        self.clock = clock
        self.subscribed = asyncio.Event()  # Frigate: set once the subscription is active
        self.dedupe = Deduper(config.dedupe_window_s)
        self.counters = self.health.counters
        self.counters.update({"sightings": 0, "duplicates": 0, "ignored": 0, "unreadable": 0})

    @property
    def listen_path(self) -> str | None:
        """The receiver path, for HTTP push protocols only."""
        if self.config.protocol in ("hikvision-isapi", "dahua-itsapi"):
            return self.config.listen_path
        return None

    async def run(self) -> None:
        if self.config.protocol == "frigate-mqtt" and self.config.enabled:
            await supervise(
                self._mqtt_session,
                self.health,
                self.log,
                max_backoff_s=self.config.reconnect_max_s,
                stopping=lambda: self.stopping,
            )
        if self.config.protocol == "vision" and self.config.enabled:
            await self.vision.run()
        await asyncio.Event().wait()  # push cameras: the receiver calls handle_push; nothing to poll

    # ------------------------------------------------------------------ vision
    def _vision_result(self, result: VisionResult) -> None:
        self.accept(
            PlateRead(
                plate_text=result.text,
                confidence=result.confidence,
                event_key=f"vision|{self.config.id}|{id(self.vision):x}|{result.seq}",
                images=result.images,
                plate_color=result.colour,
            ),
            camera_answered=result.frames > 0,
        )

    # ------------------------------------------------------------------ HTTP push
    def handle_push(self, path: str, content_type: str, body: bytes) -> PushReply:
        """Parse one push, emit the sighting (store first), then say what to answer."""
        dahua = self.config.protocol == "dahua-itsapi"
        if dahua and path.rstrip("/").endswith("/KeepAlive"):
            self.health.ok(self.clock())
            return PushReply.json(200, {"Result": True})
        result = parse_dahua(body) if dahua else parse_hikvision(content_type, body)
        outcome = self.accept(result)
        if isinstance(result, PushRejected):
            return PushReply.json(
                400, {"Result": False, "error": result.reason} if dahua else {"error": result.reason}
            )
        if dahua:
            return PushReply.json(200, {"Result": True})
        return PushReply.json(200, {"result": outcome})

    # ------------------------------------------------------------------ MQTT
    async def _mqtt_session(self) -> None:
        import aiomqtt

        url = urlsplit(self.config.mqtt_url)
        async with aiomqtt.Client(
            url.hostname or "127.0.0.1",
            port=url.port or (8883 if url.scheme == "mqtts" else 1883),
            username=url.username,
            password=url.password,
            identifier=f"efence-{self.lane or 'lane'}-{self.config.id}-{id(self) & 0xFFFF:x}",
        ) as client:
            await client.subscribe(self.config.mqtt_topic, qos=1)
            self.log.info(
                "plate camera %s: subscribed to %s on %s",
                self.config.id,
                self.config.mqtt_topic,
                url.hostname,
            )
            self.subscribed.set()
            try:
                async for message in client.messages:
                    payload = (
                        message.payload
                        if isinstance(message.payload, bytes)
                        else str(message.payload).encode()
                    )
                    self.accept(parse_frigate(payload, camera=self.config.frigate_camera))
            finally:
                self.subscribed.clear()

    # ------------------------------------------------------------------ common
    def accept(self, result: ParseResult, *, camera_answered: bool = True) -> str:
        """Count, normalise, de-duplicate and emit one parse result; returns what happened.

        `camera_answered=False`: a `vision` read that got no frame at all — still emitted (unreadable,
        the lane needs to know), but it is no sign of life from the camera.
        """
        now = self.clock()
        if not self.health.enabled:  # switched off by the operator: answered, never emitted
            self.counters["ignored"] += 1
            return "disabled"
        if isinstance(result, PushRejected):
            self.health.failed(result.reason, bad_frame=True)
            self.log.warning("plate camera %s: rejected push: %s", self.config.id, result.reason)
            return "rejected"
        if camera_answered:
            self.health.ok(now)
        if isinstance(result, Ignored):
            self.counters["ignored"] += 1
            return "ignored"
        plate = normalise_plate(result.plate_text)
        if plate is None and result.plate_text and clean_plate_text(result.plate_text):
            self.log.info(
                "plate camera %s: %r is not a plate (GA 36-2018): unreadable",
                self.config.id,
                result.plate_text,
            )
        if plate is not None and result.confidence < self.config.min_confidence:
            self.log.info(
                "plate camera %s: %s at confidence %.2f < %.2f: unreadable",
                self.config.id,
                plate,
                result.confidence,
                self.config.min_confidence,
            )
            plate = None
        if self.dedupe.check(result.event_key, plate, now):
            self.dedupe.remember(result.event_key, plate, now)
            self.counters["duplicates"] += 1
            return "duplicate"
        if plate is None:
            self.counters["unreadable"] += 1
        self.counters["sightings"] += 1
        self.emit(
            PlateSighting(
                device_id=self.config.id,
                plate=plate,
                confidence=result.confidence,
                at=now,
                plate_color=result.plate_color,
                images=dict(result.images),
                source_event_id=result.event_key,
            )
        )
        self.dedupe.remember(result.event_key, plate, now)  # only once stored
        return "accepted"
