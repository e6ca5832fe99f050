"""Monitoring reads for the API and dashboard: transactions, agents, lanes, devices, KPIs."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta
from typing import Any

from ..timeutil import iso, now_utc, parse
from .base import (
    StoreBase,
    _agent_public,
    _tx_public,
)


class QueriesMixin(StoreBase):
    """Read-only monitoring queries behind the API and dashboard."""

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
