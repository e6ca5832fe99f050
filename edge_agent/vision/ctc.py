"""Grammar-constrained decoding of a CTC recogniser's per-frame probabilities.

Greedy CTC decoding takes the most likely character at every frame and then checks the text
against a format, which loses two things: a character the model *almost* emitted (a dropped
digit), and the runner-up at a position where the format forbids the winner (``O`` where only
digits are allowed). Here the format is part of the search: a Viterbi pass over the standard
CTC state graph (blank, char_1, blank, char_2, ..., blank) where each char state may only emit
the characters its position class allows. The result carries a per-character confidence and
the cost the grammar imposed relative to the unconstrained best path, so callers can reject a
read that the grammar had to bend into shape.

Numpy only; the model that produced the probabilities is someone else's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_NEG = -1e9
_EPS = 1e-12


@dataclass(frozen=True)
class GrammarRead:
    """Best text a recogniser output admits under one format."""

    text: str
    char_conf: tuple[float, ...]
    #: Per position, the top alternatives at the character's peak frame: (char, probability).
    alternatives: tuple[tuple[tuple[str, float], ...], ...]
    path_logp: float
    greedy_logp: float
    #: Number of frames in the probability matrix (for normalising scores).
    frames: int
    #: Frame index where each character's probability peaks (its horizontal position).
    peaks: tuple[int, ...] = ()

    @property
    def confidence(self) -> float:
        """The weakest character decides: one unreadable character makes the whole read unsure."""
        return min(self.char_conf) if self.char_conf else 0.0

    @property
    def grammar_cost(self) -> float:
        """Log-probability the format cost relative to the unconstrained best path (>= ~0)."""
        return max(0.0, self.greedy_logp - self.path_logp)


class CtcGrammar:
    """Decoder for one fixed-length format given as a sequence of allowed-character classes.

    ``fold`` maps a look-alike character the position does not allow onto one it does (for
    example ``{"O": "0"}``): its probability mass is added to the allowed character, which is
    the principled form of "fix letter/digit confusions only where the format allows".
    ``separators`` are characters that count as blank (a plate's middle dot, spaces).
    """

    def __init__(
        self,
        charset: Sequence[str],
        classes: Sequence[str],
        *,
        fold: Mapping[str, Mapping[str, str]] | None = None,
        separators: str = " ·",
    ) -> None:
        index = {c: i for i, c in enumerate(charset)}
        self.charset = list(charset)
        self.classes = tuple(classes)
        self._blank_idx = np.array([0] + [index[c] for c in separators if c in index], dtype=np.int64)
        self._class_cache: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        fold = fold or {}
        for cls in set(self.classes):
            allowed = [c for c in cls if c in index]
            extra = fold.get(cls, {})
            sources = []
            for c in allowed:
                src = [index[c]] + [
                    index[s] for s, dst in extra.items() if dst == c and s in index and s not in cls
                ]
                sources.append(np.array(src, dtype=np.int64))
            self._class_cache[cls] = (allowed, sources)

    def _emissions(self, probs: np.ndarray, cls: str) -> tuple[list[str], np.ndarray]:
        allowed, sources = self._class_cache[cls]
        em = np.stack([probs[:, s].sum(axis=1) for s in sources], axis=1)
        return allowed, em

    def decode(self, probs: np.ndarray) -> GrammarRead | None:
        """Best reading of ``probs`` (frames x charset, softmax rows) under this format.

        Exact best-path search over (position, character) states, so a doubled character is
        only produced when the model put a blank between the two copies, as CTC requires.
        """
        t_len = probs.shape[0]
        k = len(self.classes)
        if t_len < k:
            return None
        blank = np.log(probs[:, self._blank_idx].sum(axis=1) + _EPS)
        per_pos = [self._emissions(probs, cls) for cls in self.classes]
        log_em = [np.log(em + _EPS) for _, em in per_pos]
        # same[k][j] is the index in position k-1 of the same character as (k, j), or -1.
        same: list[np.ndarray] = [np.full(len(per_pos[0][0]), -1)]
        for pos in range(1, k):
            prev = {c: i for i, c in enumerate(per_pos[pos - 1][0])}
            same.append(np.array([prev.get(c, -1) for c in per_pos[pos][0]]))

        blanks = np.full(k + 1, _NEG)
        blanks[0] = blank[0]
        chars = [np.full(len(per_pos[pos][0]), _NEG) for pos in range(k)]
        chars[0] = log_em[0][0].copy()
        # Back-pointers: for blanks, -1 stay / -2 from previous position's best char (index in
        # blank_src); for chars, -1 stay, -2 from blank, >=0 from that char of position k-1.
        blank_back = np.zeros((t_len, k + 1), dtype=np.int16)
        blank_src = np.zeros((t_len, k + 1), dtype=np.int16)
        char_back = [np.zeros((t_len, len(per_pos[pos][0])), dtype=np.int16) for pos in range(k)]
        for t in range(1, t_len):
            new_blanks = blanks.copy()
            blank_back[t] = -1
            for pos in range(1, k + 1):
                j = int(chars[pos - 1].argmax())
                if chars[pos - 1][j] > blanks[pos]:
                    new_blanks[pos] = chars[pos - 1][j]
                    blank_back[t, pos] = -2
                    blank_src[t, pos] = j
            new_blanks += blank[t]
            new_chars = []
            for pos in range(k):
                stay = chars[pos]
                best = np.maximum(stay, blanks[pos])
                back = np.where(stay >= blanks[pos], -1, -2).astype(np.int16)
                if pos > 0:
                    prev = chars[pos - 1]
                    order = np.argsort(-prev)[:2]
                    top = np.full(len(stay), order[0])
                    if len(order) > 1:
                        top = np.where(same[pos] == order[0], order[1], order[0])
                    from_prev = prev[top]
                    take = from_prev > best
                    best = np.where(take, from_prev, best)
                    back = np.where(take, top, back).astype(np.int16)
                char_back[pos][t] = back
                new_chars.append(best + log_em[pos][t])
            blanks, chars = new_blanks, new_chars

        last_j = int(chars[k - 1].argmax())
        if blanks[k] >= chars[k - 1][last_j]:
            path_logp, state = float(blanks[k]), ("b", k, 0)
        else:
            path_logp, state = float(chars[k - 1][last_j]), ("c", k - 1, last_j)
        if path_logp <= _NEG / 2:
            return None
        picked: list[int] = [-1] * k
        frames: list[list[int]] = [[] for _ in range(k)]
        for t in range(t_len - 1, -1, -1):
            kind, pos, j = state
            if kind == "c":
                picked[pos] = j
                frames[pos].append(t)
                if t == 0:
                    break
                b = int(char_back[pos][t, j])
                state = ("c", pos, j) if b == -1 else ("b", pos, 0) if b == -2 else ("c", pos - 1, b)
            else:
                if t == 0:
                    break
                b = int(blank_back[t, pos])
                state = ("b", pos, 0) if b == -1 else ("c", pos - 1, int(blank_src[t, pos]))
        if min(picked) < 0:
            return None

        text: list[str] = []
        confs: list[float] = []
        peaks: list[int] = []
        alts: list[tuple[tuple[str, float], ...]] = []
        for pos in range(k):
            allowed, em = per_pos[pos]
            j = picked[pos]
            fr = np.array(frames[pos])
            peak = int(fr[em[fr, j].argmax()])
            text.append(allowed[j])
            peaks.append(peak)
            confs.append(float(em[peak, j]))
            order = np.argsort(-em[peak])[:3]
            alts.append(tuple((allowed[int(o)], float(em[peak, o])) for o in order))
        greedy = float(np.log(probs.max(axis=1) + _EPS).sum())
        return GrammarRead(
            text="".join(text),
            char_conf=tuple(confs),
            alternatives=tuple(alts),
            path_logp=path_logp,
            greedy_logp=greedy,
            frames=t_len,
            peaks=tuple(peaks),
        )


def greedy_decode(charset: Sequence[str], probs: np.ndarray) -> tuple[str, float]:
    """Plain CTC best-path text and mean peak probability (the recogniser's own answer)."""
    idx = probs.argmax(axis=1)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    text = "".join(charset[i] for i in idx[keep])
    conf = float(probs.max(axis=1)[keep].mean()) if keep.any() else 0.0
    return text, conf
