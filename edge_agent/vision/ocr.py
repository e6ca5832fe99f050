"""Thin wrapper over RapidOCR's ONNX text detector and recogniser.

We call the detector and the recogniser separately because the readers need the recogniser's
raw per-frame probabilities (for grammar-constrained decoding), not its greedy text. Importing
this module needs the ``vision`` extra (OpenCV, rapidocr-onnxruntime).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

REC_HEIGHT = 48
#: The recogniser was trained on lines padded to at least 320 px (PaddleOCR's 3x48x320 input);
#: feeding a short plate crop unpadded measurably lowers its confidence, so pad like training.
REC_MIN_WIDTH = 320
#: Below this many pixels of text height the recogniser's input is mostly interpolation.
MIN_TEXT_HEIGHT = 8


@dataclass(frozen=True)
class TextBox:
    """One detected text line: its quadrilateral (float32, 4x2, clockwise from top-left)."""

    quad: np.ndarray

    @property
    def width(self) -> float:
        q = self.quad
        return float((np.linalg.norm(q[0] - q[1]) + np.linalg.norm(q[3] - q[2])) / 2)

    @property
    def height(self) -> float:
        q = self.quad
        return float((np.linalg.norm(q[0] - q[3]) + np.linalg.norm(q[1] - q[2])) / 2)

    @property
    def centre(self) -> tuple[float, float]:
        c = self.quad.mean(axis=0)
        return float(c[0]), float(c[1])


class OcrEngine:
    """RapidOCR detector + recogniser, loaded once and shared (the models take ~1 s to load).

    Safe to call from several threads: ONNX Runtime sessions are thread-safe, and the only
    shared mutable state (the detector's post-processing knobs) is guarded by a lock.
    """

    def __init__(self, threads: int = 0) -> None:
        from rapidocr_onnxruntime import RapidOCR

        kwargs = {"intra_op_num_threads": threads} if threads > 0 else {}
        self._ocr = RapidOCR(**kwargs)
        self._lock = threading.Lock()
        self.charset: list[str] = list(self._ocr.text_rec.postprocess_op.character)

    # -- detection -------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[TextBox]:
        """Text-line boxes in ``image`` (BGR), in image coordinates."""
        with self._lock:
            boxes, _ = self._ocr.text_det(image)
        if boxes is None:
            return []
        return [TextBox(np.asarray(b, dtype=np.float32).reshape(4, 2)) for b in boxes]

    # -- recognition -----------------------------------------------------------------------
    def recognise(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Per-frame softmax probabilities (frames x charset) for each BGR text-line crop."""
        out: list[np.ndarray] = []
        session = self._ocr.text_rec.session
        for crop in crops:
            h, w = crop.shape[:2]
            if h < 2 or w < 2:
                out.append(np.zeros((0, len(self.charset)), dtype=np.float32))
                continue
            if crop.ndim == 2:
                crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
            new_w = max(8, int(math.ceil(REC_HEIGHT * w / h)))
            img = cv2.resize(crop, (new_w, REC_HEIGHT))
            x = np.zeros((3, REC_HEIGHT, max(REC_MIN_WIDTH, new_w)), dtype=np.float32)
            x[:, :, :new_w] = (img.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            probs = session(x[np.newaxis])[0][0]
            out.append(np.asarray(probs, dtype=np.float32))
        return out

    def read_full_frame(self, image: np.ndarray, use_cls: bool = False) -> list[tuple[str, float]]:
        """Plain RapidOCR on the whole frame (the baseline the readers are measured against)."""
        with self._lock:
            result, _ = self._ocr(image, use_cls=use_cls)
        return [(str(r[1]), float(r[2])) for r in (result or [])]


def warp_quad(image: np.ndarray, quad: np.ndarray, pad_x: float = 0.0, pad_y: float = 0.0) -> np.ndarray:
    """Rectify the quadrilateral ``quad`` (TL, TR, BR, BL) to an upright crop.

    ``pad_x``/``pad_y`` grow the quad by that fraction of its width/height on each side, so a
    tight detector box does not clip the first or last character.
    """
    q = np.asarray(quad, dtype=np.float32)
    ux = (q[1] - q[0] + q[2] - q[3]) / 2
    uy = (q[3] - q[0] + q[2] - q[1]) / 2
    grown = np.array(
        [
            q[0] - ux * pad_x - uy * pad_y,
            q[1] + ux * pad_x - uy * pad_y,
            q[2] + ux * pad_x + uy * pad_y,
            q[3] - ux * pad_x + uy * pad_y,
        ],
        dtype=np.float32,
    )
    w = max(2, int(round(np.linalg.norm(grown[1] - grown[0]))))
    h = max(2, int(round(np.linalg.norm(grown[3] - grown[0]))))
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(grown, dst)
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order 4 points as TL, TR, BR, BL (by sums and differences of coordinates)."""
    p = np.asarray(points, dtype=np.float32).reshape(4, 2)
    s = p.sum(axis=1)
    d = np.diff(p, axis=1).ravel()
    return np.array([p[s.argmin()], p[d.argmin()], p[s.argmax()], p[d.argmax()]], dtype=np.float32)
