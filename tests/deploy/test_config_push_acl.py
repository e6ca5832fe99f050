"""The generated broker ACL carries config push (real Mosquitto with `efence mqtt config`'s set-up):
the hub writes an agent's offers and reads its reports; an agent reads only its own offers and writes
only its own reports. Denials are proven by absence before a sentinel (Mosquitto PUBACKs a denied publish, then drops the
connection, so forbidden publishes go on their own connections)."""

from __future__ import annotations

from efence.contract import Topics

from .conftest import SiteBroker
from .test_broker_security import attempt_publish, client, collect_until


async def test_config_offers_and_reports_flow_only_for_the_agent_itself(site_broker: SiteBroker) -> None:
    own_offer, own_report = Topics.config("z1", "gate-1"), Topics.config_report("z1", "gate-1")
    other_offer, other_report = Topics.config("z1", "gate-2"), Topics.config_report("z1", "gate-2")
    async with client(site_broker, "efence-hub") as hub, client(site_broker, "z1/gate-1") as agent:
        await hub.subscribe(Topics.ALL_CONFIG_REPORTS, qos=1)
        for t in (own_offer, other_offer):
            await agent.subscribe(t, qos=1)
        # the agent answers for itself, and cannot answer for its neighbour
        await attempt_publish(site_broker, "z1/gate-1", other_report, b"forged report")
        await agent.publish(own_report, b"sentinel", qos=1)
        got = await collect_until(hub, own_report, b"sentinel")
        assert got == [(own_report, b"sentinel")]
        # the hub's offers reach the agent they are for, and no other agent reads them
        await hub.publish(other_offer, b"not for gate-1", qos=1)
        await hub.publish(own_offer, b"sentinel", qos=1)
        got = await collect_until(agent, own_offer, b"sentinel")
        assert got == [(own_offer, b"sentinel")]
        # an agent cannot push a config to another agent either
        async with client(site_broker, "z1/gate-2") as neighbour:
            await neighbour.subscribe(other_offer, qos=1)
            await attempt_publish(site_broker, "z1/gate-1", other_offer, b"from gate-1")
            await hub.publish(other_offer, b"sentinel", qos=1)
            got = await collect_until(neighbour, other_offer, b"sentinel")
            assert got == [(other_offer, b"sentinel")]
