"""`efence mqtt`: the site's Mosquitto set-up (config, users, ACL) and its certificates, generated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from efence import mosquitto

app = typer.Typer(
    help="Generate the site broker's Mosquitto configuration, per-agent users and ACL, and TLS certificates.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _agents(zone_paths: list[Path], extra: list[str]) -> list[tuple[str, str]]:
    agents: set[tuple[str, str]] = set()
    if zone_paths:
        from firmware_configs.loader import ConfigError, load_zones

        try:
            zones = load_zones(zone_paths)
        except ConfigError as exc:
            err.print(f"[red]zone configs are invalid:[/]\n{exc}")
            raise typer.Exit(1) from None
        agents |= {(z.id, c.id) for z in zones for c in z.checkpoints}
    for agent in extra:
        zone, _, checkpoint = agent.partition("/")
        if not zone or not checkpoint:
            err.print(f"[red]--agent must be zone/checkpoint, got {agent!r}[/]")
            raise typer.Exit(2)
        agents.add((zone, checkpoint))
    return sorted(agents)


@app.command()
def config(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where to write mosquitto.conf, passwd and acl.")
    ] = Path("/etc/mosquitto/efence"),
    zones: Annotated[
        list[Path] | None,
        typer.Option("--zones", help="Zone YAML files or directories: one broker user per checkpoint."),
    ] = None,
    agent: Annotated[
        list[str] | None, typer.Option("--agent", help="An extra agent `zone/checkpoint` (repeatable).")
    ] = None,
    hub_user: Annotated[
        list[str] | None, typer.Option("--hub-user", help="Hub broker user (repeatable; default efence-hub).")
    ] = None,
    secrets_dir: Annotated[
        Path,
        typer.Option(
            help="Password files, one per user (`<zone>/<checkpoint>.mqtt-password`); missing ones are "
            "created (random, mode 0600). Never kept in the YAML configs.",
            envvar="EFENCE_MQTT_SECRETS_DIR",
        ),
    ] = Path("/etc/efence/secrets"),
    cafile: Annotated[Path | None, typer.Option(help="CA certificate (PEM) the broker trusts.")] = None,
    certfile: Annotated[Path | None, typer.Option(help="The broker's server certificate (PEM).")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="The broker's server key (PEM).")] = None,
    require_client_cert: Annotated[
        bool, typer.Option(help="Mutual TLS: clients must present a certificate signed by the CA.")
    ] = False,
    identity_as_username: Annotated[
        bool,
        typer.Option(
            help="With --require-client-cert: the certificate's CN is the broker user (the ACL binds to "
            "the certificate; no password). Make the certificates with `efence mqtt certs --zones …`."
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="TLS listener port.")] = 8883,
    bind: Annotated[str, typer.Option(help="TLS listener address.")] = "0.0.0.0",  # noqa: S104
    insecure_loopback_port: Annotated[
        int | None,
        typer.Option(help="Also listen in plain text on 127.0.0.1:PORT (same users and ACL); tests only."),
    ] = None,
    persistence_dir: Annotated[Path, typer.Option(help="Mosquitto's persistence directory.")] = Path(
        "/var/lib/mosquitto"
    ),
    log_dest: Annotated[str, typer.Option(help="Mosquitto log_dest (syslog, stderr, file PATH).")] = "syslog",
    run_as_user: Annotated[
        str | None, typer.Option(help="Mosquitto `user` (started as root it drops to `mosquitto`).")
    ] = None,
) -> None:
    """Write a Mosquitto config: TLS only, users + ACL per agent, persistence, no silent drops.

    Example: `efence mqtt config --zones firmware_configs/zones --cafile /etc/efence/pki/ca.crt
    --certfile /etc/efence/pki/broker.crt --keyfile /etc/efence/pki/broker.key --out /etc/mosquitto/efence`
    then `mosquitto -c /etc/mosquitto/efence/mosquitto.conf`.
    """
    agents = _agents(zones or [], agent or [])
    if not agents:
        err.print("[red]no agents: pass --zones DIR and/or --agent zone/checkpoint[/]")
        raise typer.Exit(2)
    tls = None
    if cafile or certfile or keyfile:
        if not (cafile and certfile and keyfile):
            err.print("[red]TLS needs all of --cafile, --certfile and --keyfile[/]")
            raise typer.Exit(2)
        if identity_as_username and not require_client_cert:
            err.print("[red]--identity-as-username needs --require-client-cert (mutual TLS)[/]")
            raise typer.Exit(2)
        tls = mosquitto.TlsFiles(
            cafile.resolve(), certfile.resolve(), keyfile.resolve(), require_client_cert, identity_as_username
        )
    elif insecure_loopback_port is None:
        err.print(
            "[red]a site broker needs TLS: pass --cafile/--certfile/--keyfile (see `efence mqtt certs`)[/]"
        )
        raise typer.Exit(2)
    try:
        gen = mosquitto.write_broker_config(
            out_dir,
            agents=agents,
            secrets_dir=secrets_dir,
            hub_users=hub_user or [mosquitto.DEFAULT_HUB_USER],
            tls=tls,
            port=port,
            bind=bind,
            insecure_loopback_port=insecure_loopback_port,
            persistence_dir=persistence_dir,
            log_dest=log_dest,
            run_as_user=run_as_user,
        )
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    out.print(f"wrote {gen.conf}, {gen.password_file} and {gen.acl_file} for {len(gen.users)} users")
    for path in gen.created_secrets:
        out.print(f"  new password: {path}")


@app.command()
def certs(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the PEM files.")] = Path("pki"),
    broker_host: Annotated[
        list[str], typer.Option("--broker-host", help="DNS name(s) of the broker (in its certificate).")
    ] = ["mqtt.efence.local"],  # noqa: B006
    broker_ip: Annotated[
        list[str] | None, typer.Option("--broker-ip", help="IP address(es) of the broker.")
    ] = None,
    client: Annotated[
        list[str] | None,
        typer.Option("--client", help="Also a client certificate for this broker user (repeatable)."),
    ] = None,
    zones: Annotated[
        list[Path] | None,
        typer.Option(
            "--zones",
            help="Zone YAML files or directories: a client certificate per checkpoint agent, plus the hub's.",
        ),
    ] = None,
    hub_user: Annotated[
        list[str] | None,
        typer.Option("--hub-user", help="Hub user(s) to certify with --zones (default efence-hub)."),
    ] = None,
) -> None:
    """Make a private CA, the broker's certificate and client certificates for mutual TLS (openssl).

    Client certificates (CN = broker user) go to `<out>/clients/<zone>/<checkpoint>.crt|.key` and
    `<out>/clients/efence-hub.crt|.key`; existing ones are kept. The broker certificate is renewed.

    Example: `efence mqtt certs --out /etc/efence/pki --broker-host mqtt.efence.local --zones /etc/efence/zones`
    """
    ca_crt, ca_key = out_dir / "ca.crt", out_dir / "ca.key"
    ca = (ca_crt, ca_key) if ca_crt.exists() and ca_key.exists() else mosquitto.make_ca(out_dir)
    crt, _ = mosquitto.make_cert(
        out_dir, "broker", ca=ca, common_name=broker_host[0], dns=broker_host, ips=broker_ip or []
    )
    out.print(f"CA {ca[0]}, broker certificate {crt}")
    users = list(client or [])
    if zones:
        users += hub_user or [mosquitto.DEFAULT_HUB_USER]
        users += [mosquitto.agent_username(z, c) for z, c in _agents(zones, [])]
    try:
        made = mosquitto.make_client_certs(out_dir, list(dict.fromkeys(users)), ca=ca)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    for user, (ccrt, ckey) in made.items():
        out.print(f"client certificate of {user}: {ccrt} (key {ckey})")
