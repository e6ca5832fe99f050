"""The `efence` command: every group answers --help, and the edge commands do real work."""

import asyncio
import json

import aiomqtt
import pytest
from typer.testing import CliRunner

from efence.cli import app
from efence.contract import AgentStatus, DeviceStatus, LaneStatus, Topics

runner = CliRunner()
GROUPS = ["demo", "config", "edge", "hub", "mqtt", "sim", "audit", "vision"]


def test_top_level_help_lists_every_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in GROUPS:
        assert group in result.output


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_explains_itself(group):
    result = runner.invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output) > 200


def test_edge_refuses_to_start_without_a_key(monkeypatch):
    monkeypatch.delenv("EFENCE_COMMAND_KEY", raising=False)
    result = runner.invoke(
        app, ["edge", "-c", "firmware_configs/zones/yangshan-port.yaml", "--checkpoint", "port-gate"]
    )
    assert result.exit_code == 1
    assert "no command-signing key" in result.output and "EFENCE_COMMAND_KEY" in result.output


def test_edge_needs_a_checkpoint_when_the_zone_has_several(monkeypatch):
    monkeypatch.setenv("EFENCE_COMMAND_KEY", "ab" * 32)
    result = runner.invoke(app, ["edge", "-c", "firmware_configs/zones/yangshan-port.yaml"])
    assert result.exit_code == 1 and "port-gate" in result.output


def test_edge_reports_a_broken_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")
    result = runner.invoke(app, ["edge", "-c", str(bad)])
    assert result.exit_code == 1 and "required key is missing" in result.output


def test_edge_status_reads_retained_status(mosquitto_url):
    host, port = mosquitto_url.removeprefix("mqtt://").split(":")
    status = AgentStatus(
        agent_id="cli-zone/cli-gate",
        zone="cli-zone",
        checkpoint="cli-gate",
        online=True,
        outbox_depth=7,
        record_version=42,
        lanes=[
            LaneStatus(
                lane="in-1",
                state="gathering",
                devices=[DeviceStatus(device_id="io", type="io_board", observed="up")],
            )
        ],
    )

    async def publish() -> None:
        async with aiomqtt.Client(host, int(port)) as client:
            await client.publish(Topics.status("cli-zone", "cli-gate"), status.to_bytes(), qos=1, retain=True)

    asyncio.run(publish())
    result = runner.invoke(
        app,
        [
            "edge",
            "status",
            "--broker",
            mosquitto_url,
            "--agent",
            "cli-zone/cli-gate",
            "--json",
            "--wait",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    [got] = json.loads(result.output)
    assert (
        got["outbox_depth"] == 7 and got["record_version"] == 42 and got["lanes"][0]["state"] == "gathering"
    )
    table = runner.invoke(
        app, ["edge", "status", "--broker", mosquitto_url, "--agent", "cli-zone/cli-gate", "--wait", "1"]
    )
    assert table.exit_code == 0 and "cli-zone/cli-gate" in table.output and "outbox 7" in table.output
