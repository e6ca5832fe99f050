"""Container-number reader (ISO 6346, PROTOCOLS.md §6.5).

The number on a container door is rarely one text line: the owner code (``GLDU``), the serial
(``749612``) and the boxed check digit (``5``) are often separate boxes, staggered or stacked,
and sometimes written vertically. So the reader:

1. detects text boxes (RapidOCR detector) and recognises each box once, plus a copy widened to
   the right in case the detector missed the boxed check digit;
2. chains boxes that sit next to or under each other with a similar text height, and decodes
   the *concatenated* per-frame probabilities under the 11-character grammar (3 letters, a
   category letter U/J/Z, 6 digits, a check digit), so the grammar spans box boundaries;
3. accepts a read only if the ISO 6346 check digit matches. If it does not, one correction is
   tried, and only when exactly one character is uncertain and the check digit then determines
   it uniquely, with the model giving that character real probability. Anything else is
   rejected: a number that fails the check is never reported.

Vertical layouts (letters stacked top to bottom) are cut into glyphs by a row profile and
re-laid horizontally before recognition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.vision import iso6346
from edge_agent.vision.ctc import CtcGrammar, GrammarRead
from edge_agent.vision.ocr import OcrEngine, TextBox, warp_quad

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
CONTAINER_CLASSES: tuple[str, ...] = (UPPER, UPPER, UPPER, iso6346.CATEGORY_LETTERS, *([DIGITS] * 7))
#: Look-alikes folded into the class that admits them (owner code letters / serial digits).
_FOLDS = {
    UPPER: {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G", "4": "A"},
    iso6346.CATEGORY_LETTERS: {"V": "U", "0": "U", "J": "J", "2": "Z"},
    DIGITS: {
        "O": "0",
        "D": "0",
        "Q": "0",
        "I": "1",
        "L": "1",
        "|": "1",
        "Z": "2",
        "S": "5",
        "B": "8",
        "G": "6",
    },
}
#: Every character of an accepted read must be at least this probable...
CHAR_THRESHOLD = 0.5
#: ...except the boxed check digit, often half-hidden by its frame: the arithmetic agreement
#: with the other ten characters is the stronger evidence, so it needs only real support.
CHECK_DIGIT_SUPPORT = 0.2
#: A character below this is "uncertain" and may be corrected by the check digit.
CERTAIN = 0.9
#: The corrected character must have at least this probability in the model's own output.
CORRECTION_SUPPORT = 0.02
MAX_BOXES = 24
#: The grammar may not invent: the unconstrained text of a chain must be within this many
#: edits of the number read from it (box borders around the check digit cost one or two).
MAX_EDITS = 2
_SIZE_TYPE_RE = re.compile(r"[1-9LMNP][0-9A-Z][A-Z][0-9A-Z]")


@dataclass(frozen=True)
class ContainerRead:
    """Outcome for one frame. ``number is None`` means no ISO 6346-valid number was read."""

    number: str | None
    confidence: float
    reason: str
    owner: str | None = None
    size_type: str | None = None
    corrected: bool = False
    #: Every distinct valid number seen (a truck may carry two 20 ft boxes), best first.
    all_numbers: tuple[str, ...] = ()
    quad: np.ndarray | None = None
    crop: np.ndarray | None = None
    frame: np.ndarray | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.number is not None

    @property
    def text(self) -> str | None:
        """Alias of ``number`` so container reads can go through the same consensus."""
        return self.number


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (small strings only)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _trim(probs: np.ndarray, margin: int = 2) -> np.ndarray:
    """Drop the leading/trailing all-blank frames (the recogniser's padding)."""
    idx = np.nonzero(probs.argmax(axis=1) != 0)[0]
    if len(idx) == 0:
        return probs[:0]
    return probs[max(0, idx[0] - margin) : idx[-1] + margin + 1]


def _vertical_to_line(strip: np.ndarray) -> np.ndarray | None:
    """Re-lay a vertical text strip (glyphs stacked top to bottom) as one horizontal line."""
    gray = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    w = gray.shape[1]
    _, bw = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Text is the minority colour in a text strip; make it white.
    if bw.mean() > 127:
        bw = 255 - bw
    profile = (bw > 0).sum(axis=1) > max(1, 0.08 * w)
    runs: list[tuple[int, int]] = []
    start = None
    for y, on in enumerate(profile):
        if on and start is None:
            start = y
        elif not on and start is not None:
            runs.append((start, y))
            start = None
    if start is not None:
        runs.append((start, len(profile)))
    runs = [(a, b) for a, b in runs if b - a >= max(3, 0.25 * w)]
    if len(runs) < 4:
        return None
    height = max(b - a for a, b in runs) + 8
    bg = np.median(strip.reshape(-1, 3), axis=0).astype(np.uint8)
    gap = np.empty((height, max(4, w // 3), 3), np.uint8)
    gap[:] = bg
    cells = []
    for a, b in runs:
        cell = np.empty((height, w, 3), np.uint8)
        cell[:] = bg
        top = (height - (b - a)) // 2
        cell[top : top + b - a] = strip[a:b]
        cells.extend([cell, gap])
    return np.hstack(cells)


class ContainerReader:
    """Reads ISO 6346 container numbers (and the size/type code) from BGR frames."""

    def __init__(self, engine: OcrEngine | None = None, *, char_threshold: float = CHAR_THRESHOLD) -> None:
        self.engine = engine or OcrEngine()
        self.char_threshold = char_threshold
        self._grammar = CtcGrammar(self.engine.charset, CONTAINER_CLASSES, fold=_FOLDS, separators=" ·-|[]()")

    # -- geometry ------------------------------------------------------------------------
    @staticmethod
    def _follows(a: TextBox, b: TextBox) -> bool:
        """True if ``b`` may continue ``a`` in reading order (right of it, or the line below)."""
        ha, hb = a.height, b.height
        if not (0.6 <= hb / ha <= 1.7):
            return False
        ax0, ay0 = a.quad.min(axis=0)
        ax1, ay1 = a.quad.max(axis=0)
        bx0, by0 = b.quad.min(axis=0)
        bx1, by1 = b.quad.max(axis=0)
        h = max(ha, hb)
        # Same line (allowing staggered owner code / serial): b starts right of a, small gap.
        if (
            bx0 > ax0 + 0.5 * (ax1 - ax0)
            and bx0 - ax1 < 3.0 * h
            and abs((ay0 + ay1) - (by0 + by1)) / 2 < 1.2 * h
        ):
            return True
        # Next line: b just below a and overlapping it horizontally.
        return 0 <= by0 - ay1 < 1.2 * h and min(ax1, bx1) - max(ax0, bx0) > -0.5 * h

    def _crop(self, image: np.ndarray, box: TextBox, widen: float = 0.0) -> np.ndarray:
        crop = warp_quad(image, box.quad, 0.02, 0.1)
        if widen > 0:
            q = box.quad.copy()
            ux = (q[1] - q[0]) / max(1e-6, np.linalg.norm(q[1] - q[0]))
            q[1] += ux * widen * box.height
            q[2] += ux * widen * box.height
            crop = warp_quad(image, q, 0.02, 0.1)
        return crop

    # -- reading -------------------------------------------------------------------------
    def _decode(self, probs: np.ndarray) -> tuple[str, float, bool] | None:
        read = self._grammar.decode(probs)
        if read is None:
            return None
        return self._validate(read)

    def _validate(self, read: GrammarRead) -> tuple[str, float, bool] | None:
        text = read.text
        if read.char_conf[10] < CHECK_DIGIT_SUPPORT:
            return None
        if iso6346.is_valid(text):
            return text, min(read.char_conf[:10]), False
        uncertain = [i for i, c in enumerate(read.char_conf) if c < CERTAIN]
        if len(uncertain) != 1 or uncertain[0] == 10:
            # Confidently wrong somewhere, several unknowns, or the check digit itself in doubt
            # (correcting it would make the check vacuous): no correction.
            return None
        pos = uncertain[0]
        # Every character of the position's class that would satisfy the check digit. Letters
        # whose values differ by 11 (e.g. G/Q) satisfy it equally: then the digit cannot decide.
        valid = [
            ch
            for ch in CONTAINER_CLASSES[pos]
            if ch != text[pos] and iso6346.is_valid(text[:pos] + ch + text[pos + 1 :])
        ]
        support = dict(read.alternatives[pos])
        fixes = [
            (text[:pos] + ch + text[pos + 1 :], support[ch])
            for ch in valid
            if support.get(ch, 0.0) >= CORRECTION_SUPPORT
        ]
        if len(valid) != 1 or len(fixes) != 1:
            return None
        cand, p = fixes[0]
        confs = list(read.char_conf[:10])
        confs[pos] = p
        return cand, min(confs), True

    def read(self, image: np.ndarray, *, keep_frame: bool = True) -> ContainerRead:
        """Read the container number(s) in ``image``; ``number=None`` if none passes ISO 6346."""
        frame = image if keep_frame else None
        if image is None or image.size == 0:
            return ContainerRead(None, 0.0, "empty frame")
        if image.ndim == 2:  # monochrome (IR night) camera
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        boxes = [b for b in self.engine.detect(image) if b.height >= 8][:MAX_BOXES]
        if not boxes:
            return ContainerRead(None, 0.0, "no text found", frame=frame)

        plain: list[np.ndarray] = []
        for b in boxes:
            if b.height > 2.5 * b.width:  # vertical layout (TextBox.width runs along the quad's top)
                # Grow along the strip by about one glyph: the detector often clips the end ones.
                strip = warp_quad(image, b.quad, 0.1, 1.2 * b.width / b.height)
                line = _vertical_to_line(strip)
                plain.append(line if line is not None else cv2.rotate(strip, cv2.ROTATE_90_CLOCKWISE))
            else:
                plain.append(self._crop(image, b))
        probs_plain = [_trim(p) for p in self.engine.recognise(plain)]
        texts = [self._greedy(p) for p in probs_plain]
        # A serial box may have lost its boxed check digit to the detector: re-read it widened.
        probs_wide = list(probs_plain)
        wide_texts = list(texts)
        serial_like = [
            i
            for i, b in enumerate(boxes)
            if b.height <= 2.5 * b.width and sum(c.isdigit() for c in texts[i]) >= 3
        ]
        for i, p in zip(
            serial_like,
            self.engine.recognise([self._crop(image, boxes[i], widen=1.6) for i in serial_like]),
            strict=True,
        ):
            probs_wide[i] = _trim(p)
            wide_texts[i] = self._greedy(probs_wide[i])

        # Chains of up to 3 boxes in reading order; the last box also in its widened form.
        chains: list[tuple[int, ...]] = [(i,) for i in range(len(boxes))]
        for i, a in enumerate(boxes):
            for j, b in enumerate(boxes):
                if i != j and self._follows(a, b):
                    chains.append((i, j))
                    chains.extend(
                        (i, j, k) for k, c in enumerate(boxes) if k not in (i, j) and self._follows(b, c)
                    )
        found: dict[str, tuple[float, bool, tuple[int, ...]]] = {}
        tried: set[tuple[tuple[int, ...], str]] = set()
        for chain in chains:
            for last, last_texts in ((probs_plain, texts), (probs_wide, wide_texts)):
                raw = "".join(texts[i] for i in chain[:-1]) + last_texts[chain[-1]]
                # Cheap shape test before the Viterbi pass: 4 letters + 7 digits, give or take.
                digits = sum(c.isdigit() for c in raw)
                if not (8 <= len(raw) <= 11 + 2 * MAX_EDITS) or digits < 5 or len(raw) - digits < 2:
                    continue
                if (chain, raw) in tried:
                    continue
                tried.add((chain, raw))
                seq = [probs_plain[i] for i in chain[:-1]] + [last[chain[-1]]]
                result = self._decode(np.concatenate(seq, axis=0))
                if result is None:
                    continue
                number, conf, corrected = result
                if _edit_distance(raw, number) > MAX_EDITS:
                    continue
                if conf < self.char_threshold:
                    continue
                if number not in found or conf > found[number][0]:
                    found[number] = (conf, corrected, chain)
        if not found:
            return ContainerRead(None, 0.0, "no ISO 6346-valid number", frame=frame)
        ranked = sorted(found.items(), key=lambda kv: -kv[1][0])
        number, (conf, corrected, chain) = ranked[0]
        anchor = boxes[chain[-1]]
        return ContainerRead(
            number=number,
            confidence=conf,
            reason="check digit corrected" if corrected else "ok",
            owner=number[:4],
            size_type=self._size_type(boxes, texts, anchor),
            corrected=corrected,
            all_numbers=tuple(n for n, _ in ranked),
            quad=boxes[chain[0]].quad,
            crop=self._evidence_crop(image, [boxes[i] for i in chain]),
            frame=frame,
            candidates=[(n, round(v[0], 4)) for n, v in ranked],
        )

    @staticmethod
    def _evidence_crop(image: np.ndarray, boxes: list[TextBox]) -> np.ndarray:
        """The part of the frame holding all boxes the number was read from, with a margin."""
        pts = np.concatenate([b.quad for b in boxes])
        margin = max(b.height for b in boxes)
        x0, y0 = np.maximum(pts.min(axis=0) - margin, 0).astype(int)
        x1, y1 = (pts.max(axis=0) + margin).astype(int)
        return image[y0 : y1 + 1, x0 : x1 + 1].copy()

    def _greedy(self, probs: np.ndarray) -> str:
        """The recogniser's own text, upper-case alphanumerics only."""
        idx = probs.argmax(axis=1)
        keep = np.r_[True, idx[1:] != idx[:-1]] & (idx != 0)
        return "".join(
            c for c in (self.engine.charset[i] for i in idx[keep]) if c.isascii() and c.isalnum()
        ).upper()

    @staticmethod
    def _size_type(boxes: list[TextBox], texts: list[str], anchor: TextBox) -> str | None:
        """Nearest 4-character size/type code (e.g. ``45G1``) near the number, if visible."""
        ax, ay = anchor.centre
        best: tuple[float, str] | None = None
        for b, t in zip(boxes, texts, strict=True):
            m = _SIZE_TYPE_RE.fullmatch(t.upper())
            if not m or not iso6346.is_size_type(t.upper()):
                continue
            bx, by = b.centre
            d = float(np.hypot(bx - ax, by - ay)) / max(anchor.height, 1.0)
            if d < 6 and (best is None or d < best[0]):
                best = (d, t.upper())
        return best[1] if best else None
