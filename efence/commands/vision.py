"""`efence vision`: plate and container reading, and accuracy evaluation on labelled photos."""

import typer

app = typer.Typer(help="Plate/container reading and its accuracy on labelled photographs.", no_args_is_help=True)
