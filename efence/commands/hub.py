"""`efence hub`: run the central monitoring hub, create its first admin, import customs records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    help="Central monitoring hub: ingest from the edges, records authority, alarms, API and dashboard.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str, typer.Option("--db", help="Hub store: a SQLite file path or sqlite:///PATH.", envvar="EFENCE_HUB_DB")
]


def _store_url(db: str) -> str:
    return db if "://" in db else f"sqlite:///{db}"


@app.command()
def run(
    db: DbOption = "efence-hub.db",
    broker: Annotated[
        str, typer.Option(help="MQTT broker URL, mqtt://[user:pass@]host:port.")
    ] = "mqtt://127.0.0.1:1883",
    host: Annotated[str, typer.Option(help="HTTP listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the API and dashboard.")] = 8080,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of checkpoint signing keys (<zone>/<checkpoint>.key).", envvar="EFENCE_KEYS_DIR"
        ),
    ] = None,
    shared_group: Annotated[
        str | None,
        typer.Option(help="MQTT 5 shared-subscription group, so several hub workers split the stream."),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (stable: the broker keeps our session).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    retention: Annotated[
        Path | None,
        typer.Option(
            help="Retention config (YAML/JSON, docs/HUB.md#retention); default ages otherwise.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    zones_dir: Annotated[
        Path | None,
        typer.Option(
            help="The site's zone configs (e.g. /etc/efence/zones): the wall map is drawn from their fence "
            "geometry and checkpoint locations. Default: the zones shipped with efence.",
            exists=True,
            file_okay=False,
            envvar="EFENCE_ZONES_DIR",
        ),
    ] = None,
) -> None:
    """Run ingest, the HTTP API and the dashboard until Ctrl-C.

    Example: `efence hub run --db /var/lib/efence/hub.db --broker mqtt://127.0.0.1:1883 --port 8080`
    """
    from central_monitor.hub import Hub

    retention_cfg = _retention(retention)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hub = Hub(
        _store_url(db),
        broker=broker,
        host=host,
        port=port,
        keys_dir=keys_dir,
        shared_group=shared_group,
        client_id=client_id,
        log_level=log_level.lower(),
        retention=retention_cfg,
        zones_dir=zones_dir,
    )
    out.print(f"hub on [bold]{hub.url}[/bold]  store {hub.store.url}  broker {broker}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(hub.run())


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="Login name of the administrator.")],
    db: DbOption = "efence-hub.db",
    role: Annotated[str, typer.Option(help="viewer, operator, supervisor or admin.")] = "admin",
) -> None:
    """Create (or reset) a user; the password comes from EFENCE_ADMIN_PASSWORD or a prompt.

    Example: `EFENCE_ADMIN_PASSWORD=... efence hub create-admin admin --db hub.db`
    """
    from central_monitor.auth import Role
    from central_monitor.store import open_store

    password = os.environ.get("EFENCE_ADMIN_PASSWORD") or typer.prompt(
        f"password for {username}", hide_input=True, confirmation_prompt=True
    )
    if len(password) < 8:
        err.print("[red]password must have at least 8 characters[/red]")
        raise typer.Exit(1)
    try:
        r = Role.parse(role)
        store = open_store(_store_url(db))
        store.create_user(username, password, r, actor="cli")
        store.close()
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(f"user [bold]{username}[/bold] ({r.label}) saved in {db}")


@app.command("import")
def import_records(
    zone: Annotated[str, typer.Argument(help="Zone id, e.g. yangshan-port.")],
    file: Annotated[
        Path,
        typer.Argument(help="CSV (header of customs field names) or JSON file.", exists=True, dir_okay=False),
    ],
    db: DbOption = "efence-hub.db",
    kind: Annotated[
        str | None,
        typer.Option(
            help="gate_pass, vehicle, enterprise, risk_instruction, ledger_list, trade_document (else inferred)."
        ),
    ] = None,
    actor: Annotated[str, typer.Option(help="Who imports (audit log).")] = os.environ.get("USER", "cli"),
    publish: Annotated[
        str | None,
        typer.Option(help="Also publish the deltas to this broker (mqtt://host:port), QoS 1, in order."),
    ] = None,
) -> None:
    """Validate and import records into a zone's replication log: all rows or none.

    Every problem is listed as row, field and what was expected; exit 1 and nothing imported.
    Edges receive the changes live when a hub is running on the same store (`efence hub run`) or
    by pulling `/api/records/{zone}?after=SEQ`.

    Example: `efence hub import yangshan-port passes.csv --db hub.db`
    """
    from central_monitor.records import ImportRejected, infer_kind, parse_file
    from central_monitor.store import open_store
    from efence.contract import RecordKind

    try:
        rows, declared = parse_file(file.read_bytes(), file.name)
        k = RecordKind(kind) if kind else declared or infer_kind(rows)
    except ImportRejected as exc:
        for e in exc.errors:
            err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    except ValueError:
        err.print(
            f"[red]unknown kind {kind!r}; expected one of {', '.join(x.value for x in RecordKind)}[/red]"
        )
        raise typer.Exit(1) from None
    if k is None:
        err.print("[red]cannot tell the record kind from the field names; give --kind[/red]")
        raise typer.Exit(1)
    store = open_store(_store_url(db))
    try:
        with Progress(
            TextColumn(f"importing {k.value} into {zone}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
            task = progress.add_task("import", total=len(rows))
            res = store.import_records(
                zone, k, rows, actor, progress=lambda n: progress.update(task, completed=n)
            )  # type: ignore[call-arg]
    except ImportRejected as exc:
        for e in exc.errors[:200]:
            err.print(f"[red]{e}[/red]")
        if len(exc.errors) > 200:
            err.print(f"[red]… and {len(exc.errors) - 200} more[/red]")
        err.print(f"[red]{len(exc.errors)} error(s); nothing imported[/red]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    out.print(f"imported {res.count} {k.value} record(s) into {zone}; replication head seq {res.head_seq}")
    if publish:
        _publish_deltas(publish, res.deltas)


def _publish_deltas(url: str, deltas: list) -> None:
    """Publish record deltas in seq order and wait for every PUBACK; edges pull what they miss."""
    import paho.mqtt.client as mqtt

    from central_monitor.ingest import IngestConfig
    from efence.contract import Topics

    cfg = IngestConfig.from_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"efence-import-{os.getpid()}")
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    try:
        client.connect(cfg.host, cfg.port)
    except OSError as exc:
        err.print(
            f"[yellow]records imported but not published ({exc}); edges will pull them over HTTP[/yellow]"
        )
        return
    client.loop_start()
    infos = [client.publish(Topics.records(d.zone), d.to_bytes(), qos=1) for d in deltas]
    for info in infos:
        info.wait_for_publish(timeout=10)
    client.loop_stop()
    client.disconnect()
    out.print(f"published {len(infos)} delta(s) to {url}")


@app.command("push-config")
def push_config(
    agent: Annotated[str, typer.Argument(help="Agent id zone/checkpoint, e.g. yangshan-port/port-gate.")],
    config: Annotated[
        Path, typer.Argument(help="The zone's firmware config YAML.", exists=True, dir_okay=False)
    ],
    hub: Annotated[
        str, typer.Option(help="Hub base URL.", envvar="EFENCE_HUB_URL")
    ] = "http://127.0.0.1:8080",
    user: Annotated[str, typer.Option(help="Hub user with role admin.", envvar="EFENCE_HUB_USER")] = "admin",
    password_file: Annotated[
        Path | None,
        typer.Option(help="File holding the password (else $EFENCE_HUB_PASSWORD, else a prompt)."),
    ] = None,
    confirm_within: Annotated[
        float,
        typer.Option(help="Seconds the agent gets to reconnect with the new config before it rolls back."),
    ] = 120.0,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the agent's answer (0: do not wait).")
    ] = 60.0,
) -> None:
    """Push a zone config to one agent: validated here and at the hub, signed, applied, confirmed.

    Exit 0 when the agent applied it or already ran it (unchanged); 1 when it was rejected (every
    problem listed as file:line key path), refused, rolled back, or no answer came within --wait.
    Example: `efence hub push-config yangshan-port/port-gate /etc/efence/zones/yangshan-port.yaml`
    """
    import time

    import httpx

    from firmware_configs.loader import validate_text

    text = config.read_text(encoding="utf-8")
    _zone, issues = validate_text(text, str(config))
    if issues:  # the same check the hub and the agent make: fail at the laptop, not at the gate
        for issue in issues:
            err.print(str(issue), markup=False, highlight=False)
        err.print(f"[red]{len(issues)} problem(s); nothing pushed[/red]")
        raise typer.Exit(1)
    if password_file is not None:
        password = password_file.read_text().strip()
    else:
        password = os.environ.get("EFENCE_HUB_PASSWORD") or typer.prompt(
            f"password of {user}", hide_input=True
        )
    zone, _, checkpoint = agent.partition("/")
    with httpx.Client(base_url=hub, timeout=30) as http:
        r = http.post("/api/login", json={"username": user, "password": password})
        if r.status_code != 200:
            err.print(f"[red]login as {user} at {hub} failed: {r.status_code} {r.text[:200]}[/red]")
            raise typer.Exit(1)
        http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        path = f"/api/agents/{zone}/{checkpoint}/config"
        body = {"yaml_text": text, "filename": str(config), "confirm_within_s": confirm_within}
        r = http.post(path, json=body)
        if r.status_code == 422 and isinstance(r.json().get("detail"), dict):
            for e in r.json()["detail"].get("errors", []):
                where = f"{e['file']}:{e['line']}" if e.get("line") else e["file"]
                err.print(f"{where}: {e['path']}: {e['message']}", markup=False, highlight=False)
            raise typer.Exit(1)
        if r.status_code != 200:
            err.print(f"[red]push refused by the hub: {r.status_code} {r.text[:300]}[/red]")
            raise typer.Exit(1)
        offer = r.json()
        version, offer_id = offer["offered_version"], offer["offer_id"]
        out.print(f"config {version[:12]} sent to {agent} (offer {offer_id})")
        deadline = time.monotonic() + wait
        state: dict = offer
        while time.monotonic() < deadline:
            state = http.get(path).json()
            done = state.get("state") in ("applied", "unchanged", "rejected", "refused", "rolled_back")
            if done and (state.get("version") == version or state.get("state") == "rolled_back"):
                break
            time.sleep(1.0)
        else:
            err.print(
                f"[yellow]no final answer from {agent} within {wait:.0f} s; state {state.get('state')}[/yellow]"
            )
            raise typer.Exit(1)
    out.print(
        f"{agent}: {state['state']}  running {str(state.get('running_version'))[:12]}  {state.get('detail') or ''}",
        markup=False,
        highlight=False,
    )
    for e in state.get("errors") or []:
        err.print(e, markup=False, highlight=False)
    raise typer.Exit(0 if state["state"] in ("applied", "unchanged") else 1)


def _retention(path: Path | None):  # noqa: ANN202 - RetentionConfig, imported lazily
    """Load a retention config or exit 1 naming the field and what was expected."""
    from pydantic import ValidationError

    from central_monitor.retention import RetentionConfig

    if path is None:
        return RetentionConfig()
    try:
        return RetentionConfig.load(path)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(x) for x in e["loc"]) or "retention"
            err.print(f"[red]{path}: {where}: {e['msg']}[/red]")
        raise typer.Exit(1) from None
    except (OSError, ValueError) as exc:
        err.print(f"[red]{path}: {exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def prune(
    db: DbOption = "efence-hub.db",
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Retention config (YAML/JSON); default ages otherwise.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be removed.")] = False,
    evidence_dir: Annotated[
        Path | None,
        typer.Option(help="Evidence image directory (default: <db name>-evidence beside a SQLite file)."),
    ] = None,
    actor: Annotated[str, typer.Option(help="Who prunes (audit log).")] = os.environ.get("USER", "cli"),
) -> None:
    """Remove rows older than the retention ages, in small batches, with progress; audit-logged.

    Never removes ringing alarms, open transfers, unacknowledged events, unresolved transactions or
    their evidence, the audit log or the records log. Safe while the hub runs on the same store.

    Example: `efence hub prune --db /var/lib/efence/hub.db --dry-run`
    """
    from central_monitor.evidence import default_evidence_dir
    from central_monitor.retention import prune as run_prune
    from central_monitor.store import PRUNE_RULES, open_store

    cfg = _retention(config)
    store = open_store(_store_url(db))
    try:
        with Progress(
            TextColumn("{task.description:<13}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
            tasks = {r: progress.add_task(r, total=None) for r in PRUNE_RULES}

            def step(rule: str, done: int, total: int) -> None:
                progress.update(tasks[rule], total=total, completed=total if dry_run else done)

            report = run_prune(
                store,
                cfg,
                dry_run=dry_run,
                evidence_dir=evidence_dir or default_evidence_dir(store),
                progress=step,
                actor=actor,
            )
    finally:
        store.close()
    verb = "would remove" if dry_run else "removed"
    for rule, n in report.counts.items():
        out.print(f"{rule:<13} {verb} {n:>9}   older than {report.cutoffs[rule][:19]}")
    out.print(
        f"{verb} {report.total} row(s)"
        + ("" if dry_run else f", {report.files_deleted} image file(s); audit-logged as retention.prune")
    )
