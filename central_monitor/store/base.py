"""Shared ground of the store modules: the schema, result types, the `HubStore` interface, row shaping
and `StoreBase` (one SQLite connection, one lock, one thread for async callers)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from efence.contract import (
    AgentStatus,
    CommandResult,
    ConfigOffer,
    ConfigReport,
    EventEnvelope,
    RecordDelta,
    RecordKind,
    RecordPage,
    SignedCommand,
)

from .. import alarms as alarm_rules
from ..auth import Role
from ..timeutil import parse

if TYPE_CHECKING:
    from .retention import PruneBatch

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, seq INTEGER NOT NULL, observed_at TEXT NOT NULL,
    received_at TEXT NOT NULL, zone TEXT NOT NULL, checkpoint TEXT NOT NULL, lane TEXT,
    type TEXT NOT NULL, priority INTEGER NOT NULL, correlation_id TEXT, payload TEXT NOT NULL,
    incarnation INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS events_agent_seq ON events (agent_id, incarnation, seq);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
CREATE TABLE IF NOT EXISTS agent_seq (
    agent_id TEXT PRIMARY KEY, contiguous_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0, conflicts INTEGER NOT NULL DEFAULT 0,
    incarnation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS event_gaps (
    agent_id TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, abandoned_at TEXT NOT NULL,
    PRIMARY KEY (agent_id, from_seq));
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id TEXT PRIMARY KEY, agent_id TEXT, zone TEXT, checkpoint TEXT, lane TEXT,
    plate TEXT, e_plate TEXT, pass_no TEXT, containers TEXT, gross_kg REAL, verdict TEXT,
    reasons TEXT, manual INTEGER DEFAULT 0, operator_id TEXT, offline INTEGER DEFAULT 0,
    record_version INTEGER, led_zh TEXT, led_en TEXT, started_at TEXT, decided_at TEXT,
    closed_at TEXT, outcome TEXT, wt_error REAL, draw TEXT, inputs TEXT, event_id TEXT, updated_at TEXT);
CREATE INDEX IF NOT EXISTS tx_decided ON transactions (decided_at);
CREATE INDEX IF NOT EXISTS tx_plate ON transactions (plate);
CREATE INDEX IF NOT EXISTS tx_pass ON transactions (pass_no);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, zone TEXT, checkpoint TEXT, name TEXT, online INTEGER,
    location TEXT, software_version TEXT, config_version TEXT, record_version INTEGER,
    records_as_of TEXT, outbox_depth INTEGER, outbox_oldest_age_s REAL, last_seq INTEGER,
    started_at TEXT, status_at TEXT, last_seen_at TEXT, offline_since TEXT);
CREATE TABLE IF NOT EXISTS lanes (
    agent_id TEXT NOT NULL, lane TEXT NOT NULL, zone TEXT, checkpoint TEXT, name TEXT,
    direction TEXT, line TEXT, state TEXT, locked INTEGER, barrier TEXT, light TEXT,
    last_transaction_id TEXT, updated_at TEXT, PRIMARY KEY (agent_id, lane));
CREATE TABLE IF NOT EXISTS devices (
    agent_id TEXT NOT NULL, device_id TEXT NOT NULL, lane TEXT NOT NULL, zone TEXT, checkpoint TEXT,
    type TEXT, enabled INTEGER, locked INTEGER, observed TEXT, last_error TEXT, counters TEXT,
    updated_at TEXT, PRIMARY KEY (agent_id, lane, device_id));
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL, kind TEXT NOT NULL,
    severity TEXT NOT NULL, zone TEXT, checkpoint TEXT, lane TEXT, agent_id TEXT, device_id TEXT,
    subject TEXT, message TEXT, details TEXT, event_id TEXT, raised_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 1, acked_by TEXT, acked_at TEXT,
    ack_note TEXT, cleared_at TEXT);
CREATE INDEX IF NOT EXISTS alarms_key ON alarms (dedupe_key);
CREATE INDEX IF NOT EXISTS alarms_ringing ON alarms (acked_at);
CREATE TABLE IF NOT EXISTS alarm_occurrences (
    alarm_id INTEGER NOT NULL, occurrence TEXT NOT NULL, PRIMARY KEY (alarm_id, occurrence));
CREATE TABLE IF NOT EXISTS records (
    zone TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL,
    seq INTEGER NOT NULL, updated_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (zone, kind, key));
CREATE TABLE IF NOT EXISTS record_log (
    zone TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    op TEXT NOT NULL, record TEXT NOT NULL, changed_at TEXT NOT NULL, PRIMARY KEY (zone, seq));
CREATE TABLE IF NOT EXISTS record_heads (zone TEXT PRIMARY KEY, head_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
    created_at TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, agent_id TEXT, lane TEXT, action TEXT, operator_id TEXT,
    second_operator_id TEXT, reason_code TEXT, reason_text TEXT, params TEXT, issued_at TEXT,
    expires_at TEXT, issued_by TEXT, status TEXT, code TEXT, detail TEXT, result_at TEXT);
CREATE TABLE IF NOT EXISTS transfers (
    pass_no TEXT PRIMARY KEY, vehicle_no TEXT, from_zone TEXT, from_checkpoint TEXT, to_zone TEXT,
    exit_at TEXT, deadline TEXT, entry_at TEXT, entry_checkpoint TEXT, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, transaction_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    name TEXT NOT NULL, sha256 TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
    received_at TEXT NOT NULL, UNIQUE (transaction_id, sha256));
CREATE TABLE IF NOT EXISTS agent_config (
    agent_id TEXT PRIMARY KEY, offer_id TEXT, offered_version TEXT, offered_by TEXT, offered_at TEXT,
    confirm_within_s REAL, state TEXT, version TEXT, running_version TEXT, on_trial INTEGER, code TEXT,
    detail TEXT, errors TEXT, reported_at TEXT);
CREATE TABLE IF NOT EXISTS agent_config_offer (
    agent_id TEXT PRIMARY KEY, offer_id TEXT NOT NULL, yaml_text TEXT NOT NULL, ttl_s REAL NOT NULL,
    source TEXT, resends INTEGER NOT NULL DEFAULT 0, resent_at TEXT, resent_for TEXT);
"""

GENESIS = "0" * 64
ALL_ZONES = "*"
FTZ_ZONES = ("waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport")  # DOMAIN.md §1
ZONE_WIDE_KINDS = frozenset(
    {RecordKind.VEHICLE, RecordKind.ENTERPRISE, RecordKind.DRIVER_CARD, RecordKind.RISK_INSTRUCTION}
)
CROSSED_STATUSES = {"2", "4"}
PERIMETER = alarm_rules.PERIMETER  # `lane` of an agent's fence devices (AgentStatus.fence_devices)
device_subject = alarm_rules.device_subject
DEFAULT_TRANSFER_MIN = 120.0


# --------------------------------------------------------------------------- results
@dataclass
class IngestResult:
    """What one committed batch changed: acks to send, gaps seen, and items for live push."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    contiguous: dict[str, int] = field(default_factory=dict)
    max_seq: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    live: list[dict[str, Any]] = field(default_factory=list)
    deltas: list[RecordDelta] = field(default_factory=list)


@dataclass
class StatusResult:
    live: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportResult:
    zone: str
    kind: str
    count: int
    head_seq: int
    deltas: list[RecordDelta] = field(default_factory=list)


@dataclass
class AuthUser:
    username: str
    role: Role


# --------------------------------------------------------------------------- interface
@runtime_checkable
class HubStore(Protocol):
    """What the hub needs from a store. Methods are blocking; call them from async code via `acall`."""

    url: str

    async def acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...
    def close(self) -> None: ...
    def health(self) -> dict[str, Any]: ...
    # ingest
    def ingest(self, events: list[EventEnvelope], now: datetime | None = None) -> IngestResult: ...
    def apply_status(self, status: AgentStatus, now: datetime | None = None) -> StatusResult: ...
    def abandon_gap(
        self, agent_id: str, from_seq: int, to_seq: int, now: datetime | None = None
    ) -> IngestResult: ...
    def contiguous_seq(self, agent_id: str) -> int: ...
    # queries
    def list_transactions(self, **filters: Any) -> list[dict[str, Any]]:
        """Newest first; each row also has `evidence_count` (images linked by `add_evidence`)."""
        ...

    def list_agents(self, silence_s: float = 120.0) -> list[dict[str, Any]]: ...
    def list_lanes(self) -> list[dict[str, Any]]: ...
    def list_devices(self) -> list[dict[str, Any]]: ...
    def list_alarms(self, ringing: bool | None = None, limit: int = 200) -> list[dict[str, Any]]: ...
    def kpis(self, hours: float = 1.0, now: datetime | None = None) -> dict[str, Any]: ...
    # alarms
    def raise_alarm(
        self, spec: alarm_rules.AlarmSpec, now: datetime | None = None
    ) -> dict[str, Any] | None: ...
    def ack_alarm(
        self, alarm_id: int, user: str, note: str, now: datetime | None = None
    ) -> dict[str, Any] | None: ...
    def check_transfers(self, now: datetime | None = None) -> list[dict[str, Any]]: ...
    # records
    def import_records(
        self, zone: str, kind: RecordKind, rows: list[dict[str, Any]], actor: str
    ) -> ImportResult: ...
    def records_page(self, zone: str, after: int = 0, limit: int = 5000) -> RecordPage: ...
    # users, audit, commands
    def create_user(self, username: str, password: str, role: Role, actor: str = "cli") -> None: ...
    def authenticate(self, username: str, password: str) -> AuthUser | None: ...
    def issue_token(self, username: str, ttl_s: float = 12 * 3600) -> str: ...
    def user_for_token(self, token: str) -> AuthUser | None: ...
    def audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> int: ...
    def verify_audit(self) -> list[str]: ...
    def record_command(self, signed: SignedCommand, issued_by: str) -> None: ...
    def apply_command_result(
        self, result: CommandResult, now: datetime | None = None
    ) -> dict[str, Any] | None: ...
    def list_commands(self, limit: int = 100) -> list[dict[str, Any]]: ...
    def set_command_status(self, command_id: str, status: str) -> None: ...
    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None: ...
    def list_transfers(self) -> list[dict[str, Any]]: ...
    def record_counts(self) -> list[dict[str, Any]]: ...
    def list_audit(self, limit: int = 200) -> list[dict[str, Any]]: ...
    def list_users(self) -> list[dict[str, Any]]: ...
    def revoke_token(self, token: str) -> None: ...
    def get_record(self, zone: str, kind: RecordKind, key: str) -> dict[str, Any] | None: ...
    # evidence images (the bytes live outside the store, content-addressed by sha256; see evidence.py)
    def add_evidence(
        self,
        transaction_id: str,
        agent_id: str,
        name: str,
        sha256: str,
        content_type: str,
        size: int,
        now: datetime | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Link an image (already written by its sha256) to a transaction; idempotent.

        Unique by (transaction_id, sha256): a re-upload returns the existing row and False, a new one
        the row and True. The transaction need not exist yet (images may arrive before the event).
        Row: id, transaction_id, agent_id, name, sha256, content_type, size, received_at.
        """
        ...

    def list_evidence(self, transaction_id: str) -> list[dict[str, Any]]:
        """The evidence rows of one transaction, oldest first (same shape as `add_evidence`)."""
        ...

    def get_evidence(self, image_id: int) -> dict[str, Any] | None:
        """One evidence row by id, or None."""
        ...

    def import_many(
        self,
        zone: str,
        groups: list[tuple[RecordKind, list[dict[str, Any]]]],
        actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult: ...

    # config push (issue 8, rule C7)
    def record_config_offer(self, offer: ConfigOffer, issued_by: str, source: str = "") -> None: ...
    def set_config_offer_state(self, agent_id: str, offer_id: str, state: str) -> None: ...
    def config_offer_to_resend(self, agent_id: str) -> dict[str, Any] | None: ...
    def claim_config_resend(
        self, agent_id: str, offer_id: str, transition: str, offer: ConfigOffer
    ) -> bool: ...
    def apply_config_report(self, report: ConfigReport) -> dict[str, Any]: ...
    def config_states(self) -> dict[str, dict[str, Any]]: ...

    # retention (central_monitor.retention drives these; rules in PRUNE_RULES)
    def prune_count(self, rule: str, cutoff: datetime) -> int: ...
    def prune_batch(self, rule: str, cutoff: datetime, limit: int = 2000) -> PruneBatch: ...


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)  # built once, not per call


def _j(value: Any) -> str:
    return _JSON.encode(value)


def _row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: row[i] for i, d in enumerate(cur.description)}


def _audit_hash(prev: str, seq: int, at: str, actor: str, action: str, target: str, details: str) -> str:
    body = _j([seq, at, actor, action, target, details])
    return hashlib.sha256((prev + body).encode()).hexdigest()


class StoreBase:
    """Connection, lock, transactions and the store thread; the concern mixins build on it."""

    def __init__(
        self,
        path: str | Path,
        *,
        alarm_cooldown_s: float = 60.0,
        repeated_failure_threshold: int = 3,
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.alarm_cooldown_s = alarm_cooldown_s
        self.repeated_failure_threshold = repeated_failure_threshold
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-store")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # the hub acks only what survives a power cut
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        pk = {r[1] for r in self._db.execute("PRAGMA table_info(devices)") if r[5]}
        if pk and "lane" not in pk:
            self._db.execute("DROP TABLE devices")  # old key; re-filled by every agent's next status
        self._db.executescript(SCHEMA)

    # ----------------------------------------------------------------- plumbing
    async def acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store method on the store's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._pool.shutdown(wait=False)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, params)
            return [_row(cur, r) for r in cur.fetchall()]

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def health(self) -> dict[str, Any]:
        with self._lock:
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            counts = {
                t: self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                for t in ("events", "transactions", "agents", "records")
            }
            counts["alarms_ringing"] = self._db.execute(
                "SELECT count(*) FROM alarms WHERE acked_at IS NULL"
            ).fetchone()[0]
        return {"ok": ok, "url": self.url, "counts": counts}


@functools.cache
def _tx_upsert_sql(cols: tuple[str, ...]) -> str:
    """The transaction upsert (built once): a decision older than the stored one changes nothing and
    returns no row; otherwise the stored row comes back. `started_at` keeps the first value seen."""
    updates = ", ".join(
        f"{k}=excluded.{k}"
        if k != "started_at"
        else "started_at=coalesce(transactions.started_at, excluded.started_at)"
        for k in cols
        if k != "transaction_id"
    )
    return (
        f"INSERT INTO transactions ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "  # noqa: S608
        f"ON CONFLICT(transaction_id) DO UPDATE SET {updates} "
        "WHERE coalesce(transactions.decided_at, '') = '' OR transactions.decided_at <= excluded.decided_at "
        "RETURNING *"
    )


# --------------------------------------------------------------------------- row shaping
def _tx_public(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["reasons"] = json.loads(r["reasons"]) if r.get("reasons") else []
    out["containers"] = json.loads(r["containers"]) if r.get("containers") else []
    out["draw"] = json.loads(r["draw"]) if r.get("draw") else None
    out["inputs"] = json.loads(r["inputs"]) if r.get("inputs") else {}
    out["manual"] = bool(r.get("manual"))
    out["offline"] = bool(r.get("offline"))
    out["decision"] = r.get("verdict")
    out["observed_at"] = r.get("decided_at") or r.get("closed_at")
    return out


def _alarm_public(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["details"] = json.loads(r["details"]) if r.get("details") else {}
    out["ringing"] = r.get("acked_at") is None
    kind = alarm_rules.describe(r["kind"])
    out["label_zh"], out["label_en"], out["action"] = kind.zh, kind.en, kind.action
    out.pop("dedupe_key", None)
    return out


def _agent_public(r: dict[str, Any], now: datetime, silence_s: float) -> dict[str, Any]:
    out = dict(r)
    out["online"] = bool(r.get("online"))
    out["location"] = json.loads(r["location"]) if r.get("location") else None
    seen = parse(r.get("last_seen_at"))
    out["stale"] = bool(out["online"] and seen and (now - seen).total_seconds() > silence_s)
    return out


def new_instance_id() -> str:
    return uuid.uuid4().hex[:12]
