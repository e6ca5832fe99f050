"""`efence edge`: run a checkpoint's edge agent, or look at one that is running."""

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from efence.contract import AgentStatus, Topics, decode
from efence.logsetup import setup_logging
from firmware_configs.loader import ConfigError, load_zone

app = typer.Typer(
    help="Run a checkpoint's edge agent (`efence edge --config FILE`), or inspect running ones."
)
console = Console(soft_wrap=True)


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The zone's firmware config YAML.")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="Checkpoint id; may be omitted if the zone has one.")
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Override agent.broker_url (mqtt://host:port).")] = None,
    hub: Annotated[str | None, typer.Option(help="Override agent.hub_url.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Override agent.data_dir.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    log_format: Annotated[
        str,
        typer.Option(
            help="rich (a terminal), plain (one timestamped line per event: files, journald) or json "
            "(one object per line for a log collector). Default: rich on a terminal, else plain."
        ),
    ] = "auto",
) -> None:
    """Run the agent of one checkpoint: drivers, lane controllers, record cache, outbox and uplink.

    The command-signing key comes from the variable named by agent.command_key_env (default
    EFENCE_COMMAND_KEY) or agent.command_key_file — never from the config.
    Example: `EFENCE_COMMAND_KEY=$(cat key) efence edge -c firmware_configs/zones/yangshan-port.yaml --checkpoint port-gate`
    """
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from edge_agent.agent import EdgeAgent, load_command_key

    if log_format not in ("auto", "rich", "plain", "json"):
        console.print(f"[red]--log-format must be rich, plain or json, not {log_format!r}[/red]")
        raise typer.Exit(2)
    configure_logs(log_level, log_format)
    try:
        zone = load_zone(config)
    except ConfigError as exc:
        console.print(f"[red]config error[/red]\n{exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    ids = [c.id for c in zone.checkpoints]
    if checkpoint is None and len(ids) > 1:
        console.print(
            f"[red]zone {zone.id} has several checkpoints; choose one with --checkpoint: {', '.join(ids)}[/red]"
        )
        raise typer.Exit(1)
    from edge_agent.config_apply import open_slot, run_agent

    try:
        cp = zone.checkpoint(checkpoint or ids[0])
        zone, cp, applier = open_slot(config, zone, cp, data_dir)  # the pushed config, if any
        key = load_command_key(cp)
    except (KeyError, RuntimeError) as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(1) from None
    agent = EdgeAgent(
        zone,
        cp,
        command_key=key,
        broker_url=broker,
        hub_url=hub,
        data_dir=data_dir,
        metrics_port=cp.agent.metrics_port,
        config=applier,
    )
    try:
        run_agent(agent.run())  # re-executes itself when a pushed config is applied or rolled back
    except KeyboardInterrupt:
        console.print("agent stopped")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger (which part of the agent), message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logs(level: str, fmt: str = "auto") -> None:
    """Logs a field engineer can read on a terminal, grep in a file, or feed to a collector."""
    if fmt == "auto":
        fmt = "rich" if sys.stderr.isatty() else "plain"
    setup_logging(level, rich=fmt == "rich")
    if fmt == "plain":  # UTC with the date: an agent's log outlives a day and crosses time zones
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s  %(message)s")
        formatter.converter = time.gmtime
        formatter.default_msec_format = "%s.%03dZ"
        logging.getLogger().handlers[0].setFormatter(formatter)
    elif fmt == "json":
        logging.getLogger().handlers[0].setFormatter(JsonLogFormatter())


async def _fetch_status(broker: str, agent_id: str | None, wait_s: float) -> list[AgentStatus]:
    import aiomqtt

    from edge_agent.uplink import broker_address

    host, port, _tls = broker_address(broker)
    found: dict[str, AgentStatus] = {}
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(
            Topics.ALL_STATUS if agent_id is None else Topics.status(*agent_id.split("/")), qos=1
        )
        try:
            async with asyncio.timeout(wait_s):
                async for message in client.messages:
                    status = decode(AgentStatus, message.payload)
                    found[status.agent_id] = status
        except TimeoutError:
            pass
    return sorted(found.values(), key=lambda s: s.agent_id)


@app.command()
def status(
    broker: Annotated[
        str, typer.Option(help="Broker to read the retained status from.")
    ] = "mqtt://127.0.0.1:1883",
    agent: Annotated[str | None, typer.Option(help="Only this agent (zone/checkpoint).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to collect retained status messages.")] = 1.5,
) -> None:
    """Show agents' lanes, devices, outbox depth and record version, from their retained status messages."""
    statuses = asyncio.run(_fetch_status(broker, agent, wait))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in statuses], ensure_ascii=False, indent=2))
        return
    if not statuses:
        console.print(f"no agent status on {broker}")
        raise typer.Exit(1)
    for s in statuses:
        state = "[green]online[/green]" if s.online else "[red]OFFLINE[/red]"
        console.print(
            f"[bold]{s.agent_id}[/bold] {s.name} {state}  outbox {s.outbox_depth} (oldest {s.outbox_oldest_age_s:.0f} s)  "
            f"records v{s.record_version}  seq {s.last_seq}  "
            f"config {s.config_version[:8] or '?'}{' (on trial)' if s.config_on_trial else ''}"
        )
        table = Table("lane", "state", "barrier", "light", "devices up", "devices down")
        for lane in s.lanes:
            up = [d.device_id for d in lane.devices if d.observed == "up"]
            down = [d.device_id for d in lane.devices if d.observed != "up"]
            table.add_row(
                f"{lane.lane} {lane.name}",
                lane.state,
                lane.barrier,
                lane.light,
                ", ".join(up),
                ", ".join(down),
            )
        console.print(table)
