"""Ingest: events stored idempotently with per-agent seq tracking, applied to transactions, lanes,
devices, passes and transfers; agent status and last will."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from efence.contract import (
    AgentStatus,
    DeviceStatus,
    EventEnvelope,
    RecordKind,
)

from .. import alarms as alarm_rules
from ..timeutil import iso, iso_any, now_utc, parse
from .base import (
    CROSSED_STATUSES,
    DEFAULT_TRANSFER_MIN,
    PERIMETER,
    IngestResult,
    StatusResult,
    StoreBase,
    _agent_public,
    _j,
    _row,
    _tx_public,
    _tx_upsert_sql,
    device_subject,
)


class EventsMixin(StoreBase):
    """Ingest of event batches and agent status; the rules that apply each event to the hub's state."""

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
            c = walk_seqs(c, seqs, gaps)
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
        for key in alarm_rules.clears_from_event(env):
            db.execute(
                "UPDATE alarms SET cleared_at=? WHERE dedupe_key=? AND cleared_at IS NULL", (iso(now), key)
            )

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
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, lane, device_id) DO UPDATE SET "
            "observed=excluded.observed, last_error=excluded.last_error, updated_at=excluded.updated_at, "
            "type=coalesce(excluded.type, devices.type)",
            (
                env.agent_id,
                device_id,
                env.lane or PERIMETER,  # a device outside any lane is a fence device
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
        subject = device_subject(agent_id, lane, device_id)
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
            if status.online and status.fence_devices:
                self._apply_fence_devices(db, status, now, res)
            subject = status.agent_id
            if not status.online and was_online is not False:
                stopped = status.offline_reason == "stopped"
                spec = alarm_rules.AlarmSpec(
                    kind="agent_offline",
                    subject=subject,
                    message=f"Checkpoint {status.name or status.agent_id} "
                    + ("was stopped (service stop or upgrade)" if stopped else "lost its link to the hub"),
                    severity="warning" if stopped else None,
                    details={"offline_reason": status.offline_reason or "link_lost"},
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
                self._put_device(db, status, dev, lane.lane, lane.lane, now, res)

    def _apply_fence_devices(
        self, db: sqlite3.Connection, status: AgentStatus, now: datetime, res: StatusResult
    ) -> None:
        """Fence cameras and sensors of the agent: devices under lane `perimeter` (as the agent's metrics
        label them), their `device_offline` alarm raised and cleared as for lane devices but not filed
        under a lane — the same alarm the agent's own device_offline event rang (same subject)."""
        for dev in status.fence_devices:
            self._put_device(db, status, dev, PERIMETER, None, now, res)

    def _put_device(
        self,
        db: sqlite3.Connection,
        status: AgentStatus,
        dev: DeviceStatus,
        lane: str,
        alarm_lane: str | None,
        now: datetime,
        res: StatusResult,
    ) -> None:
        db.execute(
            "INSERT INTO devices (agent_id, device_id, lane, zone, checkpoint, type, enabled, locked, observed, "
            "last_error, counters, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id, lane, device_id) "
            "DO UPDATE SET type=excluded.type, enabled=excluded.enabled, locked=excluded.locked, "
            "observed=excluded.observed, last_error=excluded.last_error, counters=excluded.counters, "
            "updated_at=excluded.updated_at",
            (
                status.agent_id,
                dev.device_id,
                lane,
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
                alarm_lane,
                dev.device_id,
                dev.observed,
                dev.last_error,
                now,
                res,
            )


def walk_seqs(c: int, seqs: list[int], gaps: list[tuple[int, int]]) -> int:
    """Move the contiguous head `c` over the sorted stored seqs above it; the holes met (at most 20 in
    all) are appended to `gaps`. Returns the new head. Shared by the SQLite and PostgreSQL write paths."""
    prev = c
    for s in seqs:
        if s == prev + 1 and not gaps:
            c = s
        elif s > prev + 1 and len(gaps) < 20:
            gaps.append((prev + 1, s - 1))
        prev = s
    return c
