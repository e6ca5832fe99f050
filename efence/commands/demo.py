"""`efence demo`: run the whole system on this machine with simulated traffic."""

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from efence.logsetup import setup_logging

console = Console()


def demo(
    broker: Annotated[
        str | None, typer.Option(help="Use this MQTT broker (mqtt://host:port) instead of the embedded one.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the hub's API and dashboard.")] = 8080,
    zone: Annotated[
        list[str] | None, typer.Option(help="Only these zones (repeatable). Default: all four.")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its stores (wiped at start).")] = Path(
        "var/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic traffic.")] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Start a broker, the hub with its dashboard, one edge agent per checkpoint of all four zones, a simulator
    for every configured device, and traffic. Open the printed URL; Ctrl-C stops everything.

    The admin password is EFENCE_ADMIN_PASSWORD if set, otherwise a random one printed at start-up.
    """
    from efence.demo import DemoInfo, DemoSettings, run_demo

    setup_logging(log_level)
    settings = DemoSettings(
        broker=broker,
        port=port,
        data_dir=data_dir,
        zones=tuple(zone or ()),
        seed=seed,
        admin_password=os.environ.get("EFENCE_ADMIN_PASSWORD") or None,
    )

    def ready(info: DemoInfo) -> None:
        console.print(
            Panel.fit(
                f"[bold]efence demo running[/bold]\n"
                f"dashboard  [link={info.hub_url}]{info.hub_url}[/link]   user [bold]admin[/bold]  password [bold]{info.admin_password}[/bold]\n"
                f"broker     {info.broker_url}\n"
                f"{info.agents} edge agents, {info.lanes} lanes, {info.devices} simulated devices — Ctrl-C to stop",
                border_style="green",
            )
        )

    async def main() -> None:
        task = asyncio.ensure_future(run_demo(settings, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    console.print("demo stopped")
