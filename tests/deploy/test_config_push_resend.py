"""A config pushed while the agent is offline reaches it when it comes back (offers are not retained).

End to end: a private Mosquitto, the real hub and the real agent as an `efence edge` process (the
harness of test_config_push_e2e). The agent is stopped, v2 is pushed (state `sent`, nobody listening),
the agent is started: the hub re-signs v2 (same offer, fresh nonce), the agent applies it and the hub
shows `applied`. A second restart re-sends nothing. The store's claim is checked on SQLite and on
PostgreSQL: one claim per online transition, none for an answered push.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from central_monitor.store import HubStore
from efence.contract import ConfigOffer, ConfigReport, config_version
from tests.deploy.test_config_push_e2e import AGENT_ID, REPO, Site, running, site


def start_agent(s: Site) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("EFENCE_TEST_COMMAND_KEY_UNSET", None)
    with (s.tmp / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from efence.cli import main; main()", "edge"]
            + ["--config", str(s.tmp / "zone.yaml"), "--log-level", "INFO", "--log-format", "plain"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def stop_agent(s: Site) -> None:
    s.agent.send_signal(signal.SIGINT)
    try:
        await asyncio.to_thread(s.agent.wait, 10)
    except subprocess.TimeoutExpired:
        s.agent.kill()
        await asyncio.to_thread(s.agent.wait, 5)


async def resends(s: Site) -> list[dict]:
    audit = (await s.http.get("/api/audit")).json()
    return [a for a in audit if a["action"] == "config.resend" and a["target"] == AGENT_ID]


async def test_a_push_to_an_offline_agent_is_applied_when_it_comes_back(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        first = s.agent
        await stop_agent(s)  # a clean stop: no last will, so the hub learns of the new run by its start

        v2 = s.variant(" (pushed while offline)")
        r = await s.push(v2, confirm_within_s=60)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "sent" and r.json()["push"] == "pending"
        await asyncio.sleep(1.0)
        assert (await s.agent_row())["config"]["state"] == "sent"  # nobody got it
        assert await resends(s) == []

        t0 = time.monotonic()
        s.agent = start_agent(s)
        try:
            row = await s.wait_for(
                "v2 applied after the agent came back",
                lambda r: running(r, config_version(v2)) and r["config"]["state"] == "applied",
                45,
            )
            back_s = time.monotonic() - t0
            assert row["config"]["push"] == "applied" and not row["config"]["on_trial"]
            assert (tmp_path / "edge" / "config" / "active.yaml").read_text() == v2
            [resent] = await resends(s)
            assert resent["actor"] == "hub" and resent["details"]["offer_id"] == r.json()["offer_id"]
            assert "replayed" not in s.log_tail(200)
            print(f"\nagent start → re-sent push applied and confirmed in {back_s:.1f} s")

            # a second restart: the push is answered, nothing is re-sent
            await stop_agent(s)
            s.agent = start_agent(s)
            await s.wait_for(
                "the agent back with v2",
                lambda r: running(r, config_version(v2)) and r["started_at"] != row["started_at"],
                30,
            )
            await asyncio.sleep(2.0)
            assert len(await resends(s)) == 1
            row = await s.agent_row()
            assert row["config"]["state"] == "applied" and running(row, config_version(v2))
            assert (await s.http.get("/api/audit/verify")).json()["ok"]
        finally:
            if s.agent is not first and s.agent.poll() is None:
                await stop_agent(s)


# ------------------------------------------------------------------ the store's claim
@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_one_claim_per_online_transition_and_none_once_answered(store: HubStore) -> None:
    agent = f"resend-{os.getpid()}-{time.monotonic_ns() % 10**9}/gate"  # PostgreSQL is shared per run
    assert store.config_offer_to_resend(agent) is None
    offer = ConfigOffer.create(yaml_text="id: b\n", agent_id=agent, issued_by="admin", ttl_s=200)
    store.record_config_offer(offer, "admin", "zone.yaml")
    store.set_config_offer_state(agent, offer.offer_id, "sent")
    todo = store.config_offer_to_resend(agent)
    assert todo is not None
    assert (todo["offer_id"], todo["yaml_text"], todo["offered_by"]) == (offer.offer_id, "id: b\n", "admin")
    assert todo["ttl_s"] == pytest.approx(200) and todo["confirm_within_s"] == pytest.approx(120)

    again = ConfigOffer.create(
        yaml_text="id: b\n", agent_id=agent, issued_by="admin", offer_id=offer.offer_id
    )
    assert store.claim_config_resend(agent, offer.offer_id, "t1", again)
    assert not store.claim_config_resend(agent, offer.offer_id, "t1", again)  # a second worker, same status
    assert store.config_states()[agent]["state"] == "signed"
    store.set_config_offer_state(agent, offer.offer_id, "sent")
    assert store.claim_config_resend(agent, offer.offer_id, "t2", again)  # the next transition
    assert not store.claim_config_resend(agent, "another-offer", "t3", again)

    store.apply_config_report(
        ConfigReport(
            agent_id=agent,
            state="staged",
            offer_id=offer.offer_id,
            version=offer.version,
            running_version=offer.version,
            on_trial=True,
        )
    )
    assert store.config_offer_to_resend(agent) is None
    assert not store.claim_config_resend(agent, offer.offer_id, "t4", again)
    audit = [a for a in store.list_audit() if a["action"] == "config.resend" and a["target"] == agent]
    assert [a["details"]["resend"] for a in audit] == [2, 1]
    assert store.verify_audit() == []

    # a new push starts afresh
    newer = ConfigOffer.create(yaml_text="id: c\n", agent_id=agent, issued_by="admin")
    store.record_config_offer(newer, "admin")
    todo = store.config_offer_to_resend(agent)
    assert todo is not None and todo["offer_id"] == newer.offer_id and todo["resends"] == 0
