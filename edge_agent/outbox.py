"""The durable outbox: every event is committed here before anything else happens (DESIGN.md guarantees).

Events get their per-agent `seq` in the same transaction that stores them, so seq has no gaps and is never
reused. Rows leave only when the hub acknowledges, at the application level, that everything up to a seq
is stored. Decisions and alarms are sent ahead of telemetry. Two bounds keep a long outage from filling
the disk or the hub's first hour back with stale readings: a capacity (a new telemetry event is refused
once the outbox holds that many rows) and an age (telemetry older than the bound is replaced in place by a
small `shed` tombstone that keeps its seq and id, so the hub sees no gap). Decisions, alarms, state and
command audits are never shed by either bound; `OutboxAlarm` rings well before either bound is reached.
"""

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.sqlite_thread import SqliteThread
from efence.contract import DEFAULT_PRIORITY, EventEnvelope, Priority

log = logging.getLogger("efence.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL,
    type TEXT NOT NULL,
    created REAL NOT NULL,
    sent_at REAL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_send_order ON outbox(priority, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO outbox_meta VALUES ('last_seq', 0), ('acked_seq', 0), ('shed', 0), ('shed_age', 0);
CREATE TABLE IF NOT EXISTS command_nonces (nonce TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""
SHED_TYPE = "telemetry_shed"  # the local `type` column of a tombstoned row (its envelope stays `telemetry`)


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    oldest_age_s: float
    last_seq: int
    acked_seq: int
    shed: int  # telemetry refused because the outbox was at capacity
    capacity: int
    shed_age: int = 0  # telemetry tombstoned because it was older than the age bound
    max_age_s: float | None = None

    @property
    def fill_ratio(self) -> float:
        return self.depth / self.capacity

    @property
    def age_ratio(self) -> float:
        """Oldest waiting event's age as a share of the age bound (0 without one)."""
        return self.oldest_age_s / self.max_age_s if self.max_age_s else 0.0


class Outbox:
    def __init__(
        self,
        path: str | Path,
        agent_id: str,
        *,
        capacity: int = 200_000,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.agent_id = agent_id
        self.capacity = capacity
        self.max_age_s = max_age_s
        self.clock = clock  # injectable so the age bound can be tested without waiting hours
        self.db = SqliteThread(path, name="outbox")
        self.db.call(lambda c: c.executescript(_SCHEMA))

    # ------------------------------------------------------------------ writing
    def _insert(
        self,
        c: sqlite3.Connection,
        type: str,
        payload: dict[str, Any],
        lane: str | None,
        correlation_id: str | None,
        observed_at: datetime | None,
    ) -> EventEnvelope | None:
        """One event inside the caller's transaction; None when it is telemetry shed at capacity."""
        priority = DEFAULT_PRIORITY.get(type, Priority.TELEMETRY)
        if priority >= Priority.TELEMETRY:  # only telemetry can meet the bound: count only for it
            depth = c.execute("SELECT count(*) FROM outbox").fetchone()[0]
            if depth >= self.capacity:
                c.execute("UPDATE outbox_meta SET value = value + 1 WHERE key = 'shed'")
                log.error(
                    "outbox full (%d events): telemetry event %s shed — decisions and alarms are kept",
                    depth,
                    type,
                )
                return None
        seq = c.execute("SELECT value FROM outbox_meta WHERE key = 'last_seq'").fetchone()[0] + 1
        event = EventEnvelope.new(
            agent_id=self.agent_id,
            seq=seq,
            type=type,
            payload=payload,
            lane=lane,
            observed_at=observed_at,
            correlation_id=correlation_id,
        )
        c.execute(
            "INSERT INTO outbox (seq, id, priority, type, created, body) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, event.id, int(event.priority), type, self.clock(), event.to_bytes()),
        )
        c.execute("UPDATE outbox_meta SET value = ? WHERE key = 'last_seq'", (seq,))
        return event

    def _append(
        self,
        c: sqlite3.Connection,
        type: str,
        payload: dict[str, Any],
        lane: str | None,
        correlation_id: str | None,
        observed_at: datetime | None,
    ) -> EventEnvelope:
        c.execute("BEGIN IMMEDIATE")
        try:
            event = self._insert(c, type, payload, lane, correlation_id, observed_at)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if event is None:
            raise OutboxFull(self.capacity)
        return event

    def _append_many(
        self, c: sqlite3.Connection, items: list[tuple[str, dict[str, Any], str | None]], lane: str | None
    ) -> list[EventEnvelope | None]:
        c.execute("BEGIN IMMEDIATE")
        try:
            events = [self._insert(c, t, p, lane, corr, None) for t, p, corr in items]
            c.execute("COMMIT")
            return events
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    async def append(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        lane: str | None = None,
        correlation_id: str | None = None,
        observed_at: datetime | None = None,
    ) -> EventEnvelope:
        """Commit one event durably and return it with its seq. Returns only after the commit.
        Raises `OutboxFull` for telemetry refused at capacity (nothing else is ever refused)."""
        return await self.db.run(lambda c: self._append(c, type, payload, lane, correlation_id, observed_at))

    async def append_many(
        self, items: list[tuple[str, dict[str, Any], str | None]], *, lane: str | None = None
    ) -> list[EventEnvelope | None]:
        """Commit several events — (type, payload, correlation id) — in ONE transaction, consecutive seqs.

        A lane step's records (the decision and what goes with it) cost one fsync instead of one each,
        which is most of the time between the last observation and the barrier command. Telemetry shed at
        capacity comes back as None in its place; the others are committed all or none."""
        return await self.db.run(lambda c: self._append_many(c, items, lane))

    # ------------------------------------------------------------------ sending
    async def due(self, limit: int, *, resend_after_s: float) -> list[tuple[int, bytes]]:
        """Rows never sent, or sent but unacknowledged for `resend_after_s`, most urgent first."""
        cutoff = self.clock() - resend_after_s

        def q(c: sqlite3.Connection) -> list[tuple[int, bytes]]:
            return c.execute(
                "SELECT seq, body FROM outbox WHERE sent_at IS NULL OR sent_at < ? ORDER BY priority, seq LIMIT ?",
                (cutoff, limit),
            ).fetchall()

        return await self.db.run(q)

    async def claim(self, limit: int, *, resend_after_s: float) -> list[tuple[int, bytes]]:
        """`due` and `mark_sent` in one transaction, for the publisher: a row is in flight from the moment
        it is handed out, so the age bound can never tombstone a body that is on its way to the hub."""
        cutoff = self.clock() - resend_after_s

        def q(c: sqlite3.Connection) -> list[tuple[int, bytes]]:
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(
                    "SELECT seq, body FROM outbox WHERE sent_at IS NULL OR sent_at < ? "
                    "ORDER BY priority, seq LIMIT ?",
                    (cutoff, limit),
                ).fetchall()
                now = self.clock()
                c.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?", [(now, s) for s, _ in rows])
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            return rows

        return await self.db.run(q)

    async def mark_sent(self, seqs: list[int]) -> None:
        now = self.clock()
        await self.db.run(
            lambda c: c.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?", [(now, s) for s in seqs])
        )

    async def acknowledge(self, acked_seq: int) -> int:
        """The hub stored everything up to `acked_seq`: drop those rows. Returns how many were removed.

        Only rows sent since the last (re)connect or resend request are dropped; one still waiting to be
        (re)sent stays until a later ack covers it after it went out. The hub acks past a hole it gave
        up on (its `event_gap` alarm, e.g. after an agent was down for a while): without this, the
        restarted agent could delete the very events of that hole before re-sending them. At worst an
        event is sent once more, which the hub's upsert by id absorbs.
        """

        def q(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            n = c.execute("DELETE FROM outbox WHERE seq <= ? AND sent_at IS NOT NULL", (acked_seq,)).rowcount
            c.execute("UPDATE outbox_meta SET value = max(value, ?) WHERE key = 'acked_seq'", (acked_seq,))
            c.execute("COMMIT")
            return n

        return await self.db.run(q)

    async def request_resend(self, from_seq: int, to_seq: int) -> int:
        """The hub saw a gap: make those rows due again. Returns how many rows are still here to resend."""
        return await self.db.run(
            lambda c: (
                c.execute(
                    "UPDATE outbox SET sent_at = NULL WHERE seq BETWEEN ? AND ?", (from_seq, to_seq)
                ).rowcount
            )
        )

    # ------------------------------------------------------------------ the age bound
    def _shed_expired(self, c: sqlite3.Connection) -> int:
        """Tombstone every telemetry row older than the age bound; returns how many were shed now.

        The row keeps its seq and event id, so the hub's per-agent sequence stays gap-free (a copy the hub
        already stored is kept: its insert by id ignores the repeat); only the payload goes. Only rows whose priority
        is telemetry are touched, so no decision, alarm, state change or command audit can be lost here.
        Rows in flight (published, not yet acknowledged) are left alone: the hub is about to have them
        whole, so shedding them would lose nothing yet count them as lost.
        """
        if not self.max_age_s:
            return 0
        cutoff = self.clock() - self.max_age_s
        c.execute("BEGIN IMMEDIATE")
        try:
            rows = c.execute(
                "SELECT seq, body FROM outbox WHERE priority >= ? AND type != ? AND created < ? "
                "AND sent_at IS NULL",
                (int(Priority.TELEMETRY), SHED_TYPE, cutoff),
            ).fetchall()
            for seq, body in rows:
                c.execute(
                    "UPDATE outbox SET type = ?, body = ? WHERE seq = ?",
                    (SHED_TYPE, _tombstone(body, self.max_age_s), seq),
                )
            if rows:
                c.execute("UPDATE outbox_meta SET value = value + ? WHERE key = 'shed_age'", (len(rows),))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if rows:
            log.error(
                "outbox: %d telemetry events older than the %.0f s age bound shed (seqs %d..%d kept as "
                "tombstones) — decisions and alarms are kept",
                len(rows),
                self.max_age_s,
                rows[0][0],
                rows[-1][0],
            )
        return len(rows)

    async def shed_expired(self) -> int:
        """Apply the age bound now (the agent calls this from its housekeeping loop)."""
        return await self.db.run(self._shed_expired)

    # ------------------------------------------------------------------ command nonces
    def nonces_now(self) -> dict[str, float]:
        """Nonces of operator commands accepted before a restart and not yet expired (blocking, at start-up)."""

        def q(c: sqlite3.Connection) -> dict[str, float]:
            c.execute("DELETE FROM command_nonces WHERE expires_at < ?", (self.clock(),))
            return dict(c.execute("SELECT nonce, expires_at FROM command_nonces").fetchall())

        return self.db.call(q)

    async def remember_nonce(self, nonce: str, expires_at: float) -> None:
        """Keep a used nonce on disk until its command expires, so a replay is refused after a restart too."""
        await self.db.run(
            lambda c: c.execute("INSERT OR REPLACE INTO command_nonces VALUES (?, ?)", (nonce, expires_at))
        )

    async def requeue_all(self) -> None:
        """After a reconnect nothing in flight can be trusted: everything unacknowledged is due again."""
        await self.db.run(lambda c: c.execute("UPDATE outbox SET sent_at = NULL"))

    # ------------------------------------------------------------------ metrics
    def _stats(self, c: sqlite3.Connection) -> OutboxStats:
        depth, oldest = c.execute("SELECT count(*), min(created) FROM outbox").fetchone()
        meta = dict(c.execute("SELECT key, value FROM outbox_meta").fetchall())
        return OutboxStats(
            depth=depth,
            oldest_age_s=max(0.0, self.clock() - oldest) if oldest else 0.0,
            last_seq=meta["last_seq"],
            acked_seq=meta["acked_seq"],
            shed=meta["shed"],
            capacity=self.capacity,
            shed_age=meta.get("shed_age", 0),
            max_age_s=self.max_age_s,
        )

    async def stats(self) -> OutboxStats:
        return await self.db.run(self._stats)

    def stats_now(self) -> OutboxStats:
        return self.db.call(self._stats)

    def close(self) -> None:
        self.db.close()


class OutboxFull(Exception):
    def __init__(self, depth: int):
        super().__init__(f"outbox full at {depth} events; telemetry shed")


def _tombstone(body: bytes, max_age_s: float) -> bytes:
    """The same envelope (id, seq, observed_at, type) with its payload replaced by a note of the shedding."""
    d = json.loads(body)
    d["payload"] = {"shed": True, "reason": f"older than the outbox age bound of {max_age_s:.0f} s"}
    return json.dumps(d, separators=(",", ":")).encode()


@dataclass
class OutboxAlarm:
    """Rings once when the outbox reaches `ratio` of either bound, and clears once it is back under half of
    that ratio (hysteresis, so a queue hovering at the line does not flap). A pure state machine: the
    agent feeds it stats and appends whatever event payload it returns."""

    ratio: float
    raised: bool = False

    def check(self, stats: OutboxStats) -> dict[str, Any] | None:
        fill, age = stats.fill_ratio, stats.age_ratio
        worst = max(fill, age)
        bound = f"{stats.capacity} events"
        if stats.max_age_s:
            bound += f" / {stats.max_age_s:.0f} s"
        state = (
            f"{stats.depth} events waiting ({fill:.0%} of {stats.capacity}), oldest {stats.oldest_age_s:.0f} s"
            + (f" ({age:.0%} of the {stats.max_age_s:.0f} s age bound)" if stats.max_age_s else "")
        )
        common = {
            "depth": stats.depth,
            "oldest_age_s": round(stats.oldest_age_s, 1),
            "capacity": stats.capacity,
            "max_age_s": stats.max_age_s,
            "shed_capacity": stats.shed,
            "shed_age": stats.shed_age,
        }
        if not self.raised and worst >= self.ratio:
            self.raised = True
            return {
                "kind": "alarm",
                "alarm": "outbox_filling",
                "severity": "critical",
                "detail": f"outbox nearing its bounds ({bound}): {state}; telemetry is shed at a bound, "
                "decisions and alarms never",
                **common,
            }
        if self.raised and worst < self.ratio / 2:
            self.raised = False
            return {
                "kind": "alarm",
                "alarm": "outbox_recovered",
                "severity": "info",
                "detail": f"outbox back under its bounds ({bound}): {state}",
                **common,
            }
        return None


def event_summary(body: bytes) -> str:
    d = json.loads(body)
    return f"{d.get('type')}#{d.get('seq')}"
