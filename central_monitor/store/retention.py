"""Retention rules (what may be pruned, and what never) and the batched prune steps; `central_monitor.retention`
drives them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..timeutil import iso
from .base import (
    StoreBase,
)

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


class RetentionMixin(StoreBase):
    """Batched prune steps under `PRUNE_RULES`."""

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
