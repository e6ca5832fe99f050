"""`efence vision`: plate and container reading, and accuracy evaluation on labelled photos.

OpenCV and RapidOCR are the optional ``vision`` extra; they are imported only inside the
commands, so the rest of the CLI works on an edge without cameras.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Plate/container reading and its accuracy on labelled photographs.", no_args_is_help=True
)
_err = Console(stderr=True)


class Kind(StrEnum):
    plate = "plate"
    container = "container"


def _require_vision() -> None:
    from edge_agent.vision import VisionUnavailable, require_vision

    try:
        require_vision()
    except VisionUnavailable as exc:
        _err.print(f"[red]efence vision:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command("eval")
def eval_cmd(
    folder: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="Images plus labels.csv (filename,plate_text or filename,container_number).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Measure plain full-frame RapidOCR instead of the reader.")
    ] = False,
    details: Annotated[bool, typer.Option("--details", help="List every image's answer.")] = False,
) -> None:
    """Exact-match accuracy, wrong reads, rejections and time per image on a labelled folder."""
    _require_vision()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edge_agent.vision.evaluate import evaluate, load_labels
    from edge_agent.vision.ocr import OcrEngine

    try:
        kind, rows = load_labels(folder)
    except (OSError, ValueError) as exc:
        _err.print(f"[red]efence vision eval:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    engine = OcrEngine()
    with Progress(
        TextColumn(f"{kind}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=as_json,
    ) as progress:
        task = progress.add_task("reading", total=len(rows))
        report = evaluate(folder, engine=engine, baseline=baseline, on_item=lambda _: progress.advance(task))
    if as_json:
        typer.echo(json.dumps(report.summary(), ensure_ascii=False))
        return
    out = Console()
    if details:
        t = Table(title="per image")
        for col in ("file", "label", "answer", "outcome", "ms"):
            t.add_column(col)
        for it in report.items:
            style = {"exact": "green", "wrong": "bold red", "rejected": "yellow"}[it.outcome]
            t.add_row(
                it.filename, it.label, it.answer or "-", f"[{style}]{it.outcome}[/{style}]", f"{it.ms:.0f}"
            )
        out.print(t)
    t = Table(title=f"{'baseline ' if baseline else ''}{kind}: {folder}")
    for col in ("total", "exact", "wrong", "rejected", "accuracy", "ms/image"):
        t.add_column(col, justify="right")
    t.add_row(
        str(report.total),
        str(report.exact),
        f"[bold red]{report.wrong}[/bold red]" if report.wrong else "0",
        str(report.rejected),
        f"{report.accuracy:.1%}",
        f"{report.ms_per_image:.0f}",
    )
    out.print(t)


@app.command("read")
def read_cmd(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A photo (JPEG/PNG).")],
    kind: Annotated[Kind, typer.Option("--kind", help="What to read.")] = Kind.plate,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Read one plate or container number from a photo; exit code 1 if rejected (manual review)."""
    _require_vision()
    import cv2

    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        _err.print(f"[red]efence vision read:[/red] cannot decode {image}")
        raise typer.Exit(2)
    if kind is Kind.plate:
        from edge_agent.vision.plates import PlateReader

        p = PlateReader().read(img, keep_frame=False)
        result = {
            "kind": "plate",
            "text": p.text,
            "confidence": round(p.confidence, 4),
            "location_confidence": round(p.location_confidence, 4),
            "format": p.plate_format,
            "colour": p.colour,
            "reason": p.reason,
        }
    else:
        from edge_agent.vision.containers import ContainerReader

        c = ContainerReader().read(img, keep_frame=False)
        result = {
            "kind": "container",
            "text": c.number,
            "confidence": round(c.confidence, 4),
            "owner": c.owner,
            "size_type": c.size_type,
            "corrected": c.corrected,
            "all_numbers": list(c.all_numbers),
            "reason": c.reason,
        }
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        text = result["text"] or "[yellow]rejected: manual review[/yellow]"
        Console().print(
            f"{result['kind']}: [bold]{text}[/bold]  ({result['reason']}, confidence {result['confidence']:.2f})"
        )
    if result["text"] is None:
        raise typer.Exit(1)
