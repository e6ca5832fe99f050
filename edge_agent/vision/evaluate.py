"""Accuracy of the readers on a folder of labelled photos (``efence vision eval``, the benchmark).

A folder holds images and ``labels.csv`` with a header ``filename,plate_text`` or
``filename,container_number`` (extra columns are ignored). Each image gets one answer:

* **exact**: the answer equals the label;
* **wrong**: an answer that is not the label -- the dangerous case, a confident misread;
* **rejected**: no answer (manual review).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from edge_agent.vision import iso6346
from edge_agent.vision import plate_format as pf
from edge_agent.vision.ocr import OcrEngine

KINDS = {"plate_text": "plates", "container_number": "containers"}


@dataclass(frozen=True)
class EvalItem:
    filename: str
    label: str
    answer: str | None
    ms: float

    @property
    def outcome(self) -> str:
        if self.answer is None:
            return "rejected"
        return "exact" if self.answer == self.label else "wrong"


@dataclass
class EvalReport:
    kind: str
    total: int = 0
    exact: int = 0
    wrong: int = 0
    rejected: int = 0
    accuracy: float = 0.0
    ms_per_image: float = 0.0
    #: Process CPU time per image (all threads): the work done, less sensitive than wall time
    #: to other load on a shared machine. Not part of the JSON summary.
    cpu_ms_per_image: float = 0.0
    items: list[EvalItem] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The one JSON object ``efence vision eval --json`` prints."""
        d = asdict(self)
        d.pop("items")
        d.pop("cpu_ms_per_image")
        return d


def load_labels(folder: Path) -> tuple[str, list[tuple[str, str]]]:
    """(kind, [(filename, label)]) from ``folder/labels.csv``; the header decides the kind."""
    path = folder / "labels.csv"
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "filename" not in fields:
            raise ValueError(f"{path}: header must start with 'filename' and a label column")
        kinds = [k for k in KINDS if k in fields]
        if len(kinds) != 1:
            raise ValueError(f"{path}: need exactly one of the columns {', '.join(KINDS)}")
        col = kinds[0]
        rows = [(r["filename"].strip(), r[col].strip()) for r in reader if r.get("filename")]
    return KINDS[col], rows


def baseline_answer(engine: OcrEngine, image, kind: str, use_cls: bool = True) -> str | None:
    """Plain full-frame RapidOCR, the way it is used without this module (the benchmark baseline).

    Plates: the first text line that is a valid plate after stripping separators, else the
    longest line (plain OCR does not reject). Containers: a run of up to 4 consecutive lines
    containing an 11-character code with a valid check digit.
    """
    lines = [t for t, _ in engine.read_full_frame(image, use_cls=use_cls)]
    if kind == "plates":
        texts = [pf.strip_separators(t) for t in lines if t.strip()]
        for t in texts:
            if pf.is_valid_plate(t):
                return t
        return max(texts, key=len) if texts else None
    cleaned = [re.sub(r"[^A-Z0-9]", "", t.upper()) for t in lines]
    for n in range(1, 5):
        for i in range(len(cleaned) - n + 1):
            for m in re.finditer(r"(?=([A-Z]{3}[UJZ][0-9]{7}))", "".join(cleaned[i : i + n])):
                if iso6346.is_valid(m.group(1)):
                    return m.group(1)
    return None


def evaluate(
    folder: str | Path,
    *,
    engine: OcrEngine | None = None,
    baseline: bool = False,
    use_cls: bool = True,
    on_item: Callable[[EvalItem], None] | None = None,
) -> EvalReport:
    """Run the plate or container reader (or the plain baseline) over a labelled folder."""
    folder = Path(folder)
    kind, rows = load_labels(folder)
    engine = engine or OcrEngine()
    if kind == "plates":
        from edge_agent.vision.plates import PlateReader

        plate_reader = PlateReader(engine)

        def answer(img):
            return plate_reader.read(img, keep_frame=False).text
    else:
        from edge_agent.vision.containers import ContainerReader

        container_reader = ContainerReader(engine)

        def answer(img):
            return container_reader.read(img, keep_frame=False).number

    report = EvalReport(kind=kind)
    total_ms = 0.0
    total_cpu = 0.0
    for filename, label in rows:
        image = cv2.imread(str(folder / filename), cv2.IMREAD_COLOR)
        c0 = time.process_time()
        t0 = time.perf_counter()
        if image is None:
            got = None
        elif baseline:
            got = baseline_answer(engine, image, kind, use_cls=use_cls)
        else:
            got = answer(image)
        ms = (time.perf_counter() - t0) * 1000
        total_cpu += (time.process_time() - c0) * 1000
        total_ms += ms
        item = EvalItem(filename, label, got, round(ms, 1))
        report.items.append(item)
        setattr(report, item.outcome, getattr(report, item.outcome) + 1)
        if on_item:
            on_item(item)
    report.total = len(rows)
    report.accuracy = round(report.exact / report.total, 4) if report.total else 0.0
    report.ms_per_image = round(total_ms / report.total, 1) if report.total else 0.0
    report.cpu_ms_per_image = round(total_cpu / report.total, 1) if report.total else 0.0
    return report
