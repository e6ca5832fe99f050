"""Shared fixtures: one OCR engine for the whole session (model load is the slow part)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The team's labelled photos live in `shared/data` beside the repository (CI lays a copy there);
# EFENCE_VISION_DATA points elsewhere.
_CANDIDATES = [Path(__file__).resolve().parents[3] / "shared" / "data", Path("/work/shared/data")]
DATA = Path(
    os.environ.get("EFENCE_VISION_DATA") or next((p for p in _CANDIDATES if p.exists()), _CANDIDATES[0])
)


@pytest.fixture(scope="session")
def ocr_engine():
    from edge_agent.vision.ocr import OcrEngine

    return OcrEngine()


@pytest.fixture(scope="session")
def plate_reader(ocr_engine):
    from edge_agent.vision.plates import PlateReader

    return PlateReader(ocr_engine)


@pytest.fixture(scope="session")
def container_reader(ocr_engine):
    from edge_agent.vision.containers import ContainerReader

    return ContainerReader(ocr_engine)


def data_dir(kind: str) -> Path:
    path = DATA / kind
    if not (path / "labels.csv").exists():
        message = f"labelled photos not found at {path} (set EFENCE_VISION_DATA)"
        if os.environ.get(
            "CI"
        ):  # in CI the photos are part of the checkout's surroundings: missing is a failure
            pytest.fail(message)
        pytest.skip(message)
    return path
