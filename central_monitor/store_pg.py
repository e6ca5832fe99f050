"""PostgreSQL implementation of `HubStore`, for several stateless hub workers sharing one database.

`PgStore` *is* the SQLite store's logic (`SqliteStore` in store.py: ingest, alarms, records, audit …)
running on PostgreSQL through a thin adapter that gives psycopg 3 the sqlite3 calls that logic makes
(`execute`, `executemany`, `fetchone`, `rowcount`, `lastrowid`). The SQL is translated once per
statement (cached): `?` → `%s`, `INSERT OR IGNORE` / `INSERT OR REPLACE` → `ON CONFLICT`, two-argument
`max()`/`min()` → `GREATEST`/`LEAST`, `LIKE` → `ILIKE` (SQLite's LIKE ignores ASCII case), and the
schema's types (`INTEGER` → `BIGINT`, `AUTOINCREMENT` → `BIGSERIAL`). One implementation of the
rules, two engines: a fix in the SQLite store is a fix here, and the hub's store tests run on both.

Concurrency between workers: every write transaction takes one PostgreSQL advisory lock
(`pg_advisory_xact_lock`), the equivalent of SQLite's `BEGIN IMMEDIATE`. The store's rules do
read-modify-write on rows shared across agents and zones (per-agent seq heads, alarms with dedupe
keys, inter-zone transfers, record heads), and this keeps them exactly as correct as on SQLite.
Workers still scale the MQTT side (decoding, validation, acks, batching) and commits are group
commits; finer locks (per agent) are the next step if the database becomes the limit.

URL: `postgresql://user@host:5432/dbname` (libpq syntax; `?options=-csearch_path%3Dschema` selects a
schema). The password comes from `PGPASSWORD`, `~/.pgpass` or `PGPASSFILE`, never from a config.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg

from .store import SCHEMA, SqliteStore

WRITE_LOCK = 0x6566656E6365  # "efence": one advisory lock id for the hub's write transactions
SCHEMA_LOCK = WRITE_LOCK + 1


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

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
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
        with self.conn.cursor() as cur:
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
        self._db = PgConnection(conn)  # type: ignore[assignment]
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))  # workers starting together
        try:
            self._db.executescript(SCHEMA)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.conn.execute("ROLLBACK")
                raise
            self._db.conn.execute("COMMIT")

    def health(self) -> dict[str, Any]:
        with self._lock:
            ok = self._db.conn.execute("SELECT 1").fetchone() == (1,)
            counts = {
                t: int(self._db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608 - fixed
                for t in ("events", "transactions", "agents", "records")
            }
            counts["alarms_ringing"] = int(
                self._db.conn.execute("SELECT count(*) FROM alarms WHERE acked_at IS NULL").fetchone()[0]
            )
        return {"ok": ok, "url": _redact(self.url), "counts": counts}


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
