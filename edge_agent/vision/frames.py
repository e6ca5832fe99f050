"""Frame sources: network/USB cameras, pushed JPEG snapshots and files, behind bounded buffers.

Every source fills a :class:`FrameBuffer` that keeps only the newest ``capacity`` frames and
drops the oldest, so a camera that is slow, bursty or stuck never builds a backlog and never
blocks the caller. Capture runs in a daemon thread per camera (``cv2.VideoCapture.read`` blocks);
the asyncio side only ever polls the buffer or awaits work in an executor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One decoded BGR image with where and when it was taken."""

    image: np.ndarray
    source: str
    seq: int
    #: ``time.monotonic()`` when the frame arrived (for ordering and trigger windows).
    monotonic: float
    #: Wall-clock ``time.time()`` for evidence records.
    wall: float = field(default_factory=time.time)


class FrameBuffer:
    """Thread-safe ring of the newest frames; full means the oldest is dropped, never a block."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.capacity = capacity
        self.dropped = 0
        self.total = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) == self.capacity:
                self.dropped += 1
            self._frames.append(frame)
            self.total += 1
            self._cond.notify_all()

    def latest(self) -> Frame | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    def since(self, monotonic: float) -> list[Frame]:
        """Buffered frames that arrived at or after ``monotonic``, oldest first."""
        with self._cond:
            return [f for f in self._frames if f.monotonic >= monotonic]

    def wait_newer(self, seq: int, timeout: float) -> Frame | None:
        """Block (in a worker thread, never on the event loop) until a frame newer than ``seq``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._frames or self._frames[-1].seq <= seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._frames[-1]

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


class _Source:
    """Common part: a name, a buffer, a sequence counter."""

    def __init__(self, name: str, capacity: int = 4) -> None:
        self.name = name
        self.buffer = FrameBuffer(capacity)
        self._seq = 0
        self._seq_lock = threading.Lock()

    def _emit(self, image: np.ndarray) -> Frame:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        frame = Frame(image=image, source=self.name, seq=seq, monotonic=time.monotonic())
        self.buffer.put(frame)
        return frame


class CameraSource(_Source):
    """RTSP/HTTP(MJPEG)/USB camera read continuously by a supervised daemon thread.

    ``url`` is anything ``cv2.VideoCapture`` opens (``rtsp://...``, ``http://.../mjpeg``, a
    device index such as ``0``, or a video file). On a read failure the capture is reopened
    with exponential backoff up to ``max_backoff`` seconds; ``healthy`` reports whether frames
    are arriving. ``opener`` is for tests (inject a fake capture).
    """

    def __init__(
        self,
        url: str | int,
        *,
        name: str | None = None,
        capacity: int = 4,
        max_backoff: float = 30.0,
        stale_after: float = 5.0,
        opener: Callable[[str | int], cv2.VideoCapture] | None = None,
    ) -> None:
        super().__init__(name or str(url), capacity)
        self.url = url
        self.max_backoff = max_backoff
        self.stale_after = stale_after
        self._opener = opener or self._open
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconnects = 0

    @staticmethod
    def _open(url: str | int) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(url)
        # Ask the backend for the smallest internal queue: we want the newest frame, not a backlog.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def start(self) -> CameraSource:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        last = self.buffer.latest()
        return last is not None and time.monotonic() - last.monotonic < self.stale_after

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            cap = None
            try:
                cap = self._opener(self.url)
                if cap is None or not cap.isOpened():
                    raise OSError(f"cannot open {self.url!r}")
                while not self._stop.is_set():
                    ok, image = cap.read()
                    if not ok or image is None:
                        raise OSError(f"read failed on {self.url!r}")
                    self._emit(image)
                    backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - supervised loop: log, back off, reconnect
                log.warning("camera %s: %s; reconnecting in %.1fs", self.name, exc, backoff)
                self.reconnects += 1
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
            finally:
                if cap is not None:
                    cap.release()


class SnapshotSource(_Source):
    """JPEG snapshots pushed by a camera (HTTP alarm push, FTP drop, ANPR picture part)."""

    def push(self, jpeg: bytes) -> Frame | None:
        """Decode and buffer one snapshot; None (and nothing buffered) if it is not an image."""
        data = np.frombuffer(jpeg, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            log.warning("snapshot source %s: undecodable %d-byte payload", self.name, len(jpeg))
            return None
        return self._emit(image)

    async def push_async(self, jpeg: bytes) -> Frame | None:
        """Decode in a worker thread so a large JPEG never stalls the event loop."""
        return await asyncio.to_thread(self.push, jpeg)


class FileSource(_Source):
    """Frames from an image file or a video file (commissioning, replay of recorded incidents)."""

    def __init__(self, path: str | Path, *, name: str | None = None, capacity: int = 4) -> None:
        super().__init__(name or Path(path).name, capacity)
        self.path = Path(path)

    def read_all(self, limit: int | None = None) -> list[Frame]:
        """All frames (one for an image), also pushed through the buffer."""
        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is not None:
            return [self._emit(image)]
        cap = cv2.VideoCapture(str(self.path))
        frames: list[Frame] = []
        try:
            while limit is None or len(frames) < limit:
                ok, img = cap.read()
                if not ok:
                    break
                frames.append(self._emit(img))
        finally:
            cap.release()
        if not frames:
            raise FileNotFoundError(f"no image or video frames in {self.path}")
        return frames


async def capture_burst(
    source: _Source, *, count: int = 3, after: float | None = None, timeout: float = 2.0, poll: float = 0.02
) -> list[Frame]:
    """Collect up to ``count`` frames that arrived after the trigger time ``after``.

    Called when the arming loop fires. It only polls the buffer with ``asyncio.sleep``, so it
    never blocks the event loop; it returns what it has when ``timeout`` expires (possibly
    nothing -- the caller then falls back to manual review).
    """
    start = time.monotonic() if after is None else after
    deadline = time.monotonic() + timeout
    frames = source.buffer.since(start)
    while len(frames) < count and time.monotonic() < deadline:
        await asyncio.sleep(poll)
        frames = source.buffer.since(start)
    return frames[:count]
