"""PostgreSQL implementation of `HubStore`, for several stateless hub workers sharing one database.

`PgStore` *is* the SQLite store's logic (`SqliteStore` in store.py: ingest, alarms, records, audit …)
running on PostgreSQL through a thin adapter that gives psycopg 3 the sqlite3 calls that logic makes
(`execute`, `executemany`, `fetchone`, `rowcount`, `lastrowid`). The SQL is translated once per
statement (cached): `?` → `%s`, `INSERT OR IGNORE` / `INSERT OR REPLACE` → `ON CONFLICT`, two-argument
`max()`/`min()` → `GREATEST`/`LEAST`, `LIKE` → `ILIKE` (SQLite's LIKE ignores ASCII case), and the
schema's types (`INTEGER` → `BIGINT`, `AUTOINCREMENT` → `BIGSERIAL`). One implementation of the
rules, two engines: a fix in the SQLite store is a fix here, and the hub's store tests run on both.

Concurrency between workers (the write path, at the end of this file): workers commit in parallel.
Ingest and agent status take one advisory lock per agent (`pg_advisory_xact_lock`, keyed by a hash
of the agent id, always in sorted order) plus the hub-wide lock in *shared* mode; every other write
(record imports, users, audit, commands, alarm acks, transfer checks) takes the hub-wide lock
exclusively, so it runs alone exactly as on SQLite. A batch's events are inserted first, before any
agent lock, in one `INSERT … SELECT unnest(…) ON CONFLICT DO NOTHING` (idempotent by event id and by
(agent, incarnation, seq)); only the per-agent bookkeeping that follows (applying the events, seq
heads, acks) runs under the agent locks, and it reads every agent's head and stored seqs in one
query and writes the heads in one statement. Rows shared across agents get their own short locks:
an alarm's dedupe key (raised exactly once), a zone's record log, a gate pass. Isolation is READ
COMMITTED on purpose: after a lock is granted each statement sees what its previous holder
committed (REPEATABLE READ would keep the snapshot from before the wait). A deadlock between two
workers (they can only meet on those shared rows) or a race on the unique keys rolls the
transaction back and runs it again, a few times, before the caller sees the error.

URL: `postgresql://user@host:5432/dbname` (libpq syntax; `?options=-csearch_path%3Dschema` selects a
schema). The password comes from `PGPASSWORD`, `~/.pgpass` or `PGPASSFILE`, never from a config.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from efence.contract import AgentStatus, EventEnvelope

from . import alarms as alarm_rules
from .store import SCHEMA, IngestResult, SqliteStore, StatusResult
from .store.events import walk_seqs

WRITE_LOCK = 0x6566656E6365  # "efence": the hub-wide lock (shared by ingest, exclusive for other writes)
SCHEMA_LOCK = WRITE_LOCK + 1
TX_ATTEMPTS = 6  # a transaction that lost a deadlock or a unique-key race is run again up to this often

log = logging.getLogger("efence.hub.store_pg")


# --------------------------------------------------------------------------- schema
def pg_schema(sqlite_schema: str = SCHEMA) -> list[str]:
    """The SQLite schema's statements in PostgreSQL types."""
    s = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", sqlite_schema, flags=re.I)
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bBLOB\b", "BYTEA", s)
    return [stmt.strip() for stmt in s.split(";") if stmt.strip()]


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


@functools.cache
def table_info(sqlite_schema: str = SCHEMA) -> dict[str, tuple[list[str], list[str], bool]]:
    """table → (columns in order, primary-key columns, has an autoincrement `id`)."""
    info: dict[str, tuple[list[str], list[str], bool]] = {}
    for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\);", sqlite_schema, re.S | re.I):
        cols, pk, auto = [], [], False
        for part in _split_top(m.group(2)):
            up = part.upper()
            if up.startswith("PRIMARY KEY"):
                pk = [c.strip() for c in part[part.index("(") + 1 : part.rindex(")")].split(",")]
            elif up.startswith(("UNIQUE", "FOREIGN KEY", "CHECK", "CONSTRAINT")):
                continue
            else:
                name = part.split()[0]
                cols.append(name)
                if "PRIMARY KEY" in up:
                    pk = [name]
                    auto = auto or "AUTOINCREMENT" in up
        info[m.group(1)] = (cols, pk, auto)
    return info


# --------------------------------------------------------------------------- SQL translation
_INSERT = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.I | re.S)


def _two_arg_minmax(sql: str) -> str:
    out, i = [], 0
    pat = re.compile(r"\b(max|min)\(", re.I)
    while m := pat.search(sql, i):
        out.append(sql[i : m.start()])
        depth, j = 1, m.end()
        while j < len(sql) and depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        inner = sql[m.end() : j - 1]
        inner = _two_arg_minmax(inner)
        fn = m.group(1)
        if len(_split_top(inner)) > 1:
            fn = "GREATEST" if fn.lower() == "max" else "LEAST"
        out.append(f"{fn}({inner})")
        i = j
    out.append(sql[i:])
    return "".join(out)


_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.([\w.]+)'\s*\)", re.I)
_JSON_EACH = re.compile(r"json_each\(\s*([\w.]+)\s*,\s*'\$\.([\w.]+)'\s*\)\s+(?:AS\s+)?(\w+)", re.I)
_WHEN_BARE = re.compile(r"WHEN\s+((?:\w+\.)?\w+)\s+THEN", re.I)


def _json_path(path: str) -> str:
    return "{" + ",".join(path.split(".")) + "}"


def _json_extract(m: re.Match[str]) -> str:
    return f"(({m.group(1)})::jsonb #>> '{_json_path(m.group(2))}')"


def _json_each(m: re.Match[str]) -> str:
    """SQLite json_each over a path: one row per array element, or one row for a scalar."""
    node = f"(({m.group(1)})::jsonb #> '{_json_path(m.group(2))}')"
    return (
        f"jsonb_array_elements_text(CASE WHEN jsonb_typeof({node})='array' THEN {node} "
        f"ELSE jsonb_build_array({node}) END) AS {m.group(3)}(value)"
    )


def _qualify_upsert(sql: str) -> str:
    """In `ON CONFLICT … DO UPDATE SET c=expr`, PostgreSQL needs the table's own columns qualified."""
    m = re.match(r"^\s*INSERT\s+INTO\s+(\w+)", sql, re.I)
    k = re.search(r"DO\s+UPDATE\s+SET\s", sql, re.I)
    if not m or not k or m.group(1) not in table_info():
        return sql
    table, cols = m.group(1), table_info()[m.group(1)][0]
    col_re = re.compile(r"(?<![.\w'])(" + "|".join(map(re.escape, cols)) + r")(?![\w(])")
    tail = sql[k.end() :]
    parts = re.split(r"('(?:[^']|'')*')", tail)  # leave string literals alone
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
            continue
        # qualify only right-hand sides: keep `col=` targets (a name followed by '=' but not '==' / '!=')
        out.append(
            col_re.sub(
                lambda mm, p=part: mm.group(1) if _is_target(p, mm) else f"{table}.{mm.group(1)}", part
            )
        )
    return sql[: k.end()] + "".join(out)


def _is_target(text: str, m: re.Match[str]) -> bool:
    rest = text[m.end() :].lstrip()
    before = text[: m.start()].rstrip()
    return rest.startswith("=") and not rest.startswith("==") and (before == "" or before.endswith(","))


@functools.lru_cache(maxsize=1024)
def translate(sql: str, with_params: bool) -> tuple[str, bool]:
    """SQLite statement → (PostgreSQL statement, returns the new autoincrement id)."""
    returning = False
    s = sql.strip().rstrip(";")
    m = _INSERT.match(s)
    if m:
        verb, table = m.group(1).upper(), m.group(2)
        s = f"INSERT INTO {table}" + (f" ({m.group(4)})" if m.group(3) else "") + " " + s[m.end() :].lstrip()
        if verb == "IGNORE":
            s += " ON CONFLICT DO NOTHING"
        else:
            cols_all, pk, _ = table_info()[table]
            cols = [c.strip() for c in m.group(4).split(",")] if m.group(3) else cols_all
            sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in pk)
            s += f" ON CONFLICT ({', '.join(pk)}) " + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")
    im = re.match(r"^\s*INSERT\s+INTO\s+(\w+)", s, re.I)
    if im and (ti := table_info().get(im.group(1))) and ti[2] and "RETURNING" not in s.upper():
        s += " RETURNING id"
        returning = True
    s = _qualify_upsert(s)
    s = _two_arg_minmax(s)
    s = re.sub(r"\bLIKE\b", "ILIKE", s)
    s = _JSON_EACH.sub(_json_each, s)
    s = _JSON_EXTRACT.sub(_json_extract, s)
    s = _WHEN_BARE.sub(r"WHEN \1<>0 THEN", s)  # SQLite integers are booleans; PostgreSQL's are not
    if with_params:
        s = s.replace("%", "%%").replace("?", "%s")
    return s, returning


def _py(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


class _Cursor:
    """The part of `sqlite3.Cursor` the store uses."""

    def __init__(self, cur: psycopg.Cursor[Any], returning: bool) -> None:
        self._cur = cur
        self.description = cur.description
        self.rowcount = cur.rowcount
        self.lastrowid: int | None = None
        self._first: tuple[Any, ...] | None = None
        if returning:
            row = cur.fetchone()
            self.lastrowid = row[0] if row else None
            self.description = None

    def fetchone(self) -> tuple[Any, ...] | None:
        if self.description is None:
            return None
        row = self._cur.fetchone()
        return None if row is None else tuple(_py(v) for v in row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self.description is None:
            return []
        return [tuple(_py(v) for v in row) for row in self._cur.fetchall()]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """The part of `sqlite3.Connection` the store uses, on a psycopg 3 connection (autocommit + BEGIN)."""

    def __init__(self, conn: psycopg.Connection[Any], url: str | None = None) -> None:
        self.conn = conn
        self.url = url
        self.in_tx = False  # set by PgStore._tx: a dead connection then fails the transaction instead

    def live(self) -> psycopg.Connection[Any]:
        """The connection, opened again if PostgreSQL dropped it (restart, failover, idle kill).

        Only between transactions: inside one, a silent switch to a new connection would run the rest of
        the transaction's statements outside it; there the error surfaces and the batch is retried."""
        if (self.conn.closed or self.conn.broken) and self.url and not self.in_tx:
            log.warning("PostgreSQL connection lost; connecting again to %s", _redact(self.url))
            self.conn = psycopg.connect(self.url, autocommit=True)
        return self.conn

    def begin(self, sql: str) -> psycopg.Connection[Any]:
        """Start a transaction; a connection found dead at this point (nothing done yet) is replaced once."""
        conn = self.live()
        try:
            conn.execute(sql)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            conn = self.live()
            conn.execute(sql)
        return conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
        if not self.in_tx:  # a read between transactions: safe to send again on a new connection
            try:
                return self._execute(sql, params)
            except psycopg.OperationalError:
                if not self.conn.broken:
                    raise
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> _Cursor:
        self.live()
        head = sql.strip().upper()
        if head.startswith("PRAGMA"):
            return _Cursor(self.conn.execute("SELECT 'ok'"), False)
        if head.startswith("BEGIN"):
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            return _Cursor(self.conn.execute("SELECT 1"), False)
        q, returning = translate(sql, bool(params))
        args = [_param(p) for p in params] if params else None
        return _Cursor(self.conn.execute(q, args), returning)  # type: ignore[arg-type]

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> _Cursor:
        q, _ = translate(sql, True)
        with self.live().cursor() as cur:
            cur.executemany(q, [[_param(p) for p in row] for row in seq])
            return _Cursor(cur, False)

    def executescript(self, script: str) -> None:
        for stmt in pg_schema(script):
            self.conn.execute(stmt)

    def close(self) -> None:
        self.conn.close()


class PgStore(SqliteStore):
    """`HubStore` on PostgreSQL. Several processes may share one database (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        alarm_cooldown_s: float = 60.0,
        repeated_failure_threshold: int = 3,
    ) -> None:
        # SqliteStore.__init__ on a throw-away in-memory database sets every attribute the shared logic
        # uses (whatever a newer version adds); then the connection is swapped for PostgreSQL
        super().__init__(
            ":memory:",
            alarm_cooldown_s=alarm_cooldown_s,
            repeated_failure_threshold=repeated_failure_threshold,
        )
        self._db.close()
        self.url = url
        # no file: the API then keeps evidence images only where it is given an evidence_dir explicitly
        self.path = None  # type: ignore[assignment]
        conn = psycopg.connect(url, autocommit=True)
        self._db = PgConnection(conn, url)  # type: ignore[assignment]
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))  # workers starting together
        try:
            old_key = conn.execute(  # devices were keyed without their lane before: re-filled by status
                "SELECT 1 FROM information_schema.table_constraints t WHERE t.table_name='devices' "
                "AND t.table_schema=current_schema() AND t.constraint_type='PRIMARY KEY' AND NOT EXISTS ("
                "SELECT 1 FROM information_schema.key_column_usage k WHERE k.constraint_name=t.constraint_name "
                "AND k.table_schema=t.table_schema AND k.column_name='lane')"
            ).fetchone()
            if old_key:
                conn.execute("DROP TABLE devices")
            self._db.executescript(SCHEMA)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    # ----------------------------------------------------------------- write path
    # `_tx` is SqliteStore's transaction hook: with no scope set it takes the hub-wide lock exclusively
    # (everything the SQLite store does under BEGIN IMMEDIATE stays exactly as serial); `ingest`,
    # `apply_status` and `abandon_gap` set an agent scope and run under per-agent locks instead.
    _scope: tuple[str, ...] | None = None
    _txs: _TxState | None = None

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            scope, self._scope = self._scope, None  # nested writes of this transaction see no scope
            mode = "pg_advisory_xact_lock_shared" if scope else "pg_advisory_xact_lock"
            conn = self._db.begin(f"BEGIN; SELECT {mode}({WRITE_LOCK})")  # one round trip
            self._txs = _TxState(scope or ())
            self._db.in_tx = True
            try:
                if scope and scope_eager(scope):
                    self._lock_agents()
                yield self._db
                self._flush_heads()
            except BaseException:
                self._txs = None
                self._db.in_tx = False
                if not conn.broken:
                    conn.execute("ROLLBACK")
                raise
            self._txs = None
            self._db.in_tx = False
            conn.execute("COMMIT")

    def _scoped(self, agents: set[str], eager: bool, fn: Any, *args: Any) -> Any:
        """Run a write of `agents` under their own locks; run it again if it lost a race (see module doc)."""
        scope = (*sorted(agents), *((EAGER,) if eager else ()))
        for attempt in range(1, TX_ATTEMPTS + 1):
            with self._lock:
                self._scope = scope
                try:
                    return fn(*args)
                except RETRYABLE as exc:
                    if attempt == TX_ATTEMPTS:
                        raise
                    log.info(
                        "write of %s lost a race (attempt %d), running it again: %s", agents, attempt, exc
                    )
                finally:
                    self._scope = None
            time.sleep(random.uniform(0.001, 0.01 * attempt))  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")

    def ingest(self, events: list[EventEnvelope], now: datetime | None = None) -> IngestResult:
        if not events:
            return IngestResult()
        return self._scoped({e.agent_id for e in events}, False, super().ingest, events, now)

    def apply_status(self, status: AgentStatus, now: datetime | None = None) -> StatusResult:
        return self._scoped({status.agent_id}, True, super().apply_status, status, now)

    def abandon_gap(
        self, agent_id: str, from_seq: int, to_seq: int, now: datetime | None = None
    ) -> IngestResult:
        return self._scoped({agent_id}, True, super().abandon_gap, agent_id, from_seq, to_seq, now)

    def _lock_agents(self) -> None:
        """Take this transaction's agent locks (sorted: two workers never wait on each other in a cycle)."""
        st = self._txs
        if st is None or st.locked or not st.agents:
            return
        conn = self._db.conn
        conn.execute("; ".join(f"SELECT pg_advisory_xact_lock({lock_key('agent', a)})" for a in st.agents))
        st.locked = True
        st.incarnations = dict(
            conn.execute(
                "SELECT agent_id, incarnation FROM agent_seq WHERE agent_id = ANY(%s)", (list(st.agents),)
            ).fetchall()
        )

    def _xlock(self, kind: str, name: str) -> None:
        """A short lock on a row shared across agents (no-op when this transaction runs alone)."""
        st = self._txs
        if st is None or not st.agents:
            return
        key = lock_key(kind, name)
        if key not in st.held:
            self._db.conn.execute(f"SELECT pg_advisory_xact_lock({key})")
            st.held.add(key)

    def _incarnation(self, db: Any, agent_id: str) -> int:  # type: ignore[override]
        st = self._txs
        if st is None or not st.agents:
            return SqliteStore._incarnation(db, agent_id)
        if st.incarnations is None:  # before the agent locks: one query for the batch's agents
            st.incarnations = dict(
                self._db.conn.execute(
                    "SELECT agent_id, incarnation FROM agent_seq WHERE agent_id = ANY(%s)", (list(st.agents),)
                ).fetchall()
            )
        if not st.locked:
            st.seen[agent_id] = int(st.incarnations.get(agent_id, 0))
            return st.seen[agent_id]
        return SqliteStore._incarnation(db, agent_id)  # under the lock: always the stored value

    def _insert_all(
        self, db: Any, events: list[EventEnvelope], received: str, incarnations: dict[str, int]
    ) -> bool:
        """The batch in one statement, *before* the agent locks; idempotent by id and (agent, seq).

        Rows go in sorted by (agent, seq, id), so two workers inserting overlapping batches wait for
        each other in one order and never deadlock; a row another worker has in flight makes this
        statement wait for that worker's commit. Then the agent locks. If every event went in: True.
        If some were already stored (redelivery): False, and the caller goes event by event, where
        `_insert_event` reports this statement's rows as inserted and the others as duplicates. If an
        event instead reuses a stored seq under a new id (the agent started over), the statement is
        undone to a savepoint and the caller's one-by-one path (new incarnation) runs as on SQLite.
        """
        st = self._txs
        if st is None or not st.agents:
            return super()._insert_all(db, events, received, incarnations)
        conn = self._db.conn
        rows = sorted(
            (self._event_row(e, received, incarnations[e.agent_id]) for e in events),
            key=lambda r: (r[1], r[2], r[0]),
        )
        conn.execute("SAVEPOINT batch")
        cur = conn.execute(INSERT_BATCH, [list(c) for c in zip(*rows, strict=True)])
        st.mine = {r[0] for r in cur.fetchall()}
        self._lock_agents()
        stale = {a: i for a, i in st.seen.items() if (st.incarnations or {}).get(a, 0) != i}
        if stale:  # an agent started a new incarnation meanwhile: redo the batch against it
            raise StaleIncarnation(f"incarnation changed while storing a batch: {stale}")
        if len(st.mine) == len(events):
            return True
        missing = list({e.id for e in events} - st.mine)
        stored = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s)", (missing,)).fetchone()
        if stored is None or int(stored[0]) != len(missing):  # a seq reused under a new id
            conn.execute("ROLLBACK TO SAVEPOINT batch")
            st.mine = set()
        return False

    def _insert_event(self, db: Any, env: EventEnvelope, received: str, incarnation: int) -> bool:  # type: ignore[override]
        st = self._txs
        if st is not None and env.id in st.mine:
            st.mine.discard(env.id)  # stored by this transaction's batch statement (once)
            return True
        return super()._insert_event(db, env, received, incarnation)

    def _advance_all(self, db: Any, agents: list[str], res: IngestResult) -> None:
        """Through `_advance`, which already batches the heads under this transaction's agent locks."""
        for agent_id in agents:
            self._advance(db, agent_id, res)

    def _advance(self, db: Any, agent_id: str, res: IngestResult) -> None:
        """SqliteStore._advance for every agent of the transaction at once: one read, one write."""
        st = self._txs
        if st is None or not st.agents or agent_id in st.advanced:
            self._flush_heads()  # the paging version reads agent_seq: give it what was computed so far
            super()._advance(db, agent_id, res)
            return
        self._lock_agents()
        if agent_id not in st.heads:
            todo = [a for a in st.agents if a not in st.advanced] or [agent_id]
            st.heads.update(_seq_heads(self._db.conn, todo))
        c, top, _inc, seqs = st.heads.pop(agent_id, (0, 0, 0, []))
        st.advanced.add(agent_id)
        if len(seqs) >= ADVANCE_PAGE:  # a long run above a hole: the paging version
            self._flush_heads()
            super()._advance(db, agent_id, res)
            return
        gaps: list[tuple[int, int]] = []
        c = walk_seqs(c, seqs, gaps)
        if seqs:
            top = max(top, seqs[-1])
        st.head_writes[agent_id] = (c, top)
        res.contiguous[agent_id] = c
        res.max_seq[agent_id] = top
        if top > c:
            res.gaps[agent_id] = gaps

    def _flush_heads(self) -> None:
        st = self._txs
        if st is None or not st.head_writes:
            return
        agents = sorted(st.head_writes)
        self._db.conn.execute(
            "INSERT INTO agent_seq (agent_id, contiguous_seq, max_seq) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) ON CONFLICT (agent_id) DO UPDATE "
            "SET contiguous_seq=excluded.contiguous_seq, max_seq=excluded.max_seq",
            (agents, [st.head_writes[a][0] for a in agents], [st.head_writes[a][1] for a in agents]),
        )
        st.head_writes.clear()

    # rows shared across agents: each gets a short lock of its own while ingest runs in parallel
    def _raise(self, db: Any, spec: alarm_rules.AlarmSpec, now: datetime) -> dict[str, Any] | None:
        self._xlock("alarm", spec.dedupe_key)  # two workers never ring the same alarm twice
        return super()._raise(db, spec, now)

    def _put_record(self, db: Any, zone: str, *args: Any, **kwargs: Any) -> Any:
        self._xlock("zone", zone)  # record_heads.head_seq is read, then written
        return super()._put_record(db, zone, *args, **kwargs)

    def _cross_pass(self, db: Any, env: EventEnvelope, pass_no: str, *args: Any) -> float | None:
        self._xlock("pass", pass_no)  # one pass crossing at two gates: transfers and lists in order
        return super()._cross_pass(db, env, pass_no, *args)

    def _record_alarms(self, db: Any, env: EventEnvelope, tx: dict[str, Any]) -> list[alarm_rules.AlarmSpec]:
        if tx.get("pass_no"):
            self._xlock("pass", str(tx["pass_no"]))  # repeated_failures counts a pass's failures
        return super()._record_alarms(db, env, tx)

    def health(self) -> dict[str, Any]:
        with self._lock:
            ok = self._db.live().execute("SELECT 1").fetchone() == (1,)
            counts = {
                t: int(self._db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608 - fixed
                for t in ("events", "transactions", "agents", "records")
            }
            counts["alarms_ringing"] = int(
                self._db.conn.execute("SELECT count(*) FROM alarms WHERE acked_at IS NULL").fetchone()[0]
            )
        return {"ok": ok, "url": _redact(self.url), "counts": counts}


# --------------------------------------------------------------------------- write path helpers
EAGER = "\x00eager"  # scope marker: take the agent locks at BEGIN (status, gap) rather than after the insert
ADVANCE_PAGE = 5000
INSERT_BATCH = (
    "INSERT INTO events SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::bigint[]) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


class StaleIncarnation(RuntimeError):
    """An agent's incarnation changed between reading it and locking the agent: run the batch again."""


RETRYABLE = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.UniqueViolation,
    StaleIncarnation,
)


def lock_key(kind: str, name: str) -> int:
    """A stable signed 64-bit advisory lock key for `kind:name` (the same in every worker)."""
    digest = hashlib.blake2b(f"{kind}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def scope_eager(scope: tuple[str, ...]) -> bool:
    return bool(scope) and scope[-1] == EAGER


@dataclass
class _TxState:
    """What one write transaction holds and has read (lives from BEGIN to COMMIT/ROLLBACK)."""

    scope: tuple[str, ...]
    locked: bool = False
    incarnations: dict[str, int] | None = None
    seen: dict[str, int] = field(default_factory=dict)  # incarnations used before the agent locks
    held: set[int] = field(default_factory=set)
    mine: set[str] = field(default_factory=set)  # event ids the batch statement inserted
    heads: dict[str, tuple[int, int, int, list[int]]] = field(default_factory=dict)
    advanced: set[str] = field(default_factory=set)
    head_writes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(a for a in self.scope if a != EAGER)


def _seq_heads(
    conn: psycopg.Connection[Any], agents: list[str]
) -> dict[str, tuple[int, int, int, list[int]]]:
    """agent → (contiguous_seq, max_seq, incarnation, stored seqs above contiguous_seq, ≤ one page)."""
    rows = conn.execute(
        "SELECT x.agent_id, coalesce(h.contiguous_seq, 0), coalesce(h.max_seq, 0), coalesce(h.incarnation, 0), "
        "s.seq FROM unnest(%s::text[]) AS x(agent_id) LEFT JOIN agent_seq h ON h.agent_id = x.agent_id "
        "LEFT JOIN LATERAL (SELECT e.seq FROM events e WHERE e.agent_id = x.agent_id "
        "AND e.incarnation = coalesce(h.incarnation, 0) AND e.seq > coalesce(h.contiguous_seq, 0) "
        "ORDER BY e.seq LIMIT %s) s ON true ORDER BY x.agent_id, s.seq",
        (agents, ADVANCE_PAGE),
    ).fetchall()
    out: dict[str, tuple[int, int, int, list[int]]] = {}
    for agent_id, c, top, inc, seq in rows:
        head = out.setdefault(agent_id, (int(c), int(top), int(inc), []))
        if seq is not None:
            head[3].append(int(seq))
    return out


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
