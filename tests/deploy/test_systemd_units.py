"""The shipped systemd units: secrets only through credentials, and command lines the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from efence.cli import app

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def _unit(name: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    text = (UNITS / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def _options(exec_start: str) -> list[str]:
    return [w for w in shlex.split(exec_start) if w.startswith("--")]


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def test_units_take_secrets_from_credentials_never_inline() -> None:
    for name in ("efence-agent@.service", "efence-hub@.service", "efence-hub-backup.service"):
        u = _unit(name)
        assert u.get("LoadCredential"), name
        for env in u.get("Environment", []):
            assert not re.search(r"PASSWORD=(?!.*%d/)", env), f"{name}: inline secret {env}"
        for cmd in u["ExecStart"]:
            assert "password" not in cmd.lower() and "@" not in cmd.split("--db")[0], cmd
        assert u["User"][0] != "root"


def test_agent_unit_command_line_is_accepted_by_the_cli() -> None:
    u = _unit("efence-agent@.service")
    assert u["Restart"] == ["always"]
    help_text = _help("edge")
    for opt in _options(u["ExecStart"][0]):
        assert opt in help_text, opt


def test_hub_unit_command_line_is_accepted_by_the_cli() -> None:
    u = _unit("efence-hub@.service")
    cmd = u["ExecStart"][0]
    assert "--shared-group efence-hub" in cmd and "--client-id efence-hub-%i" in cmd
    help_text = _help("hub", "run")
    for opt in _options(cmd):
        assert opt in help_text, opt


def test_backup_unit_runs_the_tested_tool() -> None:
    u = _unit("efence-hub-backup.service")
    assert "deploy/backup/hub_backup.py backup" in u["ExecStart"][0]
    assert (UNITS.parent / "backup" / "hub_backup.py").is_file()
