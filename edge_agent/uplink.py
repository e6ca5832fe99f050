"""The agent's link to the hub over MQTT: outbox → events, acks/resends/commands/records ← hub.

Supervised: any broker failure reconnects with back-off under a fresh unique client id. On every
(re)connect the full agent state is re-published (retained, with a last will that says offline), every
unacknowledged event is re-sent, and the same happens whenever the hub announces a new instance.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlparse

import aiomqtt

from edge_agent.drivers.base import backoff_delays, raise_if_cancelling
from edge_agent.outbox import Outbox
from efence.contract import (
    AgentStatus,
    ContractError,
    HubAck,
    HubStatus,
    RecordDelta,
    ResendRequest,
    SignedCommand,
    Topics,
    decode,
    utcnow,
)
from efence.mqtt_tls import broker_security

log = logging.getLogger("efence.uplink")
# one client per checkpoint: reconnecting every few seconds costs the broker nothing, and a gate that
# waited 15 s after the broker came back would decide offline for no reason
RECONNECT_MAX_S = 5.0


def broker_address(url: str) -> tuple[str, int, bool]:
    """`mqtt://host:port` or `mqtts://host:port` → (host, port, tls)."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"broker URL must look like mqtt://host:port or mqtts://host:port, got {url!r}")
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


async def _first_failure(*coros: Awaitable[None]) -> None:
    """Run the session's loops until one fails, cancel the others, raise that failure.

    Not a TaskGroup: on Python 3.11 a TaskGroup whose child fails while the parent waits in `__aexit__`
    cancels the parent and never uncancels it, so `task.cancelling()` stays 1 and the reconnect loop
    took the broker's disappearance for a shutdown — the uplink ended for good after the first outage
    and the agent ran on without a link (found by tests/edge/test_failures.py).
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)  # bounded: a library may swallow a cancellation
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    raise ConnectionError("uplink session ended")


class Uplink:
    def __init__(
        self,
        *,
        zone: str,
        checkpoint: str,
        broker_url: str,
        outbox: Outbox,
        status: Callable[[bool], AgentStatus],
        on_command: Callable[[SignedCommand | None, str], Awaitable[None]],
        on_record_delta: Callable[[RecordDelta], Awaitable[None]],
        on_hub_birth: Callable[[], Awaitable[None]] | None = None,
        on_connected: Callable[[], None] | None = None,
        handlers: Mapping[str, Callable[[bytes], Awaitable[None]]] | None = None,
        status_interval_s: float = 10.0,
        refresh_status: Callable[[], Awaitable[None]] | None = None,
        resend_after_s: float = 10.0,
        batch: int = 200,
    ):
        self.zone, self.checkpoint = zone, checkpoint
        self.agent_id = f"{zone}/{checkpoint}"
        self.host, self.port, self.tls = broker_address(broker_url)
        # TLS + broker credentials, checked now: a misconfigured agent refuses to start (efence.mqtt_tls)
        self.security = broker_security(broker_url, default_username=self.agent_id)
        self.outbox = outbox
        self.status = status  # sync and I/O-free (also builds the last will)
        self.refresh_status = refresh_status  # awaited before each status publish: the blocking reads
        self.on_command = on_command
        self.on_record_delta = on_record_delta
        self.on_hub_birth = on_hub_birth
        self.on_connected = on_connected
        self.handlers = dict(handlers or {})  # further topics and their handlers (config push)
        self.status_interval_s = status_interval_s
        self.resend_after_s = resend_after_s
        self.batch = batch
        self.wake = asyncio.Event()
        self.connected = False
        self.hub_online = False
        self.restarting = False  # set just before a planned restart: no offline status on the way out
        self.hub_instance: str | None = None
        self.rejected = 0
        self._client: aiomqtt.Client | None = None

    @property
    def online(self) -> bool:
        """True when decisions are made with a live link to the hub (broker up and hub alive)."""
        return self.connected and self.hub_online

    def nudge(self) -> None:
        """Something was appended to the outbox: send it now rather than at the next poll."""
        self.wake.set()

    async def publish_status(self) -> None:
        if self._client is not None and self.connected:
            if self.refresh_status is not None:
                await self.refresh_status()
            await self._client.publish(
                Topics.status(self.zone, self.checkpoint), self.status(True).to_bytes(), qos=1, retain=True
            )

    async def run(self) -> None:
        delays = backoff_delays(RECONNECT_MAX_S)
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — the link must come back whatever broke it
                raise_if_cancelling()
                self.connected = False
                self._client = None
                delay = next(delays)
                log.warning(
                    "uplink %s: broker %s:%d unavailable (%s); retrying in %.1f s",
                    self.agent_id,
                    self.host,
                    self.port,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                delays = backoff_delays(RECONNECT_MAX_S)

    async def _session(self) -> None:
        will = aiomqtt.Will(
            Topics.status(self.zone, self.checkpoint), self.status(False).to_bytes(), qos=1, retain=True
        )
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"efence-agent-{self.zone}-{self.checkpoint}-{uuid.uuid4().hex[:8]}",
            will=will,
            clean_session=True,
            keepalive=15,
            max_queued_outgoing_messages=0,
            username=self.security.username,
            password=self.security.password,
            tls_context=self.security.tls_context,
        )
        client.pending_calls_threshold = self.batch + 50  # a batch in flight is by design, not a warning
        async with client:
            self._client = client
            # what we knew of the hub is from before the link broke: only its retained status (which
            # arrives on subscribing) says it is alive, and the records may have moved on meanwhile
            self.hub_online = False
            self.connected = True
            if self.on_connected:
                self.on_connected()
            z, c = self.zone, self.checkpoint
            for topic in (
                Topics.ack(z, c),
                Topics.resend(z, c),
                Topics.commands(z, c),
                Topics.records(z),
                Topics.HUB_STATUS,
                *self.handlers,
            ):
                await client.subscribe(topic, qos=1)
            await self.outbox.requeue_all()
            await self.publish_status()
            log.info("uplink %s connected to %s:%d", self.agent_id, self.host, self.port)
            try:
                await _first_failure(
                    self._send_loop(client), self._receive_loop(client), self._heartbeat_loop()
                )
            except asyncio.CancelledError:
                # a clean stop: the broker sends the last will only when a link breaks, so the retained
                # status would say "online" until the hub's silence timeout; say it ourselves — unless
                # the agent restarts into a pushed config at once (its next run says online again)
                if not self.restarting:
                    await self._say_offline(client)
                raise
            finally:
                self.connected = False
                self._client = None

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Publish the last-will status (retained, offline) on the way out; bounded, never raises."""
        topic = Topics.status(self.zone, self.checkpoint)
        try:
            async with asyncio.timeout(1.0):
                stopped = self.status(False).model_copy(update={"offline_reason": "stopped"})
                await client.publish(topic, stopped.to_bytes(), qos=1, retain=True)
            log.info("uplink %s: stopped; offline status published", self.agent_id)
        except Exception as exc:  # noqa: BLE001 — best effort: the hub's silence timeout still catches it
            log.warning("uplink %s: could not publish the offline status on stop: %s", self.agent_id, exc)

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            rows = await self.outbox.claim(self.batch, resend_after_s=self.resend_after_s)
            if rows:  # in flight from here; a broken link puts them back (requeue_all on reconnect)
                topic = Topics.events(self.zone, self.checkpoint)
                await asyncio.gather(*(client.publish(topic, body, qos=1) for _, body in rows))
                if len(rows) == self.batch:
                    continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: it can swallow a cancellation on 3.11
                    await self.wake.wait()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self.publish_status()

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        z, c = self.zone, self.checkpoint
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            try:
                if topic == Topics.ack(z, c):
                    ack = decode(HubAck, payload)
                    if ack.agent_id == self.agent_id:
                        await self.outbox.acknowledge(ack.acked_seq)
                elif topic == Topics.resend(z, c):
                    req = decode(ResendRequest, payload)
                    n = await self.outbox.request_resend(req.from_seq, req.to_seq)
                    log.info(
                        "hub asked %s to resend %d..%d (%d still held)",
                        self.agent_id,
                        req.from_seq,
                        req.to_seq,
                        n,
                    )
                    self.wake.set()
                elif topic == Topics.commands(z, c):
                    try:
                        signed = decode(SignedCommand, payload)
                    except ContractError as exc:
                        await self.on_command(None, exc.reason)
                        continue
                    await self.on_command(signed, "")
                elif topic == Topics.records(z):
                    await self.on_record_delta(decode(RecordDelta, payload))
                elif topic == Topics.HUB_STATUS:
                    await self._hub_status(decode(HubStatus, payload))
                elif (handler := self.handlers.get(topic)) is not None:
                    await handler(payload)
            except ContractError as exc:
                self.rejected += 1
                log.warning("uplink %s: rejected message on %s: %s", self.agent_id, topic, exc.reason)

    async def _hub_status(self, hub: HubStatus) -> None:
        reborn = hub.online and hub.instance_id != self.hub_instance
        self.hub_online = hub.online
        if not hub.online:
            log.warning(
                "uplink %s: hub reports offline at %s; gates decide from local records",
                self.agent_id,
                utcnow().isoformat(),
            )
            return
        self.hub_instance = hub.instance_id
        if reborn:
            log.info(
                "uplink %s: hub instance %s is up; re-publishing full state", self.agent_id, hub.instance_id
            )
            await self.outbox.requeue_all()
            await self.publish_status()
            self.wake.set()
            if self.on_hub_birth:
                await self.on_hub_birth()
