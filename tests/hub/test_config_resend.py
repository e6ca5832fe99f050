"""Re-delivery of a config push to an agent that was offline (rule C7: offers are not retained).

Real Mosquitto, a real hub (ingest + store); the agent is an MQTT client that publishes its retained
status and reads its config topic. The push goes through the same signing helper and delivery as the
API's push endpoint (`sign_config`, `Ingest.deliver_config`).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central_monitor.ingest import sign_config
from efence.contract import (
    ConfigReport,
    NonceLedger,
    SignedConfigOffer,
    Topics,
    decode,
    verify_config_offer,
)
from tests.hub.hubkit import FakeAgent, agent_status, fake_agent, running_hub, wait_for

YAML = "id: whatever\n# the hub does not re-validate a push it re-delivers\n"


async def _offline(hub, agent: FakeAgent, online: bool) -> None:
    await agent.status(agent_status(agent.zone, online=online))

    def seen() -> bool:
        rows = [a for a in hub.store.list_agents() if a["agent_id"] == agent.agent_id]
        return bool(rows) and rows[0]["online"] == online

    await wait_for(seen, 5)


async def _no_offer(agent: FakeAgent, seconds: float = 1.5) -> None:
    with pytest.raises(TimeoutError):
        await agent.next_on("config", timeout=seconds)


def _resends(hub, agent_id: str) -> list[dict]:
    return [a for a in hub.store.list_audit() if a["action"] == "config.resend" and a["target"] == agent_id]


async def test_an_unanswered_push_is_resent_once_per_online_transition_and_never_once_answered(
    tmp_path: Path, zone: str
) -> None:
    key = secrets.token_bytes(32)
    async with (
        running_hub(tmp_path, key_for=lambda aid: key if aid.startswith(zone) else None) as hub,
        fake_agent(zone) as agent,
    ):
        await _offline(hub, agent, False)
        # pushed while the agent is offline: published, nobody listening, state "sent"
        signed = sign_config(
            hub.ingest.key_for, agent.agent_id, YAML, issued_by="admin", confirm_within_s=30, ttl_s=120
        )
        await hub.store.acall(hub.store.record_config_offer, signed.offer, "admin", "zone.yaml")
        assert await hub.ingest.deliver_config(signed)
        assert hub.store.config_states()[agent.agent_id]["state"] == "sent"
        await agent.client.subscribe(Topics.config(zone, "cp1"), qos=1)  # the agent's next session

        await _offline(hub, agent, True)
        again = decode(SignedConfigOffer, await agent.next_on("config", timeout=5))
        o, r = signed.offer, again.offer
        assert (r.offer_id, r.version, r.yaml_text, r.issued_by, r.confirm_within_s) == (
            o.offer_id,
            o.version,
            o.yaml_text,
            "admin",
            30,
        )
        assert r.nonce != o.nonce and r.expires_at > o.expires_at and again.signature != signed.signature
        # what the agent does with it: its nonce ledger holds the original's nonce, and it still passes
        ledger = NonceLedger()
        now = datetime.now(UTC)
        verify_config_offer(signed, key, agent_id=agent.agent_id, now=now, nonces=ledger)
        assert verify_config_offer(again, key, agent_id=agent.agent_id, now=now, nonces=ledger) == r
        assert (r.expires_at - r.issued_at).total_seconds() == pytest.approx(120)
        await wait_for(lambda: hub.store.config_states()[agent.agent_id]["state"] == "sent", 5)
        assert hub.store.config_states()[agent.agent_id]["offer_id"] == o.offer_id
        [audit] = _resends(hub, agent.agent_id)
        assert audit["actor"] == "hub" and audit["details"]["offer_id"] == o.offer_id
        assert audit["details"]["nonce"] == r.nonce
        assert hub.ingest.metrics.counters["config_resends"] == 1

        # heartbeats while online are no transition: nothing more
        await agent.status(agent_status(zone))
        await agent.status(agent_status(zone))
        await _no_offer(agent)

        # still unanswered after another offline spell: once more for that transition
        await _offline(hub, agent, False)
        await _offline(hub, agent, True)
        third = decode(SignedConfigOffer, await agent.next_on("config", timeout=5))
        assert third.offer.offer_id == o.offer_id and third.offer.nonce not in {o.nonce, r.nonce}
        assert len(_resends(hub, agent.agent_id)) == 2

        # the agent answers (applied): an online transition re-sends nothing any more
        report = ConfigReport(
            agent_id=agent.agent_id,
            state="applied",
            offer_id=o.offer_id,
            version=o.version,
            running_version=o.version,
        )
        await agent.client.publish(Topics.config_report(zone, "cp1"), report.to_bytes(), qos=1, retain=True)
        await wait_for(lambda: hub.store.config_states()[agent.agent_id]["state"] == "applied", 5)
        await _offline(hub, agent, False)
        await _offline(hub, agent, True)
        await _no_offer(agent)
        assert len(_resends(hub, agent.agent_id)) == 2
        assert hub.store.config_states()[agent.agent_id]["state"] == "applied"
        await agent.client.publish(Topics.config_report(zone, "cp1"), b"", qos=1, retain=True)


@pytest.mark.parametrize("answer", ["rejected", "refused", "rolled_back", "unchanged"])
async def test_an_answered_push_is_never_resent(tmp_path: Path, zone: str, answer: str) -> None:
    key = secrets.token_bytes(32)
    async with (
        running_hub(tmp_path, key_for=lambda aid: key) as hub,
        fake_agent(zone) as agent,
    ):
        await agent.client.subscribe(Topics.config(zone, "cp1"), qos=1)
        await _offline(hub, agent, True)
        signed = sign_config(
            hub.ingest.key_for, agent.agent_id, YAML, issued_by="admin", confirm_within_s=30, ttl_s=60
        )
        await hub.store.acall(hub.store.record_config_offer, signed.offer, "admin")
        assert await hub.ingest.deliver_config(signed)
        first = decode(SignedConfigOffer, await agent.next_on("config", timeout=5))
        assert first.offer.nonce == signed.offer.nonce  # the push itself reached the online agent
        report = ConfigReport(
            agent_id=agent.agent_id,
            state=answer,  # type: ignore[arg-type]
            offer_id=signed.offer.offer_id,
            version=signed.offer.version,
            running_version="0" * 64,
            code="expired" if answer == "refused" else "",
        )
        await agent.client.publish(Topics.config_report(zone, "cp1"), report.to_bytes(), qos=1)
        await wait_for(lambda: hub.store.config_states()[agent.agent_id]["state"] == answer, 5)
        await _offline(hub, agent, False)
        await _offline(hub, agent, True)
        await _no_offer(agent, 1.0)
        assert _resends(hub, agent.agent_id) == []


async def test_an_old_report_on_reconnect_does_not_hide_the_pending_push(tmp_path: Path, zone: str) -> None:
    """The agent re-reports its previous state (another offer, sent now) on reconnecting, possibly before
    its status is handled: the push stays unanswered, so it is still re-delivered."""
    key = secrets.token_bytes(32)
    async with (
        running_hub(tmp_path, key_for=lambda aid: key) as hub,
        fake_agent(zone) as agent,
    ):
        await _offline(hub, agent, False)
        signed = sign_config(
            hub.ingest.key_for, agent.agent_id, YAML, issued_by="admin", confirm_within_s=30, ttl_s=60
        )
        await hub.store.acall(hub.store.record_config_offer, signed.offer, "admin")
        assert await hub.ingest.deliver_config(signed)
        await agent.client.subscribe(Topics.config(zone, "cp1"), qos=1)
        old = ConfigReport(
            agent_id=agent.agent_id, state="applied", offer_id="an-older-push", running_version="1" * 64
        )
        await agent.client.publish(Topics.config_report(zone, "cp1"), old.to_bytes(), qos=1, retain=True)
        await wait_for(lambda: hub.store.config_states()[agent.agent_id]["running_version"] == "1" * 64, 5)
        assert hub.store.config_states()[agent.agent_id]["state"] == "sent"
        await _offline(hub, agent, True)
        again = decode(SignedConfigOffer, await agent.next_on("config", timeout=5))
        assert again.offer.offer_id == signed.offer.offer_id
        await agent.client.publish(Topics.config_report(zone, "cp1"), b"", qos=1, retain=True)


async def test_no_key_no_resend_and_ingest_goes_on(tmp_path: Path, zone: str) -> None:
    keys = {"k": secrets.token_bytes(32)}
    async with (
        running_hub(tmp_path, key_for=lambda aid: keys.get("k")) as hub,
        fake_agent(zone) as agent,
    ):
        await _offline(hub, agent, False)
        signed = sign_config(
            hub.ingest.key_for, agent.agent_id, YAML, issued_by="admin", confirm_within_s=30, ttl_s=60
        )
        await hub.store.acall(hub.store.record_config_offer, signed.offer, "admin")
        assert await hub.ingest.deliver_config(signed)
        await agent.client.subscribe(Topics.config(zone, "cp1"), qos=1)
        keys.clear()  # the key was withdrawn meanwhile
        await _offline(hub, agent, True)
        await _no_offer(agent, 1.0)
        assert hub.ingest.metrics.counters["config_resend_no_key"] == 1
        assert hub.store.config_states()[agent.agent_id]["state"] == "sent"  # not claimed, still awaited
        await _offline(hub, agent, False)  # ingest still handles the agent's status
        await asyncio.sleep(0)


async def test_a_new_run_of_the_agent_counts_as_coming_back(tmp_path: Path, zone: str) -> None:
    """A cleanly stopped agent leaves no last will (its retained status still says online): its next run,
    known by another `started_at`, is what brings the push; the first status seen from a run is not."""
    key = secrets.token_bytes(32)
    run1, run2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)

    def status(started_at: datetime):
        return agent_status(zone).model_copy(update={"started_at": started_at, "sent_at": datetime.now(UTC)})

    async with (
        running_hub(tmp_path, key_for=lambda aid: key) as hub,
        fake_agent(zone) as agent,
    ):
        await agent.client.subscribe(Topics.config(zone, "cp1"), qos=1)
        await agent.status(status(run1))
        await wait_for(lambda: [a for a in hub.store.list_agents() if a["agent_id"] == agent.agent_id], 5)
        signed = sign_config(
            hub.ingest.key_for, agent.agent_id, YAML, issued_by="admin", confirm_within_s=30, ttl_s=60
        )
        await hub.store.acall(hub.store.record_config_offer, signed.offer, "admin")
        await hub.store.acall(hub.store.set_config_offer_state, agent.agent_id, signed.offer.offer_id, "sent")
        await agent.status(status(run1))  # a heartbeat of the same run
        await _no_offer(agent, 1.0)
        await agent.status(status(run2))  # the agent was restarted
        again = decode(SignedConfigOffer, await agent.next_on("config", timeout=5))
        assert again.offer.offer_id == signed.offer.offer_id and again.offer.nonce != signed.offer.nonce
        await agent.status(status(run2))
        await _no_offer(agent, 1.0)
        assert len(_resends(hub, agent.agent_id)) == 1
