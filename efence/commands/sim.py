"""`efence sim`: hardware simulators that speak the real device protocols, for commissioning without hardware."""

import typer

app = typer.Typer(help="Run device simulators (weighbridge, RFID, IO board, cameras, LED) on a pty or TCP port.", no_args_is_help=True)
