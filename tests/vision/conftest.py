"""Shared fixtures: one OCR engine for the whole session (model load is the slow part)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("EFENCE_VISION_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


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
        pytest.skip(f"labelled photos not found at {path} (set EFENCE_VISION_DATA)")
    return path
