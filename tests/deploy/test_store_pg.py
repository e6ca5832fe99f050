"""The PostgreSQL hub store: the hub's own store tests, run unchanged on PostgreSQL, plus what only
a shared database has (two stores at once, selection by URL, schema created once)."""

from __future__ import annotations

import inspect

from central_monitor.store import HubStore, open_store
from central_monitor.store_pg import PgStore, table_info, translate
from efence.contract import EventEnvelope
from tests.hub import test_store as sqlite_suite

# every test of tests/hub/test_store.py that takes the `store` fixture runs here against PgStore
for _name, _fn in inspect.getmembers(sqlite_suite, inspect.isfunction):
    if _name.startswith("test_") and "store" in inspect.signature(_fn).parameters:
        globals()[f"{_name}__pg"] = _fn


def test_the_sqlite_suite_is_really_running_here() -> None:
    assert len([n for n in globals() if n.endswith("__pg")]) >= 12


def test_open_store_selects_postgresql_by_url(pg_url: str) -> None:
    s = open_store(pg_url)
    try:
        assert isinstance(s, PgStore) and isinstance(s, HubStore)
        h = s.health()
        assert h["ok"] and h["counts"]["events"] == 0
    finally:
        s.close()


def _ev(agent: str, seq: int) -> EventEnvelope:
    return EventEnvelope.new(agent_id=agent, seq=seq, type="telemetry", payload={"n": seq})


def test_two_stores_on_one_database_store_each_event_once(pg_url: str) -> None:
    """Two hub workers (two connections) ingesting interleaved halves and duplicates of one stream."""
    import threading

    a, b = PgStore(pg_url), PgStore(pg_url)  # the second one finds the schema already there
    try:
        evs = [_ev("zz/gate-1", i) for i in range(1, 401)]
        halves = (evs[0::2] + evs[:50], evs[1::2] + evs[:50])  # both also get 50 duplicates

        def work(store: PgStore, batch: list[EventEnvelope]) -> None:
            for i in range(0, len(batch), 20):
                store.ingest(batch[i : i + 20])

        threads = [threading.Thread(target=work, args=(s, h)) for s, h in zip((a, b), halves, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert a.health()["counts"]["events"] == 400
        assert a.contiguous_seq("zz/gate-1") == 400 == b.contiguous_seq("zz/gate-1")
    finally:
        a.close()
        b.close()


def test_a_dropped_connection_is_opened_again_between_transactions(pg_url: str) -> None:
    """PostgreSQL restarted or an idle connection killed: the worker must not fail every commit until
    someone restarts it. Killed from outside with pg_terminate_backend, as a restart would."""
    import psycopg

    s = PgStore(pg_url)
    try:
        s.ingest([_ev("zz/gate-1", i) for i in range(1, 11)])
        pid = s._db.conn.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        res = s.ingest([_ev("zz/gate-1", i) for i in range(11, 21)])
        assert res.inserted == 10 and res.contiguous.get("zz/gate-1") == 20
        assert s._db.conn.info.backend_pid != pid
        assert s.health()["counts"]["events"] == 20
        assert s.contiguous_seq("zz/gate-1") == 20
    finally:
        s.close()


def test_sql_translation() -> None:
    assert translate("INSERT OR IGNORE INTO events VALUES (?,?)", True)[0].endswith("ON CONFLICT DO NOTHING")
    q, _ = translate("INSERT OR REPLACE INTO event_gaps VALUES (?,?,?,?)", True)
    assert "ON CONFLICT (agent_id, from_seq) DO UPDATE SET to_seq=excluded.to_seq" in q
    assert "GREATEST(a, b)" in translate("SELECT max(a, b), max(c) FROM t", False)[0]
    assert "max(c)" in translate("SELECT max(a, b), max(c) FROM t", False)[0]
    assert translate("SELECT 1 FROM t WHERE p LIKE ?", True)[0] == "SELECT 1 FROM t WHERE p ILIKE %s"
    assert translate("INSERT INTO alarms (kind) VALUES (?)", True) == (
        "INSERT INTO alarms (kind) VALUES (%s) RETURNING id",
        True,
    )
    assert table_info()["alarms"][2] and not table_info()["events"][2]
