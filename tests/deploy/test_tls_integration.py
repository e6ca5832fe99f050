"""The edge uplink and the hub ingest use efence.mqtt_tls: they refuse to start with TLS misconfigured
and connect over verified TLS with their own broker credentials.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from central_monitor.ingest import Ingest, IngestConfig
from central_monitor.store import SqliteStore
from efence.contract import Topics
from efence.mqtt_tls import MqttSecurityError

from .conftest import SiteBroker, uplink_z1_gate1


def test_agent_refuses_to_start_with_a_missing_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFENCE_MQTT_CA_FILE", str(tmp_path / "missing-ca.crt"))
    with pytest.raises(MqttSecurityError, match="missing-ca.crt"):
        uplink_z1_gate1(tmp_path, "mqtts://localhost:8883")


def test_hub_refuses_to_start_with_a_missing_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFENCE_MQTT_CA_FILE", str(tmp_path / "missing-ca.crt"))
    with pytest.raises(MqttSecurityError, match="missing-ca.crt"):
        IngestConfig.from_url("mqtts://localhost:8883")


async def test_agent_and_hub_talk_over_verified_tls_with_their_own_users(
    site_broker: SiteBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EFENCE_MQTT_CA_FILE", str(site_broker.ca))
    hub_pw, agent_pw = tmp_path / "hub.pw", tmp_path / "agent.pw"
    hub_pw.write_text(site_broker.password("efence-hub"))
    agent_pw.write_text(site_broker.password("z1/gate-1"))
    url = f"mqtts://localhost:{site_broker.tls_port}"

    monkeypatch.setenv("EFENCE_MQTT_PASSWORD_FILE", str(hub_pw))
    store = SqliteStore(tmp_path / "hub.db")
    ingest = Ingest(store, IngestConfig.from_url(url, client_id="efence-hub-tls-test"))
    monkeypatch.setenv("EFENCE_MQTT_PASSWORD_FILE", str(agent_pw))
    uplink = uplink_z1_gate1(tmp_path, url)
    assert ingest.config.tls_context is not None and uplink.security.tls_context is not None
    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(uplink.run())]
    try:
        async with asyncio.timeout(15):
            await ingest.connected.wait()
            while not (uplink.connected and uplink.hub_online):
                await asyncio.sleep(0.05)
            while not any(a["agent_id"] == "z1/gate-1" for a in store.list_agents()):
                await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()
    assert Topics.status("z1", "gate-1")
