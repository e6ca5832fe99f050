"""`efence mqtt config`: what it writes, and that no password ends up in a config."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from efence.commands.mqtt import app

runner = CliRunner()
ZONES = Path(__file__).resolve().parents[2] / "firmware_configs" / "zones"


def test_config_from_the_shipped_zones(tmp_path: Path, pki: dict[str, Path]) -> None:
    res = runner.invoke(
        app,
        [
            "config", "--out", str(tmp_path / "etc"), "--zones", str(ZONES),
            "--agent", "extra-zone/gate-9", "--secrets-dir", str(tmp_path / "secrets"),
            "--cafile", str(pki["ca"]), "--certfile", str(pki["crt"]), "--keyfile", str(pki["key"]),
            "--persistence-dir", str(tmp_path / "data"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    conf = (tmp_path / "etc" / "mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "max_queued_messages 0",
        "max_inflight_messages 0",
        "max_queued_bytes 0",
        "persistence true",
        "listener 8883 0.0.0.0",
        "tls_version tlsv1.2",
    ):
        assert line in conf.splitlines(), line
    assert conf.count("listener ") == 1  # TLS only: no plain-text fallback listener
    acl = (tmp_path / "etc" / "acl").read_text()
    assert "user yangshan-port/port-gate" in acl and "user extra-zone/gate-9" in acl
    assert "topic write efence/v1/yangshan-port/port-gate/events" in acl
    assert "#" not in "\n".join(line for line in acl.splitlines() if not line.startswith("#"))
    secrets = sorted(
        p.relative_to(tmp_path / "secrets") for p in (tmp_path / "secrets").rglob("*.mqtt-password")
    )
    assert Path("efence-hub.mqtt-password") in secrets and len(secrets) >= 3
    for p in (tmp_path / "secrets").rglob("*.mqtt-password"):
        assert p.stat().st_mode & 0o077 == 0
        pw = p.read_text().strip()
        assert pw not in conf and pw not in acl and pw not in (tmp_path / "etc" / "passwd").read_text()
    # regenerating keeps the passwords the agents already have
    before = {p: p.read_text() for p in (tmp_path / "secrets").rglob("*.mqtt-password")}
    res = runner.invoke(
        app,
        [
            "config", "--out", str(tmp_path / "etc"), "--agent", "extra-zone/gate-9",
            "--secrets-dir", str(tmp_path / "secrets"), "--cafile", str(pki["ca"]),
            "--certfile", str(pki["crt"]), "--keyfile", str(pki["key"]),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert {p: p.read_text() for p in before} == before


def test_config_without_tls_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["config", "--out", str(tmp_path), "--agent", "z/g", "--secrets-dir", str(tmp_path)]
    )
    assert res.exit_code == 2 and "needs TLS" in res.output


def test_config_with_a_missing_certificate_names_it(tmp_path: Path, pki: dict[str, Path]) -> None:
    missing = tmp_path / "broker.crt"
    res = runner.invoke(
        app,
        [
            "config", "--out", str(tmp_path / "etc"), "--agent", "z/g", "--secrets-dir", str(tmp_path / "s"),
            "--cafile", str(pki["ca"]), "--certfile", str(missing), "--keyfile", str(pki["key"]),
        ],
    )  # fmt: skip
    assert res.exit_code == 1 and "broker.crt" in res.output


def test_certs_for_every_agent_of_the_zones_and_the_hub(tmp_path: Path) -> None:
    """`efence mqtt certs --zones`: one client certificate per checkpoint agent plus the hub's, CN =
    broker user (what `--identity-as-username` binds the ACL to), kept on a second run."""
    import subprocess

    pki = tmp_path / "pki"
    res = runner.invoke(
        app, ["certs", "--out", str(pki), "--broker-host", "localhost", "--zones", str(ZONES)]
    )
    assert res.exit_code == 0, res.output
    crt, key = (
        pki / "clients" / "yangshan-port" / "port-gate.crt",
        pki / "clients" / "yangshan-port" / "port-gate.key",
    )
    hub_crt = pki / "clients" / "efence-hub.crt"
    assert crt.is_file() and key.is_file() and hub_crt.is_file()
    assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's only
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(crt), "-noout", "-subject", "-ext", "extendedKeyUsage"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "CN = yangshan-port/port-gate" in subject and "TLS Web Client Authentication" in subject
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(crt)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    before = crt.read_bytes()
    assert runner.invoke(app, ["certs", "--out", str(pki), "--zones", str(ZONES)]).exit_code == 0
    assert crt.read_bytes() == before


def test_identity_as_username_needs_mutual_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    args = [
        "config", "--out", str(tmp_path / "etc"), "--agent", "z1/gate-1", "--secrets-dir", str(tmp_path / "s"),
        "--cafile", str(pki["ca"]), "--certfile", str(pki["crt"]), "--keyfile", str(pki["key"]),
        "--persistence-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    res = runner.invoke(app, [*args, "--identity-as-username"])
    assert res.exit_code == 2 and "--require-client-cert" in res.output
    res = runner.invoke(app, [*args, "--identity-as-username", "--require-client-cert"])
    assert res.exit_code == 0, res.output
    conf = (tmp_path / "etc" / "mosquitto.conf").read_text().splitlines()
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
