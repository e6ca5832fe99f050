"""Grammar-constrained CTC decoding on hand-built probability matrices."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.vision.ctc import CtcGrammar, greedy_decode

CHARSET = ["blank", "A", "B", "O", "0", "1", "7", "T", "·", " "]


def _probs(frames: list[dict[str, float]]) -> np.ndarray:
    """Rows from {char: prob}; the rest of each row's mass goes to blank."""
    p = np.zeros((len(frames), len(CHARSET)), np.float32)
    for t, row in enumerate(frames):
        for ch, v in row.items():
            p[t, CHARSET.index(ch)] = v
        p[t, 0] += 1.0 - p[t].sum()
    return p


def test_constrained_read_matches_greedy_when_format_fits() -> None:
    p = _probs([{"A": 0.95}, {}, {"1": 0.9}, {}, {"7": 0.97}])
    g = CtcGrammar(CHARSET, ("AB", "017", "017"))
    r = g.decode(p)
    assert r is not None and r.text == "A17"
    assert greedy_decode(CHARSET, p)[0] == "A17"
    assert r.confidence == pytest.approx(0.9, abs=1e-3)
    assert r.grammar_cost == pytest.approx(0.0, abs=1e-3)


def test_fold_turns_letter_into_digit_only_where_digits_required() -> None:
    p = _probs([{"A": 0.95}, {}, {"O": 0.8, "0": 0.1}, {}, {"1": 0.9}])
    plain = CtcGrammar(CHARSET, ("AB", "017", "017")).decode(p)
    folded = CtcGrammar(CHARSET, ("AB", "017", "017"), fold={"017": {"O": "0"}}).decode(p)
    assert plain is not None and folded is not None
    assert plain.text == folded.text == "A01"
    assert plain.char_conf[1] == pytest.approx(0.1, abs=1e-3)  # without folding the 0 is weak
    assert folded.char_conf[1] == pytest.approx(0.9, abs=1e-3)  # O's mass counts for 0


def test_doubled_character_needs_a_blank_between() -> None:
    # "11" emitted as one run of 1s: CTC says that is a single 1, so a 3-char format must
    # find its third character elsewhere (and pays for it), not split the run.
    run = _probs([{"A": 0.95}, {"1": 0.95}, {"1": 0.95}, {"7": 0.05}])
    r = CtcGrammar(CHARSET, ("AB", "017", "017")).decode(run)
    assert r is not None
    assert r.text != "A11" or r.confidence < 0.5
    sep = _probs([{"A": 0.95}, {"1": 0.95}, {}, {"1": 0.95}])
    r2 = CtcGrammar(CHARSET, ("AB", "017", "017")).decode(sep)
    assert r2 is not None and r2.text == "A11" and r2.confidence > 0.9


def test_separators_count_as_blank() -> None:
    p = _probs([{"A": 0.95}, {"·": 0.9}, {"1": 0.9}, {" ": 0.9}, {"7": 0.9}])
    r = CtcGrammar(CHARSET, ("AB", "017", "017")).decode(p)
    assert r is not None and r.text == "A17" and r.grammar_cost < 0.5


def test_dropped_character_is_recovered_with_low_confidence() -> None:
    # The model barely emits the middle 1 (0.2): the 3-char grammar still places it, but the
    # weakest-character confidence says so.
    p = _probs([{"A": 0.95}, {}, {"1": 0.2}, {}, {"7": 0.95}])
    r = CtcGrammar(CHARSET, ("AB", "017", "017")).decode(p)
    assert r is not None and r.text == "A17" and r.confidence == pytest.approx(0.2, abs=1e-3)


def test_too_few_frames() -> None:
    assert CtcGrammar(CHARSET, ("AB", "017", "017")).decode(_probs([{"A": 1.0}])) is None
