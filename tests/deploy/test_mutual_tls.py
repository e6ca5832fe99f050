"""Mutual TLS against a real Mosquitto running what `efence mqtt config --require-client-cert
--identity-as-username` generates: every client shows a certificate of the site CA, and the
certificate's CN *is* its broker user, so the ACL binds to the certificate.

Clients are built the way the agent and the hub build theirs (`efence.mqtt_tls.broker_security`,
certificate and key named by `EFENCE_MQTT_CERT_FILE` / `EFENCE_MQTT_KEY_FILE`, no password).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from central_monitor.ingest import Ingest, IngestConfig
from central_monitor.store import SqliteStore
from efence import mosquitto
from efence.contract import Topics
from efence.mqtt_tls import MqttSecurityError, broker_security, tls_context_for

from .conftest import free_port, uplink_z1_gate1

AGENTS = [("z1", "gate-1"), ("z1", "gate-2")]
HUB = mosquitto.DEFAULT_HUB_USER
WAIT_S = 5.0


@dataclass
class MtlsBroker:
    port: int
    ca: Path
    certs: dict[str, tuple[Path, Path]]  # broker user → (client certificate, key), signed by the site CA
    foreign: tuple[Path, Path]  # a client certificate with CN z1/gate-1, signed by another CA
    secrets: Path
    conf: Path

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    def env(self, user: str) -> dict[str, str]:
        crt, key = self.certs[user]
        return {
            "EFENCE_MQTT_CA_FILE": str(self.ca),
            "EFENCE_MQTT_CERT_FILE": str(crt),
            "EFENCE_MQTT_KEY_FILE": str(key),
        }

    def password(self, user: str) -> str:
        return mosquitto.secret_path(self.secrets, user).read_text().strip()

    def log(self) -> str:
        return (self.conf.parent / "mosquitto.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[MtlsBroker]:
    d = tmp_path_factory.mktemp("mtls")
    users = [HUB, *(mosquitto.agent_username(z, c) for z, c in AGENTS)]
    certs = mosquitto.make_client_certs(d / "pki", users, ca=(pki["ca"], pki["ca_key"]))
    other_ca = mosquitto.make_ca(d / "other-ca", name="some other CA")
    foreign = mosquitto.make_client_certs(d / "other-pki", ["z1/gate-1"], ca=other_ca)["z1/gate-1"]
    port = free_port()
    gen = mosquitto.write_broker_config(
        d / "etc",
        agents=AGENTS,
        secrets_dir=d / "secrets",
        tls=mosquitto.TlsFiles(
            pki["ca"], pki["crt"], pki["key"], require_client_cert=True, identity_as_username=True
        ),
        port=port,
        bind="127.0.0.1",
        persistence_dir=d / "data",
        log_dest="stderr",
        run_as_user=getpass.getuser(),
    )
    with mosquitto.run_mosquitto(gen.conf, [port]):
        yield MtlsBroker(port, pki["ca"], certs, foreign, d / "secrets", gen.conf)


def client(broker: MtlsBroker, user: str, **kw: object) -> aiomqtt.Client:
    """A client set up exactly as the agent/hub set theirs up: from the environment, certificate files."""
    sec = broker_security(broker.url, default_username=user, env=broker.env(user))
    assert sec.password is None and sec.tls_context is not None  # the certificate alone authenticates
    return aiomqtt.Client(
        "localhost",
        broker.port,
        identifier=f"t-{uuid.uuid4().hex[:10]}",
        username=sec.username,
        password=sec.password,
        tls_context=sec.tls_context,
        **kw,  # type: ignore[arg-type]
    )


async def collect_until(c: aiomqtt.Client, topic: str, sentinel: bytes) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(WAIT_S):
        async for m in c.messages:
            got.append((str(m.topic), bytes(m.payload)))
            if str(m.topic) == topic and bytes(m.payload) == sentinel:
                return got
    raise AssertionError("unreachable")


async def publish_once(c: aiomqtt.Client, topic: str, payload: bytes) -> None:
    """One publish on a fresh connection; Mosquitto drops a client that publishes outside its ACL."""
    try:
        async with asyncio.timeout(WAIT_S), c:
            await c.publish(topic, payload, qos=1)
            await asyncio.sleep(0.05)
    except aiomqtt.MqttError:
        pass


def test_the_generated_listener_requires_a_certificate_and_takes_the_user_from_it(
    mtls_broker: MtlsBroker,
) -> None:
    conf = mtls_broker.conf.read_text()
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "allow_anonymous false" in conf and f"listener {mtls_broker.port} 127.0.0.1" in conf
    assert conf.count("listener ") == 1  # no plain-text port beside it


async def test_an_agent_with_its_own_certificate_publishes_only_its_own_topics(
    mtls_broker: MtlsBroker,
) -> None:
    forged = [
        Topics.events("z1", "gate-2"),
        Topics.status("z1", "gate-2"),
        Topics.commands("z1", "gate-2"),
        Topics.records("z1"),
        Topics.HUB_STATUS,
    ]
    async with client(mtls_broker, HUB) as hub, client(mtls_broker, "z1/gate-2") as victim:
        for t in (Topics.ALL_EVENTS, Topics.ALL_STATUS, Topics.HUB_STATUS):
            await hub.subscribe(t, qos=1)
        await victim.subscribe(Topics.commands("z1", "gate-2"), qos=1)
        await victim.subscribe(Topics.records("z1"), qos=1)
        for t in forged:
            await publish_once(client(mtls_broker, "z1/gate-1"), t, b"forged")
        sentinel = uuid.uuid4().bytes
        async with client(mtls_broker, "z1/gate-1") as agent:
            await agent.publish(Topics.events("z1", "gate-1"), sentinel, qos=1)
        got = await collect_until(hub, Topics.events("z1", "gate-1"), sentinel)
        assert [m for m in got if m[1] == b"forged"] == []
        vic_sentinel = uuid.uuid4().bytes
        await hub.publish(Topics.commands("z1", "gate-2"), vic_sentinel, qos=1)
        got = await collect_until(victim, Topics.commands("z1", "gate-2"), vic_sentinel)
        assert [m for m in got if m[1] == b"forged"] == []


async def test_the_certificate_not_the_user_name_sent_decides_the_acl(mtls_broker: MtlsBroker) -> None:
    """gate-1's certificate with gate-2's user name and password: still only gate-1's topics."""
    sec = broker_security(mtls_broker.url, env=mtls_broker.env("z1/gate-1"))

    def as_gate_2() -> aiomqtt.Client:
        return aiomqtt.Client(
            "localhost",
            mtls_broker.port,
            identifier=f"t-{uuid.uuid4().hex[:10]}",
            username="z1/gate-2",
            password=mtls_broker.password("z1/gate-2"),
            tls_context=sec.tls_context,
        )

    async with client(mtls_broker, HUB) as hub:
        await hub.subscribe(Topics.ALL_EVENTS, qos=1)
        await publish_once(as_gate_2(), Topics.events("z1", "gate-2"), b"forged")
        sentinel = uuid.uuid4().bytes
        async with as_gate_2() as c:
            await c.publish(Topics.events("z1", "gate-1"), sentinel, qos=1)  # gate-1's own topic: allowed
        got = await collect_until(hub, Topics.events("z1", "gate-1"), sentinel)
        assert [m for m in got if m[1] == b"forged"] == []


async def refused_handshake(
    broker: MtlsBroker, ctx: ssl.SSLContext | None, caplog: pytest.LogCaptureFixture, **kw: object
) -> tuple[str, str]:
    """Try to connect and publish; returns (what the client library logged, what the broker logged).

    Under TLS 1.3 the broker checks the client certificate after the client's side of the handshake
    is done, so the refusal reaches the client as a TLS alert and the CONNACK never comes: the
    connect fails (aiomqtt: timed out) and both sides log why — which is what is checked.
    """
    before = broker.log()
    caplog.set_level(logging.ERROR)
    c = aiomqtt.Client("localhost", broker.port, tls_context=ctx, timeout=2, **kw)  # type: ignore[arg-type]
    with pytest.raises((aiomqtt.MqttError, ssl.SSLError, OSError)) as refused:
        async with asyncio.timeout(WAIT_S), c:
            await c.publish(Topics.events("z1", "gate-1"), b"x", qos=1)
    # both logs are written asynchronously (the broker's to its file): give a loaded machine time
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        client = " ".join([*(r.getMessage() for r in caplog.records), repr(refused.value)])
        logged = broker.log()[len(before) :]
        if (
            "verify failed" in logged or "certificate" in logged
        ) or asyncio.get_running_loop().time() > deadline:
            return client, logged
        await asyncio.sleep(0.1)


async def test_a_client_without_a_certificate_is_refused_even_with_a_valid_password(
    mtls_broker: MtlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = tls_context_for(mtls_broker.url, ca_file=mtls_broker.ca, env={})
    assert ctx is not None  # it verifies the broker; it just has nothing to show
    client_log, broker_log = await refused_handshake(
        mtls_broker, ctx, caplog, username="z1/gate-1", password=mtls_broker.password("z1/gate-1")
    )
    # the client reads the broker's alert, or (when the broker closed first) an EOF in the handshake
    assert any(why in client_log.upper() for why in ("CERTIFICATE_REQUIRED", "EOF OCCURRED")), client_log
    assert "peer did not return a certificate" in broker_log  # the broker's own reason, always logged


async def test_a_certificate_from_another_ca_is_refused(
    mtls_broker: MtlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    crt, key = mtls_broker.foreign  # CN z1/gate-1, but not signed by the site CA
    ctx = tls_context_for(mtls_broker.url, ca_file=mtls_broker.ca, cert=crt, key=key, env={})
    client_log, broker_log = await refused_handshake(mtls_broker, ctx, caplog, username="z1/gate-1")
    assert any(why in client_log.upper() for why in ("UNKNOWN_CA", "EOF OCCURRED")), client_log
    assert "certificate verify failed" in broker_log  # the broker's own reason, always logged


# ------------------------------------------------------------------ the real agent and hub


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in (
        "EFENCE_MQTT_PASSWORD_FILE",
        "EFENCE_MQTT_PASSWORD",
        "EFENCE_MQTT_USERNAME",
        "CREDENTIALS_DIRECTORY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def test_agent_and_hub_connect_with_their_certificate_files_and_no_password(
    mtls_broker: MtlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, mtls_broker.env(HUB))
    store = SqliteStore(tmp_path / "hub.db")
    ingest = Ingest(
        store, IngestConfig.from_url(mtls_broker.url, client_id=f"efence-hub-mtls-{uuid.uuid4().hex[:6]}")
    )
    _use(monkeypatch, mtls_broker.env("z1/gate-1"))
    uplink = uplink_z1_gate1(tmp_path, mtls_broker.url)
    assert ingest.config.password is None and uplink.security.password is None
    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(uplink.run())]
    try:
        async with asyncio.timeout(15):
            await ingest.connected.wait()
            while not (uplink.connected and uplink.hub_online):
                await asyncio.sleep(0.05)
            # the agent's status went through the ACL of the user its certificate names
            while not any(a["agent_id"] == "z1/gate-1" and a["online"] for a in store.list_agents()):
                await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("missing-cert", "client certificate file not found"),
        ("cert-without-key", "needs its key"),
        ("key-of-another-cert", "do not load"),
        ("plain-url", "use mqtts://"),
    ],
)
def test_agent_and_hub_with_wrong_tls_settings_refuse_to_start(
    mtls_broker: MtlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, expected: str
) -> None:
    env = mtls_broker.env("z1/gate-1")
    url = mtls_broker.url
    if setting == "missing-cert":
        env["EFENCE_MQTT_CERT_FILE"] = str(tmp_path / "nowhere" / "gate-1.crt")
    elif setting == "cert-without-key":
        del env["EFENCE_MQTT_KEY_FILE"]
    elif setting == "key-of-another-cert":
        env["EFENCE_MQTT_KEY_FILE"] = str(mtls_broker.certs["z1/gate-2"][1])
    else:
        url = f"mqtt://localhost:{mtls_broker.port}"
    _use(monkeypatch, env)
    with pytest.raises(MqttSecurityError, match=expected) as agent_err:
        uplink_z1_gate1(tmp_path, url)
    with pytest.raises(MqttSecurityError, match=expected):
        IngestConfig.from_url(url)
    if setting == "missing-cert":
        assert str(tmp_path / "nowhere" / "gate-1.crt") in str(agent_err.value)  # names the file


async def test_an_agent_whose_certificate_is_refused_keeps_retrying_tls_and_never_goes_plain(
    mtls_broker: MtlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    crt, key = mtls_broker.foreign
    _use(
        monkeypatch,
        {
            "EFENCE_MQTT_CA_FILE": str(mtls_broker.ca),
            "EFENCE_MQTT_CERT_FILE": str(crt),
            "EFENCE_MQTT_KEY_FILE": str(key),
        },
    )
    uplink = uplink_z1_gate1(tmp_path, mtls_broker.url)
    assert uplink.security.tls_context is not None
    before = mtls_broker.log()
    caplog.set_level(logging.WARNING)

    def refused() -> list[str]:  # the broker's TLS alert, or an EOF when it closed before the alert was read
        return [
            r.getMessage()
            for r in caplog.records
            if any(why in r.getMessage().upper() for why in ("UNKNOWN_CA", "EOF OCCURRED"))
        ]

    task = asyncio.create_task(uplink.run())
    try:
        async with asyncio.timeout(20):
            while not refused():  # the broker's TLS alert, as the agent's MQTT library reports it
                assert not uplink.connected
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert not uplink.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    retries = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert all(f"localhost:{mtls_broker.port}" in m for m in retries)  # only ever the TLS port
    new_log = mtls_broker.log()[len(before) :]
    assert "efence-agent-z1-gate-1" not in new_log  # the broker never accepted a session for it
