"""Config push end to end: a private Mosquitto, the real hub (HTTP API + ingest) and the real agent as an
`efence edge` process. A changed config is applied (the agent re-executes itself) and confirmed; the
same config again is `unchanged` and the agent keeps running; an invalid config is rejected with the
loader's file:line/key-path errors; a config that cannot reach the broker is rolled back on its own; a
forged offer is refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from central_monitor.runner import HubRunner
from efence.contract import (
    ConfigOffer,
    ConfigReport,
    Topics,
    config_version,
    decode,
    sign_config_offer,
)
from efence.embedded_broker import free_port
from efence.mosquitto import private_mosquitto

REPO = Path(__file__).resolve().parents[2]
ZONE_FILE = REPO / "firmware_configs" / "zones" / "yangshan-port.yaml"
AGENT_ID = "yangshan-port/port-gate"
ZONE, CHECKPOINT = AGENT_ID.split("/")
ADMIN, PASSWORD = "admin", "admin-password-1"


def zone_text(broker_url: str, hub_url: str, tmp: Path, name_suffix: str = "") -> str:
    """The shipped zone reduced to one checkpoint, pointed at this test's broker, hub and files."""
    data = yaml.safe_load(ZONE_FILE.read_text())
    data["checkpoints"] = [c for c in data["checkpoints"] if c["id"] == CHECKPOINT]
    data["name"] += name_suffix
    data["checkpoints"][0].setdefault("agent", {}).update(
        broker_url=broker_url,
        hub_url=hub_url,
        data_dir=str(tmp / "edge"),
        command_key_file=str(tmp / "command.key"),
        command_key_env="EFENCE_TEST_COMMAND_KEY_UNSET",
        device_http_host="127.0.0.1",
        device_http_port=free_port(),
        metrics_port=None,
        status_interval_s=1.0,
    )
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@dataclass
class Site:
    tmp: Path
    key: bytes
    broker_url: str
    hub: HubRunner
    http: httpx.AsyncClient
    agent: subprocess.Popen[bytes]
    v1: str

    def variant(self, suffix: str, broker_url: str | None = None) -> str:
        return zone_text(broker_url or self.broker_url, self.hub.url, self.tmp, suffix)

    async def agent_row(self) -> dict[str, Any]:
        r = await self.http.get("/api/agents")
        r.raise_for_status()
        return next((a for a in r.json() if a["agent_id"] == AGENT_ID), {})

    async def push(self, text: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            f"/api/agents/{ZONE}/{CHECKPOINT}/config", json={"yaml_text": text, **body}, timeout=30
        )

    async def wait_for(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict:
        """Until `check(agent row)`; fails with the agent's log tail if the agent process died."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.agent.poll() is not None:
                raise AssertionError(f"agent exited with {self.agent.returncode}\n{self.log_tail()}")
            row = await self.agent_row()
            if row and check(row):
                return row
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last row {row}\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join((self.tmp / "agent.log").read_text(errors="replace").splitlines()[-n:])

    async def publish_offer(self, payload: bytes) -> None:
        host, port = self.broker_url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port)) as client:
            await client.publish(Topics.config(ZONE, CHECKPOINT), payload, qos=1)


def running(row: dict[str, Any], version: str) -> bool:
    c = row.get("config") or {}
    return (
        bool(row.get("online"))
        and row.get("config_version") == version
        and c.get("running_version") == version
    )


@contextlib.asynccontextmanager
async def site(tmp: Path) -> AsyncIterator[Site]:
    key = secrets.token_bytes(32)
    (tmp / "command.key").write_text(key.hex())
    with private_mosquitto() as broker_url:
        hub_port = free_port()
        async with HubRunner(
            db_url=f"sqlite:///{tmp / 'hub.sqlite'}",
            broker_url=broker_url,
            port=hub_port,
            command_keys={AGENT_ID: key},
            agent_silence_s=30,
        ) as hub:
            hub.ensure_admin(ADMIN, PASSWORD)
            v1 = zone_text(broker_url, hub.url, tmp)
            (tmp / "zone.yaml").write_text(v1)
            env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
            env.pop("EFENCE_TEST_COMMAND_KEY_UNSET", None)
            with (tmp / "agent.log").open("ab") as log:
                agent = subprocess.Popen(
                    [sys.executable, "-c", "from efence.cli import main; main()", "edge"]
                    + ["--config", str(tmp / "zone.yaml"), "--log-level", "INFO", "--log-format", "plain"],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
                    http.headers["Authorization"] = f"Bearer {hub.token_for(ADMIN)}"
                    s = Site(tmp, key, broker_url, hub, http, agent, v1)
                    await s.wait_for(
                        "the agent online with its local config", lambda r: running(r, config_version(v1)), 30
                    )
                    yield s
            finally:
                if agent.poll() is None:
                    agent.send_signal(signal.SIGINT)
                    try:
                        await asyncio.to_thread(agent.wait, 10)
                    except subprocess.TimeoutExpired:
                        agent.kill()
                        await asyncio.to_thread(agent.wait, 5)


async def test_changed_config_is_applied_and_the_same_again_is_unchanged(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        first = await s.agent_row()
        assert first["config"]["push"] == "installed"
        v2 = s.variant(" (v2)")
        r = await s.push(v2, confirm_within_s=30)
        assert r.status_code == 200, r.text
        assert r.json()["offered_version"] == config_version(v2) and r.json()["push"] == "pending"
        t0 = time.monotonic()
        row = await s.wait_for(
            "v2 applied", lambda r: running(r, config_version(v2)) and r["config"]["state"] == "applied", 30
        )
        applied_s = time.monotonic() - t0
        assert row["config"]["push"] == "applied" and not row["config"]["on_trial"]
        assert row["started_at"] != first["started_at"], "the agent restarted to run v2"
        first_v2_start = row["started_at"]
        assert s.agent.poll() is None  # re-executed in place: same process, same pid
        alarms = (await s.http.get("/api/alarms")).json()
        assert not [a for a in alarms if a["kind"] == "agent_offline"], "a planned restart rang agent_offline"
        assert (tmp_path / "edge" / "config" / "active.yaml").read_text() == v2
        lanes = (await s.http.get("/api/lanes")).json()
        assert {lane["config_version"] for lane in lanes if lane["agent_id"] == AGENT_ID} == {
            config_version(v2)
        }
        print(f"\npush → applied and confirmed in {applied_s:.1f} s")

        # the same config again, through the field engineer's CLI: unchanged, not restarted
        (tmp_path / "v2.yaml").write_text(v2)
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "from efence.cli import main; main()", "hub", "push-config", AGENT_ID]
            + [str(tmp_path / "v2.yaml"), "--hub", s.hub.url, "--user", ADMIN, "--wait", "20"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "EFENCE_HUB_PASSWORD": PASSWORD, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "unchanged" in cli.stdout
        row = await s.agent_row()
        assert row["config"]["state"] == "unchanged" and row["started_at"] == first_v2_start
        await asyncio.sleep(1.5)  # a restart would have shown by now
        after = await s.agent_row()
        assert after["started_at"] == row["started_at"] and running(after, config_version(v2))

        audit = (await s.http.get("/api/audit")).json()
        pushes = [a for a in audit if a["action"] == "config.push" and a["target"] == AGENT_ID]
        assert len(pushes) == 2 and {p["actor"] for p in pushes} == {ADMIN}
        assert (await s.http.get("/api/audit/verify")).json()["ok"]


async def test_invalid_config_is_rejected_with_field_errors_and_the_old_one_keeps_running(
    tmp_path: Path,
) -> None:
    async with site(tmp_path) as s:
        before = await s.agent_row()
        bad = re.sub(r"\n( +)status_interval_s: 1.0\n", r"\n\1status_interval_s: 1.0\n\1bogus_key: 1\n", s.v1)
        bad = bad.replace("site_category: '34'", "site_category: '99'")
        assert bad != s.v1
        # the hub validates first: nothing is sent, every problem is named
        r = await s.push(bad, filename="zone.yaml")
        assert r.status_code == 422, r.text
        errors = r.json()["detail"]["errors"]
        paths = {e["path"] for e in errors}
        assert "site_category" in paths and any(p.endswith("agent.bogus_key") for p in paths), errors
        assert all(e["file"] == "zone.yaml" and e["line"] for e in errors)

        # an invalid config that reaches the agent anyway (signed, so only validation stops it)
        offer = ConfigOffer.create(yaml_text=bad, agent_id=AGENT_ID, issued_by="test")
        await s.publish_offer(sign_config_offer(offer, s.key).to_bytes())
        row = await s.wait_for("the agent's rejection", lambda r: r["config"]["state"] == "rejected", 15)
        agent_errors = row["config"]["errors"]
        assert any("site_category" in e for e in agent_errors), agent_errors
        assert any("bogus_key" in e and "pushed config:" in e for e in agent_errors), agent_errors
        assert row["config"]["code"] == "invalid" and row["config"]["running_version"] == config_version(s.v1)
        await asyncio.sleep(1.5)
        after = await s.agent_row()
        assert after["started_at"] == before["started_at"] and running(after, config_version(s.v1))
        assert (tmp_path / "edge" / "config" / "active.yaml").read_text() == s.v1


async def test_config_that_cannot_reconnect_is_rolled_back_automatically(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        before = await s.agent_row()
        dead = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens: connection refused
        v3 = s.variant(" (v3)", broker_url=dead)
        r = await s.push(v3, confirm_within_s=6)
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        row = await s.wait_for(
            "the rollback to be reported",
            lambda r: r["config"]["state"] == "rolled_back" and running(r, config_version(s.v1)),
            45,
        )
        rollback_s = time.monotonic() - t0
        c = row["config"]
        assert c["version"] == config_version(v3) and c["push"] == "rolled_back"
        assert "could not reconnect" in c["detail"], c
        assert row["started_at"] > before["started_at"]
        assert (tmp_path / "edge" / "config" / "active.yaml").read_text() == s.v1
        print(f"\npush of an unreachable broker → rolled back and reported in {rollback_s:.1f} s")
        # pushed again, the config that was rolled back is not tried a second time
        r = await s.push(v3, confirm_within_s=6)
        assert r.status_code == 200
        row = await s.wait_for("the refusal to retry", lambda r: r["config"]["state"] == "rejected", 15)
        assert "rolled back before" in row["config"]["detail"] and running(row, config_version(s.v1))


@pytest.mark.parametrize("forgery", ["wrong_key", "tampered", "unsigned"])
async def test_forged_or_unsigned_offer_is_refused(tmp_path: Path, forgery: str) -> None:
    async with site(tmp_path) as s:
        before = await s.agent_row()
        v2 = s.variant(" (forged)")
        offer = ConfigOffer.create(yaml_text=v2, agent_id=AGENT_ID, issued_by="intruder")
        if forgery == "wrong_key":
            payload = sign_config_offer(offer, secrets.token_bytes(32)).to_bytes()
        elif forgery == "tampered":  # signed for one text, carrying another
            signed = sign_config_offer(offer, s.key)
            payload = signed.model_copy(
                update={"offer": offer.model_copy(update={"yaml_text": v2 + "# x\n"})}
            ).to_bytes()
        else:
            payload = offer.to_bytes()  # no signature at all
        host, port = s.broker_url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port)) as watcher:
            await watcher.subscribe(Topics.config_report(ZONE, CHECKPOINT), qos=1)
            await s.publish_offer(payload)
            async with asyncio.timeout(10):
                async for message in watcher.messages:
                    report = decode(ConfigReport, message.payload)  # type: ignore[arg-type]
                    if report.state == "refused":
                        break
        expected = {"wrong_key": "forged", "tampered": "forged", "unsigned": "malformed"}[forgery]
        assert report.code == expected, report
        assert report.running_version == config_version(s.v1)
        await asyncio.sleep(1.5)
        after = await s.agent_row()
        assert after["started_at"] == before["started_at"] and running(after, config_version(s.v1))
        assert (tmp_path / "edge" / "config" / "active.yaml").read_text() == s.v1


async def test_the_run_that_stages_a_config_never_confirms_it(tmp_path: Path) -> None:
    """Only the run that runs a pushed config may confirm it: the run that staged it is still online
    with the old one and must restart first (an in-process agent, polling fast to make the race likely)."""
    from edge_agent.agent import EdgeAgent
    from edge_agent.config_apply import ConfigRestart, open_slot
    from firmware_configs.loader import load_zone

    key = secrets.token_bytes(32)
    (tmp_path / "command.key").write_text(key.hex())
    with private_mosquitto() as broker_url:
        async with HubRunner(
            db_url=f"sqlite:///{tmp_path / 'hub.sqlite'}",
            broker_url=broker_url,
            port=free_port(),
            command_keys={AGENT_ID: key},
        ) as hub:
            v1 = zone_text(broker_url, hub.url, tmp_path)
            (tmp_path / "zone.yaml").write_text(v1)
            seed = load_zone(tmp_path / "zone.yaml")
            zone, cp, applier = open_slot(tmp_path / "zone.yaml", seed, seed.checkpoint(CHECKPOINT))
            applier.poll_s = 0.01
            agent = EdgeAgent(zone, cp, command_key=key, config=applier)
            task = asyncio.create_task(agent.run())
            async with asyncio.timeout(30):
                while not (agent.uplink.online and (await agent.outbox.stats()).acked_seq > 0):
                    await asyncio.sleep(0.1)
            v2 = zone_text(broker_url, hub.url, tmp_path, " (v2)")
            offer = ConfigOffer.create(yaml_text=v2, agent_id=AGENT_ID, issued_by="test")
            host, port = broker_url.removeprefix("mqtt://").split(":")
            async with aiomqtt.Client(host, int(port)) as client:
                await client.publish(
                    Topics.config(ZONE, CHECKPOINT), sign_config_offer(offer, key).to_bytes(), qos=1
                )
            with pytest.raises(ExceptionGroup) as raised:
                async with asyncio.timeout(30):
                    await task
            assert raised.group_contains(ConfigRestart)
            state = applier.slot.state
            assert state.pending is not None and state.pending.version == config_version(v2), state
            assert state.running_version == config_version(v1) and state.last_outcome == "applied"
