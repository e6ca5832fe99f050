"""Perimeter video analytics: who crossed into which fence segment.

Per camera: stabilise against shake, normalise global brightness, subtract a learned
background (OpenCV MOG2), mask out what the site says to ignore, clean the mask, keep blobs of
person-like size, track them, and raise one :class:`IntrusionEvent` per track and segment once
the blob has persisted long enough. Why each step (see docs/VISION.md):

* **Shake**: a pole-mounted camera moves a few pixels in wind; the whole background then looks
  like motion. Phase correlation against the background estimates the global shift and the frame
  is shifted back before subtraction.
* **Lighting**: a cloud or floodlight changes every pixel at once. The frame is rescaled to the
  background's median brightness, and a frame where most of the picture "moved" is treated as
  a global change (the model re-learns quickly and no alarm is raised for a few frames).
* **Small things** (leaves, birds, cats, rain streaks): a minimum area relative to the frame,
  a morphological opening, and a persistence requirement over consecutive frames.
* **Segment**: the blob's foot point (bottom centre) decides the fence segment, because that is
  where the person stands; the head of a person near the fence can overlap the next zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

WORK_WIDTH = 320


@dataclass(frozen=True)
class FenceZone:
    """Image region (polygon in full-frame pixels) watched for one fence segment."""

    segment_id: str
    polygon: tuple[tuple[float, float], ...]


@dataclass
class PerimeterCamera:
    """Per-camera analytics settings. Fractions are of the frame area so they survive resizing."""

    camera_id: str
    zones: list[FenceZone]
    #: Polygons to ignore (trees that sway, a road outside the fence, a flag).
    ignore: list[tuple[tuple[float, float], ...]] = field(default_factory=list)
    #: Smallest blob that can be a person at the far edge of the zone (fraction of frame area).
    min_area: float = 0.004
    #: Consecutive frames a blob must persist before it is an intrusion (at ~10 fps: 0.6 s).
    persistence: int = 6
    #: Frames of background learning before any alarm (start-up, after a reset).
    warmup: int = 20
    #: Fraction of the frame in motion above which the change is global (lighting), not an object.
    global_change: float = 0.35
    #: Largest camera shake corrected, as a fraction of the frame width.
    max_shift: float = 0.06


@dataclass(frozen=True)
class IntrusionEvent:
    """A confirmed intrusion: one per track and fence segment."""

    camera_id: str
    segment_id: str
    track_id: int
    frame_index: int
    timestamp: float
    #: Bounding box in full-frame pixels (x, y, w, h).
    bbox: tuple[int, int, int, int]
    area_fraction: float
    #: The frame with the intruder boxed, JPEG-encoded (the caller stores it).
    snapshot_jpeg: bytes


@dataclass
class _Track:
    track_id: int
    bbox: tuple[int, int, int, int]
    hits: int = 1
    misses: int = 0
    reported: set[str] = field(default_factory=set)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


class PerimeterAnalyser:
    """Feed frames of one camera in order; get intrusion events back. Not thread-safe."""

    def __init__(self, camera: PerimeterCamera) -> None:
        self.camera = camera
        self._bg = cv2.createBackgroundSubtractorMOG2(history=200, varThreshold=25, detectShadows=True)
        self._scale = 1.0
        self._size: tuple[int, int] | None = None
        self._zone_masks: dict[str, np.ndarray] = {}
        self._ignore: np.ndarray | None = None
        self._ref: np.ndarray | None = None  # float32 running-average background for shift/brightness
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frame_index = 0
        self._quiet_until = camera.warmup
        self.global_changes = 0

    # -- setup -------------------------------------------------------------------------
    def _setup(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        self._scale = WORK_WIDTH / w if w > WORK_WIDTH else 1.0
        ws, hs = int(round(w * self._scale)), int(round(h * self._scale))
        self._size = (ws, hs)
        for z in self.camera.zones:
            m = np.zeros((hs, ws), np.uint8)
            cv2.fillPoly(m, [np.array(z.polygon, np.float32).__mul__(self._scale).astype(np.int32)], 255)
            self._zone_masks[z.segment_id] = m
        keep = np.full((hs, ws), 255, np.uint8)
        for poly in self.camera.ignore:
            cv2.fillPoly(keep, [(np.array(poly, np.float32) * self._scale).astype(np.int32)], 0)
        self._ignore = keep

    # -- per frame ---------------------------------------------------------------------
    def process(self, frame: np.ndarray, timestamp: float = 0.0) -> list[IntrusionEvent]:
        """Analyse one BGR frame; returns the intrusions confirmed on this frame."""
        if self._size is None:
            self._setup(frame.shape)
        assert self._size is not None and self._ignore is not None
        idx = self._frame_index
        self._frame_index += 1
        small = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(np.float32)

        if self._ref is None:
            self._ref = gray.copy()
        # Shake: global translation against the reference, undone before subtraction.
        (dx, dy), response = cv2.phaseCorrelate(self._ref, gray)
        max_shift = self.camera.max_shift * self._size[0]
        if response > 0.1 and math.hypot(dx, dy) <= max_shift and (abs(dx) >= 0.5 or abs(dy) >= 0.5):
            m = np.float32([[1, 0, -dx], [0, 1, -dy]])
            gray = cv2.warpAffine(gray, m, self._size, borderMode=cv2.BORDER_REPLICATE)
        # Lighting: match the frame's median brightness to the background's.
        med = float(np.median(gray))
        if med > 1.0:
            gray = gray * (float(np.median(self._ref)) / med)
        gray8 = np.clip(gray, 0, 255).astype(np.uint8)

        fg = self._bg.apply(gray8, learningRate=-1)
        fg = np.where(fg == 255, 255, 0).astype(np.uint8)  # drop MOG2 shadow label (127)
        fg &= self._ignore
        moving = float(np.count_nonzero(fg)) / fg.size
        if moving > self.camera.global_change:
            # Global change (lighting jump, big shake): re-learn fast, stay quiet briefly.
            self.global_changes += 1
            self._bg.apply(gray8, learningRate=1.0)
            self._ref = gray.copy()
            self._quiet_until = idx + max(5, self.camera.persistence)
            self._tracks.clear()
            return []
        cv2.accumulateWeighted(gray, self._ref, 0.05, mask=cv2.bitwise_not(fg))

        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_px = self.camera.min_area * fg.size
        blobs = [
            tuple(int(v) for v in stats[i, :4]) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_px
        ]
        events: list[IntrusionEvent] = []
        for track in self._update_tracks(blobs):  # type: ignore[arg-type]
            if track.hits < self.camera.persistence or idx < self._quiet_until:
                continue
            x, y, w, h = track.bbox
            foot = (min(self._size[0] - 1, x + w // 2), min(self._size[1] - 1, y + h - 1))
            for seg, zmask in self._zone_masks.items():
                if seg in track.reported or not zmask[foot[1], foot[0]]:
                    continue
                track.reported.add(seg)
                events.append(self._event(frame, track, seg, idx, timestamp))
        return events

    def _update_tracks(self, blobs: list[tuple[int, int, int, int]]) -> list[_Track]:
        matched: set[int] = set()
        for t in self._tracks:
            best, best_iou = None, 0.1
            for i, b in enumerate(blobs):
                if i in matched:
                    continue
                iou = _iou(t.bbox, b)
                if iou > best_iou:
                    best, best_iou = i, iou
            if best is None:
                t.misses += 1
            else:
                matched.add(best)
                t.bbox, t.hits, t.misses = blobs[best], t.hits + 1, 0
        self._tracks = [t for t in self._tracks if t.misses <= 2]
        for i, b in enumerate(blobs):
            if i not in matched:
                self._tracks.append(_Track(self._next_id, b))
                self._next_id += 1
        return [t for t in self._tracks if t.misses == 0]

    def _event(self, frame: np.ndarray, track: _Track, seg: str, idx: int, ts: float) -> IntrusionEvent:
        inv = 1.0 / self._scale
        x, y, w, h = (int(round(v * inv)) for v in track.bbox)
        snap = frame.copy()
        cv2.rectangle(snap, (x, y), (x + w, y + h), (0, 0, 255), 2)
        cv2.putText(
            snap,
            f"{self.camera.camera_id} {seg}",
            (x, max(12, y - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 255),
            1,
        )
        ok, jpeg = cv2.imencode(".jpg", snap, [cv2.IMWRITE_JPEG_QUALITY, 85])
        area = (track.bbox[2] * track.bbox[3]) / float(self._size[0] * self._size[1]) if self._size else 0.0
        return IntrusionEvent(
            camera_id=self.camera.camera_id,
            segment_id=seg,
            track_id=track.track_id,
            frame_index=idx,
            timestamp=ts,
            bbox=(x, y, w, h),
            area_fraction=area,
            snapshot_jpeg=jpeg.tobytes() if ok else b"",
        )
