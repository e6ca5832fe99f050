"""Customs records: validated all-or-nothing imports, the per-zone replication log, snapshots and deltas."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from efence.contract import (
    RecordDelta,
    RecordKind,
    RecordPage,
)

from ..records import ImportRejected, RowError, validate_rows
from ..timeutil import iso, now_utc, parse
from .base import (
    ALL_ZONES,
    FTZ_ZONES,
    ZONE_WIDE_KINDS,
    ImportResult,
    IngestResult,
    StoreBase,
    _j,
)


class RecordsMixin(StoreBase):
    """Customs records, their per-zone replication log and imports."""

    def _record(self, db: sqlite3.Connection, zone: str, kind: str, key: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT record FROM records WHERE zone=? AND kind=? AND key=? AND deleted=0", (zone, kind, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

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
