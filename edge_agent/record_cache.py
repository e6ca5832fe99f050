"""The edge's local copy of its zone's customs records, so a gate keeps deciding when the hub is away.

Deltas from the hub's per-zone replication log are applied idempotently and strictly in order; a gap (or a
fresh start) is closed by pulling the missing deltas, or a snapshot, over HTTP. The cache remembers the
seq it holds (`record_version`) and when it was last known to match the hub (`records_as_of`): every
decision names both, and records older than the configured bound make the controller fail closed.
"""

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from edge_agent.sqlite_thread import SqliteThread
from efence.contract import RecordDelta, RecordKind, RecordPage, decode

log = logging.getLogger("efence.records")

# Which customs fields of each record kind it can be found by (value may be a list or a comma-joined string).
INDEX_FIELDS: dict[str, tuple[str, ...]] = {
    RecordKind.GATE_PASS: ("passportNo", "vehicleNo", "vehicleIcNo", "containerNo", "rltNo"),
    RecordKind.VEHICLE: ("vehicleNo", "vehicleIcNo"),
    RecordKind.DRIVER_CARD: ("cardId",),
    RecordKind.ENTERPRISE: ("etpsNo",),
    RecordKind.RISK_INSTRUCTION: ("instructionId", "targetValue"),
    RecordKind.MANIFEST: ("billNo", "containerNo"),
    RecordKind.DELIVERY_ORDER: ("billNo", "containerNo"),
    RecordKind.DECLARATION: ("entryId", "billNo"),
    RecordKind.LEDGER_LIST: ("bondInvtNo", "entryNo"),
    RecordKind.TRADE_DOCUMENT: ("billNo", "entryId", "containerNo"),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (kind TEXT, key TEXT, body TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS record_terms (term TEXT, kind TEXT, key TEXT, PRIMARY KEY (term, kind, key));
CREATE INDEX IF NOT EXISTS record_terms_by_record ON record_terms(kind, key);
CREATE TABLE IF NOT EXISTS record_meta (key TEXT PRIMARY KEY, value TEXT);
"""


def _terms(kind: str, record: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for field in INDEX_FIELDS.get(kind, ()):
        value = record.get(field)
        values = value if isinstance(value, list | tuple) else str(value or "").replace(";", ",").split(",")
        out.update(str(v).strip() for v in values if v is not None and str(v).strip())
    return out


@dataclass(frozen=True)
class CacheState:
    zone: str
    record_version: int
    records_as_of: datetime | None
    count: int | None  # None when not asked for: counting a million records is a full scan


class GapDetected(Exception):
    def __init__(self, have: int, got: int):
        self.have, self.got = have, got
        super().__init__(f"record log gap: have seq {have}, received {got}")


class RecordCache:
    def __init__(self, path: str | Path, zone: str):
        self.zone = zone
        self.db = SqliteThread(path, name="records")
        self.db.call(lambda c: c.executescript(_SCHEMA))

    # ------------------------------------------------------------------ applying
    @staticmethod
    def _put(c: sqlite3.Connection, d: RecordDelta) -> None:
        c.execute("DELETE FROM record_terms WHERE kind = ? AND key = ?", (d.kind, d.key))
        if d.op == "delete":
            c.execute("DELETE FROM records WHERE kind = ? AND key = ?", (d.kind, d.key))
            return
        c.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
            (d.kind, d.key, json.dumps(d.record, ensure_ascii=False), d.seq),
        )
        c.executemany(
            "INSERT OR IGNORE INTO record_terms VALUES (?, ?, ?)",
            [(t, d.kind, d.key) for t in _terms(d.kind, d.record)],
        )

    @staticmethod
    def _version(c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM record_meta WHERE key = 'seq'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set_meta(c: sqlite3.Connection, seq: int) -> None:
        now = datetime.now(UTC).isoformat()
        c.executemany("INSERT OR REPLACE INTO record_meta VALUES (?, ?)", [("seq", str(seq)), ("as_of", now)])

    def _apply(
        self, c: sqlite3.Connection, deltas: list[RecordDelta], snapshot: bool, head: int | None
    ) -> int:
        c.execute("BEGIN IMMEDIATE")
        try:
            have = 0 if snapshot else self._version(c)
            if snapshot:
                c.execute("DELETE FROM records")
                c.execute("DELETE FROM record_terms")
            applied = have
            for d in sorted(deltas, key=lambda d: d.seq):
                if d.zone != self.zone:
                    raise ValueError(f"delta for zone {d.zone!r} offered to the cache of {self.zone!r}")
                if not snapshot and d.seq <= applied:
                    continue  # already have it: a redelivery is harmless
                if not snapshot and d.seq != applied + 1:
                    raise GapDetected(applied, d.seq)
                self._put(c, d)
                applied = d.seq if not snapshot else max(applied, d.seq)
            if snapshot and head is not None:
                applied = max(applied, head)
            self._set_meta(c, applied)
            c.execute("COMMIT")
            return applied
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def apply(self, deltas: list[RecordDelta]) -> int:
        """Apply deltas in order; raises GapDetected (and applies nothing) if one is missing before them."""
        return await self.db.run(lambda c: self._apply(c, deltas, False, None))

    async def apply_page(self, page: RecordPage) -> int:
        return await self.db.run(lambda c: self._apply(c, list(page.deltas), page.snapshot, page.head_seq))

    async def touch(self) -> None:
        """The hub confirmed we are current (no newer seq): records are fresh as of now."""
        await self.db.run(
            lambda c: (c.execute("BEGIN"), self._set_meta(c, self._version(c)), c.execute("COMMIT"))
        )

    async def sync_from_hub(
        self, client: httpx.AsyncClient, hub_url: str, auth: Callable[[str, str], str] | None = None
    ) -> int:
        """Pull what is missing (deltas, or a snapshot when the hub says so) until current. Returns the seq held.

        `auth(method, path)` gives the `Authorization` header (the agent signs with its checkpoint key).
        """
        path = f"/api/records/{self.zone}"
        while True:
            have = await self.db.run(self._version)
            headers = {"Authorization": auth("GET", path)} if auth else {}
            resp = await client.get(
                f"{hub_url.rstrip('/')}{path}", params={"after": have}, headers=headers, timeout=10
            )
            resp.raise_for_status()
            page = decode(RecordPage, resp.content)
            version = await self.apply_page(page) if (page.deltas or page.snapshot) else have
            if not page.deltas and not page.snapshot:
                await self.touch()
            if version >= page.head_seq:
                log.info("records of %s current at seq %d", self.zone, version)
                return version

    # ------------------------------------------------------------------ reading
    def _state(self, c: sqlite3.Connection, count: bool = True) -> CacheState:
        row = c.execute("SELECT value FROM record_meta WHERE key = 'as_of'").fetchone()
        n = c.execute("SELECT count(*) FROM records").fetchone()[0] if count else None
        return CacheState(self.zone, self._version(c), datetime.fromisoformat(row[0]) if row else None, n)

    async def state(self, *, count: bool = True) -> CacheState:
        """Version and freshness; `count=False` on hot paths (the lane's record view, status, metrics)."""
        return await self.db.run(lambda c: self._state(c, count))

    def state_now(self) -> CacheState:
        return self.db.call(self._state)

    @staticmethod
    def _find(c: sqlite3.Connection, kind: str, terms: Iterable[str]) -> list[dict[str, Any]]:
        terms = [t for t in set(terms) if t]
        if not terms:
            return []
        marks = ",".join("?" * len(terms))
        rows = c.execute(
            f"SELECT DISTINCT r.body FROM record_terms t JOIN records r ON r.kind = t.kind AND r.key = t.key "
            f"WHERE t.kind = ? AND t.term IN ({marks})",
            (kind, *terms),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def _related(
        self,
        c: sqlite3.Connection,
        plate: str | None,
        epc: str | None,
        card: str | None,
        containers: Iterable[str],
    ) -> dict[str, list[dict[str, Any]]]:
        containers = [x for x in containers if x]
        passes = self._find(c, RecordKind.GATE_PASS, [plate or "", epc or "", *containers])
        pass_plates = [p.get("vehicleNo") or "" for p in passes]
        related_nos = [t for p in passes for t in _terms(RecordKind.GATE_PASS, {"rltNo": p.get("rltNo")})]
        lists = self._find(c, RecordKind.LEDGER_LIST, related_nos)
        bills_and_entries = related_nos + [e.get("entryNo") or "" for e in lists]
        return {
            "passes": passes,
            "vehicles": self._find(c, RecordKind.VEHICLE, [plate or "", epc or "", *pass_plates]),
            "driver_cards": self._find(c, RecordKind.DRIVER_CARD, [card or ""]),
            "enterprises": self._find(
                c, RecordKind.ENTERPRISE, [p.get("areainEtpsno") or "" for p in passes]
            ),
            "risk_instructions": [
                json.loads(r[0])
                for r in c.execute("SELECT body FROM records WHERE kind = ?", (RecordKind.RISK_INSTRUCTION,))
            ],
            "manifests": self._find(c, RecordKind.MANIFEST, [*bills_and_entries, *containers]),
            "delivery_orders": self._find(c, RecordKind.DELIVERY_ORDER, [*bills_and_entries, *containers]),
            "declarations": self._find(c, RecordKind.DECLARATION, bills_and_entries),
            "entry_lists": lists,
        }

    async def related(
        self, *, plate: str | None, epc: str | None, card: str | None = None, containers: Iterable[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """Every record a decision about this vehicle could need, as customs-named dicts grouped by kind."""
        containers = list(containers)
        return await self.db.run(lambda c: self._related(c, plate, epc, card, containers))

    def close(self) -> None:
        self.db.close()
