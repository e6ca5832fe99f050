"""Perimeter analytics on synthetic video: intruders alarm on the right segment, distractors do not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.vision.perimeter import FenceZone, IntrusionEvent, PerimeterAnalyser, PerimeterCamera
from simulators.perimeter_video import Intruder, Scenario, generate, segments


def _run(sc: Scenario, **cam_kw) -> tuple[list[IntrusionEvent], list]:
    zones = [FenceZone(k, v) for k, v in segments(sc.width, sc.height).items()]
    analyser = PerimeterAnalyser(PerimeterCamera("cam-north-3", zones, **cam_kw))
    events: list[IntrusionEvent] = []
    frames = list(generate(sc))
    for f in frames:
        events.extend(analyser.process(f.image, timestamp=f.index / 10))
    return events, frames


def test_intruder_detected_and_linked_to_segment() -> None:
    sc = Scenario(frames=90, intruders=[Intruder(enter_frame=30, start=(0.1, 0.95), stop=(0.3, 0.7))])
    events, frames = _run(sc)
    assert len(events) == 1
    ev = events[0]
    assert ev.segment_id == "FENCE-A01" and ev.camera_id == "cam-north-3"
    # Raised within a second (10 frames) of the intruder entering, not before.
    assert 30 <= ev.frame_index <= 45
    assert "FENCE-A01" in frames[ev.frame_index].intruder_segments
    snap = cv2.imdecode(np.frombuffer(ev.snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert snap is not None and snap.shape == frames[0].image.shape


def test_intruder_in_other_segment_with_every_distractor() -> None:
    sc = Scenario(
        frames=110,
        intruders=[Intruder(enter_frame=70, start=(0.9, 0.95), stop=(0.7, 0.7))],
        lighting="step",
        lighting_frame=40,
        shake_px=2.0,
        animals=2,
        leaves=12,
        rain=0.4,
        seed=11,
    )
    events, _ = _run(sc)
    assert [e.segment_id for e in events] == ["FENCE-A02"]
    assert events[0].frame_index >= 70


@pytest.mark.parametrize(
    "distractors",
    [
        {"lighting": "step", "lighting_gain": 0.5},
        {"lighting": "step", "lighting_gain": 1.4},
        {"lighting": "ramp", "lighting_gain": 0.4},
        {"shake_px": 3.0},
        {"animals": 4},
        {"leaves": 25},
        {"rain": 0.6},
        {"lighting": "step", "shake_px": 3.0, "animals": 3, "leaves": 20, "rain": 0.5},
    ],
    ids=["dim", "floodlight", "dusk", "shake", "animals", "leaves", "rain", "all"],
)
def test_distractors_do_not_alarm(distractors: dict) -> None:
    events, _ = _run(Scenario(frames=100, seed=5, **distractors))
    assert events == []


def test_ignore_mask_suppresses_intruder_there() -> None:
    sc = Scenario(frames=80, intruders=[Intruder(enter_frame=25, start=(0.1, 0.95), stop=(0.3, 0.7))])
    left_half = ((0, 0), (sc.width / 2, 0), (sc.width / 2, sc.height), (0, sc.height))
    events, _ = _run(sc, ignore=[left_half])
    assert events == []


def test_warmup_suppresses_alarms_at_start() -> None:
    sc = Scenario(frames=40, intruders=[Intruder(enter_frame=0, start=(0.1, 0.95), stop=(0.12, 0.94))])
    events, _ = _run(sc, warmup=60)
    assert events == []
