"""`efence config`: validate, show and export the firmware configs that field engineers edit."""

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from firmware_configs.loader import ZONES_DIR, check_files, config_files
from firmware_configs.schema import Zone

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "firmware_configs" / "efence-firmware.schema.json"

app = typer.Typer(
    help="Validate, show and export firmware configs (zones, checkpoints, lanes, devices, fence).",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def zone_json_schema() -> dict:
    """JSON Schema of a zone file, for editors (VS Code YAML extension: `# yaml-language-server: $schema=...`)."""
    schema = Zone.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "efence firmware config (one zone)"
    return schema


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Zone YAML files or directories of them.")] = None,  # type: ignore[assignment]
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List each warning (e.g. unwatched fence devices).")
    ] = False,
) -> None:
    """Validate zone files; every error names file, line, key path and what was expected. Exit 1 on any error.

    Warnings (exit 0) flag what is valid but probably unintended: fence sensors and cameras that no
    checkpoint's agent is assigned to read.

    Example: `efence config check firmware_configs/` or `efence config check site.yaml`.
    """
    paths = paths or [ZONES_DIR]
    files = config_files(paths)
    if not files:
        err.print(f"[red]no YAML files found in {', '.join(map(str, paths))}[/red]")
        raise typer.Exit(1)
    zones, issues = check_files(paths)
    for zone in zones:
        lanes = sum(len(c.lanes) for c in zone.checkpoints)
        devices = sum(len(lane.devices) for c in zone.checkpoints for lane in c.lanes)
        out.print(
            f"[green]ok[/green]  {zone.id}: {len(zone.checkpoints)} checkpoints, {lanes} lanes, "
            f"{devices} devices, {len(zone.fence.segments)} fence segments"
        )
    warnings = [f"{zone.id}: {w}" for zone in zones for w in zone.unwatched_fence_devices()]
    for w in warnings if verbose else warnings[:0]:
        err.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False)
    if warnings and not verbose:
        err.print(
            f"[yellow]{len(warnings)} fence sensor(s)/camera(s) are assigned to no checkpoint and go unwatched "
            "(`--verbose` lists them; set `checkpoint:` on each)[/yellow]"
        )
    for issue in issues:
        err.print(f"[red]error[/red] {escape(str(issue))}", highlight=False)
    if issues:
        err.print(f"[red]{len(issues)} error(s)[/red] in {len({i.file for i in issues})} file(s)")
        raise typer.Exit(1)


@app.command()
def show(
    paths: Annotated[
        list[Path], typer.Argument(help="Zone YAML files or directories (default: the shipped zones).")
    ] = None,  # type: ignore[assignment]
    zone: Annotated[str | None, typer.Option(help="Only this zone id.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
) -> None:
    """Print the resolved config: every default filled in, exactly what the agent will run with."""
    zones, issues = check_files(paths or [ZONES_DIR])
    if issues:
        for issue in issues:
            err.print(f"[red]error[/red] {escape(str(issue))}", highlight=False)
        raise typer.Exit(1)
    data = [z.model_dump(mode="json") for z in zones if zone in (None, z.id)]
    if zone and not data:
        err.print(f"[red]no zone {zone!r}; known: {', '.join(z.id for z in zones)}[/red]")
        raise typer.Exit(1)
    if fmt == "json":
        typer.echo(json.dumps(data if len(data) != 1 else data[0], ensure_ascii=False, indent=2))
    else:
        typer.echo(yaml.safe_dump_all(data, allow_unicode=True, sort_keys=False))


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Export the JSON Schema of a zone file (the shipped copy is firmware_configs/efence-firmware.schema.json)."""
    text = json.dumps(zone_json_schema(), ensure_ascii=False, indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)
