"""MQTT ingest: agents' events, status and command results into the store, with application acks.

- Events are stored idempotently by id in batches (up to `batch_max` messages or `batch_window_s`);
  after each commit the hub publishes `HubAck(acked_seq=highest contiguous seq stored)` — PUBACK
  alone is not proof of storage (DESIGN.md).
- Agents send decisions ahead of telemetry, so seqs arrive out of order; a gap is asked for
  (`ResendRequest`) only once it has persisted for `gap_grace_s`, repeated every
  `resend_interval_s`. Only an agent that is ONLINE and still has not filled the gap after
  `resend_max_attempts` requests spread over at least `gap_abandon_after_s` loses it: the hub then
  records the loss, rings an `event_gap` alarm and acks past it instead of stalling the outbox
  forever. While the agent is offline (its last will / status says so) its gaps wait untouched —
  the events are safe in its outbox — and when it comes back the clock starts again, since on
  reconnecting it re-sends everything not yet acknowledged.
- The hub announces itself with a retained `HubStatus` (new instance id, so agents re-publish their
  state) and a last will saying it is offline.
- Config offers (rule C7) are not retained: an agent offline at push time never gets one. When an
  agent comes back online (its status goes from offline to online, or comes from a new run of the
  agent: another `started_at`, as a clean disconnect leaves no last will) and its latest push is unanswered
  (signed/sent/not_sent), the hub signs the same YAML again — same offer id, fresh nonce and expiry,
  as the agent refuses a replayed nonce — and publishes it, once per online transition (claimed in
  the store, so several hub workers send it once) and never for a push already answered.
- A malformed message is logged with its reason and counted in `metrics`; it never stops ingest.
- The connection is supervised: on loss it reconnects with back-off; storing and acking go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from efence.contract import (
    AgentStatus,
    CommandResult,
    ConfigOffer,
    ConfigReport,
    ContractError,
    EventEnvelope,
    HubAck,
    HubStatus,
    RecordDelta,
    ResendRequest,
    SignedConfigOffer,
    Topics,
    decode,
    sign_config_offer,
    utcnow,
)
from efence.mqtt_tls import broker_security

from .keys import KeyLookup
from .live import LiveBus
from .store import HubStore, IngestResult, new_instance_id

log = logging.getLogger("efence.hub.ingest")


@dataclass
class IngestConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "efence-hub"
    username: str | None = None
    password: str | None = None
    shared_group: str | None = None  # MQTT 5 shared subscription group; None = plain subscriptions
    persistent_session: bool = True  # the broker keeps QoS 1 events for us while we restart
    batch_max: int = 500
    batch_window_s: float = 0.005  # group commit + a short linger for stragglers of the same burst
    # acks go out in rounds at most this often (the first after a quiet spell at once): only each agent's
    # latest ack matters, and a QoS 1 publish costs the hub ~0.14 ms of CPU, which at one ack per agent
    # per group commit was as much as storing the events; edges prune at most this much later
    ack_interval_s: float = 0.05
    gap_grace_s: float = 1.0
    resend_interval_s: float = 2.0
    resend_max_attempts: int = 5
    # an online agent keeps a gap at least this long (and `resend_max_attempts` requests) before the hub
    # gives up on it; counted from when the gap was seen or the agent last came back online
    gap_abandon_after_s: float = 60.0
    keepalive: int = 30
    reconnect_max_s: float = 10.0
    tls_context: ssl.SSLContext | None = None  # from efence.mqtt_tls for mqtts:// URLs

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> IngestConfig:
        """`mqtt://[user:pass@]host:port` → config."""
        sec = broker_security(url, default_username="efence-hub")  # refuses a bad TLS/credential set-up
        kw.setdefault("tls_context", sec.tls_context)
        rest = url.split("://", 1)[-1]
        creds, _, hostport = rest.rpartition("@")
        host, _, port = hostport.partition(":")
        user, _, pw = creds.partition(":")
        return cls(
            host=host or "127.0.0.1",
            port=int(port or (8883 if sec.tls_context else 1883)),
            username=user or sec.username,
            password=pw or sec.password,
            **kw,
        )


class NoSigningKey(LookupError):
    """The hub has no checkpoint key for an agent, so it cannot sign anything for it."""


def sign_config(
    key_for: KeyLookup | None,
    agent_id: str,
    yaml_text: str,
    *,
    issued_by: str,
    confirm_within_s: float,
    ttl_s: float,
    offer_id: str | None = None,
) -> SignedConfigOffer:
    """A config offer for `agent_id`, signed with its checkpoint key (rule C7) — for a push and for its
    re-delivery alike (`offer_id` of the push being re-sent; nonce and expiry are always fresh).
    Raises `NoSigningKey` naming the agent when `key_for` has no key for it."""
    key = key_for(agent_id) if key_for is not None else None
    if key is None:
        raise NoSigningKey(f"no signing key for {agent_id} (keys directory or env)")
    offer = ConfigOffer.create(
        yaml_text=yaml_text,
        ttl_s=ttl_s,
        agent_id=agent_id,
        confirm_within_s=confirm_within_s,
        issued_by=issued_by,
        **({"offer_id": offer_id} if offer_id else {}),
    )
    return sign_config_offer(offer, key, key_id=agent_id)


def _decode_event(payload: bytes) -> EventEnvelope:
    """`decode(EventEnvelope, …)` at half the cost on the hot path: pydantic parses and validates the
    bytes in one pass (no `json.loads` dict in between). Anything it refuses goes through `decode`, so
    what is accepted and the `ContractError` wording for what is not stay exactly those of rule C2."""
    try:
        return EventEnvelope.model_validate_json(payload)
    except ValidationError:
        return decode(EventEnvelope, payload)


def _event_tap(ingest: Ingest) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming-message queue class (its public `queue_type` hook) with a fast lane: events go
    straight to `ingest.take_event` from paho's callback instead of through the message iterator, which
    costs a task and an `asyncio.wait` per message; status and command results take the normal path."""

    class EventTap(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            topic = item.topic.value
            if topic.endswith("/events"):
                p = item.payload
                ingest.take_event(topic, p if isinstance(p, bytes | bytearray) else str(p or "").encode())
            else:
                super().put_nowait(item)

    return EventTap


@dataclass
class _Gap:
    first_seen: float  # when the gap was seen, or its agent last came back online (the abandon clock)
    last_request: float = 0.0
    attempts: int = 0


@dataclass
class IngestMetrics:
    counters: Counter[str] = field(default_factory=Counter)
    malformed_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {**self.counters, "malformed_by_reason": dict(self.malformed_by_reason.most_common(20))}


class Ingest:
    """One hub ingest worker. `await run()` until cancelled; `publish()` for deltas and commands."""

    def __init__(
        self,
        store: HubStore,
        config: IngestConfig,
        live: LiveBus | None = None,
        key_for: KeyLookup | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.live = live or LiveBus()
        # checkpoint keys, to sign re-delivered config offers; `create_app` gives it the API's lookup
        self.key_for = key_for
        self.metrics = IngestMetrics()
        self.instance_id = new_instance_id()
        self.started_at = utcnow()
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        # decoded events waiting for the batcher: a plain list, filled from paho's callback (see _EventTap)
        self._events: list[EventEnvelope] = []
        self._events_ready = asyncio.Event()
        self._agent_topics: dict[str, str] = {}  # events topic → agent id (parsed once per agent)
        self._gaps: dict[str, dict[tuple[int, int], _Gap]] = {}
        self._offline: set[str] = set()  # agents whose latest status (or last will) says offline
        self._runs: dict[str, str] = {}  # agent id → `started_at` of the run its last online status came from
        self._acks: dict[str, int] = {}  # latest ack per agent waiting to be published
        self._ack_wakeup = asyncio.Event()
        self._pending: list[tuple[str, bytes, int, bool]] = []  # publishes waiting for a connection
        self._deltas: asyncio.Queue[RecordDelta] = asyncio.Queue()
        self.last_error: str = ""

    # ----------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._connection_loop(), name="hub-mqtt")
            tg.create_task(self._batcher(), name="hub-batcher")
            tg.create_task(self._gap_ticker(), name="hub-gaps")
            tg.create_task(self._acker(), name="hub-acks")
            tg.create_task(self._delta_publisher(), name="hub-deltas")

    def _status(self, online: bool) -> bytes:
        return HubStatus(online=online, instance_id=self.instance_id, started_at=self.started_at).to_bytes()

    @property
    def queued_events(self) -> int:
        """Events received and decoded but not yet committed (the `efence_hub_ingest_queue` gauge)."""
        return len(self._events)

    def _make_client(self) -> aiomqtt.Client:
        c = self.config
        v5 = c.shared_group is not None
        kw: dict[str, Any] = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600 if c.persistent_session else 0
            kw.update(
                protocol=aiomqtt.ProtocolVersion.V5, clean_start=not c.persistent_session, properties=props
            )
        else:
            kw.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not c.persistent_session)
        client = aiomqtt.Client(
            c.host,
            c.port,
            identifier=c.client_id,
            username=c.username,
            password=c.password,
            keepalive=c.keepalive,
            will=aiomqtt.Will(Topics.HUB_STATUS, self._status(False), qos=1, retain=True),
            max_inflight_messages=100,
            tls_context=c.tls_context,
            queue_type=_event_tap(self),
            **kw,
        )
        client.pending_calls_threshold = 500  # acks go out 50 at a time by design; not worth a warning
        return client

    def _sub(self, topic: str) -> str:
        return Topics.shared(topic, self.config.shared_group) if self.config.shared_group else topic

    async def _connection_loop(self) -> None:
        backoff = 0.2
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    await client.subscribe(
                        [
                            (self._sub(Topics.ALL_EVENTS), 1),
                            (Topics.ALL_STATUS, 1),
                            (self._sub(Topics.ALL_COMMAND_RESULTS), 1),
                            (Topics.ALL_CONFIG_REPORTS, 1),  # retained, so every worker, not shared
                        ]
                    )
                    await client.publish(Topics.HUB_STATUS, self._status(True), qos=1, retain=True)
                    self.connected.set()
                    self.metrics.counters["connects"] += 1
                    log.info(
                        "hub %s connected to mqtt://%s:%s",
                        self.instance_id,
                        self.config.host,
                        self.config.port,
                    )
                    backoff = 0.2
                    await self._flush_pending(client)
                    try:
                        async for message in client.messages:
                            await self._on_message(message)
                    finally:
                        self.connected.clear()
                        self._client = None
                        # graceful stop: say offline ourselves (the last will is for crashes)
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(
                                asyncio.shield(
                                    client.publish(Topics.HUB_STATUS, self._status(False), qos=1, retain=True)
                                ),
                                1.0,
                            )
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                self.metrics.counters["connection_errors"] += 1
                log.warning("mqtt connection lost (%s); retrying in %.1f s", exc, backoff)
            self.connected.clear()
            self._client = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_s)

    # ----------------------------------------------------------------- receiving
    def _reject(self, leaf: str, reason: str) -> None:
        self.metrics.counters["malformed"] += 1
        self.metrics.malformed_by_reason[f"{leaf}: {reason.split(' (')[0][:80]}"] += 1
        log.warning("rejected %s message: %s", leaf, reason[:300])

    async def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = (
            message.payload
            if isinstance(message.payload, bytes | bytearray)
            else str(message.payload or "").encode()
        )
        try:
            zone, checkpoint, leaf = Topics.parse_agent_topic(topic)
        except ValueError:
            self._reject("topic", f"unexpected topic {topic}")
            return
        agent_id = f"{zone}/{checkpoint}"
        if leaf == "events":  # normally taken by _EventTap already; kept for completeness
            self.take_event(topic, payload)
            return
        self.metrics.counters[f"received_{leaf}"] += 1
        try:
            if leaf == "status":
                if not payload:
                    return  # a cleared retained status
                status = decode(AgentStatus, payload)
                if status.agent_id != agent_id:
                    raise ContractError(f"agent_id: {status.agent_id} published on the topic of {agent_id}")
                res = await self.store.acall(self.store.apply_status, status)
                self.live.publish_all(res.live)
                came_back = self._agent_presence(agent_id, status.online)
                new_run = self._new_run(agent_id, status)
                if status.online:  # tell a (re)connecting agent what is already stored
                    acked = await self.store.acall(self.store.contiguous_seq, agent_id)
                    await self._ack(agent_id, acked)
                if status.online and (came_back or new_run):
                    await self._resend_config(agent_id, status)
            elif leaf == "command-results":
                result = decode(CommandResult, payload)
                row = await self.store.acall(self.store.apply_command_result, result)
                if row:
                    self.live.publish({"type": "command", "data": row})
            elif leaf == "config-report":
                if not payload:
                    return  # a cleared retained report
                report = decode(ConfigReport, payload)
                if report.agent_id != agent_id:
                    raise ContractError(f"agent_id: {report.agent_id} published on the topic of {agent_id}")
                row = await self.store.acall(self.store.apply_config_report, report)
                self.live.publish({"type": "config", "data": row})
        except ContractError as exc:
            self._reject(leaf, exc.reason)
        except Exception as exc:  # a store failure on one message must not end ingest
            self.metrics.counters["errors"] += 1
            log.exception("failed to handle %s: %s", topic, exc)

    def take_event(self, topic: str, payload: bytes) -> None:
        """Decode one event and hand it to the batcher — synchronously, in the MQTT client's callback.

        The hot path of the hub: no per-event task, queue wake-up or timer (each cost as much as the
        decoding); a malformed event is counted and logged, never raised into the MQTT client."""
        agent_id = self._agent_topics.get(topic)
        if agent_id is None:
            try:
                zone, checkpoint, _leaf = Topics.parse_agent_topic(topic)
            except ValueError:
                self._reject("topic", f"unexpected topic {topic}")
                return
            agent_id = f"{zone}/{checkpoint}"
            if len(self._agent_topics) > 10_000:  # bounded: topics are per agent, but never trust a broker
                self._agent_topics.clear()
            self._agent_topics[topic] = agent_id
        self.metrics.counters["received_events"] += 1
        try:
            env = _decode_event(payload)
            if env.agent_id != agent_id:
                raise ContractError(f"agent_id: {env.agent_id} published on the topic of {agent_id}")
        except ContractError as exc:
            self._reject("events", exc.reason)
            return
        self._events.append(env)
        if len(self._events) == 1:
            self._events_ready.set()

    # ----------------------------------------------------------------- batching, acks, gaps
    async def _batcher(self) -> None:
        """Group commit: one commit takes everything that arrived during the previous one (≤ batch_max)
        plus what arrives within `batch_window_s`, so a quiet hub stores each event almost at once and a
        busy one amortises the fsync over hundreds."""
        c = self.config
        while True:
            if not self._events:
                self._events_ready.clear()
                await self._events_ready.wait()
            if c.batch_window_s > 0 and len(self._events) < c.batch_max:
                await asyncio.sleep(c.batch_window_s)  # linger for the rest of the burst
            batch = self._events[: c.batch_max]
            del self._events[: c.batch_max]
            await self._commit(batch)

    async def _commit(self, batch: list[EventEnvelope]) -> None:
        for attempt in range(1, 100):
            try:
                res = await self.store.acall(self.store.ingest, batch)
                break
            except Exception as exc:  # disk full, locked database…: keep the batch, do not ack
                self.metrics.counters["store_errors"] += 1
                log.error("store commit failed (attempt %d): %s", attempt, exc)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
        else:
            return
        self.metrics.counters["stored"] += res.inserted
        self.metrics.counters["duplicates"] += res.duplicates
        self.metrics.counters["seq_conflicts"] += res.conflicts
        self.metrics.counters["batches"] += 1
        await self._after_commit(res)

    async def _after_commit(self, res: IngestResult) -> None:
        self.live.publish_all(res.live)
        for delta in res.deltas:
            await self.publish_delta(delta)
        for agent_id, acked in res.contiguous.items():
            await self._ack(agent_id, acked)
            self._track_gaps(agent_id, res.gaps.get(agent_id, []))
        await self._request_resends()

    async def _ack(self, agent_id: str, acked: int) -> None:
        """Queue an ack; the acker coalesces them (only the latest per agent matters) off the batch path."""
        self._acks[agent_id] = max(acked, self._acks.get(agent_id, 0)) if agent_id in self._acks else acked
        self._ack_wakeup.set()

    async def _acker(self) -> None:
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup.clear()
            pending, self._acks = self._acks, {}

            async def send(agent_id: str, acked: int) -> None:
                zone, checkpoint = agent_id.split("/", 1)
                ack = HubAck(agent_id=agent_id, acked_seq=acked, hub_instance=self.instance_id)
                if await self._try_publish(Topics.ack(zone, checkpoint), ack.to_bytes(), qos=1):
                    self.metrics.counters["acks_sent"] += 1

            items = list(pending.items())
            for i in range(0, len(items), 50):  # bounded in flight; the broker and paho queue the rest
                await asyncio.gather(*(send(a, n) for a, n in items[i : i + 50]))
            if self.config.ack_interval_s > 0:
                await asyncio.sleep(self.config.ack_interval_s)  # what commits meanwhile goes in one round

    def _agent_presence(self, agent_id: str, online: bool) -> bool:
        """Offline: its gaps wait (the events are in its outbox). Back online: each gap gets a fresh
        grace and abandon clock, as the agent now re-sends everything unacknowledged by itself.
        True when this status brought the agent back from offline (seen offline by this worker)."""
        if not online:
            self._offline.add(agent_id)
            return False
        came_back = agent_id in self._offline
        self._offline.discard(agent_id)
        if came_back:
            now = time.monotonic()
            for g in self._gaps.get(agent_id, {}).values():
                g.first_seen, g.last_request, g.attempts = now, 0.0, 0
        return came_back

    def _new_run(self, agent_id: str, status: AgentStatus) -> bool:
        """True when an online status comes from another run of the agent than the last one seen here
        (`started_at` changed): it was down in between even if no offline status said so — a clean
        MQTT disconnect discards the last will. The first status seen from an agent is no new run."""
        if not status.online or status.started_at is None:
            return False
        run = status.started_at.isoformat()
        before = self._runs.get(agent_id)
        if len(self._runs) > 10_000:  # bounded, like the topic cache
            self._runs.clear()
        self._runs[agent_id] = run
        return before is not None and before != run

    # ----------------------------------------------------------------- config offers
    async def deliver_config(self, signed: SignedConfigOffer) -> bool:
        """Publish a signed offer already recorded in the store (state `signed`) and record `sent` or
        `not_sent`. QoS 1, never retained and never queued: an offer is only good until it expires."""
        offer = signed.offer
        zone, checkpoint = offer.agent_id.split("/", 1)
        sent = await self.publish(Topics.config(zone, checkpoint), signed.to_bytes(), qos=1, queue=False)
        await self.store.acall(
            self.store.set_config_offer_state, offer.agent_id, offer.offer_id, "sent" if sent else "not_sent"
        )
        return sent

    async def _resend_config(self, agent_id: str, status: AgentStatus) -> None:
        """The agent is back online: re-deliver its latest push if it never answered it (see the module
        doc). Never raises into the message loop; a missing key is logged and counted."""
        try:
            todo = await self.store.acall(self.store.config_offer_to_resend, agent_id)
            if todo is None:
                return
            signed = sign_config(
                self.key_for,
                agent_id,
                todo["yaml_text"],
                issued_by=todo["offered_by"] or "hub",
                confirm_within_s=float(todo["confirm_within_s"] or 120.0),
                ttl_s=float(todo["ttl_s"]),
                offer_id=todo["offer_id"],
            )
            transition = status.sent_at.isoformat()  # the same for every worker that sees this status
            claimed = await self.store.acall(
                self.store.claim_config_resend, agent_id, todo["offer_id"], transition, signed.offer
            )
            if not claimed:
                return
            sent = await self.deliver_config(signed)
            self.metrics.counters["config_resends" if sent else "config_resends_not_sent"] += 1
            log.info(
                "config push %s re-sent to %s, back online (%s)",
                todo["offer_id"],
                agent_id,
                "sent" if sent else "publish failed",
            )
            rows = await self.store.acall(self.store.config_states)
            self.live.publish({"type": "config", "data": rows.get(agent_id, {})})
        except NoSigningKey as exc:
            self.metrics.counters["config_resend_no_key"] += 1
            log.error("config push to %s not re-sent: %s", agent_id, exc)
        except Exception as exc:  # a store failure must not end ingest; the next transition tries again
            self.metrics.counters["errors"] += 1
            log.exception("config push to %s not re-sent: %s", agent_id, exc)

    def _track_gaps(self, agent_id: str, gaps: list[tuple[int, int]]) -> None:
        now = time.monotonic()
        old = self._gaps.get(agent_id, {})
        current: dict[tuple[int, int], _Gap] = {}
        for g in gaps:
            # a gap that shrank from the top is still the same hole: keep its timer
            prior = old.get(g) or next((v for (a, _b), v in old.items() if a == g[0]), None)
            current[g] = prior or _Gap(first_seen=now)
        if current:
            self._gaps[agent_id] = current
        else:
            self._gaps.pop(agent_id, None)

    async def _request_resends(self) -> None:
        c = self.config
        now = time.monotonic()
        for agent_id, gaps in list(self._gaps.items()):
            if agent_id in self._offline:
                continue  # nobody to ask; nothing is lost while its outbox holds the events
            for (lo, hi), g in list(gaps.items()):
                if now - g.first_seen < c.gap_grace_s or now - g.last_request < c.resend_interval_s:
                    continue
                # given up only when asked often enough AND for long enough; until then keep asking
                if g.attempts >= c.resend_max_attempts and now - g.first_seen >= c.gap_abandon_after_s:
                    res = await self.store.acall(self.store.abandon_gap, agent_id, lo, hi)
                    self.metrics.counters["gaps_abandoned"] += 1
                    gaps.pop((lo, hi), None)
                    await self._after_commit(res)
                    return
                zone, checkpoint = agent_id.split("/", 1)
                req = ResendRequest(agent_id=agent_id, from_seq=lo, to_seq=hi)
                if await self._try_publish(Topics.resend(zone, checkpoint), req.to_bytes(), qos=1):
                    g.attempts += 1
                    g.last_request = now
                    self.metrics.counters["resend_requests"] += 1
                    log.info("asked %s to resend %d..%d (attempt %d)", agent_id, lo, hi, g.attempts)

    async def _gap_ticker(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.config.gap_grace_s / 2))
            if self._gaps:
                await self._request_resends()

    # ----------------------------------------------------------------- publishing
    async def _try_publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
            return True
        except aiomqtt.MqttError as exc:
            log.warning("publish to %s failed: %s", topic, exc)
            return False

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, queue: bool = True
    ) -> bool:
        """Publish now, or (when `queue`) keep it until the connection is back. False if not sent yet."""
        if await self._try_publish(topic, payload, qos, retain):
            return True
        if queue:
            self._pending.append((topic, payload, qos, retain))
        return False

    async def publish_delta(self, delta: RecordDelta) -> None:
        """Queue a record delta; one task publishes them in the order queued (= seq order, as callers queue
        right after their store call returns), QoS 1, waiting out broker outages. An edge that still
        misses one sees the seq gap and pulls over HTTP."""
        self._deltas.put_nowait(delta)

    async def _delta_publisher(self) -> None:
        while True:
            delta = await self._deltas.get()
            while True:
                await self.connected.wait()
                if await self._try_publish(Topics.records(delta.zone), delta.to_bytes(), qos=1):
                    self.metrics.counters["deltas_published"] += 1
                    break
                await asyncio.sleep(0.5)

    async def _flush_pending(self, client: aiomqtt.Client) -> None:
        pending, self._pending = self._pending, []
        for topic, payload, qos, retain in pending:
            await client.publish(topic, payload, qos=qos, retain=retain)
