"""Perimeter watch: one supervised task per fence camera the agent is responsible for.

Which cameras: those whose `FenceCamera.checkpoint` names this agent's checkpoint
(`Zone.fence_cameras_of`). The field lives on the camera because the fence is configured per zone and
a camera is reached over the network of the checkpoint it is wired to; one camera, one agent.

Per camera: frames from `stream_url` (`stream`: a `CameraSource` capture thread into a two-frame ring;
`snapshot`: an HTTP GET of one JPEG per tick) at `analysis_fps`, always the newest frame — a slow
analysis skips frames, it never queues them. Decoding and `PerimeterAnalyser.process` (mask, minimum
area, persistence, shake and lighting handling) run in one worker thread shared by every perimeter
camera of the agent, so the fence never takes more than one of the edge's two cores.

An `IntrusionEvent` becomes:

* a snapshot file `<evidence>/<day>/perimeter/<agent>_perimeter-<ts>-<seq>-<camera>-snapshot.jpg`, which
  the evidence uploader sends to the hub linked to the incident id `<agent>/perimeter-<ts>-<seq>`;
* a `perimeter` event in the durable outbox, payload `{"kind": "intrusion", "segment": …, "camera_id":
  …, "incident_id": …, "snapshot": …}` — what `central_monitor.alarms.from_event` turns into a
  `perimeter_intrusion` alarm on `<zone>/<segment>`.

A camera that goes quiet (no new frame for `stale_after_s`, three times running) is reported down — its
`DeviceHealth`, the log, and one `device_offline` alarm event — and the watch keeps trying; it never
ends the agent. Its health is in the agent's status (`status()` → `AgentStatus.fence_devices`), which is
how the hub learns it is back and clears the alarm.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from edge_agent.drivers.base import supervise
from edge_agent.drivers.health import DeviceHealth
from edge_agent.outbox import Outbox
from efence.contract import DeviceStatus, EventType
from firmware_configs.schema import FenceCamera, FenceSegment

log = logging.getLogger("efence.perimeter")

_POOL: ThreadPoolExecutor | None = None
_INCIDENTS = itertools.count(1)


def perimeter_executor() -> ThreadPoolExecutor:
    """One analysis thread for all fence cameras of the process (2-core edge: OCR gets the other)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perimeter")
    return _POOL


class PerimeterWatch:
    """Analyse one fence camera's video and report intrusions on its segment. `await run()`."""

    def __init__(
        self,
        agent_id: str,
        segment: FenceSegment,
        camera: FenceCamera,
        outbox: Outbox,
        evidence_dir: Path,
        *,
        on_evidence: Callable[[Path], None] = lambda path: None,
        on_event: Callable[[], None] = lambda: None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.segment = segment
        self.camera = camera
        self.outbox = outbox
        self.evidence_dir = Path(evidence_dir)
        self.on_evidence = on_evidence
        self.on_event = on_event
        self._http = http
        self.health = DeviceHealth(camera.id, failures_before_down=3)
        self.health.counters.update({"frames_analysed": 0, "intrusions": 0})
        self.log = logging.getLogger(f"efence.perimeter.{camera.id}")
        self._analyser: Any = None
        self._source: Any = None
        self._last_seq = 0
        self._last_frame_at = time.monotonic()
        self._last_fail = 0.0
        self.stopping = False

    def status(self) -> DeviceStatus:
        """The camera's health for the agent's retained status (`fence_devices`), so the hub shows it
        and clears its `device_offline` alarm when it is back, as for lane devices."""
        return DeviceStatus(type="fence_camera", **self.health.snapshot())

    # ------------------------------------------------------------------ task
    async def run(self) -> None:
        """Until cancelled. A bug in one pass restarts the watch with back-off; nothing escapes."""
        try:
            from edge_agent.vision import require_vision

            require_vision()
        except ImportError as exc:
            self.log.error(
                "fence camera %s (segment %s) not watched: %s", self.camera.id, self.segment.id, exc
            )
            self.health.failed(str(exc))
            self.health.observed = "down"
            await self._alarm_down(str(exc))
            await asyncio.Event().wait()
        await supervise(
            self._serve, self.health, self.log, max_backoff_s=30.0, stopping=lambda: self.stopping
        )

    async def _serve(self) -> None:
        snapshot = self.camera.source == "snapshot"
        owns_http = snapshot and self._http is None
        if snapshot:
            self._http = self._http or httpx.AsyncClient(timeout=max(1.0, 2.0 / self.camera.analysis_fps))
        else:
            from edge_agent.vision.frames import CameraSource

            url = self.camera.stream_url
            self._source = CameraSource(
                int(url) if url.isdigit() else url,
                name=self.camera.id,
                capacity=2,
                stale_after=self.camera.stale_after_s,
            ).start()
        self.log.info(
            "watching fence segment %s with camera %s (%s %s at %.1f fps)",
            self.segment.id,
            self.camera.id,
            self.camera.source,
            self.camera.stream_url,
            self.camera.analysis_fps,
        )
        period = 1.0 / self.camera.analysis_fps
        loop = asyncio.get_running_loop()
        self._last_frame_at = time.monotonic()
        try:
            next_at = time.monotonic()
            while True:
                next_at += period
                frame = await (self._fetch() if snapshot else self._newest())
                if frame is not None:
                    self._last_frame_at = time.monotonic()
                    if self.health.ok(self._last_frame_at) and self.health.counters["frames_ok"] > 1:
                        self.log.info("fence camera %s is back", self.camera.id)
                    try:
                        events = await loop.run_in_executor(perimeter_executor(), self._analyse, frame)
                    except Exception as exc:  # noqa: BLE001 — one bad frame is counted, never fatal
                        self.health.failed(f"frame not analysed: {exc}", bad_frame=True)
                        events = []
                    for event in events:
                        await self._report(event)
                await self._check_stale()
                delay = next_at - time.monotonic()
                if delay < 0:  # analysis slower than the frame rate: skip, do not catch up
                    next_at, delay = time.monotonic(), 0.0
                await asyncio.sleep(delay)
        finally:
            if self._source is not None:
                await asyncio.to_thread(self._source.stop)
                self._source = None
            if owns_http and self._http is not None:
                await self._http.aclose()
                self._http = None

    # ------------------------------------------------------------------ frames
    async def _fetch(self) -> bytes | None:
        """One snapshot JPEG, or None (the failure is counted by staleness, not per request)."""
        assert self._http is not None
        try:
            r = await self._http.get(self.camera.stream_url)
            r.raise_for_status()
            return r.content
        except httpx.HTTPError as exc:
            self.health.last_error = f"snapshot {self.camera.stream_url}: {type(exc).__name__}: {exc}"
            await asyncio.sleep(min(1.0, self.camera.stale_after_s / 3))  # do not hammer a dead camera
            return None

    async def _newest(self) -> Any:
        frame = self._source.buffer.latest()
        if frame is None or frame.seq == self._last_seq:
            return None
        self._last_seq = frame.seq
        return frame.image

    async def _check_stale(self) -> None:
        now = time.monotonic()
        quiet = now - self._last_frame_at
        if quiet < self.camera.stale_after_s or now - self._last_fail < self.camera.stale_after_s:
            return
        self._last_fail = now
        reason = self.health.last_error if self.camera.source == "snapshot" else None
        reason = f"no frame for {quiet:.0f} s" + (f" ({reason})" if reason else "")
        if self.health.failed(reason):
            self.log.warning("fence camera %s (segment %s) down: %s", self.camera.id, self.segment.id, reason)
            await self._alarm_down(reason)

    def _analyse(self, frame: Any) -> list[Any]:
        """In the perimeter worker: decode (snapshot), build the analyser on the first frame, analyse."""
        import cv2
        import numpy as np

        from edge_agent.vision.perimeter import FenceZone, PerimeterAnalyser, PerimeterCamera

        if isinstance(frame, bytes):
            image = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"snapshot of {len(frame)} bytes is not an image")
        else:
            image = frame
        if self._analyser is None:
            h, w = image.shape[:2]
            polygon = tuple((float(x), float(y)) for x, y in self.camera.zone_polygon) or (
                (0.0, 0.0),
                (float(w), 0.0),
                (float(w), float(h)),
                (0.0, float(h)),
            )
            self._analyser = PerimeterAnalyser(
                PerimeterCamera(
                    camera_id=self.camera.id,
                    zones=[FenceZone(self.segment.id, polygon)],
                    ignore=[tuple((float(x), float(y)) for x, y in poly) for poly in self.camera.mask],
                    min_area=min(1.0, self.camera.min_area_px / float(w * h)),
                    persistence=self.camera.persistence_frames,
                    warmup=self.camera.warmup_frames,
                )
            )
        self.health.counters["frames_analysed"] += 1
        return self._analyser.process(image, time.time())

    # ------------------------------------------------------------------ reports
    async def _report(self, event: Any) -> None:
        """Snapshot to the evidence folder, then the `perimeter` event into the durable outbox."""
        when = datetime.fromtimestamp(event.timestamp, UTC)
        seq = f"{int(event.timestamp * 1000) % 1000:03d}{next(_INCIDENTS) % 1000:03d}"
        stamp = f"{when:%Y%m%dT%H%M%S}-{seq}"
        incident_id = f"{self.agent_id}/perimeter-{stamp}"
        name = f"{self.agent_id.replace('/', '_')}_perimeter-{stamp}-{self.camera.id}-snapshot.jpg"
        folder = self.evidence_dir / when.strftime("%Y%m%d") / "perimeter"
        path = folder / name
        try:
            await asyncio.to_thread(self._write, path, event.snapshot_jpeg)
        except OSError as exc:  # no snapshot is bad; no alarm would be worse
            self.log.error("fence camera %s: snapshot not written (%s)", self.camera.id, exc)
            name = ""
        payload = {
            "kind": "intrusion",
            "source": "video",
            "segment": self.segment.id,
            "segment_name": self.segment.name,
            "camera_id": self.camera.id,
            "incident_id": incident_id,
            "snapshot": name or None,
            "bbox": list(event.bbox),
            "area_fraction": round(event.area_fraction, 4),
            "track_id": event.track_id,
            "detail": f"Intruder on fence segment {self.segment.id} ({self.segment.name}), "
            f"camera {self.camera.id}",
        }
        await self.outbox.append(EventType.PERIMETER, payload, correlation_id=incident_id, observed_at=when)
        self.health.counters["intrusions"] += 1
        self.log.warning(
            "intrusion on fence segment %s (camera %s): %s", self.segment.id, self.camera.id, incident_id
        )
        if name:
            self.on_evidence(path)
        self.on_event()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    async def _alarm_down(self, reason: str) -> None:
        await self.outbox.append(
            EventType.ALARM,
            {
                "kind": "alarm",
                "alarm": "device_offline",
                "severity": "warning",
                "device_id": self.camera.id,
                "segment": self.segment.id,
                "detail": f"fence camera {self.camera.id} (segment {self.segment.id}) down: {reason}",
            },
        )
        self.on_event()
