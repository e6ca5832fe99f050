"""Ingest through the real Mosquitto: idempotency, acks, resend requests, malformed input, hub birth."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import httpx

from central_monitor.hub import Hub
from central_monitor.ingest import Ingest, IngestConfig
from central_monitor.metrics import exposition
from central_monitor.store import SqliteStore
from efence.contract import (
    CommandResult,
    HubAck,
    HubStatus,
    NonceLedger,
    RecordDelta,
    ResendRequest,
    SignedCommand,
    Topics,
    decode,
    utcnow,
    verify_command,
)

from .hubkit import BROKER_HOST, BROKER_PORT, agent_status, event, fake_agent, running_hub, tx_event, wait_for


def acked(seq: int):  # noqa: ANN201
    return lambda payload: decode(HubAck, payload).acked_seq >= seq


@contextlib.asynccontextmanager
async def logged_in(hub: Hub, role: str = "admin") -> AsyncIterator[httpx.AsyncClient]:
    """An API client holding a bearer token of a fresh user with `role` (no cookie)."""
    hub.create_user(f"{role}1", "password-123", role)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        r = await client.post("/api/login", json={"username": f"{role}1", "password": "password-123"})
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        client.cookies.clear()
        yield client


async def test_same_event_twice_one_row_and_ack(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent:
        env = tx_event(agent.agent_id, 1, "t1", plate="沪A12345")
        await agent.send(env)
        ack = decode(HubAck, await agent.next_on("ack", where=acked(1)))
        assert ack.acked_seq == 1 and ack.hub_instance == hub.ingest.instance_id
        await agent.send(env)  # a resend after a lost ack
        ack = decode(HubAck, await agent.next_on("ack"))
        assert ack.acked_seq == 1
        assert hub.store.health()["counts"]["events"] == 1
        assert hub.ingest.metrics.counters["duplicates"] == 1


async def test_ack_is_highest_contiguous_and_gap_is_requested(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path, gap_grace_s=0.3) as hub, fake_agent(zone) as agent:
        for seq in (1, 2, 4, 5):
            await agent.send(event(agent.agent_id, seq))
        ack = decode(HubAck, await agent.next_on("ack", where=acked(2)))
        assert ack.acked_seq == 2  # 4 and 5 are stored but not contiguous: not acknowledged yet
        req = decode(ResendRequest, await agent.next_on("resend", timeout=5))
        assert (req.agent_id, req.from_seq, req.to_seq) == (agent.agent_id, 3, 3)
        await agent.send(event(agent.agent_id, 3))
        ack = decode(HubAck, await agent.next_on("ack", where=acked(5)))
        assert ack.acked_seq == 5
        assert hub.store.contiguous_seq(agent.agent_id) == 5


async def test_decisions_ahead_of_telemetry_do_not_trigger_resend_within_grace(
    tmp_path: Path, zone: str
) -> None:
    async with running_hub(tmp_path, gap_grace_s=2.0) as hub, fake_agent(zone) as agent:
        await agent.send(tx_event(agent.agent_id, 2, "t1"))  # decision overtook telemetry seq 1
        await agent.next_on("ack")
        await asyncio.sleep(0.3)
        await agent.send(event(agent.agent_id, 1))
        await agent.next_on("ack", where=acked(2))
        assert hub.ingest.metrics.counters["resend_requests"] == 0


async def test_gap_an_online_agent_never_fills_is_abandoned_with_alarm_after_the_period(
    tmp_path: Path, zone: str
) -> None:
    async with (
        running_hub(
            tmp_path, gap_grace_s=0.1, resend_interval_s=0.1, resend_max_attempts=2, gap_abandon_after_s=1.5
        ) as hub,
        fake_agent(zone) as agent,
    ):
        await agent.status(agent_status(zone))
        await agent.send(event(agent.agent_id, 1))
        await agent.send(event(agent.agent_id, 3))
        started = asyncio.get_running_loop().time()
        ack = decode(HubAck, await agent.next_on("ack", where=acked(3), timeout=8))
        waited = asyncio.get_running_loop().time() - started
        assert ack.acked_seq == 3
        # the attempts ran out after ~0.3 s, but the hub kept asking for the whole period
        assert waited >= 1.4, waited
        assert hub.ingest.metrics.counters["resend_requests"] >= 5
        assert [a["kind"] for a in hub.store.list_alarms()] == ["event_gap"]


async def test_gap_of_an_offline_agent_waits_for_it_and_is_filled_without_alarm(
    tmp_path: Path, zone: str
) -> None:
    """The agent drops off (its last will) with seq 2 still in its outbox, stays away far longer than the
    whole resend schedule, comes back and re-sends: nothing lost, no false `event_gap`."""
    async with (
        running_hub(
            tmp_path, gap_grace_s=0.1, resend_interval_s=0.1, resend_max_attempts=2, gap_abandon_after_s=1.0
        ) as hub,
        fake_agent(zone) as agent,
    ):
        await agent.status(agent_status(zone))
        await agent.send(event(agent.agent_id, 1))
        await agent.send(event(agent.agent_id, 3))
        await agent.next_on("ack", where=acked(1))
        await agent.status(agent_status(zone, online=False))  # what its last will carries
        await wait_for(lambda: any(a["kind"] == "agent_offline" for a in hub.store.list_alarms()))
        await asyncio.sleep(2.5)  # > grace + attempts × interval and > gap_abandon_after_s
        assert hub.ingest.metrics.counters["gaps_abandoned"] == 0
        assert hub.store.contiguous_seq(agent.agent_id) == 1
        requests_while_away = hub.ingest.metrics.counters["resend_requests"]
        await asyncio.sleep(0.5)
        assert hub.ingest.metrics.counters["resend_requests"] == requests_while_away  # nobody to ask
        while not agent.inbox.empty():  # forget what was asked before it dropped off
            agent.inbox.get_nowait()
        await agent.status(agent_status(zone))  # back online
        req = decode(ResendRequest, await agent.next_on("resend", timeout=5))
        assert (req.from_seq, req.to_seq) == (2, 2)
        await agent.send(event(agent.agent_id, 2))
        ack = decode(HubAck, await agent.next_on("ack", where=acked(3)))
        assert ack.acked_seq == 3
        await asyncio.sleep(1.2)  # past the abandon period again: the filled gap must stay quiet
        assert [a["kind"] for a in hub.store.list_alarms()] == ["agent_offline"]
        assert hub.ingest.metrics.counters["gaps_abandoned"] == 0
        assert hub.store.health()["counts"]["events"] == 3


async def test_malformed_messages_are_counted_and_ingest_goes_on(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent:
        await agent.send(b"\xff\xfe not json")
        await agent.send(b"[1, 2, 3]")
        await agent.send(b'{"id": "x"}')
        other = event(f"{zone}/someone-else", 1)  # an agent publishing under another agent's topic
        await agent.send(other)
        await agent.client.publish(Topics.status(zone, "cp1"), b'{"online": "maybe"}', qos=1)
        await agent.send(event(agent.agent_id, 1))
        await agent.next_on("ack", where=acked(1))
        await wait_for(lambda: hub.ingest.metrics.counters["malformed"] >= 5)
        assert hub.ingest.metrics.counters["malformed"] == 5
        reasons = hub.ingest.metrics.malformed_by_reason
        assert any("not UTF-8 JSON" in r for r in reasons)
        assert any("agent_id" in r for r in reasons)
        assert hub.store.health()["counts"]["events"] == 1
        assert "efence_hub_malformed_total 5.0" in exposition(hub.store, hub.ingest).decode()
        await agent.client.publish(Topics.status(zone, "cp1"), b"", qos=1, retain=True)


async def test_hub_birth_and_graceful_death_are_retained(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        instance = hub.ingest.instance_id
    # After the hub stopped, a new subscriber sees the retained "offline" of that instance.
    async with aiomqtt.Client(BROKER_HOST, BROKER_PORT, identifier=f"test-watch-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(Topics.HUB_STATUS, qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                status = decode(HubStatus, bytes(m.payload))
                if status.instance_id == instance:
                    assert status.online is False
                    break


async def test_status_lanes_devices_and_last_will(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent:
        await agent.status(agent_status(zone, down=("scale-1",)))
        await agent.next_on("ack")  # an (re)connecting agent is told what is already stored
        async with logged_in(hub, "viewer") as api:
            agents = await wait_for(lambda: hub.store.list_agents())
            assert agents[0]["online"] is True
            lanes = (await api.get("/api/lanes")).json()
            assert [(lane["lane"], lane["direction"]) for lane in lanes] == [("L1", "I")]
            devices = {d["device_id"]: d["effective"] for d in (await api.get("/api/devices")).json()}
            assert devices == {"camera-1": "up", "rfid-1": "up", "scale-1": "down"}
            await agent.status(agent_status(zone, online=False))  # what the last will carries
            await wait_for(lambda: any(a["kind"] == "agent_offline" for a in hub.store.list_alarms()))
            assert (await api.get("/api/agents")).json()[0]["online"] is False


async def test_record_deltas_published_in_order_and_served(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent, logged_in(hub, "supervisor") as api:
        csv = "vehicleNo,vehicleWt,status\n沪A00001,15000,active\n沪A00002,16000,blacklisted\n沪A00003,14000,active\n"
        r = await api.post("/api/records/import", json={"zone": zone, "content": csv, "filename": "v.csv"})
        assert r.status_code == 200, r.text
        assert r.json()["count"] == 3 and r.json()["kind"] == "vehicle"
        seqs = []
        for _ in range(3):
            delta = decode(RecordDelta, await agent.next_on("records"))
            seqs.append(delta.seq)
        assert seqs == [1, 2, 3]
        page = (await api.get(f"/api/records/{zone}", params={"after": 1})).json()
        assert [d["seq"] for d in page["deltas"]] == [2, 3] and page["head_seq"] == 3
        assert page["deltas"][0]["record"]["status"] == "blacklisted"
        bad = "vehicleNo,vehicleWt\n沪A00009,-5\n"
        r = await api.post("/api/records/import", json={"zone": zone, "content": bad, "kind": "vehicle"})
        assert r.status_code == 422
        assert r.json()["errors"] == [
            {"row": 1, "field": "vehicleWt", "expected": "a number >= 0 (kg)", "got": "-5", "kind": ""}
        ]


async def test_command_signed_published_and_result_tracked(tmp_path: Path, zone: str) -> None:
    key = b"k" * 32
    async with (
        running_hub(tmp_path, key_for=lambda aid: key if aid == f"{zone}/cp1" else None) as hub,
        fake_agent(zone) as agent,
        logged_in(hub, "operator") as api,
    ):
        body = {
            "agent_id": agent.agent_id,
            "lane": "L1",
            "action": "regather",
            "reason_text": "plate dirty",
        }
        r = await api.post("/api/commands", json=body)
        assert r.status_code == 200, r.text
        signed = decode(SignedCommand, await agent.next_on("commands"))
        cmd = verify_command(signed, key, agent_id=agent.agent_id, now=utcnow(), nonces=NonceLedger())
        assert (cmd.action, cmd.operator_id) == ("regather", "operator1")
        r = await api.post("/api/commands", json={**body, "action": "lock_lane"})
        assert r.status_code == 403  # locking a lane is a supervisor's decision
        r = await api.post("/api/commands", json={**body, "agent_id": f"{zone}/nokey"})
        assert r.status_code == 503
        result = CommandResult(
            command_id=cmd.command_id, agent_id=agent.agent_id, accepted=True, status="done"
        )
        await agent.client.publish(Topics.command_results(zone, "cp1"), result.to_bytes(), qos=1)

        async def done() -> bool:
            rows = (await api.get("/api/commands")).json()
            return rows and rows[0]["status"] == "done"

        await wait_for(done)
        async with logged_in(hub, "admin") as admin:
            audit = (await admin.get("/api/audit")).json()
        assert any(a["action"] == "command.regather" for a in audit)


async def test_shared_subscription_workers_split_the_stream_over_one_store(tmp_path: Path, zone: str) -> None:
    """Two ingest workers in one MQTT 5 share group: each event stored once, acks reach the top."""
    store = SqliteStore(tmp_path / "shared.db")
    group = f"g{uuid.uuid4().hex[:8]}"
    workers = [
        Ingest(
            store,
            IngestConfig(
                host=BROKER_HOST,
                port=BROKER_PORT,
                client_id=f"test-w{i}-{group}",
                shared_group=group,
                persistent_session=False,
            ),
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        for w in workers:
            await asyncio.wait_for(w.connected.wait(), 5)
        async with fake_agent(zone) as agent:
            for seq in range(1, 41):
                await agent.send(event(agent.agent_id, seq))
            await agent.next_on("ack", where=acked(40), timeout=10)
        stored = [w.metrics.counters["stored"] for w in workers]
        assert sum(stored) == 40 and all(n > 0 for n in stored), stored  # both took part, none twice
        assert store.health()["counts"]["events"] == 40
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()


async def test_ingest_reconnects_after_losing_the_broker_session(tmp_path: Path, zone: str) -> None:
    async with running_hub(tmp_path) as hub, fake_agent(zone) as agent:
        await agent.send(event(agent.agent_id, 1))
        await agent.next_on("ack", where=acked(1))
        # another client taking over the hub's client id makes the broker drop the hub's connection
        async with aiomqtt.Client(BROKER_HOST, BROKER_PORT, identifier=hub.ingest.config.client_id):
            await wait_for(lambda: not hub.ingest.connected.is_set(), timeout=5)
        await asyncio.wait_for(hub.ingest.connected.wait(), 10)
        assert hub.ingest.metrics.counters["connects"] >= 2
        await agent.send(event(agent.agent_id, 2))
        await agent.next_on("ack", where=acked(2))
