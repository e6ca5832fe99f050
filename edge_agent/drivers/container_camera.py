"""Container-number cameras: an `http-push` JSON protocol of ours, and a `vision` placeholder.

Container OCR units differ per vendor, so the edge defines one simple push and the camera (or a small
adapter beside it) speaks it. **efence container push, version 1** — `POST <listen_path>`,
`Content-Type: application/json`::

    {
      "event_id":   "box-front-000123",        # optional; a re-post of the same id is dropped
      "time":       "2026-11-28T08:15:00+08:00", # optional; observation time, kept for the log
      "position":   "front",                   # optional; if given it must match the configured position
      "number":     "CSQU3054383",             # the number read; null or "" when none was found
      "confidence": 0.93,                      # 0..1 (0..100 also accepted)
      "image":      "<base64 JPEG>"            # optional evidence
    }

Answers: `200 {"ok": true, "number": <normalised or null>, "result": "accepted" | "duplicate"}`, or
`400 {"ok": false, "error": "<reason>"}` for a malformed push (counted in `frames_bad`, logged with the
device id). Spaces and hyphens in the number are tolerated (`CSQU 305438-3`). A number that fails the
ISO 6346 check digit, or is read below `min_confidence`, is reported as unreadable (`number=None`) —
never as a number. The same number from the same camera within `dedupe_window_s` is one sighting.

`vision` cameras are read by the edge itself from `stream_url` when the lane's arming loop triggers
(`edge_agent.drivers.vision_camera`); the agreed number — or an unreadable read with its frame as evidence
— goes through the same `accept` path, so a number failing ISO 6346 is never reported as a number.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.device_receiver import PushReply
from edge_agent.drivers.base import Driver, Emit
from edge_agent.drivers.plate_camera import Deduper, PushRejected, _b64, _confidence, _text
from edge_agent.drivers.registry import register
from edge_agent.drivers.vision_camera import VisionResult, VisionTriggered
from edge_agent.observations import ContainerSighting
from edge_agent.plates import normalise_container
from firmware_configs.devices import ContainerCameraConfig


@dataclass(frozen=True, slots=True)
class ContainerRead:
    """One container push as the camera sent it (number not yet checked)."""

    number_text: str | None
    confidence: float
    event_key: str | None
    position: str | None = None
    images: dict[str, bytes] = field(default_factory=dict, repr=False)


def parse_container_push(body: bytes) -> ContainerRead | PushRejected:
    """Parse one efence container push (v1). Never raises."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return PushRejected(f"body does not parse as JSON ({exc})")
    if not isinstance(doc, dict):
        return PushRejected("body is not a JSON object")
    if "number" not in doc:
        return PushRejected("missing 'number' (use null when no number was read)")
    number = doc["number"]
    if number is not None and not isinstance(number, str):
        return PushRejected("'number' must be a string or null")
    confidence = _confidence(doc.get("confidence"))
    if confidence is None:
        return PushRejected("'confidence' missing or not a number in 0..1 (or 0..100)")
    position = doc.get("position")
    if position is not None and position not in ("front", "back"):
        return PushRejected("'position' must be 'front' or 'back'")
    images: dict[str, bytes] = {}
    if doc.get("image") not in (None, ""):
        image = _b64(doc["image"])
        if image is None:
            return PushRejected("'image' is not base64")
        images["container"] = image
    event_id: Any = doc.get("event_id")
    key = _text(event_id) if event_id is not None else None
    if event_id is not None and key is None:
        return PushRejected("'event_id' must be a string or number")
    return ContainerRead(number or None, confidence, key, position, images)


@register("container_camera")
class ContainerCameraDriver(VisionTriggered, Driver):
    """A container camera pushing efence container push v1, or a placeholder for `vision`."""

    config_type = ContainerCameraConfig
    config: ContainerCameraConfig

    vision_kind = "container"

    def __init__(
        self,
        config: ContainerCameraConfig,
        emit: Emit,
        *,
        lane: str = "",
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(config, emit, lane=lane, log=log)
        self.clock = clock
        self.dedupe = Deduper(config.dedupe_window_s)
        self.counters = self.health.counters
        self.counters.update({"sightings": 0, "duplicates": 0, "unreadable": 0})
        self._seq = 0

    @property
    def listen_path(self) -> str | None:
        return self.config.listen_path if self.config.protocol == "http-push" else None

    async def run(self) -> None:
        if self.config.protocol == "vision" and self.config.enabled:
            await self.vision.run()
        await asyncio.Event().wait()  # pushes arrive through the receiver; nothing to poll

    def _vision_result(self, result: VisionResult) -> None:
        self.accept(
            ContainerRead(
                number_text=result.text,
                confidence=result.confidence,
                event_key=f"vision|{id(self.vision):x}|{result.seq}",
                position=self.config.position,
                images=result.images,
            ),
            camera_answered=result.frames > 0,
        )

    def handle_push(self, path: str, content_type: str, body: bytes) -> PushReply:
        """Parse, emit (store first), answer."""
        if not self.health.enabled:  # switched off by the operator: answered, never emitted
            return PushReply.json(200, {"ok": True, "number": None, "result": "disabled"})
        result = parse_container_push(body)
        if isinstance(result, ContainerRead) and result.position not in (None, self.config.position):
            result = PushRejected(
                f"position {result.position!r} pushed to the {self.config.position!r} camera's path"
            )
        if isinstance(result, PushRejected):
            self.health.failed(result.reason, bad_frame=True)
            self.log.warning("container camera %s: rejected push: %s", self.config.id, result.reason)
            return PushReply.json(400, {"ok": False, "error": result.reason})
        number, outcome = self.accept(result)
        return PushReply.json(200, {"ok": True, "number": number, "result": outcome})

    def accept(self, read: ContainerRead, *, camera_answered: bool = True) -> tuple[str | None, str]:
        """Check, de-duplicate and emit one reading; `camera_answered=False` for a `vision` read that got
        no frame (emitted as unreadable, but no sign of life from the camera)."""
        now = self.clock()
        if camera_answered:
            self.health.ok(now)
        number = normalise_container(read.number_text)
        if number is None and read.number_text:
            self.log.info(
                "container camera %s: %r fails ISO 6346: unreadable", self.config.id, read.number_text
            )
        if number is not None and read.confidence < self.config.min_confidence:
            number = None
        self._seq += 1
        key = f"box|{read.event_key}" if read.event_key is not None else f"box|seq{self._seq}"
        if self.dedupe.check(key, number, now):
            self.dedupe.remember(key, number, now)
            self.counters["duplicates"] += 1
            return number, "duplicate"
        if number is None:
            self.counters["unreadable"] += 1
        self.counters["sightings"] += 1
        self.emit(
            ContainerSighting(
                device_id=self.config.id,
                position=self.config.position,
                number=number,
                confidence=read.confidence,
                at=now,
                images=dict(read.images),
            )
        )
        self.dedupe.remember(key, number, now)  # only once stored
        return number, "accepted"
