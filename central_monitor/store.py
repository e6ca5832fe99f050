"""The hub's store: events, transactions, agents, devices, alarms, records and their log, users, audit.

`HubStore` is the interface the rest of the hub uses; `SqliteStore` implements it on SQLite (WAL,
synchronous=FULL: an acknowledged event survives a power cut). `open_store("sqlite:///path")`
selects the implementation by URL so a PostgreSQL store can be added without touching callers.

Every method is synchronous and guarded by one lock; async callers go through `acall`, which runs
the method on the store's own single thread, so disk work never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sqlite3
import statistics
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from efence.contract import (
    AgentStatus,
    CommandResult,
    EventEnvelope,
    RecordDelta,
    RecordKind,
    RecordPage,
    SignedCommand,
)

from . import alarms as alarm_rules
from .auth import Role, check_password, hash_password, new_token, token_digest
from .records import ImportRejected, RowError, validate_rows
from .timeutil import iso, iso_any, now_utc, parse

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
    agent_id TEXT NOT NULL, device_id TEXT NOT NULL, lane TEXT, zone TEXT, checkpoint TEXT,
    type TEXT, enabled INTEGER, locked INTEGER, observed TEXT, last_error TEXT, counters TEXT,
    updated_at TEXT, PRIMARY KEY (agent_id, device_id));
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
"""

GENESIS = "0" * 64
ALL_ZONES = "*"
FTZ_ZONES = ("waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport")  # DOMAIN.md §1
ZONE_WIDE_KINDS = frozenset(
    {RecordKind.VEHICLE, RecordKind.ENTERPRISE, RecordKind.DRIVER_CARD, RecordKind.RISK_INSTRUCTION}
)
CROSSED_STATUSES = {"2", "4"}
DEFAULT_TRANSFER_MIN = 120.0


# --------------------------------------------------------------------------- retention
SHORT_EVENT_TYPES = ("telemetry", "lane_state", "device_health")
"""Event types that are only the trail of state the hub keeps current anyway (lanes, devices)."""

_ACKED = (
    "NOT EXISTS (SELECT 1 FROM agent_seq a WHERE a.agent_id=events.agent_id "
    "AND a.incarnation=events.incarnation AND events.seq > a.contiguous_seq)"
)


@dataclass(frozen=True)
class PruneRule:
    """One kind of row retention removes: `where` takes the cutoff for each `?`; `key` picks the rows."""

    name: str
    table: str
    key: str
    where: str
    why: str


PRUNE_RULES: dict[str, PruneRule] = {
    r.name: r
    for r in [
        PruneRule(
            "telemetry", "events", "id",
            f"type IN {tuple(SHORT_EVENT_TYPES)!r} AND received_at < ? AND {_ACKED}",
            "telemetry, lane_state and device_health events (acknowledged ones only)",
        ),
        PruneRule(
            "events", "events", "id",
            f"type NOT IN {tuple(SHORT_EVENT_TYPES)!r} AND received_at < ? AND {_ACKED}",
            "all other raw events (acknowledged ones only; transactions keep their own rows)",
        ),
        PruneRule(
            "event_gaps", "event_gaps", "agent_id||'/'||from_seq", "abandoned_at < ?",
            "records of abandoned event gaps",
        ),
        PruneRule(
            "evidence", "evidence", "id",
            "received_at < ? AND NOT EXISTS (SELECT 1 FROM transactions t WHERE "
            "t.transaction_id=evidence.transaction_id AND t.closed_at IS NULL)",
            "evidence images, except those of held or unresolved (not closed) transactions",
        ),
        PruneRule(
            "transactions", "transactions", "transaction_id", "closed_at IS NOT NULL AND closed_at < ?",
            "closed transactions (an unresolved one is never pruned)",
        ),
        PruneRule(
            "transfers", "transfers", "pass_no", "state='arrived' AND exit_at < ?",
            "arrived inter-zone transfers (open or overdue ones are never pruned)",
        ),
        PruneRule(
            "alarms", "alarms", "id", "acked_at IS NOT NULL AND acked_at < ? AND last_seen_at < ?",
            "acknowledged alarms (a ringing one is never pruned)",
        ),
        PruneRule("commands", "commands", "command_id", "issued_at < ?", "operator commands sent to edges"),
    ]
}  # fmt: skip


@dataclass
class PruneBatch:
    """What one prune step removed; `orphaned_files` are (sha256, content_type) no row refers to any more."""

    deleted: int = 0
    orphaned_files: list[tuple[str, str]] = field(default_factory=list)


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

    # retention (central_monitor.retention drives these; rules in PRUNE_RULES)
    def prune_count(self, rule: str, cutoff: datetime) -> int: ...
    def prune_batch(self, rule: str, cutoff: datetime, limit: int = 2000) -> PruneBatch: ...


def open_store(url: str) -> HubStore:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or a bare path; other schemes are not built yet."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from .store_pg import PgStore  # psycopg 3: the `postgres` extra

        return PgStore(url)
    if "://" in url:
        raise ValueError(f"unsupported store URL {url!r}: only sqlite:///PATH is implemented")
    return SqliteStore(url)


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)  # built once, not per call


def _j(value: Any) -> str:
    return _JSON.encode(value)


def _row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: row[i] for i, d in enumerate(cur.description)}


def _audit_hash(prev: str, seq: int, at: str, actor: str, action: str, target: str, details: str) -> str:
    body = _j([seq, at, actor, action, target, details])
    return hashlib.sha256((prev + body).encode()).hexdigest()


# --------------------------------------------------------------------------- SQLite
class SqliteStore:
    """SQLite implementation of `HubStore` (one connection, one dedicated thread for async callers)."""

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

    # ----------------------------------------------------------------- ingest
    def contiguous_seq(self, agent_id: str) -> int:
        row = self._one("SELECT contiguous_seq FROM agent_seq WHERE agent_id=?", (agent_id,))
        return int(row["contiguous_seq"]) if row else 0

    def ingest(self, events: list[EventEnvelope], now: datetime | None = None) -> IngestResult:
        """Store a batch in one transaction: insert-or-ignore by id, apply each new event, advance seqs."""
        now = now or now_utc()
        res = IngestResult()
        touched: set[str] = set()
        received = iso(now) or ""
        incarnations: dict[str, int] = {}
        with self._tx() as db:
            for env in events:
                touched.add(env.agent_id)
            incarnations = self._incarnations(db, touched)
            if self._insert_all(db, events, received, incarnations):
                # the common case: every event is new; apply them in arrival order as the slow path would
                res.inserted += len(events)
                for env in events:
                    self._apply(db, env, now, res)
                events = []
            for env in events:  # something in the batch is a duplicate or reuses a seq: one by one
                if not self._insert_event(db, env, received, incarnations[env.agent_id]):
                    if db.execute("SELECT 1 FROM events WHERE id=?", (env.id,)).fetchone():
                        res.duplicates += 1
                        continue
                    # (agent, seq) already taken by another event id: the agent's outbox started over
                    # (box replaced, store wiped). Acking its new seq 1… against the old ones would make
                    # it prune events never stored, so its numbering starts a new incarnation here.
                    res.conflicts += 1
                    incarnations[env.agent_id] = self._new_incarnation(db, env, now, res)
                    if not self._insert_event(db, env, received, incarnations[env.agent_id]):
                        raise RuntimeError(f"event {env.id} conflicts in a fresh incarnation")
                res.inserted += 1
                self._apply(db, env, now, res)
            db.executemany(
                "UPDATE agents SET last_seen_at=? WHERE agent_id=?", [(received, a) for a in sorted(touched)]
            )
            self._advance_all(db, sorted(touched), res)
        return res

    @staticmethod
    def _incarnations(db: sqlite3.Connection, agents: set[str]) -> dict[str, int]:
        """Every agent's current incarnation in one query (0 for an agent never seen)."""
        marks = ",".join("?" * len(agents))
        rows = db.execute(
            f"SELECT agent_id, incarnation FROM agent_seq WHERE agent_id IN ({marks})",  # noqa: S608
            sorted(agents),
        ).fetchall()
        found = {a: int(i) for a, i in rows}
        return {a: found.get(a, 0) for a in agents}

    @staticmethod
    def _incarnation(db: sqlite3.Connection, agent_id: str) -> int:
        row = db.execute("SELECT incarnation FROM agent_seq WHERE agent_id=?", (agent_id,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _event_row(env: EventEnvelope, received: str, incarnation: int) -> tuple[Any, ...]:
        return (
            env.id,
            env.agent_id,
            env.seq,
            iso(env.observed_at),
            received,
            env.zone,
            env.checkpoint,
            env.lane,
            env.type,
            env.priority,
            env.correlation_id,
            _j(env.payload),
            incarnation,
        )

    def _insert_all(
        self, db: sqlite3.Connection, events: list[EventEnvelope], received: str, incarnations: dict[str, int]
    ) -> bool:
        """Insert the whole batch with one `executemany` when none of it is stored yet (the steady state);
        False, inserting nothing, when any id or (agent, incarnation, seq) is already taken or repeated
        in the batch — the caller then goes event by event to tell duplicates from an agent starting over.

        Checked with one query for the ids and one per agent for the seqs, inside the write transaction
        (on PostgreSQL under the same write lock), so the plain INSERT cannot meet a conflict; if it
        ever did, it raises and the batch is retried rather than counted wrongly.
        """
        ids = [env.id for env in events]
        by_agent: dict[str, list[int]] = {}
        for env in events:
            by_agent.setdefault(env.agent_id, []).append(env.seq)
        if len(set(ids)) != len(ids) or any(len(set(seqs)) != len(seqs) for seqs in by_agent.values()):
            return False
        marks = ",".join("?" * len(ids))
        if db.execute(f"SELECT 1 FROM events WHERE id IN ({marks}) LIMIT 1", ids).fetchone():  # noqa: S608
            return False
        # per agent (a row-value IN over the whole batch measured slower on SQLite)
        for agent_id, seqs in by_agent.items():
            marks = ",".join("?" * len(seqs))
            taken = db.execute(
                f"SELECT 1 FROM events WHERE agent_id=? AND incarnation=? AND seq IN ({marks}) LIMIT 1",  # noqa: S608
                [agent_id, incarnations[agent_id], *seqs],
            ).fetchone()
            if taken:
                return False
        db.executemany(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [self._event_row(env, received, incarnations[env.agent_id]) for env in events],
        )
        return True

    @classmethod
    def _insert_event(
        cls, db: sqlite3.Connection, env: EventEnvelope, received: str, incarnation: int
    ) -> bool:
        cur = db.execute(
            "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            cls._event_row(env, received, incarnation),
        )
        return cur.rowcount == 1

    def _new_incarnation(
        self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult
    ) -> int:
        inc = self._incarnation(db, env.agent_id) + 1
        db.execute(
            "INSERT INTO agent_seq (agent_id, contiguous_seq, max_seq, conflicts, incarnation) VALUES (?,0,0,1,?) "
            "ON CONFLICT(agent_id) DO UPDATE SET contiguous_seq=0, max_seq=0, conflicts=conflicts+1, "
            "incarnation=excluded.incarnation",
            (env.agent_id, inc),
        )
        spec = alarm_rules.AlarmSpec(
            kind="agent_seq_reset",
            subject=f"{env.agent_id}/{inc}",
            message=f"{env.agent_id} numbers its events from the start again (seq {env.seq} reused); "
            f"stored as incarnation {inc}",
            zone=env.zone,
            checkpoint=env.checkpoint,
            agent_id=env.agent_id,
            event_id=env.id,
        )
        self._ring(db, spec, now, res.live)
        return inc

    def _advance_all(self, db: sqlite3.Connection, agents: list[str], res: IngestResult) -> None:
        """`_advance` for every agent of a batch: their seq heads read in one query, written in one."""
        marks = ",".join("?" * len(agents))
        heads = {
            a: (int(c), int(top), int(inc))
            for a, c, top, inc in db.execute(
                "SELECT agent_id, contiguous_seq, max_seq, incarnation FROM agent_seq "  # noqa: S608
                f"WHERE agent_id IN ({marks})",
                agents,
            ).fetchall()
        }
        rows = [self._advance_one(db, a, heads.get(a, (0, 0, 0)), res) for a in agents]
        db.executemany(
            "INSERT INTO agent_seq (agent_id, contiguous_seq, max_seq) VALUES (?,?,?) "
            "ON CONFLICT(agent_id) DO UPDATE SET contiguous_seq=excluded.contiguous_seq, max_seq=excluded.max_seq",
            rows,
        )

    def _advance(self, db: sqlite3.Connection, agent_id: str, res: IngestResult) -> None:
        """Move the agent's contiguous seq over what is stored now; note the holes above it (≤ 20)."""
        row = db.execute(
            "SELECT contiguous_seq, max_seq, incarnation FROM agent_seq WHERE agent_id=?", (agent_id,)
        ).fetchone()
        head = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
        db.execute(
            "INSERT INTO agent_seq (agent_id, contiguous_seq, max_seq) VALUES (?,?,?) "
            "ON CONFLICT(agent_id) DO UPDATE SET contiguous_seq=excluded.contiguous_seq, max_seq=excluded.max_seq",
            self._advance_one(db, agent_id, head, res),
        )

    @staticmethod
    def _advance_one(
        db: sqlite3.Connection, agent_id: str, head: tuple[int, int, int], res: IngestResult
    ) -> tuple[str, int, int]:
        """The agent's new (agent_id, contiguous, max) from its stored seqs above `head`; gaps into `res`."""
        c, top, inc = head
        gaps: list[tuple[int, int]] = []
        page = 5000
        while True:
            seqs = [
                r[0]
                for r in db.execute(
                    "SELECT seq FROM events WHERE agent_id=? AND incarnation=? AND seq>? ORDER BY seq LIMIT ?",
                    (agent_id, inc, c, page),
                )
            ]
            prev = c
            for s in seqs:
                if s == prev + 1 and not gaps:
                    c = s
                elif s > prev + 1 and len(gaps) < 20:
                    gaps.append((prev + 1, s - 1))
                prev = s
            if seqs:
                top = max(top, seqs[-1])
            if gaps or len(seqs) < page:
                break
        if len(seqs) == page:  # more stored above this page: the true top comes from the index
            top = (
                db.execute(
                    "SELECT max(seq) FROM events WHERE agent_id=? AND incarnation=?", (agent_id, inc)
                ).fetchone()[0]
                or top
            )
        res.contiguous[agent_id] = c
        res.max_seq[agent_id] = top
        if top > c:
            res.gaps[agent_id] = gaps
        return (agent_id, c, top)

    def abandon_gap(
        self, agent_id: str, from_seq: int, to_seq: int, now: datetime | None = None
    ) -> IngestResult:
        """Give up on events the agent no longer has: note the gap, alarm, and let acks move past it."""
        now = now or now_utc()
        res = IngestResult()
        with self._tx() as db:
            c = db.execute("SELECT contiguous_seq FROM agent_seq WHERE agent_id=?", (agent_id,)).fetchone()
            if not c or int(c[0]) != from_seq - 1:
                self._advance(db, agent_id, res)
                return res
            db.execute(
                "INSERT OR REPLACE INTO event_gaps VALUES (?,?,?,?)", (agent_id, from_seq, to_seq, iso(now))
            )
            db.execute("UPDATE agent_seq SET contiguous_seq=? WHERE agent_id=?", (to_seq, agent_id))
            zone, _, checkpoint = agent_id.partition("/")
            spec = alarm_rules.AlarmSpec(
                kind="event_gap",
                subject=f"{agent_id}/{from_seq}-{to_seq}",
                message=f"Events {from_seq}-{to_seq} of {agent_id} were requested and never arrived",
                zone=zone,
                checkpoint=checkpoint,
                agent_id=agent_id,
            )
            self._ring(db, spec, now, res.live)
            self._advance(db, agent_id, res)
        return res

    # ----------------------------------------------------------------- applying events
    def _apply(self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult) -> None:
        if env.type == "transaction":
            self._apply_transaction(db, env, now, res)
        elif env.type == "transaction_closed":
            self._apply_closed(db, env, now, res)
        elif env.type == "device_health":
            self._apply_device_health(db, env, now, res)
        elif env.type == "lane_state":
            self._apply_lane_state(db, env, now, res)
        for spec in alarm_rules.from_event(env):
            self._ring(db, spec, now, res.live)

    def _apply_transaction(
        self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult
    ) -> None:
        p = env.payload
        tid = str(p.get("transaction_id") or env.correlation_id or env.id)
        decided = iso(env.observed_at)
        reasons = [str(r.get("code") if isinstance(r, dict) else r) for r in p.get("reasons") or []]
        inputs = p.get("inputs") or {}
        started = iso_any(
            p.get("started_at") or (inputs.get("started_at") if isinstance(inputs, dict) else None)
        )
        vals = {
            "transaction_id": tid,
            "agent_id": env.agent_id,
            "zone": env.zone,
            "checkpoint": env.checkpoint,
            "lane": env.lane,
            "plate": p.get("plate"),
            "e_plate": p.get("e_plate"),
            "pass_no": p.get("pass_no"),
            "containers": _j([c for c in p.get("containers") or [] if c]),
            "gross_kg": p.get("gross_kg"),
            "verdict": p.get("verdict"),
            "reasons": _j(reasons),
            "manual": int(bool(p.get("manual"))),
            "operator_id": p.get("operator_id"),
            "offline": int(bool(p.get("offline"))),
            "record_version": p.get("record_version"),
            "led_zh": p.get("led_zh", ""),
            "led_en": p.get("led_en", ""),
            "started_at": started,
            "decided_at": decided,
            "draw": _j(p.get("draw")) if p.get("draw") is not None else None,
            "inputs": _j(inputs),
            "event_id": env.id,
            "updated_at": iso(now),
        }
        # one statement instead of read-check-write-read: the upsert skips a decision older than the one
        # stored (an older decision arriving late must not overwrite a newer one) and returns the row
        cur = db.execute(_tx_upsert_sql(tuple(vals)), list(vals.values()))
        rows = cur.fetchall()
        if not rows:
            return
        tx = _tx_public(_row(cur, rows[0]))
        if env.lane:
            db.execute(
                "INSERT INTO lanes (agent_id, lane, zone, checkpoint, last_transaction_id, updated_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(agent_id, lane) DO UPDATE SET "
                "last_transaction_id=excluded.last_transaction_id, updated_at=excluded.updated_at",
                (env.agent_id, env.lane, env.zone, env.checkpoint, tid, iso(now)),
            )
        res.live.append({"type": "transaction", "data": tx})
        for spec in self._record_alarms(db, env, tx):
            self._ring(db, spec, now, res.live)

    def _record_alarms(
        self, db: sqlite3.Connection, env: EventEnvelope, tx: dict[str, Any]
    ) -> list[alarm_rules.AlarmSpec]:
        """Rules that need the hub's records: blacklisted vehicle, empty pass with cargo, repeated failures."""
        out: list[alarm_rules.AlarmSpec] = []
        scope = {"zone": env.zone, "checkpoint": env.checkpoint, "lane": env.lane, "agent_id": env.agent_id}
        tid = tx["transaction_id"]
        plate = tx.get("plate")
        if plate:
            veh = self._record(db, env.zone, RecordKind.VEHICLE, plate)
            if veh and veh.get("status") == "blacklisted":
                out.append(
                    alarm_rules.AlarmSpec(
                        kind="blacklisted_vehicle",
                        subject=f"{env.agent_id}/{tid}",
                        message=f"Blacklisted vehicle {plate} at lane {env.lane}",
                        event_id=env.id,
                        details={"plate": plate, "transaction_id": tid},
                        occurrence=f"tx/{tid}",
                        **scope,
                    )
                )
        pass_no = tx.get("pass_no")
        if pass_no:
            gp = self._record(db, env.zone, RecordKind.GATE_PASS, pass_no)
            gross = tx.get("gross_kg")
            if gp and gp.get("passportTypecd") == "6" and gross is not None:
                tare = (
                    float(gp.get("vehicleWt") or 0)
                    + float(gp.get("vehicleFrameWt") or 0)
                    + float(gp.get("containerWt") or 0)
                )
                if float(gross) - tare > 300:
                    out.append(
                        alarm_rules.AlarmSpec(
                            kind="empty_vehicle_with_cargo",
                            subject=f"{env.agent_id}/{tid}",
                            message=f"Empty-vehicle pass {pass_no}: {float(gross) - tare:.0f} kg over tare",
                            event_id=env.id,
                            details={"pass_no": pass_no, "gross_kg": gross, "tare_kg": tare},
                            occurrence=f"tx/{tid}",
                            **scope,
                        )
                    )
            if tx.get("verdict") != "RELEASE":
                n = db.execute(
                    "SELECT count(*) FROM transactions WHERE pass_no=? AND verdict IS NOT NULL AND verdict != 'RELEASE'",
                    (pass_no,),
                ).fetchone()[0]
                if n >= self.repeated_failure_threshold:
                    out.append(
                        alarm_rules.AlarmSpec(
                            kind="repeated_failures",
                            subject=f"pass/{pass_no}",
                            message=f"Pass {pass_no} failed {n} times",
                            event_id=env.id,
                            details={"pass_no": pass_no, "failures": n},
                            **scope,
                        )
                    )
        return out

    def _tx_row(self, db: sqlite3.Connection, tid: str) -> dict[str, Any]:
        cur = db.execute("SELECT * FROM transactions WHERE transaction_id=?", (tid,))
        return _tx_public(_row(cur, cur.fetchone()))

    def _apply_closed(
        self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult
    ) -> None:
        p = env.payload
        tid = str(p.get("transaction_id") or env.correlation_id or env.id)
        crossing = p.get("crossing") if isinstance(p.get("crossing"), dict) else {}
        outcome = str(p.get("outcome") or ("crossed" if crossing else "closed"))
        closed_at = iso_any(p.get("at")) or iso(env.observed_at)
        started = iso_any(p.get("started_at"))
        db.execute(
            "INSERT INTO transactions (transaction_id, agent_id, zone, checkpoint, lane, verdict, started_at, "
            "closed_at, outcome, manual, event_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(transaction_id) DO UPDATE SET closed_at=excluded.closed_at, outcome=excluded.outcome, "
            "started_at=coalesce(transactions.started_at, excluded.started_at), "
            "verdict=coalesce(transactions.verdict, excluded.verdict), "
            "manual=max(transactions.manual, excluded.manual), updated_at=excluded.updated_at",
            (
                tid,
                env.agent_id,
                env.zone,
                env.checkpoint,
                env.lane,
                p.get("verdict"),
                started,
                closed_at,
                outcome,
                int(bool(p.get("manual_release"))),
                env.id,
                iso(now),
            ),
        )
        tx = self._tx_row(db, tid)
        pass_no = crossing.get("passportNo") or crossing.get("pass_no") or tx.get("pass_no")
        released = tx.get("verdict") == "RELEASE" or bool(p.get("manual_release"))
        if outcome == "crossed" and pass_no and (released or crossing):
            wt_error = self._cross_pass(db, env, str(pass_no), crossing, tx, now, res)
            if wt_error is not None:
                db.execute("UPDATE transactions SET wt_error=? WHERE transaction_id=?", (wt_error, tid))
                tx = self._tx_row(db, tid)
        res.live.append({"type": "transaction", "data": tx})

    def _cross_pass(
        self,
        db: sqlite3.Connection,
        env: EventEnvelope,
        pass_no: str,
        crossing: dict[str, Any],
        tx: dict[str, Any],
        now: datetime,
        res: IngestResult,
    ) -> float | None:
        """Mark the pass crossed in every zone holding it, track transfers, roll up its entry lists."""
        copies = db.execute(
            "SELECT zone, record FROM records WHERE kind=? AND key=? AND deleted=0",
            (RecordKind.GATE_PASS, pass_no),
        ).fetchall()
        if not copies:
            return None
        here = next((json.loads(r) for z, r in copies if z == env.zone), json.loads(copies[0][1]))
        dest = here.get("destZoneId")
        origin = here.get("zoneId")
        gross = crossing.get("passCollectWt", tx.get("gross_kg"))
        wt_error = crossing.get("wtError")
        if wt_error is None and gross is not None and here.get("totalWt") is not None:
            wt_error = abs(float(gross) - float(here["totalWt"]))
        if crossing.get("stucd"):
            new_status = str(crossing["stucd"])
        elif dest and dest != origin:
            new_status = "4" if env.zone == dest else "3"
        else:
            new_status = "2"
        at = iso_any(crossing.get("crossed_at")) or iso(env.observed_at)
        for zone, raw in copies:
            rec = json.loads(raw)
            rec.update({"stucd": new_status, "crossedAt": at, "crossedGate": env.agent_id})
            if env.zone == zone or len(copies) == 1 or new_status != "4":
                if gross is not None:
                    rec["passCollectWt"] = float(gross)
                if wt_error is not None:
                    rec["wtError"] = float(wt_error)
            res.deltas.append(self._put_record(db, zone, RecordKind.GATE_PASS, pass_no, rec, now))
        if dest and dest != origin:
            self._track_transfer(db, env, pass_no, here, dest, new_status, at, res, now)
        if here.get("rltTbTypecd") == "1":
            for list_no in here.get("rltNo") or []:
                self._roll_up_list(db, str(list_no), now, res)
        return float(wt_error) if wt_error is not None else None

    def _track_transfer(
        self,
        db: sqlite3.Connection,
        env: EventEnvelope,
        pass_no: str,
        rec: dict[str, Any],
        dest: str,
        status: str,
        at: str | None,
        res: IngestResult,
        now: datetime,
    ) -> None:
        if env.zone != dest:
            limit = float(rec.get("transferLimitMin") or DEFAULT_TRANSFER_MIN)
            exit_at = parse(at) or now
            db.execute(
                "INSERT INTO transfers VALUES (?,?,?,?,?,?,?,NULL,NULL,'in_transit') ON CONFLICT(pass_no) DO UPDATE "
                "SET exit_at=excluded.exit_at, deadline=excluded.deadline, state='in_transit'",
                (
                    pass_no,
                    rec.get("vehicleNo"),
                    env.zone,
                    env.checkpoint,
                    dest,
                    iso(exit_at),
                    iso(exit_at + timedelta(minutes=limit)),
                ),
            )
        else:
            db.execute(
                "UPDATE transfers SET entry_at=?, entry_checkpoint=?, state='arrived' WHERE pass_no=?",
                (at, env.checkpoint, pass_no),
            )
            for a in db.execute(
                "SELECT id FROM alarms WHERE kind='transfer_overdue' AND subject=? AND cleared_at IS NULL",
                (f"transfer/{pass_no}",),
            ).fetchall():
                db.execute("UPDATE alarms SET cleared_at=? WHERE id=?", (iso(now), a[0]))

    def check_transfers(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Raise `transfer_overdue` for vehicles in transit past their deadline; returns new alarms."""
        now = now or now_utc()
        raised: list[dict[str, Any]] = []
        with self._tx() as db:
            late = db.execute(
                "SELECT pass_no, vehicle_no, from_zone, from_checkpoint, to_zone, exit_at, deadline FROM transfers "
                "WHERE state='in_transit' AND deadline < ?",
                (iso(now),),
            ).fetchall()
            for pass_no, vehicle, from_zone, from_cp, to_zone, exit_at, deadline in late:
                db.execute("UPDATE transfers SET state='overdue' WHERE pass_no=?", (pass_no,))
                spec = alarm_rules.AlarmSpec(
                    kind="transfer_overdue",
                    subject=f"transfer/{pass_no}",
                    message=f"{vehicle or pass_no} left {from_zone} at {exit_at[11:16]} for {to_zone}, due {deadline[11:16]} UTC",
                    zone=to_zone,
                    checkpoint=None,
                    agent_id=f"{from_zone}/{from_cp}",
                    details={
                        "pass_no": pass_no,
                        "from_zone": from_zone,
                        "to_zone": to_zone,
                        "deadline": deadline,
                    },
                )
                alarm = self._raise(db, spec, now)
                if alarm:
                    raised.append(alarm)
        return raised

    def list_transfers(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM transfers ORDER BY exit_at DESC LIMIT 200")

    def _roll_up_list(self, db: sqlite3.Connection, list_no: str, now: datetime, res: IngestResult) -> None:
        """A ledger entry list is crossed when all its passes crossed; deducted when its declaration is released."""
        passes = db.execute(
            "SELECT DISTINCT r.key, json_extract(r.record, '$.stucd') FROM records r, json_each(r.record, '$.rltNo') j "
            "WHERE r.kind=? AND r.deleted=0 AND j.value=?",
            (RecordKind.GATE_PASS, list_no),
        ).fetchall()
        status_by_pass: dict[str, set[str]] = {}
        for key, st in passes:
            status_by_pass.setdefault(key, set()).add(str(st))
        all_crossed = bool(status_by_pass) and all(s & CROSSED_STATUSES for s in status_by_pass.values())
        for zone, raw in db.execute(
            "SELECT zone, record FROM records WHERE kind=? AND key=? AND deleted=0",
            (RecordKind.LEDGER_LIST, list_no),
        ).fetchall():
            rec = json.loads(raw)
            changed = False
            if all_crossed and rec.get("gateStatus") != "1":
                rec["gateStatus"], changed = "1", True
            if (
                rec.get("gateStatus") == "1"
                and rec.get("vrfdedMarkcd") in (None, "0", "1")
                and rec.get("entryNo")
            ):
                decl = self._record(db, zone, RecordKind.DECLARATION, rec["entryNo"]) or self._record(
                    db, zone, RecordKind.TRADE_DOCUMENT, f"declaration:{rec['entryNo']}"
                )
                if decl and decl.get("released") is True:
                    rec["vrfdedMarkcd"], changed = "2", True
            if changed:
                res.deltas.append(self._put_record(db, zone, RecordKind.LEDGER_LIST, list_no, rec, now))

    def _apply_device_health(
        self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult
    ) -> None:
        p = env.payload
        device_id = p.get("device_id")
        if not device_id:
            return
        observed = p.get("observed") or (
            "up" if p.get("up") else "down" if p.get("up") is False else "unknown"
        )
        db.execute(
            "INSERT INTO devices (agent_id, device_id, lane, zone, checkpoint, type, observed, last_error, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, device_id) DO UPDATE SET observed=excluded.observed, "
            "last_error=excluded.last_error, updated_at=excluded.updated_at, type=coalesce(excluded.type, devices.type)",
            (
                env.agent_id,
                device_id,
                env.lane,
                env.zone,
                env.checkpoint,
                p.get("type"),
                observed,
                p.get("last_error") or p.get("error"),
                iso(now),
            ),
        )
        self._device_alarm(
            db,
            env.agent_id,
            env.zone,
            env.checkpoint,
            env.lane,
            device_id,
            observed,
            p.get("last_error"),
            now,
            res,
        )
        res.live.append(
            {
                "type": "device",
                "data": {"agent_id": env.agent_id, "device_id": device_id, "observed": observed},
            }
        )

    def _device_alarm(
        self,
        db: sqlite3.Connection,
        agent_id: str,
        zone: str,
        checkpoint: str,
        lane: str | None,
        device_id: str,
        observed: str,
        error: str | None,
        now: datetime,
        res: IngestResult | StatusResult,
    ) -> None:
        subject = f"{agent_id}/{device_id}"
        if observed == "down":
            online = db.execute("SELECT online FROM agents WHERE agent_id=?", (agent_id,)).fetchone()
            if online is not None and not online[0]:
                return  # the whole agent is down: its devices cannot be judged, one agent alarm suffices
            spec = alarm_rules.AlarmSpec(
                kind="device_offline",
                subject=subject,
                message=f"{device_id} down{': ' + error if error else ''}",
                zone=zone,
                checkpoint=checkpoint,
                lane=lane,
                agent_id=agent_id,
                device_id=device_id,
            )
            self._ring(db, spec, now, res.live)
        elif observed == "up":
            db.execute(
                "UPDATE alarms SET cleared_at=? WHERE dedupe_key=? AND cleared_at IS NULL",
                (iso(now), f"device_offline|{subject}"),
            )

    def _apply_lane_state(
        self, db: sqlite3.Connection, env: EventEnvelope, now: datetime, res: IngestResult
    ) -> None:
        if not env.lane:
            return
        p = env.payload
        db.execute(
            "INSERT INTO lanes (agent_id, lane, zone, checkpoint, state, barrier, light, locked, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, lane) DO UPDATE SET "
            "state=coalesce(excluded.state, lanes.state), barrier=coalesce(excluded.barrier, lanes.barrier), "
            "light=coalesce(excluded.light, lanes.light), locked=coalesce(excluded.locked, lanes.locked), "
            "updated_at=excluded.updated_at",
            (
                env.agent_id,
                env.lane,
                env.zone,
                env.checkpoint,
                p.get("state"),
                p.get("barrier"),
                p.get("light"),
                None if p.get("locked") is None else int(bool(p.get("locked"))),
                iso(now),
            ),
        )
        lane = db.execute("SELECT * FROM lanes WHERE agent_id=? AND lane=?", (env.agent_id, env.lane))
        res.live.append({"type": "lane", "data": _row(lane, lane.fetchone())})

    # ----------------------------------------------------------------- retention
    def prune_count(self, rule: str, cutoff: datetime) -> int:
        """How many rows `rule` would remove at `cutoff` (what a dry run reports)."""
        r = PRUNE_RULES[rule]
        params = [iso(cutoff)] * r.where.count("?")
        row = self._one(f"SELECT count(*) AS n FROM {r.table} WHERE {r.where}", params)  # noqa: S608 - fixed
        return int(row["n"]) if row else 0

    def prune_batch(self, rule: str, cutoff: datetime, limit: int = 2000) -> PruneBatch:
        """Remove up to `limit` rows of `rule` older than `cutoff` in one short write transaction, so
        ingest goes on between batches. Alarms take their occurrence notes along; evidence rows report
        image files no row refers to any more (the caller deletes them after the commit)."""
        r = PRUNE_RULES[rule]
        params: list[Any] = [iso(cutoff)] * r.where.count("?")
        out = PruneBatch()
        with self._tx() as db:
            keys = [
                k
                for (k,) in db.execute(
                    f"SELECT {r.key} FROM {r.table} WHERE {r.where} LIMIT ?",  # noqa: S608 - fixed rules
                    [*params, limit],
                ).fetchall()
            ]
            if not keys:
                return out
            marks = ",".join("?" * len(keys))
            files: list[tuple[str, str]] = []
            if r.table == "alarms":
                db.execute(f"DELETE FROM alarm_occurrences WHERE alarm_id IN ({marks})", keys)  # noqa: S608
            if r.table == "evidence":
                files = [
                    (sha, ctype)
                    for sha, ctype in db.execute(
                        f"SELECT DISTINCT sha256, content_type FROM evidence WHERE id IN ({marks})",  # noqa: S608
                        keys,
                    ).fetchall()
                ]
            cur = db.execute(f"DELETE FROM {r.table} WHERE {r.key} IN ({marks})", keys)  # noqa: S608
            out.deleted = cur.rowcount if cur.rowcount >= 0 else len(keys)
            for sha, ctype in files:
                if not db.execute("SELECT 1 FROM evidence WHERE sha256=? LIMIT 1", (sha,)).fetchone():
                    out.orphaned_files.append((sha, ctype))
        return out

    # ----------------------------------------------------------------- agent status
    def apply_status(self, status: AgentStatus, now: datetime | None = None) -> StatusResult:
        """Retained status / last will: online state, lanes and devices; alarms on transitions."""
        now = now or now_utc()
        res = StatusResult()
        with self._tx() as db:
            prev = db.execute("SELECT online FROM agents WHERE agent_id=?", (status.agent_id,)).fetchone()
            was_online = bool(prev[0]) if prev else None
            db.execute(
                "INSERT INTO agents (agent_id, zone, checkpoint, name, online, location, software_version, "
                "config_version, record_version, records_as_of, outbox_depth, outbox_oldest_age_s, last_seq, "
                "started_at, status_at, last_seen_at, offline_since) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(agent_id) DO UPDATE SET online=excluded.online, status_at=excluded.status_at, "
                "last_seen_at=excluded.last_seen_at, offline_since=excluded.offline_since, "
                "name=CASE WHEN excluded.name != '' THEN excluded.name ELSE agents.name END, "
                "location=coalesce(excluded.location, agents.location), "
                "software_version=CASE WHEN excluded.online THEN excluded.software_version ELSE agents.software_version END, "
                "config_version=CASE WHEN excluded.online THEN excluded.config_version ELSE agents.config_version END, "
                "record_version=coalesce(excluded.record_version, agents.record_version), "
                "records_as_of=coalesce(excluded.records_as_of, agents.records_as_of), "
                "outbox_depth=CASE WHEN excluded.online THEN excluded.outbox_depth ELSE agents.outbox_depth END, "
                "outbox_oldest_age_s=CASE WHEN excluded.online THEN excluded.outbox_oldest_age_s ELSE agents.outbox_oldest_age_s END, "
                "last_seq=max(coalesce(agents.last_seq, 0), excluded.last_seq), "
                "started_at=coalesce(excluded.started_at, agents.started_at)",
                (
                    status.agent_id,
                    status.zone,
                    status.checkpoint,
                    status.name,
                    int(status.online),
                    _j(list(status.location)) if status.location else None,
                    status.software_version,
                    status.config_version,
                    status.record_version,
                    iso(status.records_as_of),
                    status.outbox_depth,
                    status.outbox_oldest_age_s,
                    status.last_seq,
                    iso(status.started_at),
                    iso(status.sent_at),
                    iso(now),
                    None if status.online else iso(now),
                ),
            )
            if status.online and status.lanes:
                self._apply_lanes(db, status, now, res)
            subject = status.agent_id
            if not status.online and was_online is not False:
                spec = alarm_rules.AlarmSpec(
                    kind="agent_offline",
                    subject=subject,
                    message=f"Checkpoint {status.name or status.agent_id} lost its link to the hub",
                    zone=status.zone,
                    checkpoint=status.checkpoint,
                    agent_id=status.agent_id,
                )
                self._ring(db, spec, now, res.live)
            elif status.online:
                db.execute(
                    "UPDATE alarms SET cleared_at=? WHERE dedupe_key=? AND cleared_at IS NULL",
                    (iso(now), f"agent_offline|{subject}"),
                )
                if status.outbox_oldest_age_s > 300:
                    spec = alarm_rules.AlarmSpec(
                        kind="outbox_backlog",
                        subject=subject,
                        message=f"{status.outbox_depth} events waiting, oldest {status.outbox_oldest_age_s:.0f} s",
                        zone=status.zone,
                        checkpoint=status.checkpoint,
                        agent_id=status.agent_id,
                    )
                    self._ring(db, spec, now, res.live)
            agent = db.execute("SELECT * FROM agents WHERE agent_id=?", (status.agent_id,))
            res.live.append({"type": "agent", "data": _agent_public(_row(agent, agent.fetchone()), now, 1e9)})
        return res

    def _apply_lanes(
        self, db: sqlite3.Connection, status: AgentStatus, now: datetime, res: StatusResult
    ) -> None:
        for lane in status.lanes:
            db.execute(
                "INSERT INTO lanes (agent_id, lane, zone, checkpoint, name, direction, line, state, locked, barrier, "
                "light, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, lane) DO UPDATE SET "
                "name=excluded.name, direction=excluded.direction, line=excluded.line, state=excluded.state, "
                "locked=excluded.locked, barrier=excluded.barrier, light=excluded.light, updated_at=excluded.updated_at",
                (
                    status.agent_id,
                    lane.lane,
                    status.zone,
                    status.checkpoint,
                    lane.name,
                    lane.direction,
                    lane.line,
                    lane.state,
                    int(lane.locked),
                    lane.barrier,
                    lane.light,
                    iso(now),
                ),
            )
            for dev in lane.devices:
                db.execute(
                    "INSERT INTO devices (agent_id, device_id, lane, zone, checkpoint, type, enabled, locked, observed, "
                    "last_error, counters, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, device_id) "
                    "DO UPDATE SET lane=excluded.lane, type=excluded.type, enabled=excluded.enabled, locked=excluded.locked, "
                    "observed=excluded.observed, last_error=excluded.last_error, counters=excluded.counters, "
                    "updated_at=excluded.updated_at",
                    (
                        status.agent_id,
                        dev.device_id,
                        lane.lane,
                        status.zone,
                        status.checkpoint,
                        dev.type,
                        int(dev.enabled),
                        int(dev.locked),
                        dev.observed,
                        dev.last_error,
                        _j(dev.counters),
                        iso(now),
                    ),
                )
                if dev.enabled:
                    self._device_alarm(
                        db,
                        status.agent_id,
                        status.zone,
                        status.checkpoint,
                        lane.lane,
                        dev.device_id,
                        dev.observed,
                        dev.last_error,
                        now,
                        res,
                    )

    # ----------------------------------------------------------------- alarms
    def raise_alarm(self, spec: alarm_rules.AlarmSpec, now: datetime | None = None) -> dict[str, Any] | None:
        with self._tx() as db:
            return self._raise(db, spec, now or now_utc())

    def _ring(
        self, db: sqlite3.Connection, spec: alarm_rules.AlarmSpec, now: datetime, live: list[dict[str, Any]]
    ) -> None:
        """Raise the alarm and, when it rings anew, push it to the dashboards."""
        alarm = self._raise(db, spec, now)
        if alarm:
            live.append({"type": "alarm", "data": alarm})

    def _raise(
        self, db: sqlite3.Connection, spec: alarm_rules.AlarmSpec, now: datetime
    ) -> dict[str, Any] | None:
        """New alarm, or None when it duplicates one still ringing or falls in the re-arm cooldown."""
        key = spec.dedupe_key
        last = db.execute(
            "SELECT id, acked_at, cleared_at FROM alarms WHERE dedupe_key=? ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        if last:
            alarm_id, acked_at, _cleared_at = last
            ringing = acked_at is None
            in_cooldown = (
                acked_at is not None
                and (now - (parse(acked_at) or now)).total_seconds() < self.alarm_cooldown_s
            )
            if ringing or in_cooldown:
                # still ringing (even if its condition had cleared meanwhile: a flapping device is one
                # alarm, active again) or just acknowledged: count it, do not ring twice — unless it is
                # another report of an occurrence already counted (edge and hub both saw one decision)
                if not self._new_occurrence(db, alarm_id, spec):
                    db.execute("UPDATE alarms SET last_seen_at=? WHERE id=?", (iso(now), alarm_id))
                    return None
                db.execute(
                    "UPDATE alarms SET count=count+1, last_seen_at=?, "
                    "cleared_at=CASE WHEN acked_at IS NULL THEN NULL ELSE cleared_at END WHERE id=?",
                    (iso(now), alarm_id),
                )
                return None
        cur = db.execute(
            "INSERT INTO alarms (dedupe_key, kind, severity, zone, checkpoint, lane, agent_id, device_id, subject, "
            "message, details, event_id, raised_at, last_seen_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                spec.kind,
                spec.resolved_severity(),
                spec.zone,
                spec.checkpoint,
                spec.lane,
                spec.agent_id,
                spec.device_id,
                spec.subject,
                spec.message,
                _j(spec.details),
                spec.event_id,
                iso(now),
                iso(now),
            ),
        )
        self._new_occurrence(db, cur.lastrowid, spec)
        row = db.execute("SELECT * FROM alarms WHERE id=?", (cur.lastrowid,))
        return _alarm_public(_row(row, row.fetchone()))

    @staticmethod
    def _new_occurrence(db: sqlite3.Connection, alarm_id: int, spec: alarm_rules.AlarmSpec) -> bool:
        """Note the spec's occurrence on the alarm; False when that occurrence was already counted."""
        occ = spec.occurrence_key
        if occ is None:
            return True
        cur = db.execute("INSERT OR IGNORE INTO alarm_occurrences VALUES (?,?)", (alarm_id, occ))
        return cur.rowcount == 1

    def ack_alarm(
        self, alarm_id: int, user: str, note: str, now: datetime | None = None
    ) -> dict[str, Any] | None:
        now = now or now_utc()
        with self._tx() as db:
            found = db.execute("SELECT acked_at FROM alarms WHERE id=?", (alarm_id,)).fetchone()
            if not found:
                return None
            if found[0] is None:
                db.execute(
                    "UPDATE alarms SET acked_by=?, acked_at=?, ack_note=? WHERE id=?",
                    (user, iso(now), note, alarm_id),
                )
                self._audit(db, user, "alarm.ack", str(alarm_id), {"note": note}, now)
            row = db.execute("SELECT * FROM alarms WHERE id=?", (alarm_id,))
            return _alarm_public(_row(row, row.fetchone()))

    def list_alarms(self, ringing: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
        where = (
            "" if ringing is None else ("WHERE acked_at IS NULL" if ringing else "WHERE acked_at IS NOT NULL")
        )
        rows = self._all(
            f"SELECT * FROM alarms {where} ORDER BY (acked_at IS NULL) DESC, "  # noqa: S608
            "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id DESC LIMIT ?",
            (limit,),
        )
        return [_alarm_public(r) for r in rows]

    # ----------------------------------------------------------------- queries
    def list_transactions(
        self,
        *,
        zone: str | None = None,
        checkpoint: str | None = None,
        plate: str | None = None,
        pass_no: str | None = None,
        container: str | None = None,
        verdict: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for col, val in (
            ("zone", zone),
            ("checkpoint", checkpoint),
            ("pass_no", pass_no),
            ("verdict", verdict),
        ):
            if val:
                where.append(f"{col}=?")
                params.append(val)
        if plate:
            where.append("(plate LIKE ? OR e_plate=?)")
            params += [f"%{plate}%", plate]
        if container:
            where.append("containers LIKE ?")
            params.append(f"%{container}%")
        if since:
            where.append("coalesce(decided_at, closed_at) >= ?")
            params.append(iso(since))
        if until:
            where.append("coalesce(decided_at, closed_at) < ?")
            params.append(iso(until))
        sql = (
            "SELECT *, (SELECT count(*) FROM evidence e WHERE e.transaction_id = transactions.transaction_id)"
            " AS evidence_count FROM transactions"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY coalesce(decided_at, closed_at) DESC LIMIT ?"
        params.append(max(1, min(int(limit), 5000)))
        return [_tx_public(r) for r in self._all(sql, params)]

    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM transactions WHERE transaction_id=?", (transaction_id,))
        if not row:
            return None
        tx = _tx_public(row)
        tx["events"] = [
            {**e, "payload": json.loads(e["payload"])}
            for e in self._all(
                "SELECT id, seq, type, observed_at, payload FROM events WHERE correlation_id=? ORDER BY observed_at",
                (transaction_id,),
            )
        ]
        return tx

    def list_agents(self, silence_s: float = 120.0) -> list[dict[str, Any]]:
        now = now_utc()
        rows = self._all(
            "SELECT a.*, s.contiguous_seq, s.max_seq FROM agents a LEFT JOIN agent_seq s USING (agent_id) ORDER BY agent_id"
        )
        return [_agent_public(r, now, silence_s) for r in rows]

    def list_lanes(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT l.*, a.online AS agent_online, a.name AS checkpoint_name, t.plate AS last_plate, "
            "t.verdict AS last_verdict, t.reasons AS last_reasons, t.decided_at AS last_decided_at, "
            "t.closed_at AS last_closed_at, t.manual AS last_manual, t.pass_no AS last_pass_no, "
            "t.containers AS last_containers, t.gross_kg AS last_gross_kg "
            "FROM lanes l LEFT JOIN agents a USING (agent_id) "
            "LEFT JOIN transactions t ON t.transaction_id = l.last_transaction_id ORDER BY l.zone, l.checkpoint, l.lane"
        )
        for r in rows:
            r["locked"] = bool(r["locked"])
            r["agent_online"] = bool(r["agent_online"]) if r["agent_online"] is not None else None
            r["last_reasons"] = json.loads(r["last_reasons"]) if r["last_reasons"] else []
            r["last_containers"] = json.loads(r["last_containers"]) if r["last_containers"] else []
            r["last_manual"] = bool(r["last_manual"])
        return rows

    def list_devices(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT d.*, a.online AS agent_online FROM devices d LEFT JOIN agents a USING (agent_id) "
            "ORDER BY d.zone, d.checkpoint, d.lane, d.device_id"
        )
        for r in rows:
            r["enabled"] = bool(r["enabled"]) if r["enabled"] is not None else True
            r["locked"] = bool(r["locked"])
            r["counters"] = json.loads(r["counters"]) if r["counters"] else {}
            r["agent_online"] = bool(r["agent_online"]) if r["agent_online"] is not None else None
            # while the agent is offline the hub cannot know a device's state: say so, do not guess
            r["effective"] = "unknown" if r["agent_online"] is False else r["observed"]
        return rows

    def kpis(self, hours: float = 1.0, now: datetime | None = None) -> dict[str, Any]:
        """Vehicles/hour, automatic-release ratio, median gate time, inspections by reason; hourly series."""
        now = now or now_utc()
        since = now - timedelta(hours=hours)
        rows = self._all(
            "SELECT zone, verdict, reasons, manual, started_at, decided_at, closed_at, outcome FROM transactions "
            "WHERE decided_at >= ?",
            (iso(since),),
        )
        decided = [r for r in rows if r["verdict"]]
        auto = [r for r in decided if r["verdict"] == "RELEASE" and not r["manual"]]
        gate_times: list[float] = []
        for r in rows:
            start, end = parse(r["started_at"] or r["decided_at"]), parse(r["closed_at"])
            if start and end and end >= start:
                gate_times.append((end - start).total_seconds())
        by_reason: dict[str, int] = {}
        by_verdict: dict[str, int] = {}
        per_zone: dict[str, int] = {}
        for r in decided:
            by_verdict[r["verdict"]] = by_verdict.get(r["verdict"], 0) + 1
            per_zone[r["zone"]] = per_zone.get(r["zone"], 0) + 1
            if r["verdict"] == "HOLD_INSPECTION":
                for code in json.loads(r["reasons"] or "[]"):
                    if code.startswith("I"):
                        by_reason[code] = by_reason.get(code, 0) + 1
        series_since = now - timedelta(hours=12)
        series: dict[str, list[int]] = {}
        for z, d in (
            (r["zone"], r["decided_at"])
            for r in self._all(
                "SELECT zone, decided_at FROM transactions WHERE decided_at >= ?", (iso(series_since),)
            )
        ):
            dt = parse(d)
            if dt is None:
                continue
            slot = min(11, int((dt - series_since).total_seconds() // 3600))
            series.setdefault(z, [0] * 12)[slot] += 1
        return {
            "window_hours": hours,
            "vehicles": len(decided),
            "vehicles_per_hour": round(len(decided) / hours, 1) if hours else 0.0,
            "vehicles_per_hour_by_zone": {z: round(n / hours, 1) for z, n in per_zone.items()},
            "auto_release_ratio": round(len(auto) / len(decided), 3) if decided else None,
            "median_gate_time_s": round(statistics.median(gate_times), 2) if gate_times else None,
            "inspections_by_reason": dict(sorted(by_reason.items())),
            "verdicts": by_verdict,
            "hourly_by_zone": {"start": iso(series_since), "counts": series},
        }

    # ----------------------------------------------------------------- records
    def _record(self, db: sqlite3.Connection, zone: str, kind: str, key: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT record FROM records WHERE zone=? AND kind=? AND key=? AND deleted=0", (zone, kind, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    # ----------------------------------------------------------------- evidence
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
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO evidence (transaction_id, agent_id, name, sha256, content_type, size, "
                "received_at) VALUES (?,?,?,?,?,?,?)",
                (transaction_id, agent_id, name, sha256, content_type, size, iso(now or now_utc())),
            )
            created = cur.rowcount == 1
            cur = db.execute(
                "SELECT * FROM evidence WHERE transaction_id=? AND sha256=?", (transaction_id, sha256)
            )
            return _row(cur, cur.fetchone()), created

    def list_evidence(self, transaction_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM evidence WHERE transaction_id=? ORDER BY id", (transaction_id,))

    def get_evidence(self, image_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM evidence WHERE id=?", (image_id,))

    def get_record(self, zone: str, kind: RecordKind, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._record(self._db, zone, kind, key)

    def _put_record(
        self,
        db: sqlite3.Connection,
        zone: str,
        kind: str,
        key: str,
        record: dict[str, Any],
        now: datetime,
        op: str = "upsert",
    ) -> RecordDelta:
        head = db.execute("SELECT head_seq FROM record_heads WHERE zone=?", (zone,)).fetchone()
        seq = (head[0] if head else 0) + 1
        db.execute(
            "INSERT INTO record_heads VALUES (?, ?) ON CONFLICT(zone) DO UPDATE SET head_seq=excluded.head_seq",
            (zone, seq),
        )
        body = _j(record)
        db.execute(
            "INSERT INTO record_log VALUES (?,?,?,?,?,?,?)", (zone, seq, kind, key, op, body, iso(now))
        )
        db.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?) ON CONFLICT(zone, kind, key) DO UPDATE SET "
            "record=excluded.record, seq=excluded.seq, updated_at=excluded.updated_at, deleted=excluded.deleted",
            (zone, kind, key, body, seq, iso(now), int(op == "delete")),
        )
        return RecordDelta(
            zone=zone, seq=seq, kind=RecordKind(kind), key=key, op=op, record=record, changed_at=now
        )  # type: ignore[arg-type]

    def import_records(
        self,
        zone: str,
        kind: RecordKind,
        rows: list[dict[str, Any]],
        actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Validate every row first; import all in one transaction or nothing (raises ImportRejected)."""
        return self.import_many(zone, [(kind, rows)], actor, progress)

    def import_many(
        self,
        zone: str,
        groups: list[tuple[RecordKind, list[dict[str, Any]]]],
        actor: str,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Several kinds at once (a trip's pass, list and declaration), still all-or-nothing.

        `zone="*"` writes registry records (vehicles, enterprises, driver cards, risk instructions) to
        every zone: "registered in one zone, operating in all four" (DOMAIN.md §1).
        """
        if zone == ALL_ZONES:
            local = sorted({k.value for k, _ in groups} - {k.value for k in ZONE_WIDE_KINDS})
            if local:
                raise ImportRejected(
                    [RowError(0, "zone", f"a single zone for {', '.join(local)} records", zone)]
                )
        elif not zone or "/" in zone or "+" in zone or "#" in zone or "*" in zone:
            raise ImportRejected([RowError(0, "zone", "a zone id without / + # *", zone)])
        checked: list[tuple[RecordKind, list[tuple[str, dict[str, Any]]]]] = []
        errors: list[RowError] = []
        for kind, rows in groups:
            valid, errs = validate_rows(kind, rows, zone)
            errors += (
                [RowError(e.row, e.field, e.expected, e.got, kind.value) for e in errs]
                if len(groups) > 1
                else errs
            )
            checked.append((kind, valid))
        if errors:
            raise ImportRejected(errors)
        now = now_utc()
        kinds = sorted({k.value for k, _ in checked})
        total = sum(len(v) for _, v in checked)
        res = ImportResult(zone=zone, kind=",".join(kinds), count=total, head_seq=0)
        done = 0
        with self._tx() as db:
            targets = [zone]
            if zone == ALL_ZONES:
                known = {
                    r[0] for r in db.execute("SELECT zone FROM record_heads UNION SELECT zone FROM agents")
                }
                targets = sorted(set(FTZ_ZONES) | {z for z in known if z})
            for kind, valid in checked:
                for key, rec in valid:
                    for target in targets:
                        res.deltas.append(self._put_record(db, target, kind, key, rec, now))
                    dest = rec.get("destZoneId") if kind is RecordKind.GATE_PASS else None
                    if dest and dest != zone:  # a transfer pass must also be known at the destination gates
                        res.deltas.append(self._put_record(db, dest, kind, key, rec, now))
                    done += 1
                    if progress and done % 200 == 0:
                        progress(done)
            for kind, valid in checked:  # a released declaration may complete a crossed list's deduction
                if kind not in (RecordKind.TRADE_DOCUMENT, RecordKind.DECLARATION):
                    continue
                for _, rec in valid:
                    if rec.get("docType", "declaration") == "declaration" and rec.get("released"):
                        for (list_no,) in db.execute(
                            "SELECT key FROM records WHERE zone=? AND kind=? AND json_extract(record, '$.entryNo')=?",
                            (zone, RecordKind.LEDGER_LIST, rec["entryId"]),
                        ).fetchall():
                            tmp = IngestResult()
                            self._roll_up_list(db, list_no, now, tmp)
                            res.deltas += tmp.deltas
            self._audit(
                db,
                actor,
                "records.import",
                zone,
                {"kinds": {k.value: len(v) for k, v in checked}, "count": total},
                now,
            )
            marks = ",".join("?" * len(targets))
            head = db.execute(
                f"SELECT max(head_seq) FROM record_heads WHERE zone IN ({marks})", targets
            ).fetchone()
            res.head_seq = head[0] or 0
        if progress:
            progress(total)
        return res

    def records_page(self, zone: str, after: int = 0, limit: int = 5000) -> RecordPage:
        """Deltas after `after`; a full snapshot when `after` is 0, ahead of the hub, or too far behind."""
        with self._lock:
            head = self._db.execute("SELECT head_seq FROM record_heads WHERE zone=?", (zone,)).fetchone()
            head_seq = head[0] if head else 0
            if after <= 0 or after > head_seq or head_seq - after > limit:
                cur = self._db.execute(
                    "SELECT kind, key, record, seq, updated_at FROM records WHERE zone=? AND deleted=0 ORDER BY seq",
                    (zone,),
                )
                deltas = [
                    RecordDelta(
                        zone=zone,
                        seq=s,
                        kind=RecordKind(k),
                        key=key,
                        record=json.loads(r),
                        changed_at=parse(u),
                    )  # type: ignore[arg-type]
                    for k, key, r, s, u in cur.fetchall()
                ]
                return RecordPage(zone=zone, head_seq=head_seq, snapshot=True, deltas=deltas)
            cur = self._db.execute(
                "SELECT seq, kind, key, op, record, changed_at FROM record_log WHERE zone=? AND seq>? ORDER BY seq LIMIT ?",
                (zone, after, limit),
            )
            deltas = [
                RecordDelta(
                    zone=zone,
                    seq=s,
                    kind=RecordKind(k),
                    key=key,
                    op=op,
                    record=json.loads(r),
                    changed_at=parse(c),
                )  # type: ignore[arg-type]
                for s, k, key, op, r, c in cur.fetchall()
            ]
            return RecordPage(zone=zone, head_seq=head_seq, snapshot=False, deltas=deltas)

    def record_counts(self) -> list[dict[str, Any]]:
        return self._all(
            "SELECT r.zone, r.kind, count(*) AS count, h.head_seq FROM records r JOIN record_heads h USING (zone) "
            "WHERE r.deleted=0 GROUP BY r.zone, r.kind ORDER BY r.zone, r.kind"
        )

    # ----------------------------------------------------------------- users and tokens
    def create_user(self, username: str, password: str, role: Role, actor: str = "cli") -> None:
        if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError("username: letters, digits, - _ . only")
        hashed = hash_password(password)
        now = now_utc()
        with self._tx() as db:
            db.execute(
                "INSERT INTO users VALUES (?,?,?,?,0) ON CONFLICT(username) DO UPDATE SET "
                "password_hash=excluded.password_hash, role=excluded.role, disabled=0",
                (username, hashed, role.label, iso(now)),
            )
            db.execute("DELETE FROM tokens WHERE username=?", (username,))
            self._audit(db, actor, "user.set", username, {"role": role.label}, now)

    def list_users(self) -> list[dict[str, Any]]:
        return self._all("SELECT username, role, created_at, disabled FROM users ORDER BY username")

    def authenticate(self, username: str, password: str) -> AuthUser | None:
        """Thread-safe; the API calls it off the store thread so scrypt's ~0.1 s never delays ingest."""
        row = self._one("SELECT password_hash, role, disabled FROM users WHERE username=?", (username,))
        if not row or row["disabled"] or not check_password(password, row["password_hash"]):
            return None
        return AuthUser(username, Role.parse(row["role"]))

    def issue_token(self, username: str, ttl_s: float = 12 * 3600) -> str:
        token = new_token()
        now = now_utc()
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE expires_at < ?", (iso(now),))
            db.execute(
                "INSERT INTO tokens VALUES (?,?,?,?)",
                (token_digest(token), username, iso(now), iso(now + timedelta(seconds=ttl_s))),
            )
        return token

    def revoke_token(self, token: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tokens WHERE token_hash=?", (token_digest(token),))

    def user_for_token(self, token: str) -> AuthUser | None:
        row = self._one(
            "SELECT u.username, u.role FROM tokens t JOIN users u USING (username) "
            "WHERE t.token_hash=? AND t.expires_at > ? AND u.disabled=0",
            (token_digest(token), iso(now_utc())),
        )
        return AuthUser(row["username"], Role.parse(row["role"])) if row else None

    # ----------------------------------------------------------------- audit
    def audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> int:
        with self._tx() as db:
            return self._audit(db, actor, action, target, details, now_utc())

    def _audit(
        self,
        db: sqlite3.Connection,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any],
        now: datetime,
    ) -> int:
        last = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at, body = iso(now) or "", _j(details)
        digest = _audit_hash(prev, seq, at, actor, action, target, body)
        db.execute(
            "INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)",
            (seq, at, actor, action, target, body, prev, digest),
        )
        db.execute(
            "INSERT INTO meta VALUES ('audit_head', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (f"{seq}:{digest}",),
        )
        return seq

    def list_audit(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,))
        for r in rows:
            r["details"] = json.loads(r["details"])
        return rows

    def verify_audit(self) -> list[str]:
        """Every problem found re-hashing the chain: altered, removed, inserted or truncated entries."""
        problems: list[str] = []
        prev, expected_seq = GENESIS, 1
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log ORDER BY seq"
            ).fetchall()
            head = self._db.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        for seq, at, actor, action, target, details, prev_hash, digest in rows:
            if seq != expected_seq:
                problems.append(f"entry {expected_seq}..{seq - 1} missing (removed)")
            if prev_hash != prev:
                problems.append(
                    f"entry {seq}: previous-hash link broken (an earlier entry was removed or altered)"
                )
            if _audit_hash(prev_hash, seq, at, actor, action, target or "", details) != digest:
                problems.append(f"entry {seq}: content does not match its hash (altered)")
            prev, expected_seq = digest, seq + 1
        if head:
            head_seq, head_hash = head[0].split(":", 1)
            if int(head_seq) != expected_seq - 1 or head_hash != prev:
                problems.append(
                    f"chain ends at entry {expected_seq - 1}, head says {head_seq} (entries removed at the end)"
                )
        elif rows:
            problems.append("audit head record missing")
        return problems

    # ----------------------------------------------------------------- commands
    def record_command(self, signed: SignedCommand, issued_by: str) -> None:
        c = signed.command
        now = now_utc()
        with self._tx() as db:
            db.execute(
                "INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'signed',NULL,NULL,NULL)",
                (
                    c.command_id,
                    c.agent_id,
                    c.lane,
                    c.action.value,
                    c.operator_id,
                    c.second_operator_id,
                    c.reason_code,
                    c.reason_text,
                    _j(c.params),
                    iso(c.issued_at),
                    iso(c.expires_at),
                    issued_by,
                ),
            )
            self._audit(
                db,
                issued_by,
                f"command.{c.action.value}",
                f"{c.agent_id}/{c.lane}",
                {
                    "command_id": c.command_id,
                    "second_operator_id": c.second_operator_id,
                    "reason_code": c.reason_code,
                    "reason_text": c.reason_text,
                    "params": c.params,
                },
                now,
            )

    def set_command_status(self, command_id: str, status: str) -> None:
        """`signed` → `sent` or `not_sent` once the publish is known (the agent's result comes later)."""
        with self._tx() as db:
            db.execute(
                "UPDATE commands SET status=? WHERE command_id=? AND status='signed'", (status, command_id)
            )

    def apply_command_result(
        self, result: CommandResult, now: datetime | None = None
    ) -> dict[str, Any] | None:
        now = now or now_utc()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE commands SET status=?, code=?, detail=?, result_at=? WHERE command_id=?",
                (result.status, result.code, result.detail, iso(result.at), result.command_id),
            )
            if cur.rowcount == 0:
                return None
            row = db.execute("SELECT * FROM commands WHERE command_id=?", (result.command_id,))
            return _row(row, row.fetchone())

    def list_commands(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM commands ORDER BY issued_at DESC LIMIT ?", (limit,))


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
