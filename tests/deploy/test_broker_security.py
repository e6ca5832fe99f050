"""The generated Mosquitto set-up, proven with real clients against a real broker.

Mosquitto denies silently (a forbidden publish is PUBACKed and dropped; a forbidden subscription
delivers nothing), so each denial is proven by *absence*: the same connection then does something
it is allowed to, and once that sentinel arrives, anything forbidden sent before it would have too.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from contextlib import AsyncExitStack

import aiomqtt
import pytest

from efence.contract import Topics
from efence.mqtt_tls import tls_context_for

from .conftest import SiteBroker

WAIT_S = 5.0


def client(broker: SiteBroker, user: str | None, password: str | None = None, **kw) -> aiomqtt.Client:
    if user is not None and password is None:
        password = broker.password(user)
    return aiomqtt.Client(
        "127.0.0.1",
        broker.plain_port,
        identifier=f"t-{uuid.uuid4().hex[:10]}",
        username=user,
        password=password,
        **kw,
    )


async def collect_until(c: aiomqtt.Client, sentinel_topic: str, sentinel: bytes) -> list[tuple[str, bytes]]:
    """Every message received until (and including) the sentinel; bounded by WAIT_S."""
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(WAIT_S):
        async for m in c.messages:
            got.append((str(m.topic), bytes(m.payload)))
            if str(m.topic) == sentinel_topic and bytes(m.payload) == sentinel:
                return got
    raise AssertionError("unreachable")


async def test_agent_does_its_own_traffic_and_hub_sees_it(site_broker: SiteBroker) -> None:
    own = [
        Topics.status("z1", "gate-1"),
        Topics.events("z1", "gate-1"),
        Topics.command_results("z1", "gate-1"),
    ]
    to_agent = [
        Topics.ack("z1", "gate-1"),
        Topics.resend("z1", "gate-1"),
        Topics.commands("z1", "gate-1"),
        Topics.records("z1"),
        Topics.HUB_STATUS,
    ]
    async with client(site_broker, "efence-hub") as hub, client(site_broker, "z1/gate-1") as agent:
        for t in (Topics.ALL_STATUS, Topics.ALL_EVENTS, Topics.ALL_COMMAND_RESULTS):
            await hub.subscribe(t, qos=1)
        for t in to_agent:
            await agent.subscribe(t, qos=1)
        for t in own:
            await agent.publish(t, b"mine", qos=1)
        hub_got = []
        async with asyncio.timeout(WAIT_S):
            async for m in hub.messages:
                if m.retain:  # left on the session broker by earlier tests (e.g. agent status)
                    continue
                hub_got.append(str(m.topic))
                if len(hub_got) == len(own):
                    break
        assert sorted(hub_got) == sorted(own)
        for t in to_agent:
            await hub.publish(t, b"for you", qos=1)
        agent_got = []
        async with asyncio.timeout(WAIT_S):
            async for m in agent.messages:
                if m.retain:  # left on the session broker by earlier tests (e.g. agent status)
                    continue
                agent_got.append(str(m.topic))
                if len(agent_got) == len(to_agent):
                    break
        assert sorted(agent_got) == sorted(to_agent)


async def attempt_publish(
    broker: SiteBroker, user: str, topic: str, payload: bytes, retain: bool = False
) -> None:
    """Publish once on a fresh connection. Mosquitto 2.0 PUBACKs a denied publish and then drops the
    connection, so an error after the attempt is expected and ignored: only what arrives counts."""
    try:
        async with asyncio.timeout(WAIT_S), client(broker, user) as c:
            await c.publish(topic, payload, qos=1, retain=retain)
            await asyncio.sleep(0.05)
    except aiomqtt.MqttError:
        pass


async def test_agent_cannot_publish_as_another_agent_or_as_the_hub(site_broker: SiteBroker) -> None:
    forged = [
        Topics.events("z1", "gate-2"),
        Topics.status("z1", "gate-2"),
        Topics.command_results("z1", "gate-2"),
        Topics.events("z2", "gate-1"),
        Topics.commands("z1", "gate-2"),  # commanding a neighbour's barrier
        Topics.commands("z1", "gate-1"),  # or its own: only the hub issues commands
        Topics.ack("z1", "gate-2"),
        Topics.records("z1"),  # forging customs records
        Topics.HUB_STATUS,  # impersonating the hub
        "efence/v1/z1/gate-1/anything-else",
    ]
    async with AsyncExitStack() as st:
        hub = await st.enter_async_context(client(site_broker, "efence-hub"))
        victim = await st.enter_async_context(client(site_broker, "z1/gate-2"))
        for t in (Topics.ALL_STATUS, Topics.ALL_EVENTS, Topics.ALL_COMMAND_RESULTS):
            await hub.subscribe(t, qos=1)
        for t in (Topics.commands("z1", "gate-2"), Topics.ack("z1", "gate-2"), Topics.records("z1")):
            await victim.subscribe(t, qos=1)
        await victim.subscribe(Topics.HUB_STATUS, qos=1)
        for t in forged:
            await attempt_publish(site_broker, "z1/gate-1", t, b"forged", retain=t == Topics.HUB_STATUS)
        # the attacker's own topic still works, and arrives after every forged attempt
        sentinel_topic, sentinel = Topics.events("z1", "gate-1"), uuid.uuid4().bytes
        async with client(site_broker, "z1/gate-1") as attacker:
            await attacker.publish(sentinel_topic, sentinel, qos=1)
        hub_got = await collect_until(hub, sentinel_topic, sentinel)
        assert [m for m in hub_got if m[1] == b"forged"] == []
        vic_sentinel = uuid.uuid4().bytes
        await hub.publish(Topics.commands("z1", "gate-2"), vic_sentinel, qos=1)
        vic_got = await collect_until(victim, Topics.commands("z1", "gate-2"), vic_sentinel)
        assert [m for m in vic_got if m[1] == b"forged"] == []
    # nothing forged was retained either: a fresh subscriber to the hub status sees no "forged"
    async with client(site_broker, "z2/gate-1") as late:
        await late.subscribe(Topics.HUB_STATUS, qos=1)
        async with client(site_broker, "efence-hub") as hub2:
            s2 = uuid.uuid4().bytes
            await hub2.publish(Topics.HUB_STATUS, s2, qos=1)
        got = await collect_until(late, Topics.HUB_STATUS, s2)
        assert [m for m in got if m[1] == b"forged"] == []


async def test_agent_cannot_read_another_checkpoints_commands_or_zone(site_broker: SiteBroker) -> None:
    async with client(site_broker, "efence-hub") as hub, client(site_broker, "z1/gate-1") as spy:
        for t in (
            Topics.commands("z1", "gate-2"),
            Topics.ack("z1", "gate-2"),
            Topics.resend("z1", "gate-2"),
            "efence/v1/+/+/commands",
            Topics.records("z2"),
            Topics.commands("z1", "gate-1"),  # its own, for the sentinel
        ):
            await spy.subscribe(t, qos=1)
        for t in (Topics.commands("z1", "gate-2"), Topics.ack("z1", "gate-2"), Topics.resend("z1", "gate-2")):
            await hub.publish(t, b"secret", qos=1)
        await hub.publish(Topics.commands("z2", "gate-1"), b"secret", qos=1)
        await hub.publish(Topics.records("z2"), b"secret", qos=1)
        sentinel = uuid.uuid4().bytes
        await hub.publish(Topics.commands("z1", "gate-1"), sentinel, qos=1)
        got = await collect_until(spy, Topics.commands("z1", "gate-1"), sentinel)
        assert [m for m in got if m[1] == b"secret"] == []
        assert got[-1] == (Topics.commands("z1", "gate-1"), sentinel)


async def test_subscribing_to_everything_yields_only_what_the_agent_may_read(site_broker: SiteBroker) -> None:
    async with AsyncExitStack() as st:
        hub = await st.enter_async_context(client(site_broker, "efence-hub"))
        neighbour = await st.enter_async_context(client(site_broker, "z1/gate-2"))
        other_zone = await st.enter_async_context(client(site_broker, "z2/gate-1"))
        spy = await st.enter_async_context(client(site_broker, "z1/gate-1"))
        for filt in ("#", "efence/#", "$share/spies/#", "+/+/+/+/+"):
            await spy.subscribe(filt, qos=1)
        await neighbour.publish(Topics.events("z1", "gate-2"), b"other", qos=1)
        await neighbour.publish(Topics.status("z1", "gate-2"), b"other", qos=1)
        await other_zone.publish(Topics.events("z2", "gate-1"), b"other", qos=1)
        await hub.publish(Topics.commands("z1", "gate-2"), b"other", qos=1)
        await hub.publish(Topics.records("z2"), b"other", qos=1)
        sentinel = uuid.uuid4().bytes
        await hub.publish(Topics.commands("z1", "gate-1"), sentinel, qos=1)
        got = await collect_until(spy, Topics.commands("z1", "gate-1"), sentinel)
        assert [m for m in got if m[1] == b"other"] == []
        # whatever did arrive is the spy's own business only
        allowed = {Topics.commands("z1", "gate-1"), Topics.records("z1"), Topics.HUB_STATUS}
        assert {t for t, _ in got} <= allowed


async def test_shared_subscription_works_for_the_hub_user(site_broker: SiteBroker) -> None:
    v5 = {"protocol": aiomqtt.ProtocolVersion.V5}
    async with client(site_broker, "efence-hub", **v5) as hub, client(site_broker, "z2/gate-1") as agent:
        await hub.subscribe(Topics.shared(Topics.ALL_EVENTS), qos=1)
        await agent.publish(Topics.events("z2", "gate-1"), b"shared", qos=1)
        async with asyncio.timeout(WAIT_S):
            async for m in hub.messages:
                if m.retain:  # left on the session broker by earlier tests (e.g. agent status)
                    continue
                assert bytes(m.payload) == b"shared"
                break


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("z1/gate-1", "wrong"), ("nobody", "x"), ("z1/gate-1", None)],
    ids=["anonymous", "wrong-password", "unknown-user", "no-password"],
)
async def test_unauthenticated_clients_are_refused(site_broker: SiteBroker, user, password) -> None:
    c = aiomqtt.Client("127.0.0.1", site_broker.plain_port, username=user, password=password or None)
    if user == "z1/gate-1" and password is None:
        c = aiomqtt.Client("127.0.0.1", site_broker.plain_port, username=user)
    with pytest.raises(aiomqtt.MqttError):
        async with asyncio.timeout(WAIT_S), c:
            pass


# ------------------------------------------------------------------ TLS
def tls_client(broker: SiteBroker, ctx: ssl.SSLContext | None, host: str = "127.0.0.1") -> aiomqtt.Client:
    return aiomqtt.Client(
        host,
        broker.tls_port,
        username="z1/gate-1",
        password=broker.password("z1/gate-1"),
        tls_context=ctx,
        identifier=f"t-{uuid.uuid4().hex[:10]}",
    )


async def test_tls_with_the_site_ca_verifies_and_carries_traffic(site_broker: SiteBroker) -> None:
    ctx = tls_context_for(f"mqtts://localhost:{site_broker.tls_port}", ca_file=site_broker.ca)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    async with tls_client(site_broker, ctx, host="localhost") as c:
        await c.subscribe(Topics.HUB_STATUS, qos=1)
        async with client(site_broker, "efence-hub") as hub:
            await hub.publish(Topics.HUB_STATUS, b"over tls", qos=1)
        async with asyncio.timeout(WAIT_S):
            async for m in c.messages:
                if m.retain:  # left on the session broker by earlier tests (e.g. agent status)
                    continue
                assert bytes(m.payload) == b"over tls"
                break


async def test_tls_with_a_wrong_ca_is_refused(site_broker: SiteBroker) -> None:
    ctx = tls_context_for(f"mqtts://localhost:{site_broker.tls_port}", ca_file=site_broker.other_ca)
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError)) as exc:
        async with asyncio.timeout(WAIT_S), tls_client(site_broker, ctx, host="localhost"):
            pass
    assert "certificate verify failed" in str(exc.value) or "CERTIFICATE_VERIFY_FAILED" in str(exc.value)


async def test_tls_to_a_name_not_in_the_certificate_is_refused(site_broker: SiteBroker) -> None:
    ctx = tls_context_for(f"mqtts://localhost:{site_broker.tls_port}", ca_file=site_broker.ca)
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
        async with asyncio.timeout(WAIT_S), tls_client(site_broker, ctx, host="127.0.0.2"):
            pass


def test_the_tls_port_never_speaks_plain_text(site_broker: SiteBroker) -> None:
    """A plain MQTT CONNECT to the TLS listener gets no CONNACK: the broker closes the connection."""
    import socket

    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0])  # v3.1.1, clean, empty id
    with socket.create_connection(("127.0.0.1", site_broker.tls_port), timeout=WAIT_S) as s:
        s.sendall(connect)
        try:
            reply = s.recv(16)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x20"), f"the TLS port answered a plain CONNECT: {reply!r}"
