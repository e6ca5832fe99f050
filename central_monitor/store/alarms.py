"""Alarms: raise with duplicate suppression, occurrence counting and re-arm cooldown; acknowledge; list.

Every alarm these return (and so every live `alarm` push) carries `evidence`: the camera pictures linked
to it (`evidence.attach_alarm_evidence`), [] when none has arrived (yet).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from .. import alarms as alarm_rules
from ..timeutil import iso, now_utc, parse
from .base import (
    StoreBase,
    _alarm_public,
    _j,
    _row,
)
from .evidence import attach_alarm_evidence


class AlarmsMixin(StoreBase):
    """Alarms: raising with duplicate suppression and occurrence counts, acknowledgement, listing."""

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
            alarm_id, acked_at, cleared_at = last
            if spec.kind in alarm_rules.CONDITION_KINDS and cleared_at is None:
                # the condition has not ended since this alarm (acknowledged or not): same outage
                db.execute("UPDATE alarms SET last_seen_at=? WHERE id=?", (iso(now), alarm_id))
                return None
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
                # the latest occurrence's details (its incident, snapshot, position): the room looks at
                # what is happening now, and the card's linked-camera picture follows `details`
                db.execute(
                    "UPDATE alarms SET count=count+1, last_seen_at=?, message=?, details=coalesce(?, details), "
                    "event_id=coalesce(?, event_id), "
                    "cleared_at=CASE WHEN acked_at IS NULL THEN NULL ELSE cleared_at END WHERE id=?",
                    (
                        iso(now),
                        spec.message,
                        _j(spec.details) if spec.details else None,
                        spec.event_id,
                        alarm_id,
                    ),
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
        return attach_alarm_evidence(db, [_alarm_public(_row(row, row.fetchone()))])[0]

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
            return attach_alarm_evidence(db, [_alarm_public(_row(row, row.fetchone()))])[0]

    def list_alarms(self, ringing: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Ringing first, then by severity, newest first; each with its `evidence` (two queries in all)."""
        where = (
            "" if ringing is None else ("WHERE acked_at IS NULL" if ringing else "WHERE acked_at IS NOT NULL")
        )
        with self._lock:
            cur = self._db.execute(
                f"SELECT * FROM alarms {where} ORDER BY (acked_at IS NULL) DESC, "  # noqa: S608
                "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id DESC LIMIT ?",
                (limit,),
            )
            rows = [_alarm_public(_row(cur, r)) for r in cur.fetchall()]
            return attach_alarm_evidence(self._db, rows)
