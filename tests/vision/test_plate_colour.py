"""Plate background colour classification, which restricts the plate grammar (GA 36)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.vision.plates import COLOUR_FORMATS, plate_colour


def _plate(bgr: tuple[int, int, int], gradient: bool = False) -> np.ndarray:
    img = np.zeros((40, 130, 3), np.uint8)
    img[:] = bgr
    if gradient:  # new-energy plates fade from white at the top to green at the bottom
        for y in range(40):
            t = y / 39
            img[y] = (np.array([245, 245, 245]) * (1 - t) + np.array(bgr) * t).astype(np.uint8)
    for x in range(10, 120, 16):  # characters
        cv2.rectangle(img, (x, 8), (x + 8, 32), (250, 250, 250) if not gradient else (20, 20, 20), -1)
    return img


@pytest.mark.parametrize(
    ("bgr", "gradient", "colour"),
    [
        ((170, 70, 10), False, "blue"),
        ((60, 190, 90), True, "green"),
        ((20, 190, 230), False, "yellow"),
        ((235, 235, 235), False, "unknown"),  # white (police, military): all formats allowed
        ((15, 15, 15), False, "unknown"),  # black (foreign-owned, HK/Macau)
    ],
)
def test_colour(bgr, gradient, colour) -> None:
    assert plate_colour(_plate(bgr, gradient)) == colour


def test_colour_to_formats() -> None:
    assert COLOUR_FORMATS["blue"] == ("ordinary",)
    assert set(COLOUR_FORMATS["green"]) == {"nev_small", "nev_large"}
    assert "special" in COLOUR_FORMATS["yellow"]
    assert set(COLOUR_FORMATS["unknown"]) == {"ordinary", "special", "nev_small", "nev_large"}
