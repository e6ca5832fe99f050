"""`efence audit`: re-check what the system recorded (random draws, the hub's hash-chained audit log)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Audit recorded random-inspection draws and the hub's audit log.", no_args_is_help=True
)


@app.command("draws")
def draws(
    file: Annotated[
        Path, typer.Argument(help="Recorded draws, JSON lines (DrawRecord or Decision objects).")
    ],
    keys: Annotated[
        Path, typer.Option("--keys", "-k", help='Revealed epoch keys: JSON {"epoch id": "key hex"}.')
    ],
) -> None:
    """Re-run every recorded random-inspection draw with the revealed keys; exit 1 if any does not reproduce.

    Each draw is u = HMAC-SHA256(key, pass_no|transaction_id|rule_version) as a fraction in [0, 1),
    selected if u < rate. The key must also match the commitment SHA256(key) published at epoch start.
    """
    from gate_controller.draw_audit import audit_draws, parse_keys

    console = Console()
    try:
        revealed = parse_keys(keys.read_text(encoding="utf-8"))
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot read input:[/red] {exc}")
        raise typer.Exit(2) from exc
    audit = audit_draws(lines, revealed)
    failures = audit.failures
    checked = len(audit.checks)
    if failures:
        table = Table(title=f"Draws that do not reproduce ({len(failures)} of {checked})")
        for column in ("line", "transaction", "pass", "epoch", "problem"):
            table.add_column(column)
        for check in failures:
            table.add_row(
                str(check.line),
                check.transaction_id or "-",
                check.pass_no or "-",
                check.epoch_id or "-",
                "; ".join(check.problems),
            )
        console.print(table)
    skipped = f", {audit.skipped} record(s) without a draw skipped" if audit.skipped else ""
    colour = "red" if failures else "green"
    console.print(f"[{colour}]{checked - len(failures)} of {checked} draws reproduce[/{colour}]{skipped}")
    if failures:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    db: Annotated[
        str,
        typer.Option("--db", help="Hub store: SQLite file path or sqlite:///PATH.", envvar="EFENCE_HUB_DB"),
    ] = "efence-hub.db",
) -> None:
    """Re-hash the hub's audit log (commands, overrides, acks, imports, config changes); exit 1 on any break.

    Each entry's hash covers the previous entry's hash, so an altered, inserted or removed entry
    breaks the chain from that point on; the stored head catches entries cut off the end.
    """
    from central_monitor.store import open_store

    console = Console(soft_wrap=True)
    url = db if "://" in db else f"sqlite:///{db}"
    if "://" not in db and not Path(db).is_file():
        console.print(f"[red]no hub store at {db}[/red]")
        raise typer.Exit(2)
    store = open_store(url)
    try:
        problems = store.verify_audit()
    finally:
        store.close()
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    if problems:
        console.print(f"[red]audit log of {db} is NOT intact ({len(problems)} problem(s))[/red]")
        raise typer.Exit(1)
    console.print(f"[green]audit log of {db} is intact[/green]")
