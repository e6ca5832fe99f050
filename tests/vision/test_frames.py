"""Frame sources: bounded drop-oldest buffers, no blocking of the event loop, reconnects."""

from __future__ import annotations

import asyncio
import threading
import time

import cv2
import numpy as np
import pytest

from edge_agent.vision.frames import (
    CameraSource,
    FileSource,
    Frame,
    FrameBuffer,
    SnapshotSource,
    capture_burst,
)


def _frame(seq: int) -> Frame:
    return Frame(image=np.zeros((2, 2, 3), np.uint8), source="t", seq=seq, monotonic=time.monotonic())


def test_buffer_drops_oldest_never_blocks() -> None:
    buf = FrameBuffer(capacity=3)
    t0 = time.perf_counter()
    for i in range(1, 1001):
        buf.put(_frame(i))
    assert time.perf_counter() - t0 < 0.5
    assert len(buf) == 3
    assert [f.seq for f in buf.since(0)] == [998, 999, 1000]
    assert buf.dropped == 997 and buf.total == 1000
    assert buf.latest().seq == 1000


def test_wait_newer_times_out_and_wakes() -> None:
    buf = FrameBuffer(2)
    assert buf.wait_newer(0, timeout=0.05) is None
    threading.Timer(0.05, lambda: buf.put(_frame(1))).start()
    got = buf.wait_newer(0, timeout=2.0)
    assert got is not None and got.seq == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameBuffer(0)


class _SlowCapture:
    """A fake camera that takes ``delay`` per frame and fails after ``fail_after`` frames."""

    def __init__(self, delay: float, fail_after: int | None = None) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2 API
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.delay)
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            return False, None
        return True, np.full((4, 4, 3), self.n % 255, np.uint8)

    def release(self) -> None:
        pass


async def test_slow_camera_never_stalls_event_loop() -> None:
    cam = CameraSource("fake://slow", capacity=2, opener=lambda _: _SlowCapture(0.3)).start()
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        t0 = time.monotonic()
        frames = await capture_burst(cam, count=5, after=t0, timeout=0.5)
        task.cancel()
        # The burst times out with what the slow camera managed; the loop kept ticking meanwhile.
        assert len(frames) < 5
        assert ticks >= 20
    finally:
        cam.stop()


async def test_fast_camera_burst_and_bounded_buffer() -> None:
    cam = CameraSource("fake://fast", capacity=4, opener=lambda _: _SlowCapture(0.005)).start()
    try:
        frames = await capture_burst(cam, count=3, timeout=2.0)
        assert len(frames) == 3
        assert [f.seq for f in frames] == sorted(f.seq for f in frames)
        await asyncio.sleep(0.2)
        assert len(cam.buffer) == 4 and cam.buffer.dropped > 0
        assert cam.healthy
    finally:
        cam.stop()


def test_camera_reconnects_after_failure() -> None:
    opened = []

    def opener(url):
        opened.append(url)
        return _SlowCapture(0.001, fail_after=3)

    cam = CameraSource("fake://flaky", opener=opener, max_backoff=0.05).start()
    try:
        deadline = time.monotonic() + 3
        while len(opened) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(opened) >= 3 and cam.reconnects >= 2
    finally:
        cam.stop()


def test_unopenable_camera_is_unhealthy_not_fatal() -> None:
    class Closed(_SlowCapture):
        def isOpened(self) -> bool:  # noqa: N802
            return False

    cam = CameraSource("rtsp://nowhere", opener=lambda _: Closed(0), max_backoff=0.05).start()
    try:
        time.sleep(0.2)
        assert not cam.healthy and cam.reconnects >= 1
    finally:
        cam.stop()


async def test_snapshot_push_decodes_and_rejects_garbage() -> None:
    src = SnapshotSource("anpr-push", capacity=2)
    ok, jpeg = cv2.imencode(".jpg", np.full((20, 30, 3), 128, np.uint8))
    assert ok
    f = await src.push_async(jpeg.tobytes())
    assert f is not None and f.image.shape == (20, 30, 3)
    assert src.push(b"not a jpeg") is None
    assert src.push(b"") is None
    for _ in range(5):
        src.push(jpeg.tobytes())
    assert len(src.buffer) == 2


def test_file_source_image_and_video(tmp_path) -> None:
    img = np.full((24, 32, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert len(FileSource(tmp_path / "a.png").read_all()) == 1
    path = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(7):
        w.write(np.full((24, 32, 3), i * 30, np.uint8))
    w.release()
    frames = FileSource(path, capacity=3).read_all()
    assert len(frames) == 7
    with pytest.raises(FileNotFoundError):
        FileSource(tmp_path / "missing.png").read_all()


class _StubReader:
    """Reads a 'plate' from the frame's first pixel value; slow, like OCR."""

    def __init__(self, texts: dict[int, str | None]) -> None:
        self.texts = texts
        self.threads: set[str] = set()

    def read(self, image, *, keep_frame: bool = True):
        self.threads.add(threading.current_thread().name)
        time.sleep(0.05)
        return _Read(self.texts.get(int(image[0, 0, 0])), 0.9)


class _Read:
    def __init__(self, text, confidence):
        self.text, self.confidence = text, confidence


async def test_read_on_trigger_consensus_off_the_loop() -> None:
    from edge_agent.vision.trigger import read_on_trigger

    src = SnapshotSource("lane-1-front", capacity=4)
    reader = _StubReader({1: "沪A12345", 2: None, 3: "沪A12345"})
    t0 = time.monotonic()
    for v in (1, 2, 3):
        ok, jpeg = cv2.imencode(".png", np.full((8, 8, 3), v, np.uint8))
        src.push(jpeg.tobytes())
    result = await read_on_trigger(src, reader, frames=3, min_agree=2, triggered_at=t0)
    assert result.text == "沪A12345" and result.agreeing == 2 and result.frames == 3
    assert all(name.startswith("ocr") for name in reader.threads)


async def test_read_on_trigger_without_frames_is_a_rejection() -> None:
    from edge_agent.vision.trigger import read_on_trigger

    result = await read_on_trigger(SnapshotSource("dead"), _StubReader({}), frames=2, timeout=0.1)
    assert result.text is None and "no frames" in result.reason


def test_public_names_resolve() -> None:
    import edge_agent.vision as v

    for name in v.__all__:
        assert getattr(v, name) is not None
