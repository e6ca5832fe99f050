"""Synthetic perimeter-camera video with intruders and the distractors that fool naive motion alarms.

A fixed camera looks along a fence over textured ground. The scene is split into fence
segments (image polygons). On top of it the generator can add:

* **intruders**: person-sized figures that walk into a chosen segment and linger;
* **lighting**: a sudden step (floodlight, cloud edge) or a slow ramp (dusk) of global brightness;
* **shake**: a random whole-frame translation of a few pixels per frame (wind on the pole);
* **animals**: small fast blobs crossing the ground (cats, dogs at distance, birds);
* **leaves**: tiny fluttering blobs; **rain**: short bright streaks on every frame.

Frames are BGR ``uint8`` arrays, so they feed straight into
``edge_agent.vision.perimeter.PerimeterAnalyser``; each frame carries the ground truth.
Needs numpy and OpenCV (the ``vision`` extra). ``python -m simulators.perimeter_video out.avi``
writes a sample clip; ``python -m simulators.perimeter_video --serve 8554`` serves the demo scenario
as an HTTP camera (``/snapshot.jpg``, ``/video.mjpg``) that an edge agent's perimeter watch can read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Intruder:
    """A person walking from ``start`` to ``stop`` (fractions of the frame) between two frames."""

    enter_frame: int
    start: tuple[float, float]
    stop: tuple[float, float]
    walk_frames: int = 30
    #: Height as a fraction of the frame height (a person at mid-distance).
    height: float = 0.32


@dataclass
class Scenario:
    """What to render. Defaults: an empty scene, 10 fps, 320x240."""

    frames: int = 120
    width: int = 320
    height: int = 240
    seed: int = 7
    intruders: list[Intruder] = field(default_factory=list)
    #: "step" (at ``lighting_frame``), "ramp" (from ``lighting_frame`` over 30 frames) or None.
    lighting: str | None = None
    lighting_frame: int = 50
    lighting_gain: float = 0.6
    shake_px: float = 0.0
    animals: int = 0
    leaves: int = 0
    rain: float = 0.0


@dataclass(frozen=True)
class SyntheticFrame:
    index: int
    image: np.ndarray
    #: Segment ids an intruder's feet are in on this frame.
    intruder_segments: tuple[str, ...]


def segments(width: int, height: int) -> dict[str, tuple[tuple[float, float], ...]]:
    """Two fence segments: left and right halves of the ground in front of the fence."""
    top = 0.35 * height
    return {
        "FENCE-A01": ((0, top), (width / 2, top), (width / 2, height), (0, height)),
        "FENCE-A02": ((width / 2, top), (width, top), (width, height), (width / 2, height)),
    }


def _background(sc: Scenario, rng: np.random.Generator) -> np.ndarray:
    h, w = sc.height, sc.width
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    sky = np.array([200, 170, 140], np.float32)
    ground = np.array([70, 110, 90], np.float32)
    horizon = 0.3
    img = np.where(y[..., None] < horizon, sky, ground * (0.8 + 0.4 * y[..., None])) * np.ones(
        (h, w, 1), np.float32
    )
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)  # ground texture
    # Fence: posts and two wires across the frame at the horizon.
    fence_y = int(0.33 * h)
    for x in range(0, w, max(8, w // 12)):
        cv2.line(img, (x, fence_y - int(0.12 * h)), (x, fence_y + 4), (60, 60, 60), 2)
    for dy in (-int(0.1 * h), -int(0.05 * h)):
        cv2.line(img, (0, fence_y + dy), (w, fence_y + dy), (90, 90, 90), 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_person(img: np.ndarray, cx: float, foot_y: float, height_px: float) -> None:
    w = max(4, int(height_px * 0.35))
    head = max(3, int(height_px * 0.12))
    body_top = int(foot_y - height_px + 2 * head)
    cv2.rectangle(img, (int(cx - w / 2), body_top), (int(cx + w / 2), int(foot_y)), (30, 25, 40), -1)
    cv2.circle(img, (int(cx), int(foot_y - height_px + head)), head, (50, 60, 80), -1)


def generate(sc: Scenario) -> Iterator[SyntheticFrame]:
    """Yield the frames of ``sc`` in order."""
    rng = np.random.default_rng(sc.seed)
    bg = _background(sc, rng)
    segs = segments(sc.width, sc.height)
    pad = int(np.ceil(sc.shake_px)) + 2
    bg_big = cv2.copyMakeBorder(bg, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    animals = [
        (
            rng.uniform(0, sc.width),
            rng.uniform(0.5, 0.95) * sc.height,
            rng.choice([-1, 1]) * rng.uniform(3, 6),
        )
        for _ in range(sc.animals)
    ]
    leaves = [(rng.uniform(0, sc.width), rng.uniform(0.4, 1.0) * sc.height) for _ in range(sc.leaves)]
    for i in range(sc.frames):
        scene = bg_big.copy()
        truth: list[str] = []
        for person in sc.intruders:
            if i < person.enter_frame:
                continue
            t = min(1.0, (i - person.enter_frame) / max(1, person.walk_frames))
            fx = (person.start[0] + t * (person.stop[0] - person.start[0])) * sc.width
            fy = (person.start[1] + t * (person.stop[1] - person.start[1])) * sc.height
            _draw_person(scene, fx + pad, fy + pad, person.height * sc.height)
            for seg, poly in segs.items():
                if cv2.pointPolygonTest(np.array(poly, np.float32), (float(fx), float(fy - 1)), False) >= 0:
                    truth.append(seg)
        for k, (ax, ay, vx) in enumerate(animals):
            x = (ax + vx * i) % sc.width
            cv2.ellipse(scene, (int(x) + pad, int(ay) + pad), (4, 2), 0, 0, 360, (40, 50, 60), -1)
            animals[k] = (ax, ay, vx)
        for lx, ly in leaves:
            jx, jy = rng.normal(0, 3, 2)
            cv2.circle(scene, (int(lx + jx) + pad, int(ly + jy) + pad), 1, (30, 90, 50), -1)
        if sc.shake_px > 0:
            ox, oy = rng.uniform(-sc.shake_px, sc.shake_px, 2)
        else:
            ox = oy = 0.0
        m = np.float32([[1, 0, -pad + ox], [0, 1, -pad + oy]])
        frame = cv2.warpAffine(scene, m, (sc.width, sc.height), borderMode=cv2.BORDER_REFLECT)
        gain = 1.0
        if sc.lighting == "step" and i >= sc.lighting_frame:
            gain = sc.lighting_gain
        elif sc.lighting == "ramp" and i >= sc.lighting_frame:
            gain = 1.0 + (sc.lighting_gain - 1.0) * min(1.0, (i - sc.lighting_frame) / 30)
        if gain != 1.0:
            frame = np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        if sc.rain > 0:
            n = int(sc.rain * sc.width * sc.height / 400)
            xs = rng.integers(0, sc.width, n)
            ys = rng.integers(0, sc.height - 6, n)
            for x, y in zip(xs, ys, strict=True):
                cv2.line(frame, (int(x), int(y)), (int(x) + 1, int(y) + 5), (210, 210, 210), 1)
        frame = np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
        yield SyntheticFrame(i, frame, tuple(truth))


class VideoFeed:
    """Plays a `Scenario` in real time as JPEGs, for `simulators.cameras.FrameHttpServer`.

    The frame shown is the one due at ``(now - started) * fps``; a reader that polls slower simply
    skips frames, as with a real camera. After the last frame the feed holds it (``loop=False``:
    a test knows exactly what was shown) or starts again (``loop=True``, the demo). Frames are rendered
    and encoded once, up front: a 320x240 scenario of a few hundred frames is a few MB.
    """

    def __init__(self, sc: Scenario, *, fps: float = 5.0, loop: bool = False, quality: int = 85) -> None:
        self.scenario = sc
        self.fps = fps
        self.loop = loop
        self._jpegs: list[bytes] = []
        self.truth: list[tuple[str, ...]] = []
        for f in generate(sc):
            ok, buf = cv2.imencode(".jpg", f.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:  # pragma: no cover - OpenCV always encodes a valid array
                raise RuntimeError("JPEG encoding failed")
            self._jpegs.append(buf.tobytes())
            self.truth.append(f.intruder_segments)
        self.started: float | None = None

    def index(self, now: float | None = None) -> int:
        """The frame due now (the clock starts at the first request)."""
        import time

        now = time.monotonic() if now is None else now
        if self.started is None:
            self.started = now
        i = int((now - self.started) * self.fps)
        return i % len(self._jpegs) if self.loop else min(i, len(self._jpegs) - 1)

    def __call__(self) -> bytes:
        return self._jpegs[self.index()]

    def shifted(self, offset_s: float) -> Callable[[], bytes]:
        """The same video `offset_s` later: several demo cameras from one rendering, intruders apart."""
        import time

        return lambda: self._jpegs[self.index(time.monotonic() + offset_s)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return _serve(int(argv[1]) if len(argv) > 1 else 8554)
    out = argv[0] if argv else "perimeter_demo.avi"
    sc = Scenario(
        frames=150,
        intruders=[Intruder(enter_frame=60, start=(0.1, 0.9), stop=(0.3, 0.6))],
        lighting="step",
        shake_px=2.0,
        animals=2,
        leaves=10,
        rain=0.3,
    )
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), 10, (sc.width, sc.height))
    for f in generate(sc):
        writer.write(f.image)
    writer.release()
    print(f"wrote {out}")
    return 0


def demo_scenario(seed: int = 7, frames: int = 300) -> Scenario:
    """A minute at 5 fps: distractors all along, an intruder walking into segment A01 after 30 s."""
    return Scenario(
        frames=frames,
        seed=seed,
        intruders=[Intruder(enter_frame=frames // 2, start=(0.1, 0.95), stop=(0.3, 0.7), walk_frames=15)],
        animals=1,
        leaves=8,
    )


def _serve(port: int) -> int:
    """`python -m simulators.perimeter_video --serve 8554`: the demo scenario as an HTTP camera."""
    import time

    from simulators.cameras import FrameHttpServer

    server = FrameHttpServer(VideoFeed(demo_scenario(), fps=5.0, loop=True), fps=5.0)
    server.start(port)
    print(
        f"perimeter camera: {server.url()} (snapshot) and {server.url('/video.mjpg')} (MJPEG); Ctrl-C stops"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
