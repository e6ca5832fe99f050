"""`vision` container (and plate) camera drivers on their own: a real photo streamed as MJPEG is read on
the arming trigger without stalling the event loop, and the gate after consensus never lets a number
that fails ISO 6346, a read below `min_confidence` or a rejected read through as a confident one."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drivers.container_camera import ContainerCameraDriver
from edge_agent.drivers.plate_camera import PlateCameraDriver
from edge_agent.drivers.vision_camera import VisionResult
from edge_agent.observations import ContainerSighting, PlateSighting
from edge_agent.plates import clean_plate_text, normalise_plate
from edge_agent.vision.iso6346 import is_valid
from firmware_configs.devices import ContainerCameraConfig, PlateCameraConfig
from simulators.cameras import FrameHttpServer, PhotoFeed
from tests.vision.conftest import data_dir

PHOTO = "container_01.jpg"


def _container_config(url: str, **vision) -> ContainerCameraConfig:
    return ContainerCameraConfig.model_validate(
        {
            "id": "box-front",
            "type": "container_camera",
            "position": "front",
            "protocol": "vision",
            "stream_url": url,
            "vision": vision,
        }
    )


async def test_streamed_container_photo_is_read_on_trigger_off_the_event_loop():
    folder = data_dir("containers")
    with (folder / "labels.csv").open(encoding="utf-8") as f:
        label = next(r["container_number"] for r in csv.DictReader(f) if r["filename"] == PHOTO)
    server = FrameHttpServer(PhotoFeed(folder / PHOTO), fps=4)
    server.start()
    seen: list = []
    config = _container_config(server.url("/video.mjpg"), source="stream", frames=2, min_agree=2)
    driver = ContainerCameraDriver(config, seen.append, lane="in-1")
    task = asyncio.create_task(driver.run())
    gaps: list[float] = []

    async def ticker() -> None:  # the lane's event loop must keep turning while boxes are read
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    try:
        async with asyncio.timeout(50):
            await driver.vision.ready.wait()
            while driver.vision.source.buffer.total < 2:
                await asyncio.sleep(0.05)
            probe = asyncio.create_task(ticker())
            driver.on_arming(time.monotonic())
            driver.on_arming(time.monotonic())  # a flickering loop: coalesced, not queued
            while not seen:
                await asyncio.sleep(0.05)
            probe.cancel()
        [sighting] = seen
        assert isinstance(sighting, ContainerSighting)
        assert sighting.number == label and sighting.position == "front"
        assert set(sighting.images) == {"container", "frame"}
        assert all(v[:2] == b"\xff\xd8" for v in sighting.images.values())
        assert driver.health.observed == "up"
        assert driver.health.counters["frames_read"] == 2
        assert max(gaps) < 0.5, f"event loop stalled {max(gaps):.2f} s during the read"
        # the ring buffer stayed bounded while the reader was busy
        assert len(driver.vision.source.buffer) <= config.vision.buffer_frames
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.stop()


_ISO_LIKE = st.builds(
    lambda owner, cat, serial, digit: f"{owner}{cat}{serial}{digit}",
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    st.sampled_from("UJZ"),
    st.text("0123456789", min_size=6, max_size=6),
    st.integers(0, 9),
)


@settings(max_examples=200, deadline=None)
@given(number=st.one_of(_ISO_LIKE, st.text(max_size=14), st.none()), confidence=st.floats(0, 1))
def test_vision_container_read_is_a_number_only_if_iso6346_valid_and_confident(number, confidence):
    emitted: list = []
    driver = ContainerCameraDriver(_container_config("http://127.0.0.1:9/x.jpg"), emitted.append)
    driver._vision_result(VisionResult(number, confidence, "ok", frames=2, seq=1))
    [sighting] = emitted
    if sighting.number is not None:
        assert number is not None and is_valid(sighting.number)
        assert sighting.number == clean_plate_text(number)
        assert confidence >= driver.config.min_confidence


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(st.none(), st.text(max_size=10), st.sampled_from(["沪A12345", "皖AD14488", "京A·1234B"])),
    confidence=st.floats(0, 1),
    frames=st.integers(0, 3),
)
def test_vision_plate_read_is_a_plate_only_if_well_formed_and_confident(text, confidence, frames):
    emitted: list = []
    config = PlateCameraConfig.model_validate(
        {"id": "cam", "type": "plate_camera", "protocol": "vision", "stream_url": "http://127.0.0.1:9/x.jpg"}
    )
    driver = PlateCameraDriver(config, emitted.append)
    driver._vision_result(VisionResult(text, confidence, "ok", frames=frames, seq=1))
    [sighting] = emitted
    assert isinstance(sighting, PlateSighting)
    if text is None or confidence < config.min_confidence:
        assert sighting.plate is None
    else:
        assert sighting.plate == normalise_plate(text)
    # a read that got no frame is no sign of life from the camera
    assert driver.health.observed == ("up" if frames else "unknown")


def test_only_a_vision_camera_can_be_asked_to_read_again():
    """The lane's re-gather asks drivers with a `regather`; a push camera must not pretend it can."""
    push = PlateCameraConfig.model_validate(
        {"id": "cam", "type": "plate_camera", "protocol": "hikvision-isapi", "listen_path": "/anpr"}
    )
    vision = PlateCameraConfig.model_validate(
        {"id": "cam", "type": "plate_camera", "protocol": "vision", "stream_url": "http://127.0.0.1:9/x.jpg"}
    )
    assert PlateCameraDriver(push, lambda obs: None).regather is None
    assert callable(PlateCameraDriver(vision, lambda obs: None).regather)
