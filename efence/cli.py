"""The single `efence` command. Each subcommand group lives in `efence.commands.<name>`."""

import typer

from efence.commands import audit, config, demo, edge, hub, mqtt, sim, vision

app = typer.Typer(
    help="efence: customs gate and electronic-fence controller for the four Shanghai FTZ zones.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command(name="demo")(demo.demo)
app.add_typer(config.app, name="config")
app.add_typer(edge.app, name="edge")
app.add_typer(hub.app, name="hub")
app.add_typer(mqtt.app, name="mqtt")
app.add_typer(sim.app, name="sim")
app.add_typer(audit.app, name="audit")
app.add_typer(vision.app, name="vision")


def main() -> None:
    app()
