"""Hub test helpers: real SQLite files, a real Mosquitto of their own, unique ids per test.

A hub subscribes to every agent's topics, so on the machine's shared broker (127.0.0.1:1883) it would
also see other test runs' traffic and the retained statuses they leave: the hub tests of one pytest
process get a private `mosquitto` (the project's no-drop config) started on first import. Every test
also gets its own zone name (`hz<random>`) and its own MQTT client ids.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from central_monitor.hub import Hub
from central_monitor.ingest import IngestConfig
from efence.contract import AgentStatus, DeviceStatus, EventEnvelope, LaneStatus, Topics
from efence.mosquitto import private_mosquitto
from efence.ports import free_port


def _private_broker() -> int:
    """Start this process's private Mosquitto (stopped at exit) and return its port."""
    stack = contextlib.ExitStack()
    url = stack.enter_context(private_mosquitto())
    atexit.register(stack.close)
    return int(url.rsplit(":", 1)[1])


BROKER_HOST, BROKER_PORT = "127.0.0.1", _private_broker()


def event(
    agent_id: str, seq: int, type: str = "telemetry", lane: str | None = "L1", **payload: Any
) -> EventEnvelope:
    return EventEnvelope.new(agent_id=agent_id, seq=seq, type=type, lane=lane, payload=payload)


def tx_event(
    agent_id: str, seq: int, tid: str, verdict: str = "RELEASE", lane: str = "L1", **extra: Any
) -> EventEnvelope:
    return EventEnvelope.new(
        agent_id=agent_id,
        seq=seq,
        type="transaction",
        lane=lane,
        correlation_id=tid,
        payload={"transaction_id": tid, "verdict": verdict, **extra},
    )


def agent_status(
    zone: str, checkpoint: str = "cp1", online: bool = True, down: tuple[str, ...] = ()
) -> AgentStatus:
    devices = [
        DeviceStatus(device_id=d, type=d.split("-")[0], observed="down" if d in down else "up")
        for d in ("camera-1", "rfid-1", "scale-1")
    ]
    return AgentStatus(
        agent_id=f"{zone}/{checkpoint}",
        zone=zone,
        checkpoint=checkpoint,
        online=online,
        name=f"Gate {checkpoint}",
        lanes=[LaneStatus(lane="L1", name="入区 1", direction="I", devices=devices)] if online else [],
    )


@dataclass
class FakeAgent:
    """An MQTT client standing in for an edge agent: publishes events, collects what the hub sends back."""

    client: aiomqtt.Client
    zone: str
    checkpoint: str
    inbox: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)

    @property
    def agent_id(self) -> str:
        return f"{self.zone}/{self.checkpoint}"

    async def send(self, env: EventEnvelope | bytes) -> None:
        payload = env if isinstance(env, bytes) else env.to_bytes()
        await self.client.publish(Topics.events(self.zone, self.checkpoint), payload, qos=1)

    async def status(self, status: AgentStatus) -> None:
        await self.client.publish(
            Topics.status(self.zone, self.checkpoint), status.to_bytes(), qos=1, retain=True
        )

    async def next_on(self, leaf: str, timeout: float = 5.0, where: Any = None) -> bytes:
        """Next message on `leaf` (ack, resend, commands, records) matching `where(payload)`."""
        async with asyncio.timeout(timeout):
            while True:
                topic, payload = await self.inbox.get()
                if topic.endswith("/" + leaf) and (where is None or where(payload)):
                    return payload


@contextlib.asynccontextmanager
async def fake_agent(zone: str, checkpoint: str = "cp1") -> AsyncIterator[FakeAgent]:
    client = aiomqtt.Client(BROKER_HOST, BROKER_PORT, identifier=f"test-agent-{uuid.uuid4().hex[:8]}")
    async with client:
        agent = FakeAgent(client, zone, checkpoint)
        for leaf in ("ack", "resend", "commands"):
            await client.subscribe(Topics.agent(zone, checkpoint, leaf), qos=1)
        await client.subscribe(Topics.records(zone), qos=1)

        async def pump() -> None:
            async for m in client.messages:
                agent.inbox.put_nowait((m.topic.value, bytes(m.payload)))

        task = asyncio.create_task(pump())
        try:
            yield agent
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # leave no retained status behind on the shared broker
            await client.publish(Topics.status(zone, checkpoint), b"", qos=1, retain=True)


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, **kw: Any) -> AsyncIterator[Hub]:
    cfg = IngestConfig(
        host=BROKER_HOST,
        port=BROKER_PORT,
        client_id=f"test-hub-{uuid.uuid4().hex[:8]}",
        persistent_session=False,
        gap_grace_s=kw.pop("gap_grace_s", 0.3),
        resend_interval_s=kw.pop("resend_interval_s", 0.5),
        resend_max_attempts=kw.pop("resend_max_attempts", 5),
        gap_abandon_after_s=kw.pop("gap_abandon_after_s", 60.0),
    )
    hub = Hub(tmp_path / "hub.db", port=free_port(), ingest_config=cfg, **kw)
    task = asyncio.create_task(hub.run())
    try:
        await hub.wait_ready()
        await asyncio.wait_for(hub.ingest.connected.wait(), 5)
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        hub.store.close()


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll an (async or sync) predicate until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)


def site_zone(tmp_path: Path, zone: str) -> Path:
    """A zones folder holding the shipped yangshan-port config renamed to this test's zone (its map)."""
    from firmware_configs.loader import ZONES_DIR

    zones_dir = tmp_path / "zones"
    zones_dir.mkdir()
    text = (ZONES_DIR / "yangshan-port.yaml").read_text(encoding="utf-8")
    (zones_dir / f"{zone}.yaml").write_text(text.replace("id: yangshan-port", f"id: {zone}", 1), "utf-8")
    return zones_dir


async def wall_page(
    browser: Any, url: str, user: str, password: str, viewport: tuple[int, int] = (1920, 1080)
) -> tuple[Any, list[str]]:
    """A dashboard page in headless Chromium, logged in as `user`; the page's script errors are collected
    in the returned list (a test asserts it stays empty)."""
    page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url + "/login.html")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-button")
    return page, errors
