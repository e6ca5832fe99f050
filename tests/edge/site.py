"""A whole checkpoint for failure tests: a private Mosquitto, the hub, lane simulators with traffic, and
the checkpoint's edge agent as a separate `efence edge` PROCESS — so `kill -9` is a real kill -9.

Everything the tests break can be stopped and started again on the same port and the same files:

    async with CheckpointSite(tmp_path) as site:    # broker + hub + simulators + agent, traffic off
        site.start_traffic()
        await site.wait_for(lambda: site.hub_counts()["transaction"] >= 3, 60, "first decisions")
        site.kill_agent()                            # SIGKILL, no clean-up of any kind
        await site.start_agent()
        await site.stop_broker(); await site.start_broker()
        await site.stop_hub(); await site.start_hub()
        await site.drain()                           # traffic off, every outbox event acked by the hub
        site.assert_delivered_exactly_once()

The hub runs in this process (`HubRunner`, SQLite file); the simulators and the traffic feeder too, as
in `efence demo`. Only the agent is out of process. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from central_monitor.runner import HubRunner
from efence.commands.edge import _fetch_status
from efence.contract import RecordKind
from efence.demo import LaneRig, start_cameras, start_lane_rig
from efence.embedded_broker import free_port
from efence.mosquitto import private_mosquitto
from firmware_configs.loader import load_zone
from firmware_configs.schema import Zone
from simulators.traffic import Anomalies, TrafficGenerator

REPO = Path(__file__).resolve().parents[2]
ZONE_FILE = REPO / "firmware_configs" / "zones" / "yangshan-port.yaml"
LOCAL = "127.0.0.1"


class CheckpointSite:
    def __init__(
        self,
        tmp: Path,
        *,
        zone_file: Path = ZONE_FILE,
        checkpoint: str = "port-gate",
        max_record_age_s: float = 3600.0,
        headway_s: tuple[float, float] = (0.5, 2.0),
        patience_s: float = 8.0,
        outbox_capacity: int | None = None,
        outbox_max_age_h: float | None = None,
        hub_process: bool = False,
        seed: int = 7,
    ) -> None:
        self.tmp = tmp
        self.zone: Zone = load_zone(zone_file)
        self.cp = self.zone.checkpoint(checkpoint)
        self.agent_id = f"{self.zone.id}/{self.cp.id}"
        self.max_record_age_s = max_record_age_s
        self.headway_s = headway_s
        self.patience_s = patience_s
        self.outbox_capacity = outbox_capacity or self.cp.agent.outbox_capacity
        self.outbox_max_age_h = outbox_max_age_h or self.cp.agent.outbox_max_age_h
        self.seed = seed
        self.key = secrets.token_bytes(32)
        self.broker_port = free_port()
        self.hub_port = free_port()
        self.receiver_port = free_port()
        self.metrics_port = free_port()
        self.broker_url = f"mqtt://{LOCAL}:{self.broker_port}"
        self.hub_url = f"http://{LOCAL}:{self.hub_port}"
        self.hub_db = tmp / "hub.sqlite"
        self.data_dir = tmp / "edge"
        self.config_file = tmp / "zone.yaml"
        self.agent_log = tmp / "agent.log"
        self.broker_stack: contextlib.ExitStack | None = None
        self.hub: HubRunner | None = None
        self.agent: subprocess.Popen | None = None
        self.rigs: list[LaneRig] = []
        self.generator = TrafficGenerator(
            self.zone, seed=seed, anomalies=Anomalies(misread_plate=0, overweight=0, no_pass=0, blacklisted=0)
        )
        self.trips: dict[str, Any] = {}  # plate → trip, for tests that drive one vehicle by hand
        self._tasks: list[asyncio.Task] = []
        self._traffic: list[asyncio.Task] = []
        self.kills = 0
        # the hub as a separate `efence hub run` process (so it too can get a real kill -9); its records are
        # then imported before it starts, for trips drawn up front, since the test cannot reach its store
        self.hub_process = hub_process
        self.hub_proc: subprocess.Popen | None = None
        self.hub_log = tmp / "hub.log"
        self.hub_kills = 0
        self.planned: dict[str, list[Any]] = {}  # lane id → trips whose records the hub already holds

    # ------------------------------------------------------------------ whole site
    async def __aenter__(self) -> CheckpointSite:
        await self.start_broker()
        if self.hub_process:
            self._import_planned_records()
        await self.start_hub()
        if self.hub is not None:
            await self.hub.import_records(self.zone.id, self.generator.base_records())
        for i, lane in enumerate(self.cp.lanes):
            rig = await start_lane_rig(self.zone, self.cp, lane, seed=self.seed * 100 + i)
            self.rigs.append(rig)
            for sim in rig.sims:
                if hasattr(sim, "run"):
                    self._tasks.append(asyncio.create_task(sim.run(), name=f"sim {rig.key}"))
            await start_cameras(rig, self.receiver_port)
        self._write_config()
        await self.start_agent()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_traffic()
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.agent.wait, 10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                await asyncio.to_thread(self.agent.wait, 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for rig in self.rigs:
            for sim in rig.sims:
                with contextlib.suppress(Exception):
                    await (sim.stop() if hasattr(sim, "stop") else sim.close())
        await self.stop_hub()
        await self.stop_broker()

    def _import_planned_records(self, trips_per_lane: int = 40) -> None:
        """Hub-process mode: the base records and those of the next trips of every lane, into the hub's
        store before the hub process opens it (the agent pulls them as a snapshot on connecting)."""
        records = list(self.generator.base_records())
        for lane in self.cp.lanes:
            self.planned[lane.id] = [self.generator.trip(lane) for _ in range(trips_per_lane)]
            for trip in self.planned[lane.id]:
                records.extend(trip.records)
        runner = HubRunner(db_url=f"sqlite:///{self.hub_db}", broker_url=self.broker_url, host=LOCAL, port=0)
        try:
            groups: dict[Any, list[dict[str, Any]]] = {}
            for kind, _key, rec in records:
                groups.setdefault(RecordKind(kind), []).append(rec)
            runner.store.import_many(self.zone.id, list(groups.items()), "test")
        finally:
            runner.store.close()

    def _write_config(self) -> None:
        """The shipped zone, reduced to this checkpoint, with every endpoint pointed at its simulator."""
        data = self.zone.model_dump(mode="json")
        cp = next(c for c in data["checkpoints"] if c["id"] == self.cp.id)
        data["checkpoints"] = [cp]
        cp["agent"].update(
            broker_url=self.broker_url,
            hub_url=self.hub_url,
            data_dir=str(self.data_dir),
            command_key_file=str(self.tmp / "command.key"),
            command_key_env="EFENCE_TEST_COMMAND_KEY_UNSET",
            device_http_host=LOCAL,
            device_http_port=self.receiver_port,
            metrics_port=self.metrics_port,
            status_interval_s=2.0,
            max_record_age_s=self.max_record_age_s,
            outbox_capacity=self.outbox_capacity,
            outbox_max_age_h=self.outbox_max_age_h,
        )
        for lane in cp["lanes"]:
            rig = next(r for r in self.rigs if r.lane.id == lane["id"])
            for device in lane["devices"]:
                device.update(rig.endpoints.get(device["id"], {}))
        (self.tmp / "command.key").write_text(self.key.hex())
        self.config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))

    # ------------------------------------------------------------------ the agent process
    async def start_agent(self) -> None:
        assert self.agent is None or self.agent.poll() is not None, "agent already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        env.pop("EFENCE_TEST_COMMAND_KEY_UNSET", None)
        log = self.agent_log.open("ab")
        log.write(f"----- agent start #{self.kills + 1} at {time.time():.3f}\n".encode())
        log.flush()
        self.agent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from efence.cli import main; main()",
                "edge",
                "--config",
                str(self.config_file),
                "--log-level",
                "INFO",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        # up = its receiver answers (cameras can push) and its retained status says this run is online
        started = datetime.now(UTC) - timedelta(seconds=1)
        await self.wait_for(self._agent_ready, 60, "agent process to come up")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.broker_stack is None:
                return  # no broker to connect to: the agent is up, its uplink keeps retrying
            with contextlib.suppress(Exception):
                found = await _fetch_status(self.broker_url, self.agent_id, 0.3)
                if found and found[0].online and found[0].started_at >= started:
                    return
            await asyncio.sleep(0.2)
        raise AssertionError(f"agent never reported online\n{self.agent_log_tail()}")

    def _agent_ready(self) -> bool:
        assert self.agent is not None
        if self.agent.poll() is not None:
            raise AssertionError(f"agent exited with {self.agent.returncode}:\n{self.agent_log_tail()}")
        import socket

        with socket.socket() as s:
            return s.connect_ex((LOCAL, self.receiver_port)) == 0

    def kill_agent(self) -> None:
        """`kill -9`: no shutdown, no last publish, no SQLite close."""
        assert self.agent is not None and self.agent.poll() is None, "agent is not running"
        os.kill(self.agent.pid, signal.SIGKILL)
        self.agent.wait(10)
        self.kills += 1

    def prefill_outbox(self, n: int) -> None:
        """While the agent is down: n telemetry events appended through the real Outbox, as a long
        outage would leave them (they continue the agent's seq)."""
        assert self.agent is None or self.agent.poll() is not None, "stop the agent first"
        from edge_agent.outbox import Outbox

        outbox = Outbox(self.data_dir / "outbox.sqlite", self.agent_id, capacity=self.outbox_capacity)
        try:
            outbox.db.call(
                lambda c: [outbox._append(c, "telemetry", {"backlog": i}, None, None, None) for i in range(n)]
            )
        finally:
            outbox.close()

    def inject_telemetry(self, n: int) -> tuple[int, int]:
        """While the agent runs: n telemetry events from another producer on the box, appended through the
        real Outbox (SQLite's file lock and BEGIN IMMEDIATE serialise it with the agent's own appends, so
        seqs stay gap-free). Returns (appended, refused at capacity)."""
        from edge_agent.outbox import Outbox, OutboxFull

        outbox = Outbox(self.data_dir / "outbox.sqlite", self.agent_id, capacity=self.outbox_capacity)
        appended = refused = 0

        def one(c: sqlite3.Connection, i: int) -> None:
            nonlocal appended, refused
            try:
                outbox._append(c, "telemetry", {"reading": i}, None, None, None)
                appended += 1
            except OutboxFull:
                refused += 1

        try:
            outbox.db.call(lambda c: [one(c, i) for i in range(n)])
        finally:
            outbox.close()
        return appended, refused

    def agent_log_tail(self, n: int = 60) -> str:
        lines = self.agent_log.read_text(errors="replace").splitlines() if self.agent_log.exists() else []
        return "\n".join(lines[-n:])

    # ------------------------------------------------------------------ broker and hub
    async def start_broker(self) -> None:
        stack = contextlib.ExitStack()
        await asyncio.to_thread(stack.enter_context, private_mosquitto(self.broker_port))
        self.broker_stack = stack

    async def stop_broker(self) -> None:
        stack, self.broker_stack = self.broker_stack, None
        if stack is not None:
            await asyncio.to_thread(stack.close)

    async def start_hub(self) -> None:
        if self.hub_process:
            await self._start_hub_process()
            return
        self.hub = HubRunner(
            db_url=f"sqlite:///{self.hub_db}",
            broker_url=self.broker_url,
            host=LOCAL,
            port=self.hub_port,
            command_keys={self.agent_id: self.key},
        )
        await self.hub.__aenter__()

    async def stop_hub(self) -> None:
        proc, self.hub_proc = self.hub_proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
        hub, self.hub = self.hub, None
        if hub is not None:
            await hub.stop()

    async def _start_hub_process(self) -> None:
        keys = self.tmp / "keys" / self.zone.id
        keys.mkdir(parents=True, exist_ok=True)
        (keys / f"{self.cp.id}.key").write_text(self.key.hex())
        log = self.hub_log.open("ab")
        log.write(f"----- hub start #{self.hub_kills + 1} at {time.time():.3f}\n".encode())
        log.flush()
        self.hub_proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from efence.cli import main; main()",
                "hub",
                "run",
                "--db",
                f"sqlite:///{self.hub_db}",
                "--broker",
                self.broker_url,
                "--port",
                str(self.hub_port),
                "--keys-dir",
                str(self.tmp / "keys"),
                "--client-id",
                "efence-hub-under-test",  # stable: the broker keeps its QoS 1 session across the kill
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        import socket

        def up() -> bool:
            assert self.hub_proc is not None
            if self.hub_proc.poll() is not None:
                raise AssertionError(
                    f"hub exited with {self.hub_proc.returncode}:\n{self.hub_log.read_text()[-3000:]}"
                )
            with socket.socket() as s:
                return s.connect_ex((LOCAL, self.hub_port)) == 0

        await self.wait_for(up, 60, "hub process to come up")

    def kill_hub(self) -> None:
        """`kill -9` of the hub process: no offline status of its own (the broker sends its last will)."""
        assert self.hub_proc is not None and self.hub_proc.poll() is None, "hub process is not running"
        os.kill(self.hub_proc.pid, signal.SIGKILL)
        self.hub_proc.wait(10)
        self.hub_proc = None
        self.hub_kills += 1

    # ------------------------------------------------------------------ traffic
    def start_traffic(self) -> None:
        for rig in self.rigs:
            self._traffic.append(asyncio.create_task(self._feed(rig), name=f"traffic {rig.key}"))

    def stop_traffic(self) -> None:
        for task in self._traffic:
            task.cancel()
        self._traffic = []

    async def _feed(self, rig: LaneRig) -> None:
        """The next vehicle once the lane is clear and the arm is down (a closer one would be a tailgater),
        its records imported first — unless the hub is down, then the edge has none for it."""
        rng = random.Random(f"{rig.key}/{self.seed}")
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        while True:
            await self.wait_for(lambda: self.lane_clear(rig), 120, f"lane {rig.lane.id} to clear", poll_s=0.2)
            await asyncio.sleep(rng.uniform(*self.headway_s))
            await self.send_vehicle(rig)
            await asyncio.sleep(1.0)

    @staticmethod
    def lane_clear(rig: LaneRig) -> bool:
        scene = rig.scene
        return scene.phase == "empty" and not scene.queue and scene.barrier.arm_down

    async def send_vehicle(self, rig: LaneRig, *, import_records: bool = True) -> str:
        planned = self.planned.get(rig.lane.id)
        if planned is not None:  # hub-process mode: the hub holds these trips' records already
            if not planned:
                raise AssertionError(f"lane {rig.lane.id}: more vehicles than trips planned")
            trip, import_records = planned.pop(0), False
        else:
            trip = self.generator.trip(rig.lane)
        trip.vehicle.patience_s = self.patience_s
        hub = self.hub
        if import_records and hub is not None:
            with contextlib.suppress(Exception):  # the hub may be going down right now
                await hub.import_records(self.zone.id, trip.records)
            await asyncio.sleep(0.5)
        rig.scene.arrive(trip.vehicle)
        self.trips[trip.vehicle.plate] = trip
        return trip.vehicle.plate

    # ------------------------------------------------------------------ looking at the stores
    def hub_rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.hub_db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as db:
            return db.execute(sql, params).fetchall()

    def hub_events(self) -> list[dict[str, Any]]:
        rows = self.hub_rows(
            "SELECT id, seq, type, observed_at, incarnation, payload FROM events WHERE agent_id=? ORDER BY seq",
            (self.agent_id,),
        )
        return [
            {
                "id": r[0],
                "seq": r[1],
                "type": r[2],
                "observed_at": r[3],
                "incarnation": r[4],
                "payload": json.loads(r[5]),
            }
            for r in rows
        ]

    def hub_counts(self) -> dict[str, int]:
        rows = self.hub_rows(
            "SELECT type, count(*) FROM events WHERE agent_id=? GROUP BY type", (self.agent_id,)
        )
        counts = {t: n for t, n in rows}
        counts.setdefault("transaction", 0)
        return counts

    def hub_contiguous(self) -> int:
        rows = self.hub_rows("SELECT contiguous_seq FROM agent_seq WHERE agent_id=?", (self.agent_id,))
        return rows[0][0] if rows else 0

    def outbox(self) -> tuple[int, int]:
        """(last_seq, depth) of the agent's outbox, read from its SQLite file."""
        path = self.data_dir / "outbox.sqlite"
        if not path.exists():
            return 0, 0
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            last = db.execute("SELECT value FROM outbox_meta WHERE key='last_seq'").fetchone()[0]
            depth = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return last, depth

    def outbox_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """The events still waiting in the agent's outbox (not yet acknowledged by the hub), in seq order."""
        path = self.data_dir / "outbox.sqlite"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            rows = db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        events = [json.loads(r[0]) for r in rows]
        return [e for e in events if type_ is None or e["type"] == type_]

    async def wait_for(
        self, cond: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.25
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            await asyncio.sleep(poll_s)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.agent_log_tail()}")

    async def drain(self, timeout_s: float = 60.0) -> int:
        """Stop traffic, let lanes settle, and wait until the hub holds everything the outbox numbered."""
        self.stop_traffic()
        await asyncio.sleep(2.0)

        def delivered() -> bool:
            last, depth = self.outbox()
            return depth == 0 and last > 0 and self.hub_contiguous() == last

        await self.wait_for(delivered, timeout_s, "the outbox to drain into the hub")
        return self.outbox()[0]

    def assert_delivered_exactly_once(self) -> dict[str, int]:
        """Every seq 1..N of the agent in the hub's events table exactly once, unique ids, in seq order."""
        last, depth = self.outbox()
        events = self.hub_events()
        seqs = [e["seq"] for e in events]
        assert depth == 0
        assert {e["incarnation"] for e in events} == {0}, "the agent's numbering restarted"
        assert seqs == list(range(1, last + 1)), f"hub holds {len(seqs)} events for seqs 1..{last}: " + str(
            sorted(set(range(1, last + 1)) - set(seqs))[:20]
        )
        assert len({e["id"] for e in events}) == len(events), "an event id stored twice"
        stamps = [e["observed_at"] for e in events]
        assert stamps == sorted(stamps), "seq order is not the order things happened"
        decisions = [e["payload"]["transaction_id"] for e in events if e["type"] == "transaction"]
        assert len(decisions) == len(set(decisions)), "a decision stored twice"
        assert not self.hub_rows("SELECT * FROM event_gaps WHERE agent_id=?", (self.agent_id,)), (
            "hub gave up a gap"
        )
        return {
            "events": last,
            "stored": len(events),
            "duplicates": len(events) - len(set(seqs)),
            "decisions": len(decisions),
        }
