"""`efence audit`: re-check what the system recorded (random draws, the hub's hash-chained audit log)."""

import typer

app = typer.Typer(help="Audit recorded random-inspection draws and the hub's audit log.", no_args_is_help=True)
