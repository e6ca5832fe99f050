"""The one contract between edge agents and the hub: MQTT topics, message models, command signing.

Nothing else is shared between `edge_agent` and `central_monitor`. Rules (numbered as in
docs/PROTOCOL.md, each with a test in tests/test_contract.py):

- C1  Every topic starts with `efence/v1/`; agent topics are `efence/v1/{zone}/{checkpoint}/{leaf}`.
- C2  Messages are UTF-8 JSON objects. Receivers ignore unknown fields (changes are additive) and reject,
      log and count anything else — a malformed message never crashes a receiver (`decode`).
- C3  Events carry a unique `id` and a per-agent `seq` (1, 2, 3 … with no gaps); the hub stores by `id`,
      so a resend is harmless, and acknowledges the highest contiguous `seq` it has stored.
- C4  Agent status is retained and has a last will (`online: false`); the hub's status likewise.
- C5  Operator commands are signed with the checkpoint's key over their canonical JSON, carry an
      expiry and a nonce, and are refused when forged, expired or replayed (`verify_command`).
- C6  Record deltas carry a per-zone `seq`; an edge that sees a gap pulls the missing ones over HTTP.
- C7  Config offers are signed like commands (C5, in their own signing domain), carry their content's
      hash as `version`, and are answered by a retained config report (`verify_config_offer`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_PREFIX = "efence/v1"
HUB_SHARE_GROUP = "efence-hub"

M = TypeVar("M", bound="Message")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- topics
class Topics:
    """The topic tree. Agent ids are `zone/checkpoint`, which is also the topic path of the agent."""

    @staticmethod
    def agent(zone: str, checkpoint: str, leaf: str) -> str:
        return f"{SCHEMA_PREFIX}/{zone}/{checkpoint}/{leaf}"

    @staticmethod
    def status(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "status")

    @staticmethod
    def events(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "events")

    @staticmethod
    def ack(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "ack")

    @staticmethod
    def resend(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "resend")

    @staticmethod
    def commands(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "commands")

    @staticmethod
    def command_results(zone: str, checkpoint: str) -> str:
        return Topics.agent(zone, checkpoint, "command-results")

    @staticmethod
    def records(zone: str) -> str:
        return f"{SCHEMA_PREFIX}/{zone}/records"

    @staticmethod
    def config(zone: str, checkpoint: str) -> str:
        """Hub → agent: a `SignedConfigOffer` (QoS 1, not retained: an offer is only good until it expires)."""
        return Topics.agent(zone, checkpoint, "config")

    @staticmethod
    def config_report(zone: str, checkpoint: str) -> str:
        """Agent → hub: its latest `ConfigReport`, retained, so a (re)started hub learns it on subscribing."""
        return Topics.agent(zone, checkpoint, "config-report")

    HUB_STATUS = f"{SCHEMA_PREFIX}/hub/status"
    ALL_STATUS = f"{SCHEMA_PREFIX}/+/+/status"
    ALL_EVENTS = f"{SCHEMA_PREFIX}/+/+/events"
    ALL_COMMAND_RESULTS = f"{SCHEMA_PREFIX}/+/+/command-results"
    ALL_CONFIG_REPORTS = f"{SCHEMA_PREFIX}/+/+/config-report"

    @staticmethod
    def shared(topic: str, group: str = HUB_SHARE_GROUP) -> str:
        """MQTT 5 shared subscription, so several hub workers split one event stream."""
        return f"$share/{group}/{topic}"

    @staticmethod
    def parse_agent_topic(topic: str) -> tuple[str, str, str]:
        """`efence/v1/{zone}/{checkpoint}/{leaf}` → (zone, checkpoint, leaf); ValueError otherwise."""
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != SCHEMA_PREFIX or not all(parts[2:]):
            raise ValueError(f"not an agent topic: {topic!r}")
        return parts[2], parts[3], parts[4]


# --------------------------------------------------------------------------- base and decoding
class Message(BaseModel):
    """Base of every wire message: unknown fields are ignored (additive evolution, rule C2)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class ContractError(ValueError):
    """A message that does not satisfy the contract; `reason` says which field and what was expected."""

    def __init__(self, reason: str, raw: bytes = b""):
        self.reason = reason
        self.raw = raw[:200]
        super().__init__(reason)


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse one message or raise `ContractError` naming the field and what was expected (rule C2)."""
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{model.__name__}: not UTF-8 JSON ({exc})", raw) from None
    if not isinstance(data, dict):
        raise ContractError(f"{model.__name__}: expected a JSON object, got {type(data).__name__}", raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ContractError(f"{model.__name__}: {problems}", raw) from None


# --------------------------------------------------------------------------- events
class Priority(IntEnum):
    """Outbox order: decisions and alarms go out ahead of telemetry."""

    DECISION = 0
    ALARM = 1
    STATE = 2
    TELEMETRY = 3


class EventType(StrEnum):
    TRANSACTION = "transaction"  # a lane verdict and what it was based on
    TRANSACTION_STARTED = "transaction_started"  # a vehicle armed the lane
    TRANSACTION_CLOSED = "transaction_closed"  # the vehicle cleared the lane (or backed out)
    BARRIER = "barrier"  # barrier commanded / arm position changed
    ALARM = "alarm"  # something a person must look at
    DEVICE_HEALTH = "device_health"  # a device went up or down
    LANE_STATE = "lane_state"  # lane state machine moved
    COMMAND_AUDIT = "command_audit"  # an operator command was accepted or refused
    CONFIG = "config"  # a pushed config was staged, applied, refused or rolled back (a ConfigReport)
    PERIMETER = "perimeter"  # fence sensor or video analytics event
    TELEMETRY = "telemetry"  # periodic readings


DEFAULT_PRIORITY: dict[str, Priority] = {
    EventType.TRANSACTION: Priority.DECISION,
    EventType.TRANSACTION_CLOSED: Priority.DECISION,
    EventType.TRANSACTION_STARTED: Priority.STATE,
    EventType.ALARM: Priority.ALARM,
    EventType.PERIMETER: Priority.ALARM,
    EventType.COMMAND_AUDIT: Priority.ALARM,
    EventType.BARRIER: Priority.STATE,
    EventType.DEVICE_HEALTH: Priority.STATE,
    EventType.LANE_STATE: Priority.STATE,
    EventType.TELEMETRY: Priority.TELEMETRY,
    EventType.CONFIG: Priority.STATE,
}


class EventEnvelope(Message):
    """One event from an agent (rule C3). `observed_at` is when it happened at the lane, not when it was sent."""

    schema_: Literal["efence.event/1"] = Field("efence.event/1", alias="schema")
    id: str = Field(min_length=8, max_length=64, description="Globally unique event id (UUID).")
    agent_id: str = Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$", description="`zone/checkpoint`.")
    seq: int = Field(ge=1, description="Per-agent sequence number, 1, 2, 3 … without gaps.")
    observed_at: datetime
    zone: str
    checkpoint: str
    lane: str | None = None
    type: str = Field(min_length=1, max_length=40)
    priority: int = Field(Priority.TELEMETRY, ge=0, le=9)
    correlation_id: str | None = Field(None, description="Transaction id the event belongs to, if any.")
    payload: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def new(
        cls,
        *,
        agent_id: str,
        seq: int,
        type: str,
        payload: dict[str, Any],
        lane: str | None = None,
        observed_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> EventEnvelope:
        zone, checkpoint = agent_id.split("/")
        return cls(
            id=str(uuid.uuid4()),
            agent_id=agent_id,
            seq=seq,
            observed_at=observed_at or utcnow(),
            zone=zone,
            checkpoint=checkpoint,
            lane=lane,
            type=type,
            priority=DEFAULT_PRIORITY.get(type, Priority.TELEMETRY),
            correlation_id=correlation_id,
            payload=payload,
        )


class TransactionPayload(Message):
    """Payload of a `transaction` event: the lane's verdict and the inputs it used."""

    transaction_id: str
    verdict: Literal["RELEASE", "HOLD_MANUAL", "HOLD_INSPECTION", "REFUSE"]
    reasons: list[str] = Field(default_factory=list, description="Reason codes, e.g. F1, M3, I2.")
    plate: str | None = None
    e_plate: str | None = None
    pass_no: str | None = None
    gross_kg: float | None = None
    containers: list[str | None] = Field(default_factory=list)
    record_version: int | None = Field(
        None, description="Replication seq of the record cache the decision used."
    )
    offline: bool = Field(False, description="True when the gate decided without a live link to the hub.")
    led_zh: str = ""
    led_en: str = ""
    manual: bool = Field(False, description="An officer's manual decision, not an automatic one.")
    operator_id: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    draw: dict[str, Any] | None = None


# --------------------------------------------------------------------------- hub → agent
class HubAck(Message):
    """Application-level acknowledgement: every event with `seq <= acked_seq` is durably stored (rule C3)."""

    agent_id: str
    acked_seq: int = Field(ge=0)
    hub_instance: str = ""


class ResendRequest(Message):
    """The hub saw a gap: send `from_seq..to_seq` again (inclusive)."""

    agent_id: str
    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)


class HubStatus(Message):
    """Retained hub birth/death certificate. A new `instance_id` tells agents to re-publish full state."""

    online: bool
    instance_id: str
    started_at: datetime
    sent_at: datetime = Field(default_factory=utcnow)


# --------------------------------------------------------------------------- agent status
class DeviceStatus(Message):
    device_id: str
    type: str
    enabled: bool = True
    locked: bool = False
    observed: Literal["unknown", "up", "down"] = "unknown"
    last_error: str | None = None
    counters: dict[str, int] = Field(default_factory=dict)


class LaneStatus(Message):
    lane: str
    name: str = ""
    direction: Literal["I", "E"] = "I"
    line: Literal["first", "second"] = "second"
    state: str = "idle"
    locked: bool = False
    barrier: str = "unknown"
    light: str = "red"
    devices: list[DeviceStatus] = Field(default_factory=list)


class AgentStatus(Message):
    """Retained per-agent status with last will (rule C4). Full state, re-sent on every (re)connect."""

    agent_id: str
    zone: str
    checkpoint: str
    online: bool
    name: str = ""
    location: tuple[float, float] | None = None
    started_at: datetime | None = None
    sent_at: datetime = Field(default_factory=utcnow)
    software_version: str = ""
    config_version: str = Field("", description="`config_version()` of the zone config the agent runs.")
    config_on_trial: bool = Field(
        False, description="The running config was pushed and is not confirmed yet: it may still roll back."
    )
    record_version: int | None = None
    records_as_of: datetime | None = None
    outbox_depth: int = 0
    outbox_oldest_age_s: float = 0.0
    last_seq: int = 0
    offline_reason: Literal["", "link_lost", "stopped"] = Field(
        "",
        description="Why an offline status was sent: `` or `link_lost` (the last will: the link broke), "
        "`stopped` (a clean stop: service stop, upgrade).",
    )
    lanes: list[LaneStatus] = Field(default_factory=list)
    fence_devices: list[DeviceStatus] = Field(
        default_factory=list,
        description="Devices the agent watches outside its lanes: fence cameras, fence sensors (`type` says "
        "which). Additive: an older agent sends none. The hub files them under lane `perimeter`.",
    )


# --------------------------------------------------------------------------- records replication
class RecordKind(StrEnum):
    GATE_PASS = "gate_pass"
    VEHICLE = "vehicle"
    ENTERPRISE = "enterprise"
    RISK_INSTRUCTION = "risk_instruction"
    LEDGER_LIST = "ledger_list"
    TRADE_DOCUMENT = "trade_document"  # generic; prefer the three kinds below
    MANIFEST = "manifest"
    DELIVERY_ORDER = "delivery_order"
    DECLARATION = "declaration"
    DRIVER_CARD = "driver_card"


class RecordDelta(Message):
    """One change in a zone's record log (rule C6). `record` uses the customs field names."""

    zone: str
    seq: int = Field(ge=1)
    kind: RecordKind
    key: str = Field(min_length=1)
    op: Literal["upsert", "delete"] = "upsert"
    record: dict[str, Any] = Field(default_factory=dict)
    changed_at: datetime = Field(default_factory=utcnow)


class RecordPage(Message):
    """HTTP answer to a snapshot or delta request: `GET /api/records/{zone}?after=SEQ`."""

    zone: str
    head_seq: int = Field(ge=0, description="The zone's latest seq at the hub.")
    snapshot: bool = Field(
        False, description="True when `deltas` is a full snapshot (one upsert per live record)."
    )
    deltas: list[RecordDelta] = Field(default_factory=list)


# --------------------------------------------------------------------------- operator commands
class CommandAction(StrEnum):
    MANUAL_RELEASE = "manual_release"
    HOLD = "hold"
    ESCALATE = "escalate"
    LOCK_LANE = "lock_lane"
    UNLOCK_LANE = "unlock_lane"
    REGATHER = "regather"


class OperatorCommand(Message):
    """What an officer asked a lane to do; signed as a whole (rule C5)."""

    command_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    agent_id: str
    lane: str
    action: CommandAction
    operator_id: str = Field(min_length=1)
    second_operator_id: str | None = Field(None, description="Needed to override an I1/I2 inspection hold.")
    reason_code: str = ""
    reason_text: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    nonce: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=16)

    @classmethod
    def create(cls, *, ttl_s: float = 60.0, **fields: Any) -> OperatorCommand:
        now = utcnow()
        return cls(issued_at=now, expires_at=now + timedelta(seconds=ttl_s), **fields)

    def canonical(self) -> bytes:
        """Canonical JSON that the signature covers: sorted keys, no spaces, UTC times."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()


class SignedCommand(Message):
    command: OperatorCommand
    signature: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 of command.canonical(), hex.")
    key_id: str = ""


class CommandRejected(Exception):
    """Why a command was refused: `forged`, `expired`, `replayed`, `wrong_agent`, `not_yet_valid`."""

    def __init__(self, code: str, detail: str):
        self.code = code
        super().__init__(f"{code}: {detail}")


def sign_command(command: OperatorCommand, key: bytes, key_id: str = "") -> SignedCommand:
    sig = hmac.new(key, command.canonical(), hashlib.sha256).hexdigest()
    return SignedCommand(command=command, signature=sig, key_id=key_id)


class NonceLedger:
    """Nonces seen until their command expires, so a captured command cannot be replayed."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def check_and_add(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        for n, exp in list(self._seen.items()):
            if exp < now:
                del self._seen[n]
        if nonce in self._seen:
            return False
        self._seen[nonce] = expires_at
        return True


def verify_command(
    signed: SignedCommand,
    key: bytes,
    *,
    agent_id: str,
    now: datetime,
    nonces: NonceLedger,
    max_clock_skew_s: float = 30.0,
    max_ttl_s: float = 600.0,
) -> OperatorCommand:
    """Return the command if it is authentic, fresh, for this agent and not replayed; else raise CommandRejected."""
    cmd = signed.command
    expected = hmac.new(key, cmd.canonical(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise CommandRejected("forged", f"signature does not match command {cmd.command_id}")
    if cmd.agent_id != agent_id:
        raise CommandRejected("wrong_agent", f"command is for {cmd.agent_id}, this is {agent_id}")
    if cmd.expires_at <= now:
        raise CommandRejected("expired", f"command {cmd.command_id} expired at {cmd.expires_at.isoformat()}")
    if cmd.issued_at - timedelta(seconds=max_clock_skew_s) > now:
        raise CommandRejected(
            "not_yet_valid", f"command {cmd.command_id} issued in the future ({cmd.issued_at.isoformat()})"
        )
    if (cmd.expires_at - cmd.issued_at).total_seconds() > max_ttl_s:
        raise CommandRejected("expired", f"command {cmd.command_id} lifetime exceeds {max_ttl_s:.0f} s")
    if not nonces.check_and_add(cmd.nonce, cmd.expires_at, now):
        raise CommandRejected("replayed", f"nonce of command {cmd.command_id} was already used")
    return cmd


class CommandResult(Message):
    """The agent's answer to every command it received (accepted or not)."""

    command_id: str
    agent_id: str
    lane: str | None = None
    accepted: bool
    status: Literal["done", "refused", "failed"]
    code: str = ""
    detail: str = ""
    at: datetime = Field(default_factory=utcnow)


# --------------------------------------------------------------------------- agent → hub HTTP auth
AGENT_AUTH_SCHEME = "EfenceAgent"


def agent_http_auth(agent_id: str, key: bytes, method: str, path: str, now: datetime | None = None) -> str:
    """`Authorization` header value an agent sends to the hub's HTTP API (e.g. the records pull).

    `EfenceAgent <agent_id>:<unix seconds>:<hex HMAC-SHA256(key, "METHOD path agent_id ts")>`, signed with
    the checkpoint's command key, so agents need no password and the hub no extra secret. `path` is the
    URL path without the query string, e.g. `/api/records/yangshan-port`.
    """
    ts = int((now or utcnow()).timestamp())
    msg = f"{method.upper()} {path} {agent_id} {ts}".encode()
    return f"{AGENT_AUTH_SCHEME} {agent_id}:{ts}:{hmac.new(key, msg, hashlib.sha256).hexdigest()}"


def verify_agent_http_auth(
    value: str, key_for: Any, method: str, path: str, now: datetime | None = None, max_skew_s: float = 300.0
) -> str | None:
    """The agent id if `value` is a valid `agent_http_auth` header for this request; None otherwise.

    `key_for(agent_id) -> bytes | None` looks up the checkpoint key.
    """
    scheme, _, cred = value.partition(" ")
    if scheme != AGENT_AUTH_SCHEME:
        return None
    try:
        agent_id, ts_text, sig = cred.strip().rsplit(":", 2)
        ts = int(ts_text)
    except ValueError:
        return None
    if abs((now or utcnow()).timestamp() - ts) > max_skew_s:
        return None
    key = key_for(agent_id)
    if not key:
        return None
    msg = f"{method.upper()} {path} {agent_id} {ts}".encode()
    return agent_id if hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).hexdigest(), sig) else None


# --------------------------------------------------------------------------- config push (rule C7)
CONFIG_SIGNING_DOMAIN = b"efence.config-offer/1\n"  # an offer's signature can never pass as a command's
MAX_CONFIG_BYTES = 1_000_000


def config_version(yaml_text: str) -> str:
    """The version of a zone config: SHA-256 (hex) of its UTF-8 text. Same text, same version."""
    return hashlib.sha256(yaml_text.encode()).hexdigest()


class ConfigOffer(Message):
    """A zone firmware config pushed by the hub to one agent; signed as a whole (rule C7)."""

    offer_id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="Unique id of this push.")
    agent_id: str = Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$", description="`zone/checkpoint` it is for.")
    version: str = Field(pattern=r"^[0-9a-f]{64}$", description="`config_version(yaml_text)`.")
    yaml_text: str = Field(
        min_length=1, max_length=MAX_CONFIG_BYTES, description="The whole zone YAML, as in the file."
    )
    confirm_within_s: float = Field(
        120.0, ge=5, le=3600, description="Roll back unless reconnected to the hub within this many seconds."
    )
    issued_by: str = Field(min_length=1, description="Hub user who pushed it (audit).")
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    nonce: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=16)

    @classmethod
    def create(cls, *, yaml_text: str, ttl_s: float = 300.0, **fields: Any) -> ConfigOffer:
        now = utcnow()
        return cls(
            yaml_text=yaml_text,
            version=config_version(yaml_text),
            issued_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            **fields,
        )

    def canonical(self) -> bytes:
        """What the signature covers: the signing domain, then canonical JSON as for commands."""
        return (
            CONFIG_SIGNING_DOMAIN
            + json.dumps(
                self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )


class SignedConfigOffer(Message):
    offer: ConfigOffer
    signature: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 of offer.canonical(), hex.")
    key_id: str = ""


def sign_config_offer(offer: ConfigOffer, key: bytes, key_id: str = "") -> SignedConfigOffer:
    sig = hmac.new(key, offer.canonical(), hashlib.sha256).hexdigest()
    return SignedConfigOffer(offer=offer, signature=sig, key_id=key_id)


def verify_config_offer(
    signed: SignedConfigOffer,
    key: bytes,
    *,
    agent_id: str,
    now: datetime,
    nonces: NonceLedger,
    max_clock_skew_s: float = 30.0,
    max_ttl_s: float = 900.0,
) -> ConfigOffer:
    """The offer if authentic, intact, fresh, for this agent and not replayed; else raise CommandRejected
    (codes as for commands, plus `version_mismatch` when the text does not hash to `version`)."""
    offer = signed.offer
    expected = hmac.new(key, offer.canonical(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise CommandRejected("forged", f"signature does not match config offer {offer.offer_id}")
    if offer.agent_id != agent_id:
        raise CommandRejected("wrong_agent", f"config offer is for {offer.agent_id}, this is {agent_id}")
    if config_version(offer.yaml_text) != offer.version:
        raise CommandRejected(
            "version_mismatch", f"config offer {offer.offer_id}: text does not hash to version"
        )
    if offer.expires_at <= now:
        raise CommandRejected(
            "expired", f"config offer {offer.offer_id} expired at {offer.expires_at.isoformat()}"
        )
    if offer.issued_at - timedelta(seconds=max_clock_skew_s) > now:
        raise CommandRejected("not_yet_valid", f"config offer {offer.offer_id} issued in the future")
    if (offer.expires_at - offer.issued_at).total_seconds() > max_ttl_s:
        raise CommandRejected("expired", f"config offer {offer.offer_id} lifetime exceeds {max_ttl_s:.0f} s")
    if not nonces.check_and_add(offer.nonce, offer.expires_at, now):
        raise CommandRejected("replayed", f"nonce of config offer {offer.offer_id} was already used")
    return offer


ConfigState = Literal["installed", "staged", "applied", "unchanged", "rejected", "refused", "rolled_back"]


class ConfigReport(Message):
    """The agent's config state, retained on `config-report` and re-sent on every (re)connect.

    `installed`: running the local config file (nothing pushed yet). `staged`: a pushed config passed
    validation and was written; the agent restarts into it and runs it on trial. `applied`: it is running
    and the agent reconnected to the hub with it. `unchanged`: it was already running, nothing done.
    `rejected`: it failed validation (`errors`, one per problem with file:line and key path) or cannot be
    tried now (`code`). `refused`: the offer itself failed verification (`code` as for commands).
    `rolled_back`: the agent could not reconnect with it and runs `running_version` again.
    """

    agent_id: str
    state: ConfigState
    offer_id: str = Field("", description="The push this is about; empty when not about a push.")
    version: str = Field("", description="The version this is about (offered, applied or rolled back).")
    running_version: str = Field(description="What the agent runs now.")
    on_trial: bool = Field(False, description="Running a pushed config that is not confirmed yet.")
    code: str = ""
    detail: str = ""
    errors: list[str] = Field(default_factory=list)
    at: datetime = Field(default_factory=utcnow)
