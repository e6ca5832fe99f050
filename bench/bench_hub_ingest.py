"""Hub ingest through Mosquitto into SQLite, against the broker's raw delivery rate in the same run.

* Sustained ingest: 20 simulated agents (a separate process, paho, QoS 1, up to 20 messages in
  flight each, like outboxes draining) publish 10,000 events. The value is events per second from
  the first publish until the hub has *stored them and acknowledged* the last seq of every agent
  (HubAck, i.e. committed to SQLite with synchronous=FULL). Baseline, same publishers, same broker,
  same run: a bare aiomqtt subscriber that only counts deliveries. The ratio is what storing costs.
  Three rounds alternate baseline and hub (a shared machine's load changes hit both); medians.
* Latency: transactions paced at 1,000 events/s for 5 s from the publisher process; the value is the
  p99 time from publish to the committed row being pushed to the API's live stream.

Mosquitto is started privately on a free port with `max_queued_messages 0` and
`max_inflight_messages 0`: its defaults (1000 queued, 20 in flight) silently drop a fast QoS 1
stream to a Python subscriber (DESIGN.md), which would measure the broker's losses, not the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from central_monitor.ingest import Ingest, IngestConfig
from central_monitor.live import LiveBus
from central_monitor.store import SqliteStore
from efence.contract import HubAck, Topics, decode

AGENTS = 20
EVENTS = 10_000
ROUNDS = 3
LATENCY_RATE = 1_000
LATENCY_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _broker(tmp: Path) -> AsyncIterator[int]:  # type: ignore[misc]
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


# ------------------------------------------------------------------ publisher process
def _publisher_main(port: int, zone: str, agents: int, per_agent: int, rate: float) -> None:
    """Child process: connect every agent, print `ready`, wait for `go`, publish, print `done`."""
    import threading

    import paho.mqtt.client as mqtt

    from efence.contract import EventEnvelope

    clients, payloads = [], []
    for a in range(agents):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-agent-{zone}-{a}")
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
        agent_id = f"{zone}/cp{a}"
        kind = "transaction" if rate else "telemetry"
        payloads.append(
            [
                EventEnvelope.new(
                    agent_id=agent_id,
                    seq=s,
                    type=kind,
                    lane="L1",
                    payload={
                        "transaction_id": f"{agent_id}/{s}",
                        "verdict": "RELEASE",
                        "plate": f"沪A{s:05d}",
                    },
                )  # fmt: skip
                for s in range(1, per_agent + 1)
            ]
        )
    print("ready", flush=True)
    sys.stdin.readline()

    def drain(i: int) -> None:
        topic = Topics.events(zone, f"cp{i}")
        infos = [clients[i].publish(topic, p.to_bytes(), qos=1) for p in payloads[i]]
        for info in infos:
            info.wait_for_publish(60)

    if not rate:
        threads = [threading.Thread(target=drain, args=(i,)) for i in range(agents)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:  # paced: one message every 1/rate s, round robin over agents, publish time in the payload
        start = time.time()
        infos = []
        for n in range(agents * per_agent):
            due = start + n / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            i, s = n % agents, n // agents
            env = payloads[i][s].model_copy(
                update={"payload": {**payloads[i][s].payload, "inputs": {"sent_at": time.time()}}}
            )
            infos.append(clients[i].publish(Topics.events(zone, f"cp{i}"), env.to_bytes(), qos=1))
        for info in infos:
            info.wait_for_publish(60)
    print("done", flush=True)
    for c in clients:
        c.loop_stop()
        c.disconnect()


class _Publisher:
    def __init__(self, port: int, zone: str, agents: int, per_agent: int, rate: float = 0.0) -> None:
        cmd = [sys.executable, "-m", "bench.bench_hub_ingest", "--publish", str(port), zone, str(agents),
               str(per_agent), str(rate)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    async def ready(self) -> None:
        line = await asyncio.to_thread(self.proc.stdout.readline)  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"publisher failed to start: {line!r}")

    def go(self) -> float:
        self.proc.stdin.write("go\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return time.perf_counter()

    async def finish(self) -> None:
        await asyncio.to_thread(self.proc.wait, 120)


# ------------------------------------------------------------------ measurements
async def _raw_rate(port: int) -> tuple[float, int]:
    zone = f"bench-raw-{uuid.uuid4().hex[:6]}"
    total = EVENTS
    got, last = 0, 0.0
    done = asyncio.Event()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-raw-{uuid.uuid4().hex[:6]}") as sub:
        await sub.subscribe(Topics.events(zone, "+"), qos=1)
        pub = _Publisher(port, zone, AGENTS, EVENTS // AGENTS)
        await pub.ready()

        async def count() -> None:
            nonlocal got, last
            async for _ in sub.messages:
                got += 1
                last = time.perf_counter()
                if got >= total:
                    done.set()

        counter = asyncio.create_task(count())
        start = pub.go()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 60)
        counter.cancel()
        await pub.finish()
    return got / (last - start), got


async def publish_until_acked(
    port: int, zone: str, agents: int, per_agent: int, *, timeout_s: float
) -> tuple[float, float]:
    """Publish `agents × per_agent` events from a separate process and wait until the hub has acked every
    agent's last seq; returns (start, time of the last ack) from `time.perf_counter()`."""
    acked: dict[str, int] = {}
    all_acked = asyncio.Event()
    last = 0.0
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-acks-{uuid.uuid4().hex[:6]}") as watch:
        await watch.subscribe(Topics.ack(zone, "+"), qos=1)

        async def follow() -> None:
            nonlocal last
            async for m in watch.messages:
                ack = decode(HubAck, bytes(m.payload))
                acked[ack.agent_id] = max(acked.get(ack.agent_id, 0), ack.acked_seq)
                if len(acked) == agents and min(acked.values()) >= per_agent:
                    last = time.perf_counter()
                    all_acked.set()

        follower = asyncio.create_task(follow())
        pub = _Publisher(port, zone, agents, per_agent)
        await pub.ready()
        start = pub.go()
        try:
            await asyncio.wait_for(all_acked.wait(), timeout_s)
        except TimeoutError:
            last = time.perf_counter()
        follower.cancel()
        await pub.finish()
    return start, last


async def _hub_rate(port: int, db: Path) -> tuple[float, int, int]:
    zone = f"bench-hub-{uuid.uuid4().hex[:6]}"
    store = SqliteStore(db)
    ingest = Ingest(store, IngestConfig(port=port, client_id=f"bench-hub-{uuid.uuid4().hex[:6]}",
                                        persistent_session=False, gap_grace_s=5.0))  # fmt: skip
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(ingest.connected.wait(), 5)
    per_agent = EVENTS // AGENTS
    start, last = await publish_until_acked(port, zone, AGENTS, per_agent, timeout_s=120)
    stored = store.health()["counts"]["events"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.close()
    return stored / (last - start), stored, int(ingest.metrics.counters["batches"])


async def _latency(port: int, db: Path) -> tuple[float, float, int]:
    zone = f"bench-lat-{uuid.uuid4().hex[:6]}"
    store = SqliteStore(db)
    live = LiveBus(queue_size=100_000)
    ingest = Ingest(store, IngestConfig(port=port, client_id=f"bench-lat-{uuid.uuid4().hex[:6]}",
                                        persistent_session=False), live)  # fmt: skip
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(ingest.connected.wait(), 5)
    n_total = int(LATENCY_RATE * LATENCY_S)
    lat: list[float] = []
    async with live.subscribe() as q:

        async def collect() -> None:
            while len(lat) < n_total:
                item = await q.get()
                if item["type"] == "transaction":
                    sent = (item["data"].get("inputs") or {}).get("sent_at")
                    if sent is not None:
                        lat.append(time.time() - float(sent))

        collector = asyncio.create_task(collect())
        pub = _Publisher(port, zone, AGENTS, n_total // AGENTS, rate=LATENCY_RATE)
        await pub.ready()
        pub.go()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collector, LATENCY_S + 30)
        await pub.finish()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.close()
    lat.sort()
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)] * 1000 if lat else float("nan")
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    return p99, p50, len(lat)


async def _main() -> list[dict]:
    raws: list[float] = []
    hubs: list[float] = []
    raw_got, stored, batches = [], [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with _broker(tmp) as port:
            for i in range(ROUNDS):  # alternate, so a load change on a shared machine hits both sides
                raw, got = await _raw_rate(port)
                hub, n, b = await _hub_rate(port, tmp / f"hub{i}.db")
                raws.append(raw)
                hubs.append(hub)
                raw_got.append(got)
                stored.append(n)
                batches.append(b)
            p99, p50, n_lat = await _latency(port, tmp / "lat.db")
    ratios = sorted(h / r for h, r in zip(hubs, raws, strict=True))
    hub, raw = statistics.median(hubs), statistics.median(raws)
    per_agent = EVENTS // AGENTS
    return [
        {
            "benchmark": "hub_ingest_events_per_s",
            "value": round(hub),
            "unit": "events/s",
            "baseline": round(raw),
            "ratio": round(statistics.median(ratios), 2),
            "notes": f"median of {ROUNDS} alternating rounds (ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
            f"{AGENTS} agents x {per_agent} events (separate process, paho, QoS 1), private Mosquitto; "
            f"stored and acked {min(stored)}/{EVENTS} per round in ~{statistics.median(batches):.0f} group commits "
            f"(SQLite WAL, synchronous=FULL); baseline: bare aiomqtt subscriber, received {min(raw_got)}/{EVENTS}",
        },
        {
            "benchmark": "hub_ingest_latency_p99",
            "value": round(p99, 1),
            "unit": "ms",
            "baseline": 200,
            "ratio": round(p99 / 200, 2),
            "notes": f"publish → committed and pushed to the API live stream, transactions paced {LATENCY_RATE}/s "
            f"for {LATENCY_S:.0f} s ({n_lat} measured); p50 {p50:.1f} ms; baseline = issue 6 target, ratio < 1 meets it",
        },
    ]


def run() -> list[dict]:
    return asyncio.run(_main())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        port_, zone_, agents_, per_, rate_ = sys.argv[2:7]
        _publisher_main(int(port_), zone_, int(agents_), int(per_), float(rate_))
    else:
        for row in run():
            print(row)
