"""Benchmark of the edge agent (issue 5 §8): last observation → barrier command with a million gate passes
in the record cache, the record lookup at that size, outbox throughput, and the agent's memory and idle CPU.

`run()` returns rows for `python -m bench`. The lane is the real `LaneRuntime` of the shipped
yangshan-port zone with the real `RecordCache` (SQLite, `EFENCE_BENCH_PASSES` gate passes, default one
million, plus the trucks' own records from `TrafficGenerator`) and the real `Outbox` (WAL,
synchronous=FULL: every decision is on disk before the barrier command). Only the IO board is a stand-in
that notes the moment `command(BarrierPulse(open))` is called — the Modbus round trip after it is
`bench_devices_io`'s. Baselines come from the same run: the lookup against the same query on an empty
cache, the outbox against bare SQLite inserts with the same durability, the agent's memory against the
bare interpreter with the same imports.
"""

import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import gate_controller as gc
from edge_agent.lane_runtime import LaneRuntime, _Pending
from edge_agent.outbox import Outbox
from edge_agent.record_cache import RecordCache, _terms
from efence.contract import RecordKind
from efence.embedded_broker import free_port
from firmware_configs.devices import IoBoardConfig
from firmware_configs.loader import load_zone
from simulators.traffic import Anomalies, TrafficGenerator

ROOT = Path(__file__).resolve().parent.parent
ZONE_FILE = ROOT / "firmware_configs" / "zones" / "yangshan-port.yaml"
PASSES = int(os.environ.get("EFENCE_BENCH_PASSES", "1000000"))
VEHICLES = int(os.environ.get("EFENCE_BENCH_VEHICLES", "200"))


class _IoStandIn:
    """The lane's IO board: records when the barrier command was issued, answers at once."""

    def __init__(self, config: IoBoardConfig) -> None:
        self.config = config
        self.opened_at: float | None = None
        self.opened = asyncio.Event()
        self.health = type("H", (), {"observed": "up"})()

    async def command(self, cmd: Any) -> None:
        if getattr(cmd, "action", None) == "open" and self.opened_at is None:
            self.opened_at = time.perf_counter()
            self.opened.set()

    def status(self) -> Any:
        return None


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _fill_cache(path: Path, zone: str, n: int, extra: list[tuple[str, str, dict[str, Any]]]) -> float:
    """n synthetic gate passes (distinct plates, e-plates, containers) and the trucks' real records, written
    straight into the cache's tables with the cache's own term index. Returns seconds taken."""
    cache = RecordCache(path, zone)  # creates the schema
    cache.close()
    t0 = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # loading only; the benchmark reopens it as the agent does
    db.execute("BEGIN")

    def rows():
        for i in range(n):
            rec = {
                "passportNo": f"B{i:023d}",
                "vehicleNo": f"沪X{i:07d}",
                "vehicleIcNo": f"E2{i:022X}",
                "containerNo": f"BNCH{i % 10_000_000:07d}",
                "ioTypecd": "I",
                "passportTypecd": "1",
                "zoneId": zone,
                "stucd": "1",
            }
            yield RecordKind.GATE_PASS.value, rec["passportNo"], rec
        yield from extra

    seq = 0
    batch_r: list[tuple] = []
    batch_t: list[tuple] = []
    for kind, key, rec in rows():
        seq += 1
        batch_r.append((kind, key, json.dumps(rec, ensure_ascii=False), seq))
        batch_t.extend((t, kind, key) for t in _terms(kind, rec))
        if len(batch_r) >= 50_000:
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", batch_r)
            db.executemany("INSERT OR IGNORE INTO record_terms VALUES (?, ?, ?)", batch_t)
            batch_r, batch_t = [], []
    db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", batch_r)
    db.executemany("INSERT OR IGNORE INTO record_terms VALUES (?, ?, ?)", batch_t)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    db.executemany("INSERT OR REPLACE INTO record_meta VALUES (?, ?)", [("seq", str(seq)), ("as_of", now)])
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - t0


async def _drive_vehicles(new_lane: Any, trips: list[Any]) -> tuple[list, list]:
    """Each truck on a fresh lane (a new controller on the same outbox and cache: no need to model the
    drive-through): arming loop and every read but the last, wait until its records are answered (a truck
    takes seconds to settle on the bridge, the lookup milliseconds), then the stable weight — the last
    observation — timed to the open command. Returns (latencies, lookup times) in seconds."""
    latencies, lookups = [], []
    for trip in trips:
        runtime, io = new_lane()
        task = asyncio.create_task(runtime._consume())
        try:
            await _one_vehicle(runtime, io, trip, latencies, lookups)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return latencies, lookups


async def _one_vehicle(
    runtime: LaneRuntime, io: "_IoStandIn", trip: Any, latencies: list, lookups: list
) -> None:
    has_boxes = any(d.type == "container_camera" for d in runtime.lane.devices)
    if True:
        v = trip.vehicle
        reads: list[gc.Event] = [
            gc.LoopChanged(loop="arming", occupied=True),
            gc.PlateRead(plate=v.plate, confidence=0.97),
        ]
        if v.epc:
            reads.append(gc.EPlateRead(epc=v.epc))
        if v.driver_card:
            reads.append(gc.DriverCardRead(card_id=v.driver_card))
        if has_boxes:
            for pos, number in zip(("front", "back"), v.containers, strict=True):
                if number:
                    reads.append(gc.ContainerRead(position=pos, number=number, confidence=0.95))
        if v.seal_id:
            reads.append(gc.SealRead(seal_id=v.seal_id, state="intact"))
        t_ident = time.perf_counter()
        for event in reads:
            runtime.inbox.put_nowait(_Pending(event))
        for _ in range(2000):  # the records answer (the last identity's lookup) has been handled
            await asyncio.sleep(0)
            txn = runtime.controller.state.txn
            if runtime.inbox.empty() and txn is not None and txn.view is not None:
                break
            await asyncio.sleep(0.0005)
        lookups.append(time.perf_counter() - t_ident)
        await asyncio.sleep(0.002)
        t_last = time.perf_counter()
        runtime.inbox.put_nowait(_Pending(gc.WeightRead(kg=v.gross_kg, stable=True)))
        # wait without spinning: a busy loop would hold the GIL the outbox's SQLite thread needs
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await io.opened.wait()
        txn = runtime.controller.state.txn
        decision = txn.decision if txn is not None else None
        if io.opened_at is None and decision is not None and decision.verdict is not gc.Verdict.RELEASE:
            return  # the random inspection draw (0.5 %) held it: no barrier command to time
        if io.opened_at is None:
            raise RuntimeError(
                f"no open command for {v.plate}: phase {runtime.controller.state.phase}, "
                f"txn {runtime.controller.state.txn}"
            )
        latencies.append(io.opened_at - t_last)


async def _lane_latency(tmp: Path) -> dict[str, Any]:
    zone = load_zone(ZONE_FILE)
    cp = zone.checkpoints[0]
    lane = next(x for x in cp.lanes if any(d.type == "weighbridge" for d in x.devices))
    gen = TrafficGenerator(  # a fleet as large as the run: each truck once, so it has one open pass
        zone,
        seed=3,
        anomalies=Anomalies(misread_plate=0, overweight=0, no_pass=0, blacklisted=0),
        fleet_size=VEHICLES,
    )
    trips = [gen.trip(lane) for _ in range(VEHICLES)]
    extra = list(gen.base_records()) + [r for t in trips for r in t.records]
    fill_s = _fill_cache(tmp / "records.sqlite", zone.id, PASSES, extra)
    records = RecordCache(tmp / "records.sqlite", zone.id)
    outbox = Outbox(tmp / "outbox.sqlite", f"{zone.id}/{cp.id}")
    io_cfg = next(d for d in lane.devices if isinstance(d, IoBoardConfig))
    epoch = gc.EpochKey(epoch_id="bench", key=b"b" * 32)

    box = outbox  # the second half of the run swaps in an outbox on tmpfs (below)

    def new_lane() -> tuple[LaneRuntime, _IoStandIn]:
        io = _IoStandIn(io_cfg)
        runtime = LaneRuntime(
            zone=zone,
            checkpoint=cp,
            lane=lane,
            outbox=box,
            records=records,
            is_online=lambda: True,
            records_fresh_at=lambda: None,
            drivers={io_cfg.id: io},
            evidence_dir=tmp / "evidence",
        )
        runtime.install_epoch(epoch)
        return runtime, io

    await _drive_vehicles(new_lane, trips[:10])  # warm-up: page cache, code paths
    half = 10 + (len(trips) - 10) // 2
    latencies, lookups = await _drive_vehicles(new_lane, trips[10:half])
    # the same path with the outbox on tmpfs, where fsync costs next to nothing: what is left is the
    # agent's own work (controller, record view, outbox transaction), without the disk's durability floor
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp
    with tempfile.TemporaryDirectory(dir=shm) as ram:
        box = Outbox(Path(ram) / "outbox.sqlite", f"{zone.id}/{cp.id}")
        try:
            own, _ = await _drive_vehicles(new_lane, trips[half:])
        finally:
            box.close()
    # the lookup alone, at this cache size and on an empty cache (baseline)
    probe = trips[-1].vehicle
    lookup_full = await _time_lookup(records, probe)
    count = (await records.state()).count
    records.close()
    outbox.close()
    empty = RecordCache(tmp / "empty.sqlite", zone.id)
    try:
        lookup_empty = await _time_lookup(empty, probe)
    finally:
        empty.close()
    return {
        "latencies": latencies,
        "own": own,
        "lookups": lookups,
        "lookup_full": lookup_full,
        "lookup_empty": lookup_empty,
        "fill_s": fill_s,
        "count": count,
    }


async def _time_lookup(records: RecordCache, v: Any, n: int = 300) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await records.related(
            plate=v.plate, epc=v.epc, card=v.driver_card, containers=list(filter(None, v.containers))
        )
        out.append(time.perf_counter() - t0)
    return out


async def _outbox_throughput(tmp: Path, n: int = 2000) -> tuple[float, float, list[float]]:
    """Events/s through `Outbox.append` (one transaction and fsync each, as the lane does) against bare
    `INSERT` + commit on a connection with the same pragmas, same thread model (one worker thread)."""
    box = Outbox(tmp / "tp.sqlite", "bench/agent")
    payload = {"verdict": "RELEASE", "reasons": [], "plate": "沪A12345", "pad": "x" * 600}
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            await box.append("transaction", payload)
        outbox_rate = n / (time.perf_counter() - t0)
    finally:
        box.close()

    from edge_agent.sqlite_thread import SqliteThread

    raw = SqliteThread(tmp / "raw.sqlite", name="raw")
    raw.call(lambda c: c.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)"))
    body = json.dumps(payload).encode()

    def insert(c: sqlite3.Connection) -> None:
        c.execute("BEGIN")
        c.execute("INSERT INTO t (body) VALUES (?)", (body,))
        c.execute("COMMIT")

    commits: list[float] = []
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            t1 = time.perf_counter()
            await raw.run(insert)
            commits.append(time.perf_counter() - t1)
        raw_rate = n / (time.perf_counter() - t0)
    finally:
        raw.close()
    return outbox_rate, raw_rate, commits


def _idle_agent_probe(seconds: float = 10.0) -> tuple[float, float, float]:
    """A real `efence edge` process of the shipped zone, idle (no traffic, its broker absent so the uplink
    keeps retrying, devices unreachable): (RSS MiB, CPU % of one core over `seconds`, bare interpreter RSS)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as d:
        zone = load_zone(ZONE_FILE)
        data = zone.model_dump(mode="json")
        cp = data["checkpoints"][0]
        data["checkpoints"] = [cp]
        cp["agent"].update(
            broker_url="mqtt://127.0.0.1:9",
            hub_url="http://127.0.0.1:9",
            data_dir=str(Path(d) / "edge"),
            command_key_file=str(Path(d) / "key"),
            command_key_env="EFENCE_BENCH_KEY_UNSET",
            device_http_host="127.0.0.1",
            device_http_port=free_port(),
            metrics_port=None,
        )
        (Path(d) / "key").write_text("ab" * 32)
        import yaml

        cfg = Path(d) / "zone.yaml"
        cfg.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from efence.cli import main; main()",
                "edge",
                "--config",
                str(cfg),
                "--log-level",
                "ERROR",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(8.0)  # start-up: imports, config, first reconnect attempts
            if proc.poll() is not None:
                raise RuntimeError(f"idle agent exited with {proc.returncode}")
            stat = Path(f"/proc/{proc.pid}/stat")
            tick = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                f = stat.read_text().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / tick

            c0, t0 = cpu(), time.monotonic()
            time.sleep(seconds)
            cpu_pct = 100 * (cpu() - c0) / (time.monotonic() - t0)
            rss = 0.0
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
        finally:
            proc.terminate()
            proc.wait(10)
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            # VmRSS, not ru_maxrss: Linux carries the forking parent's high-water mark across exec
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return rss, cpu_pct, int(bare.stdout.strip()) / 1024


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lane = asyncio.run(_lane_latency(tmp))
        outbox_rate, raw_rate, commits = asyncio.run(_outbox_throughput(tmp))
    rss, cpu_pct, bare_rss = _idle_agent_probe()
    lat, look_full, look_empty = lane["latencies"], lane["lookup_full"], lane["lookup_empty"]
    size = f"{lane['count']:,} records in the cache ({PASSES:,} synthetic gate passes + the trucks' own)"
    p99 = _percentile(lat, 0.99) * 1e3
    commit_p50, commit_p99 = _percentile(commits, 0.50) * 1e3, _percentile(commits, 0.99) * 1e3
    target = "meets" if p99 < 2.0 else "misses"
    return [
        {
            "benchmark": "edge: last observation → barrier command p50",
            "value": round(_percentile(lat, 0.50) * 1e3, 3),
            "unit": "ms",
            "baseline": round(commit_p50, 3),
            "ratio": round(_percentile(lat, 0.50) * 1e3 / commit_p50, 2),
            "notes": f"{len(lat)} trucks through the real LaneRuntime, the decision committed (fsync) before "
            f"the command; baseline: one bare SQLite commit, same pragmas and thread, p50; {size}",
        },
        {
            "benchmark": "edge: last observation → barrier command p99",
            "value": round(p99, 3),
            "unit": "ms",
            "baseline": round(commit_p99, 3),
            "ratio": round(p99 / commit_p99, 2),
            "notes": f"{target} the issue's 2 ms target; baseline: one bare SQLite commit p99 (the disk's "
            f"durability floor, which the decision must pay); {size}",
        },
        {
            "benchmark": "edge: last observation → barrier command p99, outbox on tmpfs",
            "value": round(_percentile(lane["own"], 0.99) * 1e3, 3),
            "unit": "ms",
            "baseline": round(p99, 3),
            "ratio": round(_percentile(lane["own"], 0.99) * 1e3 / p99, 2),
            "notes": f"{'meets' if _percentile(lane['own'], 0.99) * 1e3 < 2.0 else 'misses'} the 2 ms target "
            f"without the disk: the agent's own work (controller, record view with the {lane['count']:,}-record "
            f"cache, outbox transaction); baseline: the on-disk p99 above; {len(lane['own'])} trucks",
        },
        {
            "benchmark": "edge: record lookup p99 (plate, e-plate, card, containers)",
            "value": round(_percentile(look_full, 0.99) * 1e3, 3),
            "unit": "ms",
            "baseline": round(_percentile(look_empty, 0.99) * 1e3, 3),
            "ratio": round(_percentile(look_full, 0.99) / _percentile(look_empty, 0.99), 2),
            "notes": f"RecordCache.related via its SQLite thread; baseline: same query on an empty cache; {size}",
        },
        {
            "benchmark": "edge: identity reads → records answered p99",
            "value": round(_percentile(lane["lookups"], 0.99) * 1e3, 3),
            "unit": "ms",
            "baseline": None,
            "ratio": None,
            "notes": "arming + 3-7 reads queued at once, until the controller holds the record view (one lookup per new identity)",
        },
        {
            "benchmark": "edge: outbox append throughput",
            "value": round(outbox_rate),
            "unit": "events/s",
            "baseline": round(raw_rate),
            "ratio": round(outbox_rate / raw_rate, 3),
            "notes": "one durable transaction per event (seq, priority, envelope); baseline: bare INSERT+COMMIT, same pragmas and thread",
        },
        {
            "benchmark": "edge: idle agent memory (RSS)",
            "value": round(rss, 1),
            "unit": "MiB",
            "baseline": round(bare_rss, 1),
            "ratio": round(rss / bare_rss, 2),
            "notes": "`efence edge` of the shipped port-gate checkpoint, 10 s after start, no traffic; baseline: a bare Python interpreter",
        },
        {
            "benchmark": "edge: idle agent CPU",
            "value": round(cpu_pct, 2),
            "unit": "% of one core",
            "baseline": None,
            "ratio": None,
            "notes": "same process over 10 s: lane clocks, housekeeping, reconnect attempts to an absent broker and devices",
        },
        {
            "benchmark": "edge: building the million-pass cache",
            "value": round(lane["fill_s"], 1),
            "unit": "s",
            "baseline": None,
            "ratio": None,
            "notes": "set-up cost of this benchmark (bulk insert with the cache's term index), not an agent path",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
