"""GA 36 plate normalisation and validation (PROTOCOLS.md §6.4)."""

from __future__ import annotations

import pytest

from edge_agent.vision import plate_format as pf


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("皖A·13H25", "皖A13H25"),  # middle dot
        ("皖A 13H25", "皖A13H25"),  # space
        ("沪a-12345", "沪A12345"),  # hyphen, lower case
        ("京Ａ１２３４５", "京A12345"),  # full-width
        ("皖AD19789", "皖AD19789"),  # small new-energy
        ("皖A12345D", "皖A12345D"),  # large new-energy
        ("沪AO1234", "沪A01234"),  # O never on plates -> 0 (serial admits digits)
        ("沪A1I234", "沪A11234"),  # I never on plates -> 1
        ("沪81234X", "沪B1234X"),  # authority must be a letter: 8 -> B
        ("粤Z1234港", "粤Z1234港"),  # Hong Kong cross-border
        ("沪A1234挂", "沪A1234挂"),  # trailer
        ("皖AD19S89", "皖AD19589"),  # NEV small: the last four are digits, S -> 5
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert pf.normalise_plate(raw) == expected
    assert pf.is_valid_plate(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "A12345",  # no province
        "皖A1234",  # too short
        "皖A1234567",  # too long
        "港A12345",  # not one of the 31 provinces
        "皖I12345",  # I is not an authority letter and nothing it resembles is
        "皖AD1978B",  # fits small NEV (B->8) and large NEV (D->0) equally: ambiguous
        "",
    ],
)
def test_rejects(raw: str) -> None:
    assert pf.normalise_plate(raw) is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("皖A13H25", "ordinary"),
        ("皖AD11166", "nev_small"),
        ("皖A12345F", "nev_large"),
        ("沪A1234挂", "special"),
        ("皖AO1234", None),
    ],
)
def test_kind(text: str, kind: str | None) -> None:
    assert pf.plate_kind(text) == kind


def test_thirty_one_provinces() -> None:
    assert len(pf.PROVINCES) == 31 == len(set(pf.PROVINCES))


def test_letters_exclude_i_and_o() -> None:
    assert "I" not in pf.LETTERS and "O" not in pf.LETTERS and len(pf.LETTERS) == 24
