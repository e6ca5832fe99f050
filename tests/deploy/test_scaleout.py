"""Two hub workers (processes) share the event stream through an MQTT 5 shared subscription on the
generated Mosquitto set-up, storing into one PostgreSQL database; one is killed with SIGKILL in the
middle of the stream and restarted (as systemd would), and every event is stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from central_monitor.store_pg import PgStore

from .agentsim import SimAgent
from .conftest import SiteBroker

ROOT = Path(__file__).resolve().parents[2]
AGENTS = [("z1", "gate-1"), ("z1", "gate-2"), ("z2", "gate-1")]
PER_AGENT = 1500
RATE = 600.0  # events/s per agent: the stream lasts ~2.5 s


def start_worker(url: str, broker: SiteBroker, client_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EFENCE_MQTT_PASSWORD": broker.password("efence-hub"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.deploy.hub_worker",
            url,
            str(broker.plain_port),
            client_id,
            "efence-hub",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded by the worker's own 20 s connect timeout
    assert line.strip() == "ready", f"hub worker {client_id} did not start: {line!r}"
    return proc


async def test_two_workers_one_killed_mid_stream_store_every_event_exactly_once(
    site_broker: SiteBroker, pg_url: str
) -> None:
    PgStore(pg_url).close()  # schema in place before the workers race for it
    workers = {cid: start_worker(pg_url, site_broker, cid) for cid in ("efence-hub-a", "efence-hub-b")}
    agents = [
        SimAgent(z, c, site_broker.plain_port, site_broker.password(f"{z}/{c}"), PER_AGENT) for z, c in AGENTS
    ]
    stored_while_a_was_down = 0
    try:
        run = asyncio.gather(*(a.run(RATE, deadline_s=90) for a in agents))
        runner = asyncio.ensure_future(run)
        # kill worker A once the stream is well under way
        async with asyncio.timeout(30):
            while sum(a.published for a in agents) < len(agents) * PER_AGENT // 3:
                await asyncio.sleep(0.02)
        workers["efence-hub-a"].send_signal(signal.SIGKILL)
        workers["efence-hub-a"].wait(10)
        killed_at = sum(a.published for a in agents)
        before = _count(pg_url)
        await asyncio.sleep(1.0)  # B alone for a second
        stored_while_a_was_down = _count(pg_url) - before
        workers["efence-hub-a"] = await asyncio.to_thread(start_worker, pg_url, site_broker, "efence-hub-a")
        await asyncio.wait_for(runner, 120)
    finally:
        for p in workers.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
    print(
        f"killed at {killed_at}; B stored {stored_while_a_was_down} alone; resent {sum(a.resent for a in agents)}"
    )
    assert killed_at < len(agents) * PER_AGENT, "the kill did not happen mid-stream"
    assert stored_while_a_was_down > 0, "the surviving worker did not carry the stream alone"
    with psycopg.connect(pg_url) as db:
        rows = db.execute(
            "SELECT agent_id, count(*), count(DISTINCT seq), count(DISTINCT id), min(seq), max(seq) "
            "FROM events GROUP BY agent_id ORDER BY agent_id"
        ).fetchall()
        heads = dict(db.execute("SELECT agent_id, contiguous_seq FROM agent_seq").fetchall())
    assert rows == [(f"{z}/{c}", PER_AGENT, PER_AGENT, PER_AGENT, 1, PER_AGENT) for z, c in sorted(AGENTS)]
    assert heads == {f"{z}/{c}": PER_AGENT for z, c in AGENTS}
    assert all(a.acked == PER_AGENT for a in agents)
    # the kill really cost something that the protocol then recovered (resends), not a lucky no-op
    assert sum(a.resent for a in agents) > 0


def _count(url: str) -> int:
    with psycopg.connect(url) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
