"""`vision` plate and container cameras: the edge reads the picture itself (edge_agent.vision).

A plain IP camera gives frames, not plates. `VisionCamera` is the part of a plate or container camera
driver that turns frames into one reading per vehicle:

* **Frames.** `stream` source: a `CameraSource` capture thread (RTSP, HTTP MJPEG, USB, a file) fills a
  ring buffer of the newest `buffer_frames`; older frames are dropped, so a slow or bursty camera never
  builds a backlog and never blocks the event loop. `snapshot` source: `frames` HTTP GETs of one JPEG
  each, only when a vehicle arrives.
* **Trigger.** The lane runtime calls `trigger()` when the arming loop becomes occupied (and on an
  officer's re-gather). Triggers that arrive while a read is running coalesce into one more read, so a
  flickering loop cannot queue work.
* **Reading off the loop.** Every frame is read in the process-wide single-worker OCR executor
  (`edge_agent.vision.trigger.ocr_executor`): on a 2-core edge, one OCR job at a time for all lanes;
  the event loop keeps serving loops, relays and the uplink meanwhile. The OCR engine is loaded once,
  in that worker, and shared by the plate and container readers.
* **Consensus and the confidence gate.** `PlateConsensus` over the burst (`min_agree` frames must
  read the same text; a rival read as often is a conflict). A rejection gives `text=None`: the driver
  then emits an *unreadable* sighting, which the controller turns into manual review (M1/M2) — never a
  confident plate. The driver's own `min_confidence` and GA 36 / ISO 6346 checks apply on top.
* **Evidence.** The best read's plate/number crop and its full frame (or, when nothing was read, the
  last frame) are JPEG-encoded in the worker and travel in the sighting's `images`, exactly like a push
  camera's pictures.
* **Health.** Stream: no frame for `stale_after_s` is a failure; snapshot: a failed fetch is (and the
  URL is probed every `stale_after_s` while idle). A missing `vision` extra is a permanent failure of
  this device, logged once — never a crashed lane.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from edge_agent.drivers.health import DeviceHealth
from firmware_configs.devices import ContainerCameraConfig, PlateCameraConfig

Kind = Literal["plate", "container"]
#: Evidence frames wider than this are scaled down before encoding (the hub takes ≤ 2 MiB per image).
EVIDENCE_MAX_WIDTH = 1920

_LOCK = threading.RLock()
_READERS: dict[str, Any] = {}
_ENGINE: Any = None


def shared_reader(kind: Kind) -> Any:
    """The process's plate or container reader, built on one shared OCR engine (loaded on first use).

    Called in the OCR worker thread: loading the models (~1 s) must not stall the event loop.
    """
    global _ENGINE
    with _LOCK:
        if kind not in _READERS:
            from edge_agent.vision.containers import ContainerReader
            from edge_agent.vision.ocr import OcrEngine
            from edge_agent.vision.plates import PlateReader

            if _ENGINE is None:
                _ENGINE = OcrEngine()
            _READERS[kind] = PlateReader(_ENGINE) if kind == "plate" else ContainerReader(_ENGINE)
        return _READERS[kind]


@dataclass(frozen=True)
class VisionResult:
    """One vehicle's reading: agreed text or None (unreadable), with evidence pictures."""

    text: str | None
    confidence: float
    reason: str
    frames: int
    seq: int
    colour: str | None = None
    images: dict[str, bytes] = field(default_factory=dict, repr=False)


def _encode(image: Any) -> bytes:
    import cv2

    h, w = image.shape[:2]
    if w > EVIDENCE_MAX_WIDTH:
        image = cv2.resize(image, (EVIDENCE_MAX_WIDTH, int(h * EVIDENCE_MAX_WIDTH / w)), cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""


def _stream_target(url: str) -> str | int:
    """A bare device number (`0`) is a USB camera for OpenCV; anything else is a URL or a path."""
    return int(url) if url.isdigit() else url


class VisionCamera:
    """Frames → reader → consensus for one `vision` camera; `on_result` gets one result per trigger."""

    def __init__(
        self,
        config: PlateCameraConfig | ContainerCameraConfig,
        kind: Kind,
        health: DeviceHealth,
        on_result: Callable[[VisionResult], None],
        *,
        log: logging.Logger | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        assert config.stream_url is not None  # the config validator requires it for `vision`
        self.config = config
        self.settings = config.vision
        self.kind: Kind = kind
        self.health = health
        self.on_result = on_result
        self.log = log or logging.getLogger(f"efence.device.{config.id}")
        self._http = http
        self._wake = asyncio.Event()
        self._triggered_at: float | None = None
        self._seq = 0
        self.source: Any = None
        self.reading = False
        self._last_fail = 0.0
        self.ready = asyncio.Event()  # set once the reader is loaded and the source started
        health.counters.update({"reads": 0, "frames_read": 0, "triggers_coalesced": 0})

    # ------------------------------------------------------------------ lane side
    def trigger(self, at: float | None = None) -> None:
        """A vehicle is on the arming loop (or an officer asked again): read it. Never blocks."""
        if self._triggered_at is not None or self.reading:
            self.health.counters["triggers_coalesced"] += 1
        if self._triggered_at is None:
            self._triggered_at = time.monotonic() if at is None else at
        self._wake.set()

    # ------------------------------------------------------------------ the task
    async def run(self) -> None:
        """Until cancelled: keep the source and health up, read on every trigger."""
        try:
            from edge_agent.vision import require_vision

            require_vision()
        except ImportError as exc:  # VisionUnavailable: this device is blind, the lane keeps working
            self.health.failed(str(exc))
            self.health.observed = "down"
            self.log.error("%s camera %s: %s", self.kind, self.config.id, exc)
            await asyncio.Event().wait()
        from edge_agent.vision.trigger import ocr_executor

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(ocr_executor(), shared_reader, self.kind)
        owns_http = self._http is None
        if self.settings.source == "snapshot":
            from edge_agent.vision.frames import SnapshotSource

            self.source = SnapshotSource(self.config.id, capacity=max(self.settings.frames, 2))
            self._http = self._http or httpx.AsyncClient(timeout=self.settings.timeout_s)
        else:
            from edge_agent.vision.frames import CameraSource

            self.source = CameraSource(
                _stream_target(self.config.stream_url or ""),
                name=self.config.id,
                capacity=self.settings.buffer_frames,
                max_backoff=self.config.reconnect_max_s,
                stale_after=self.settings.stale_after_s,
            ).start()
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_health())
                tg.create_task(self._read_loop())
        finally:
            if self.settings.source == "stream":
                await asyncio.to_thread(self.source.stop)
            if owns_http and self._http is not None:
                await self._http.aclose()

    async def _read_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            at, self._triggered_at = self._triggered_at, None
            self.reading = True
            try:
                result = await self.read_vehicle(at)
            except Exception as exc:  # noqa: BLE001 — a failed read is an unreadable vehicle, not a dead lane
                self.log.exception("%s camera %s: read failed", self.kind, self.config.id)
                self._seq += 1
                result = VisionResult(None, 0.0, f"read failed: {exc}", 0, self._seq)
            finally:
                self.reading = False
            self.log.info(
                "%s camera %s: %s (%s, %d frames, confidence %.2f)",
                self.kind,
                self.config.id,
                result.text or "unreadable",
                result.reason,
                result.frames,
                result.confidence,
            )
            self.on_result(result)

    async def _watch_health(self) -> None:
        """Stream: frames arriving? Snapshot: probe the URL while idle. Failures count toward down."""
        period = self.settings.stale_after_s
        while True:
            if self.settings.source == "stream":
                await asyncio.sleep(min(1.0, period))
                self.health.counters["frames_ok"] = self.source.buffer.total
                last = self.source.buffer.latest()
                if last is not None and time.monotonic() - last.monotonic < period:
                    if self.health.observed != "up":
                        self.health.ok(time.monotonic())
                elif time.monotonic() - self._last_fail >= period:
                    self._last_fail = time.monotonic()
                    self._fail(f"no frame from {self.config.stream_url} for {period:.0f} s")
            else:
                if not self.reading:
                    try:
                        await self._fetch()
                        self.health.ok(time.monotonic())
                    except Exception as exc:  # noqa: BLE001 — any fetch failure is a health failure
                        self._fail(f"snapshot {self.config.stream_url}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(period)

    def _fail(self, reason: str) -> None:
        if self.health.failed(reason):
            self.log.warning("%s camera %s down: %s", self.kind, self.config.id, reason)

    # ------------------------------------------------------------------ reading
    async def _fetch(self) -> bytes:
        assert self._http is not None
        r = await self._http.get(self.config.stream_url or "")
        r.raise_for_status()
        return r.content

    async def _snapshot_burst(self) -> None:
        """`frames` snapshots, `frame_interval_s` apart, pushed through the bounded SnapshotSource."""
        deadline = time.monotonic() + self.settings.timeout_s
        for i in range(self.settings.frames):
            if i:
                await asyncio.sleep(self.settings.frame_interval_s)
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    jpeg = await self._fetch()
            except Exception as exc:  # noqa: BLE001 — fewer frames, then unreadable; the lane carries on
                self._fail(f"snapshot {self.config.stream_url}: {type(exc).__name__}: {exc}")
                return
            if await self.source.push_async(jpeg) is None:
                self.health.failed("snapshot is not an image", bad_frame=True)
            else:
                self.health.ok(time.monotonic())

    async def read_vehicle(self, triggered_at: float | None = None) -> VisionResult:
        """Take the burst, read every frame in the OCR worker, decide by consensus, encode evidence."""
        from edge_agent.vision.consensus import PlateConsensus
        from edge_agent.vision.frames import capture_burst
        from edge_agent.vision.trigger import ocr_executor

        s = self.settings
        start = time.monotonic() if triggered_at is None else triggered_at
        if s.source == "snapshot":
            start = time.monotonic()
            await self._snapshot_burst()
        burst = await capture_burst(self.source, count=s.frames, after=start, timeout=s.timeout_s)
        loop = asyncio.get_running_loop()
        pool = ocr_executor()
        reader = shared_reader(self.kind)
        # min_agree is not lowered when fewer frames came: too few frames is unreadable, not a guess
        consensus = PlateConsensus(min_agree=s.min_agree)
        for frame in burst:
            consensus.add(await loop.run_in_executor(pool, reader.read, frame.image))
        self.health.counters["reads"] += 1
        self.health.counters["frames_read"] += len(burst)
        self._seq += 1
        if not burst:
            return VisionResult(None, 0.0, f"no frame within {s.timeout_s:.1f} s", 0, self._seq)
        verdict = consensus.result()
        best = verdict.evidence
        last = burst[-1].image

        def evidence() -> dict[str, bytes]:
            images: dict[str, bytes] = {}
            crop = getattr(best, "crop", None) if best is not None else None
            if crop is not None and getattr(crop, "size", 0):
                images[self.kind] = _encode(crop)
            frame = getattr(best, "frame", None) if best is not None else None
            images["frame"] = _encode(frame if frame is not None else last)
            return {k: v for k, v in images.items() if v}

        images = await loop.run_in_executor(pool, evidence)
        return VisionResult(
            text=verdict.text,
            confidence=float(verdict.confidence),
            reason=verdict.reason,
            frames=len(burst),
            seq=self._seq,
            colour=getattr(best, "colour", None) if self.kind == "plate" else None,
            images=images,
        )


class VisionTriggered:
    """What a camera driver with a `vision` mode adds: the frame reader, built on first use, read when
    the arming loop triggers and when an officer asks again. The driver names `vision_kind` and
    implements `_vision_result`; `config`, `health` and `log` come from `Driver`."""

    vision_kind: Literal["plate", "container"]
    config: PlateCameraConfig | ContainerCameraConfig
    health: DeviceHealth
    log: logging.Logger
    _vision: VisionCamera | None = None

    def _vision_result(self, result: VisionResult) -> None:
        raise NotImplementedError

    @property
    def vision(self) -> VisionCamera:
        """The frame reader behind a `vision` camera (created on first use)."""
        if self._vision is None:
            self._vision = VisionCamera(
                self.config, self.vision_kind, self.health, self._vision_result, log=self.log
            )
        return self._vision

    def on_arming(self, at: float) -> None:
        """The lane's arming loop became occupied: a `vision` camera reads now."""
        if self.config.protocol == "vision" and self.health.enabled:
            self.vision.trigger(at)

    @property
    def regather(self) -> Callable[[], None] | None:
        """An officer asked for a fresh read: a `vision` camera reads again; a push camera cannot be
        asked (None: the lane then says it waits for the camera's next report)."""
        if self.config.protocol == "vision" and self.health.enabled:
            return self.vision.trigger
        return None
