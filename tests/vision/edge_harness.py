"""A small checkpoint for the edge-vision tests: a real hub on a real Mosquitto, an IO-board simulator
driving the lane's loops, and an `EdgeAgent` in this process whose cameras are HTTP frame servers.

    async with VisionSite(tmp_path, mosquitto_url, lane_devices=[...], fence=[...]) as site:
        site.scene.arrive(VehicleSpec(plate="皖A6H268", patience_s=3))
        await site.wait_for(lambda: site.transactions(), 40, "a decision")

Everything is real except the pictures, which come from `simulators.cameras.FrameHttpServer` over a
loopback socket. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from central_monitor.runner import HubRunner
from edge_agent.agent import EdgeAgent
from efence.embedded_broker import free_port
from firmware_configs.schema import Zone
from simulators.io_board import IoBoardSimulator
from simulators.scene import LaneScene

LOCAL = "127.0.0.1"
ZONE = "vision-zone"
CHECKPOINT = "gate"
LANE = "in-1"
AGENT = f"{ZONE}/{CHECKPOINT}"

IO_BOARD: dict[str, Any] = {
    "id": "io",
    "type": "io_board",
    "unit": 1,
    "output_mode": "coils",
    "inputs": {"arming_loop": 0, "safety_loop": 1, "exit_loop": 2, "arm_up": 3, "arm_down": 4},
    "outputs": {"barrier_open": 0, "barrier_close": 1, "light_green": 2, "light_red": 3},
    "pulse_ms": 700,
    "debounce_ms": 80,
    "poll_interval_ms": 50,
    "stale_after_ms": 1000,
}


class VisionSite:
    def __init__(
        self,
        tmp: Path,
        broker_url: str,
        *,
        lane_devices: list[dict[str, Any]] = (),  # type: ignore[assignment]
        fence: list[dict[str, Any]] | None = None,
    ) -> None:
        self.tmp = tmp
        self.broker_url = broker_url
        self.lane_devices = list(lane_devices)
        self.fence = fence or [{"id": "s-01", "name": "North 1", "length_m": 100}]
        self.key = secrets.token_bytes(32)
        self.hub_db = tmp / "hub.sqlite"
        self.scene = LaneScene(seed=1)
        self.io = IoBoardSimulator(_io_config(), self.scene)
        self.hub: HubRunner | None = None
        self.agent: EdgeAgent | None = None
        self._tasks: list[asyncio.Task] = []

    def zone(self, io_port: int) -> Zone:
        io = {**IO_BOARD, "link": {"kind": "tcp", "host": LOCAL, "port": io_port, "framer": "socket"}}
        return Zone.model_validate(
            {
                "id": ZONE,
                "name": "Vision test zone",
                "name_zh": "视觉测试区",
                "site_category": "31",
                "checkpoints": [
                    {
                        "id": CHECKPOINT,
                        "name": "Gate",
                        "agent": {
                            "broker_url": self.broker_url,
                            "hub_url": f"http://{LOCAL}:{self.hub_port}",
                            "data_dir": str(self.tmp / "edge"),
                            "command_key_env": "EFENCE_VISION_TEST_KEY_UNSET",
                            "command_key_file": None,
                            "device_http_host": LOCAL,
                            "device_http_port": free_port(),
                            "metrics_port": None,
                            "status_interval_s": 2.0,
                        },
                        "lanes": [
                            {
                                "id": LANE,
                                "name": "Lane 1",
                                "direction": "I",
                                "line": "second",
                                "vehicle_class": "car",
                                "devices": [io, *self.lane_devices],
                            }
                        ],
                    }
                ],
                "fence": {"segments": self.fence},
            }
        )

    async def __aenter__(self) -> VisionSite:
        self.hub_port = free_port()
        self.hub = HubRunner(
            db_url=f"sqlite:///{self.hub_db}",
            broker_url=self.broker_url,
            host=LOCAL,
            port=self.hub_port,
            command_keys={AGENT: self.key},
        )
        await self.hub.__aenter__()
        io_port = await self.io.start(LOCAL, 0)  # advances the scene by itself
        zone = self.zone(io_port)
        self.agent = EdgeAgent(zone, zone.checkpoint(CHECKPOINT), command_key=self.key)
        self._tasks.append(asyncio.create_task(self.agent.run(), name="agent"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(10):
                    await task
        with contextlib.suppress(Exception):
            await self.io.stop()
        if self.hub is not None:
            await self.hub.stop()

    def agent_alive(self) -> bool:
        task = self._tasks[-1]
        if task.done():
            raise AssertionError(f"the agent ended: {task.exception()!r}")
        return True

    # ------------------------------------------------------------------ the hub's store
    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.hub_db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as db:
            return db.execute(sql, params).fetchall()

    def events(self, type_: str) -> list[dict[str, Any]]:
        rows = self.rows("SELECT payload, correlation_id FROM events WHERE type=? ORDER BY seq", (type_,))
        return [{**json.loads(p), "_correlation_id": c} for p, c in rows]

    def alarms(self, kind: str) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT subject, device_id, details, count FROM alarms WHERE kind=? ORDER BY id", (kind,)
        )
        return [
            {"subject": s, "device_id": d, "details": json.loads(x or "{}"), "count": n}
            for s, d, x, n in rows
        ]

    def evidence(self, transaction_id: str) -> list[str]:
        return [
            r[0] for r in self.rows("SELECT name FROM evidence WHERE transaction_id=?", (transaction_id,))
        ]

    async def wait_for(self, cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.agent_alive()
            value = cond()
            if value:
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _io_config() -> Any:
    from firmware_configs.devices import IoBoardConfig

    return IoBoardConfig.model_validate(
        {**IO_BOARD, "link": {"kind": "tcp", "host": LOCAL, "port": 502, "framer": "socket"}}
    )
