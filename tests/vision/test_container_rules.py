"""The container reader's acceptance rules, on hand-made reads (no OCR model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.vision import iso6346
from edge_agent.vision.containers import ContainerReader, _edit_distance, _vertical_to_line
from edge_agent.vision.ctc import GrammarRead


class _NoEngine:
    charset = ["blank", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", " "]


def _reader() -> ContainerReader:
    return ContainerReader(_NoEngine())  # type: ignore[arg-type]


def _read(text: str, conf: list[float] | None = None, alts: dict[int, list[tuple[str, float]]] | None = None):
    conf = conf or [0.99] * 11
    alternatives = []
    for i, ch in enumerate(text):
        alternatives.append(tuple((alts or {}).get(i, [(ch, conf[i])])))
    return GrammarRead(text, tuple(conf), tuple(alternatives), 0.0, 0.0, 40)


def test_valid_number_accepted() -> None:
    assert _reader()._validate(_read("CSQU3054383")) == ("CSQU3054383", 0.99, False)


def test_confident_read_failing_check_is_rejected() -> None:
    assert _reader()._validate(_read("CSQU3054384")) is None


def test_single_uncertain_digit_corrected_when_unique_and_supported() -> None:
    conf = [0.99] * 11
    conf[6] = 0.55  # '5' read as '6', unsure
    read = _read("CSQU3064383", conf, {6: [("6", 0.55), ("5", 0.35), ("8", 0.05)]})
    assert _reader()._validate(read) == ("CSQU3054383", 0.35, True)


def test_correction_needs_model_support() -> None:
    conf = [0.99] * 11
    conf[6] = 0.55
    read = _read("CSQU3064383", conf, {6: [("6", 0.55), ("8", 0.3), ("0", 0.1)]})  # '5' not supported
    assert _reader()._validate(read) is None


def test_two_uncertain_characters_are_not_corrected() -> None:
    conf = [0.99] * 11
    conf[5] = conf[6] = 0.6
    read = _read("CSQU3064383", conf, {6: [("6", 0.6), ("5", 0.35)]})
    assert _reader()._validate(read) is None


def test_check_digit_itself_is_never_corrected() -> None:
    conf = [0.99] * 10 + [0.5]
    read = _read("CSQU3054384", conf, {10: [("4", 0.5), ("3", 0.45)]})
    assert _reader()._validate(read) is None


def test_letters_eleven_apart_cannot_be_decided_by_the_check() -> None:
    # AAGU0000002 and AAQU0000002 are both valid: an unsure third letter read as something
    # else must not be "corrected" to either.
    assert iso6346.is_valid("AAGU0000002") and iso6346.is_valid("AAQU0000002")
    conf = [0.99] * 11
    conf[2] = 0.5
    read = _read("AACU0000002", conf, {2: [("C", 0.5), ("G", 0.3), ("Q", 0.15)]})
    assert _reader()._validate(read) is None


def test_weak_check_digit_rejected() -> None:
    conf = [0.99] * 10 + [0.1]
    assert _reader()._validate(_read("CSQU3054383", conf)) is None


@pytest.mark.parametrize(
    ("a", "b", "d"), [("GLDU7496125", "GLDU7496125", 0), ("GLDU749612", "GLDU7496125", 1), ("", "AB", 2)]
)
def test_edit_distance(a: str, b: str, d: int) -> None:
    assert _edit_distance(a, b) == d


def test_vertical_strip_relaid_as_line() -> None:
    strip = np.full((200, 30, 3), 230, np.uint8)
    for k in range(6):  # six dark glyphs stacked with gaps
        strip[10 + 32 * k : 34 + 32 * k, 6:24] = 20
    line = _vertical_to_line(strip)
    assert line is not None
    assert line.shape[1] > line.shape[0]  # now a horizontal line
    cols = (line[..., 0] < 100).any(axis=0)
    runs = int(np.count_nonzero(cols[1:] & ~cols[:-1])) + int(cols[0])
    assert runs == 6
