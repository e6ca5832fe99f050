"""Hub ingest scale-out: 1, 2 and 4 hub workers (processes) on PostgreSQL sharing the event stream
through an MQTT 5 shared subscription, as ratios to one worker on SQLite measured in the same run.

Same load as bench_hub_ingest (whose broker, publisher process and SQLite measurement are reused by
import): 20 agents x 500 events, QoS 1, private Mosquitto with the no-drop limits. The value is
events per second from the first publish until every agent's last seq is stored *and acknowledged*
(HubAck = contiguous seq committed in the shared store). The SQLite figure is taken before and after
the PostgreSQL rounds and averaged, so load drifting on a shared machine hits both sides.

A second set of rows takes MQTT out: 1, 2 and 4 writer processes call `PgStore.ingest` directly
(6,000 telemetry events of 20 agents, batches of 100 mixing all agents, each writer its own share),
against one in-process `SqliteStore` writer on the same events. That isolates what the write path
itself does with parallel workers.

Read the ratios with the machine in mind: broker, publisher, PostgreSQL and every worker share its
cores. Workers commit in parallel (store_pg.py: per-agent locks, the batch inserted before them);
with this load every batch of every worker holds events of most of the 20 agents, so the per-agent
part of the commits (seq heads, acks) still queues, while decoding and the inserts overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.bench_hub_ingest import AGENTS, EVENTS, _broker, _hub_rate, publish_until_acked

PG_ADMIN = os.environ.get("EFENCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WORKERS = (1, 2, 4)
ROOT = Path(__file__).resolve().parents[1]


def _worker_main(store_url: str, port: int, client_id: str) -> None:
    """Child process: one hub ingest worker in the shared-subscription group; prints `ready`."""
    from central_monitor.ingest import Ingest, IngestConfig
    from central_monitor.store import open_store

    async def main() -> None:
        ingest = Ingest(
            open_store(store_url),
            IngestConfig(port=port, client_id=client_id, shared_group="efence-hub", persistent_session=False,
                         gap_grace_s=5.0),
        )  # fmt: skip
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 20)
        print("ready", flush=True)
        await task

    asyncio.run(main())


@contextlib.contextmanager
def _database():
    import psycopg

    name = f"efence_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _pg_rate(port: int, workers: int) -> tuple[float, int]:
    from central_monitor.store_pg import PgStore

    zone = f"bench-so-{uuid.uuid4().hex[:6]}"
    per_agent = EVENTS // AGENTS
    with _database() as url:
        PgStore(url).close()  # schema first, so workers do not queue on it
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.bench_scaleout",
                    "--worker",
                    url,
                    str(port),
                    f"bench-so-{uuid.uuid4().hex[:6]}",
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            for _ in range(workers)
        ]
        try:
            for p in procs:
                line = await asyncio.to_thread(p.stdout.readline)  # type: ignore[union-attr]
                if line.strip() != "ready":
                    raise RuntimeError(f"hub worker failed to start: {line!r}")
            start, last = await publish_until_acked(port, zone, AGENTS, per_agent, timeout_s=180)
            import psycopg

            with psycopg.connect(url) as db:
                stored = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
    return stored / (last - start), stored


STORE_AGENTS, STORE_PER_AGENT, STORE_BATCH = 20, 300, 100


def _store_events() -> list:
    from efence.contract import EventEnvelope

    return [
        EventEnvelope.new(agent_id=f"bench-store/cp{a}", seq=s, type="telemetry", payload={"n": s})
        for s in range(1, STORE_PER_AGENT + 1)
        for a in range(STORE_AGENTS)
    ]


def _ingest_all(store, events: list) -> None:  # noqa: ANN001
    for i in range(0, len(events), STORE_BATCH):
        store.ingest(events[i : i + STORE_BATCH])


def _store_writer_main(url: str, part: int, writers: int) -> None:
    """Child process: ingest every `writers`-th event from `part` on once `go` arrives; prints the end time."""
    import time

    from central_monitor.store_pg import PgStore

    store = PgStore(url)
    mine = _store_events()[part::writers]
    print("ready", flush=True)
    sys.stdin.readline()
    _ingest_all(store, mine)
    print(time.time(), flush=True)
    store.close()


def _store_rates() -> tuple[float, dict[int, tuple[float, int]]]:
    """SQLite (one in-process writer) and PostgreSQL with 1/2/4 writer processes, events/s."""
    import time

    from central_monitor.store import SqliteStore
    from central_monitor.store_pg import PgStore

    events = _store_events()
    with tempfile.TemporaryDirectory() as tmp:
        sq = SqliteStore(Path(tmp) / "store.db")
        t0 = time.perf_counter()
        _ingest_all(sq, events)
        sqlite_rate = len(events) / (time.perf_counter() - t0)
        sq.close()
    pg: dict[int, tuple[float, int]] = {}
    for writers in WORKERS:
        with _database() as url:
            PgStore(url).close()
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            cmd = [sys.executable, "-m", "bench.bench_scaleout", "--store-writer", url]
            procs = [
                subprocess.Popen(
                    [*cmd, str(i), str(writers)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )  # fmt: skip
                for i in range(writers)
            ]
            try:
                for p in procs:
                    if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                        raise RuntimeError("store writer failed to start")
                start = time.time()
                for p in procs:
                    p.stdin.write("go\n")  # type: ignore[union-attr]
                    p.stdin.flush()  # type: ignore[union-attr]
                ends = [float(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
                import psycopg

                with psycopg.connect(url) as db:
                    stored = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
            finally:
                for p in procs:
                    p.wait(30)
            pg[writers] = (stored / (max(ends) - start), stored)
    return sqlite_rate, pg


async def _main() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with _broker(tmp) as port:
            sqlite_before, n0, _ = await _hub_rate(port, tmp / "before.db")
            pg = {w: await _pg_rate(port, w) for w in WORKERS}
            sqlite_after, n1, _ = await _hub_rate(port, tmp / "after.db")
    base = (sqlite_before + sqlite_after) / 2
    rows = [
        {
            "benchmark": "scaleout_sqlite_1_worker",
            "value": round(base),
            "unit": "events/s",
            "baseline": round(base),
            "ratio": 1.0,
            "notes": f"one hub worker on SQLite (in-process, as bench_hub_ingest); before {sqlite_before:.0f}, "
            f"after {sqlite_after:.0f} events/s; stored {min(n0, n1)}/{EVENTS}",
        }
    ]
    for w, (rate, stored) in pg.items():
        rows.append(
            {
                "benchmark": f"scaleout_postgresql_{w}_worker{'s' if w > 1 else ''}",
                "value": round(rate),
                "unit": "events/s",
                "baseline": round(base),
                "ratio": round(rate / base, 2),
                "notes": f"{w} worker process(es), shared subscription $share/efence-hub, one PostgreSQL database; "
                f"stored {stored}/{EVENTS} (exactly once: events keyed by id); {os.cpu_count()} CPUs shared by "
                "broker, publisher and workers",
            }
        )
    sqlite_store, pg_store = _store_rates()
    total = STORE_AGENTS * STORE_PER_AGENT
    rows.append(
        {
            "benchmark": "scaleout_store_sqlite_1_writer",
            "value": round(sqlite_store),
            "unit": "events/s",
            "baseline": round(sqlite_store),
            "ratio": 1.0,
            "notes": f"SqliteStore.ingest directly (no MQTT), {total} events of {STORE_AGENTS} agents, "
            f"batches of {STORE_BATCH}",
        }
    )
    for w, (rate, stored) in pg_store.items():
        rows.append(
            {
                "benchmark": f"scaleout_store_postgresql_{w}_writer{'s' if w > 1 else ''}",
                "value": round(rate),
                "unit": "events/s",
                "baseline": round(sqlite_store),
                "ratio": round(rate / sqlite_store, 2),
                "notes": f"PgStore.ingest directly from {w} process(es), each its share of every batch "
                f"(all agents in every batch); stored {stored}/{total}",
            }
        )
    return rows


def run() -> list[dict]:
    return asyncio.run(_main())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--store-writer":
        _store_writer_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        for row in run():
            print(row)
