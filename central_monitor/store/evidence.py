"""Evidence image rows (the bytes live in `central_monitor.evidence.EvidenceFiles`, by sha256).

Rows are keyed by the id the edge uploads them under: a transaction id for lane cameras, a perimeter
incident id (`<agent>/perimeter-<stamp>`) for fence snapshots. Alarms find theirs through
`alarm_evidence_key` (see `attach_alarm_evidence`).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from ..timeutil import iso, now_utc
from .base import (
    StoreBase,
    _row,
)


def evidence_public(row: dict[str, Any]) -> dict[str, Any]:
    """An evidence row as the API shows it: the row plus the `url` its bytes are served from."""
    return {**row, "url": f"/api/evidence/{row['id']}"}


def alarm_evidence_key(alarm: dict[str, Any]) -> str | None:
    """The evidence id an alarm's pictures are stored under: a perimeter alarm's `incident_id`, a gate
    exception's (or seal problem's) `transaction_id`; None for alarms no camera is linked to."""
    details = alarm.get("details")
    if not isinstance(details, dict):
        return None
    key = details.get("incident_id") or details.get("transaction_id")
    return key if isinstance(key, str) and key else None


def attach_alarm_evidence(db: sqlite3.Connection, alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each (public) alarm its `evidence` list (oldest first, `evidence_public` shape; [] when none).

    One query for the whole list, not one per alarm: the wall loads 150 alarms at a time. Takes the
    connection because alarms are raised inside store transactions (`_raise`) and read outside them.
    """
    keys = sorted({k for a in alarms if (k := alarm_evidence_key(a))})
    found: dict[str, list[dict[str, Any]]] = {}
    if keys:
        marks = ",".join("?" * len(keys))
        cur = db.execute(
            f"SELECT * FROM evidence WHERE transaction_id IN ({marks}) ORDER BY id",  # noqa: S608 - only ?s
            keys,
        )
        for r in cur.fetchall():
            row = _row(cur, r)
            found.setdefault(row["transaction_id"], []).append(evidence_public(row))
    for a in alarms:
        key = alarm_evidence_key(a)
        a["evidence"] = list(found.get(key, [])) if key else []
    return alarms


class EvidenceMixin(StoreBase):
    """Evidence image rows linked to transactions."""

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
