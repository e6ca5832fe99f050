"""The edge agent of one checkpoint: every lane's drivers and controller, the record cache, the outbox,
the uplink, signed operator commands, status and metrics — under one TaskGroup, so one cancellation
stops it all and a crashed piece cancels its siblings instead of leaving a half-alive gate.
"""

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import start_http_server

import gate_controller as gc
from edge_agent.config_apply import ConfigApplier
from edge_agent.device_receiver import DeviceReceiver
from edge_agent.drivers.base import Driver
from edge_agent.drivers.registry import create_driver
from edge_agent.evidence_upload import EvidenceUploader
from edge_agent.fence_sensors import FenceSensorWatch
from edge_agent.lane_runtime import LaneRuntime
from edge_agent.metrics import AgentMetrics
from edge_agent.outbox import Outbox, OutboxAlarm, OutboxStats
from edge_agent.perimeter_watch import PerimeterWatch
from edge_agent.record_cache import GapDetected, RecordCache
from edge_agent.uplink import Uplink
from efence import __version__
from efence.contract import (
    AgentStatus,
    CommandAction,
    CommandRejected,
    CommandResult,
    EventType,
    NonceLedger,
    OperatorCommand,
    RecordDelta,
    SignedCommand,
    Topics,
    agent_http_auth,
    verify_command,
)
from firmware_configs.schema import Checkpoint, Zone

log = logging.getLogger("efence.agent")


def load_command_key(checkpoint: Checkpoint) -> bytes:
    """The checkpoint's signing key from the environment or the key file; never from the config itself."""
    agent = checkpoint.agent
    value = os.environ.get(agent.command_key_env)
    source = f"environment variable {agent.command_key_env}"
    if not value and agent.command_key_file:
        path = Path(agent.command_key_file)
        if path.exists():
            value, source = path.read_text().strip(), f"file {path}"
    if not value:
        raise RuntimeError(
            f"checkpoint {checkpoint.id}: no command-signing key; set {agent.command_key_env} "
            f"or create {agent.command_key_file or '(agent.command_key_file)'} with 64 hex characters"
        )
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise RuntimeError(f"checkpoint {checkpoint.id}: command key in {source} is not hex") from None
    if len(key) < 16:
        raise RuntimeError(f"checkpoint {checkpoint.id}: command key in {source} is shorter than 16 bytes")
    return key


@dataclass
class EdgeAgent:
    zone: Zone
    checkpoint: Checkpoint
    command_key: bytes
    data_dir: Path | None = None
    broker_url: str | None = None
    hub_url: str | None = None
    metrics_port: int | None = None
    device_http_host: str | None = None
    device_http_port: int | None = None
    config: ConfigApplier | None = None  # config push (edge_agent.config_apply); None: not pushable
    lanes: dict[str, LaneRuntime] = field(default_factory=dict, init=False)
    drivers: dict[str, Driver] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        cfg = self.checkpoint.agent
        self.agent_id = f"{self.zone.id}/{self.checkpoint.id}"
        self.data_dir = Path(self.data_dir or cfg.data_dir)
        self.broker_url = self.broker_url or cfg.broker_url
        self.hub_url = self.hub_url or cfg.hub_url
        self.started_at = datetime.now(UTC)
        self.metrics = AgentMetrics()
        self.outbox = Outbox(
            self.data_dir / "outbox.sqlite",
            self.agent_id,
            capacity=cfg.outbox_capacity,
            max_age_s=cfg.outbox_max_age_h * 3600,
        )
        self.metrics.outbox_capacity.set(cfg.outbox_capacity)
        self.metrics.outbox_max_age.set(cfg.outbox_max_age_h * 3600)
        # nonces survive a restart (kill -9, power cut): a captured command stays refused until it expires
        self.nonces = NonceLedger()
        for nonce, expires_at in self.outbox.nonces_now().items():
            self.nonces.check_and_add(nonce, datetime.fromtimestamp(expires_at, UTC), datetime.now(UTC))
        self.records = RecordCache(self.data_dir / "records.sqlite", self.zone.id)
        self.records_fresh_at: datetime | None = None
        self._sync_needed = asyncio.Event()
        self._outbox_alarm = OutboxAlarm(cfg.outbox_alarm_ratio)
        # (outbox depth, oldest age, last seq, record version) for status(): refreshed off the loop by
        # refresh_status() and the housekeeping loop, so building a status message never reads SQLite
        self._status_counts: tuple[int, float, int, int | None] = (0, 0.0, 0, None)
        self.uplink = Uplink(
            zone=self.zone.id,
            checkpoint=self.checkpoint.id,
            broker_url=self.broker_url,
            outbox=self.outbox,
            status=self.status,
            refresh_status=self.refresh_status,
            on_command=self.handle_command,
            on_record_delta=self.handle_record_delta,
            on_hub_birth=self._hub_reborn,
            on_connected=self._sync_needed.set,
            handlers=self.config.bind(self) if self.config else None,
            status_interval_s=cfg.status_interval_s,
        )
        self.evidence_uploader = EvidenceUploader(
            self.agent_id, self.command_key, self.hub_url, self.data_dir / "evidence"
        )
        for lane in self.checkpoint.lanes:
            runtime_holder: list[LaneRuntime] = []
            drivers = {}
            for device in lane.devices:
                drivers[device.id] = create_driver(
                    device, lambda obs, h=runtime_holder: h[0].observe(obs), lane=lane.id
                )
                self.drivers[f"{lane.id}/{device.id}"] = drivers[device.id]
            runtime = LaneRuntime(
                zone=self.zone,
                checkpoint=self.checkpoint,
                lane=lane,
                outbox=self.outbox,
                records=self.records,
                is_online=lambda: self.uplink.online,
                records_fresh_at=lambda: self.records_fresh_at,
                drivers=drivers,
                evidence_dir=self.data_dir / "evidence",
                on_evidence=self.evidence_uploader.notify,
                on_event=self.uplink.nudge,
                on_decision=self._count_decision(lane.id),
            )
            runtime_holder.append(runtime)
            self.lanes[lane.id] = runtime
        # fence cameras whose `checkpoint` names this one are this agent's to watch (docs/VISION.md)
        self.perimeter = [
            PerimeterWatch(
                self.agent_id,
                segment,
                camera,
                self.outbox,
                self.data_dir / "evidence",
                on_evidence=self.evidence_uploader.notify,
                on_event=self.uplink.nudge,
            )
            for segment, camera in self.zone.fence_cameras_of(self.checkpoint.id)
        ]
        # fence sensors whose `checkpoint` names this one; an alarm pops up the segment's watched camera
        watched = {}
        for watch in self.perimeter:
            watched.setdefault(watch.segment.id, watch)
        self.fence_sensors = FenceSensorWatch(
            self.agent_id,
            self.zone.fence_sensors_of(self.checkpoint.id),
            self.outbox,
            self.data_dir / "evidence",
            cameras=watched,
            on_evidence=self.evidence_uploader.notify,
            on_event=self.uplink.nudge,
        )

    def _count_decision(self, lane_id: str):
        def count(verdict: str, seconds: float) -> None:
            self.metrics.decisions.labels(lane_id, verdict).inc()
            self.metrics.decision_seconds.labels(lane_id).observe(seconds)

        return count

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        metrics_server = None
        if self.metrics_port:
            host = self.checkpoint.agent.metrics_host  # 127.0.0.1 unless the config says otherwise
            metrics_server, _thread = start_http_server(
                self.metrics_port, addr=host, registry=self.metrics.registry
            )
            log.info(
                "agent %s: Prometheus metrics on http://%s:%d/metrics", self.agent_id, host, self.metrics_port
            )
        self._install_epoch()
        receiver = DeviceReceiver()
        if receiver.mount_drivers(self.drivers.values()):
            cfg = self.checkpoint.agent
            host = self.device_http_host or cfg.device_http_host
            port = self.device_http_port if self.device_http_port is not None else cfg.device_http_port
            self.device_http_port = await receiver.start(host, port)
            log.info(
                "agent %s: camera push receiver on http://%s:%d", self.agent_id, host, self.device_http_port
            )
        else:
            receiver = None
        log.info(
            "agent %s starting: %d lanes, %d devices, broker %s",
            self.agent_id,
            len(self.lanes),
            len(self.drivers),
            self.broker_url,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._shutdown_sentinel(), name="shutdown")
                tg.create_task(self.uplink.run(), name="uplink")
                tg.create_task(self.evidence_uploader.run(), name="evidence-upload")
                tg.create_task(self._records_loop(), name="records")
                tg.create_task(self._housekeeping_loop(), name="housekeeping")
                if self.config:
                    tg.create_task(self.config.run(), name="config-push")
                for name, driver in self.drivers.items():
                    tg.create_task(driver.run(), name=f"driver {name}")
                for lane_id, lane in self.lanes.items():
                    tg.create_task(lane.run(), name=f"lane {lane_id}")
                for watch in self.perimeter:
                    tg.create_task(watch.run(), name=f"perimeter {watch.camera.id}")
                tg.create_task(self.fence_sensors.run(), name="fence sensors")
        finally:
            if metrics_server is not None:  # an in-process agent (demo, tests) gives its port back
                metrics_server.shutdown()
                metrics_server.server_close()
            if receiver is not None:
                await receiver.stop()
            self.outbox.close()
            self.records.close()

    async def _shutdown_sentinel(self) -> None:
        """Cancelled with its siblings at shutdown: tells every driver to stop reconnecting."""
        try:
            await asyncio.Event().wait()
        finally:
            for driver in self.drivers.values():
                driver.stopping = True
            for watch in self.perimeter:
                watch.stopping = True
            self.fence_sensors.stopping = True

    def _install_epoch(self) -> None:
        """Start a random-draw epoch: the key stays on disk, only its commitment is published now."""
        epoch_dir = self.data_dir / "epochs"
        epoch_dir.mkdir(parents=True, exist_ok=True)
        epoch_id = (
            f"{self.agent_id.replace('/', ':')}:{datetime.now(UTC):%Y%m%dT%H%M%S}:{secrets.token_hex(3)}"
        )
        key = secrets.token_bytes(32)
        key_file = epoch_dir / f"{epoch_id.replace(':', '_')}.key"
        key_file.write_text(key.hex())
        key_file.chmod(0o600)
        epoch = gc.EpochKey(epoch_id=epoch_id, key=key)
        for lane in self.lanes.values():
            lane.install_epoch(epoch)
        self._epoch = epoch  # its commitment is appended to the outbox first thing in _records_loop

    async def _records_loop(self) -> None:
        """Keep the cache current: initial sync, then on every gap; mark freshness while online."""
        await self.outbox.append(
            "draw_epoch",
            {
                "epoch_id": self._epoch.epoch_id,
                "commitment": self._epoch.commitment,
                "started_at": self.started_at.isoformat(),
            },
        )
        self._sync_needed.set()
        async with httpx.AsyncClient() as client:
            while True:
                if self._sync_needed.is_set():
                    try:
                        await self.records.sync_from_hub(
                            client,
                            self.hub_url,
                            lambda m, p: agent_http_auth(self.agent_id, self.command_key, m, p),
                        )
                        self._sync_needed.clear()
                    except (httpx.HTTPError, ValueError, GapDetected) as exc:
                        log.warning(
                            "agent %s: record sync with %s failed (%s); deciding from the local copy",
                            self.agent_id,
                            self.hub_url,
                            exc,
                        )
                if self.uplink.online and not self._sync_needed.is_set():
                    self.records_fresh_at = datetime.now(UTC)
                if self._sync_needed.is_set():
                    await asyncio.sleep(2.0)  # retry a failed sync soon, not in a tight loop
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self._sync_needed.wait()

    async def _hub_reborn(self) -> None:
        """A (re)started hub may hold records we never heard of: check before calling the cache fresh."""
        self._sync_needed.set()

    async def handle_record_delta(self, delta: RecordDelta) -> None:
        try:
            await self.records.apply([delta])
        except GapDetected as gap:
            log.info("agent %s: %s; pulling the missing records over HTTP", self.agent_id, gap)
            self._sync_needed.set()

    async def _housekeeping_loop(self) -> None:
        """Metrics, and the outbox alarm well before anything could be shed."""
        while True:
            await self.outbox.shed_expired()
            stats = await self.outbox.stats()
            m = self.metrics
            m.outbox_depth.set(stats.depth)
            m.outbox_oldest_age.set(stats.oldest_age_s)
            m.outbox_shed.labels("capacity").set(stats.shed)
            m.outbox_shed.labels("age").set(stats.shed_age)
            m.uplink_connected.set(1 if self.uplink.online else 0)
            state = await self.records.state(count=False)
            m.record_version.set(state.record_version)
            self._status_counts = (stats.depth, stats.oldest_age_s, stats.last_seq, state.record_version)
            if self.records_fresh_at:
                m.record_age.set((datetime.now(UTC) - self.records_fresh_at).total_seconds())
            for name, d in self.drivers.items():
                lane, dev = name.split("/", 1)
                m.device_up.labels(lane, dev).set({"up": 1, "down": 0}.get(d.health.observed, -1))
                m.device_bad_frames.labels(lane, dev).set(d.health.counters.get("frames_bad", 0))
            for watch in self.perimeter:  # fence cameras are not in a lane: labelled "perimeter"
                m.device_up.labels("perimeter", watch.camera.id).set(
                    {"up": 1, "down": 0}.get(watch.health.observed, -1)
                )
            for state in self.fence_sensors.states.values():
                m.device_up.labels("perimeter", state.sensor.id).set(
                    {"up": 1, "down": 0}.get(state.health.observed, -1)
                )
            await self._check_outbox_bounds(stats)
            await asyncio.sleep(2.0)

    async def _check_outbox_bounds(self, stats: OutboxStats) -> None:
        """Ring (or clear) the outbox alarm: it says depth, oldest age and the bounds, long before a bound."""
        payload = self._outbox_alarm.check(stats)
        self.metrics.outbox_alarm.set(1 if self._outbox_alarm.raised else 0)
        if payload is None:
            return
        (log.error if self._outbox_alarm.raised else log.info)(
            "agent %s: %s", self.agent_id, payload["detail"]
        )
        # correlation id "outbox": the hub files raise and clear under one subject, `<agent>/outbox`
        await self.outbox.append(EventType.ALARM, payload, correlation_id="outbox")
        self.uplink.nudge()

    # ------------------------------------------------------------------ status
    async def refresh_status(self) -> None:
        """Read the outbox and cache counts for the next status message (on their SQLite threads)."""
        stats = await self.outbox.stats()
        cache = await self.records.state(count=False)
        self._status_counts = (stats.depth, stats.oldest_age_s, stats.last_seq, cache.record_version)

    def status(self, online: bool = True) -> AgentStatus:
        """Built from memory only: it runs on the event loop (and for the last will before anything ran)."""
        depth, age, last_seq, version = self._status_counts
        return AgentStatus(
            agent_id=self.agent_id,
            zone=self.zone.id,
            checkpoint=self.checkpoint.id,
            online=online,
            name=self.checkpoint.name,
            location=self.checkpoint.location,
            started_at=self.started_at,
            software_version=__version__,
            record_version=version,
            records_as_of=self.records_fresh_at,
            outbox_depth=depth,
            outbox_oldest_age_s=age,
            last_seq=last_seq,
            lanes=[lane.status() for lane in self.lanes.values()] if online else [],
            fence_devices=[watch.status() for watch in self.perimeter] + self.fence_sensors.statuses()
            if online
            else [],
            **(self.config.status_fields() if self.config else {}),
        )

    # ------------------------------------------------------------------ operator commands
    async def handle_command(self, signed: SignedCommand | None, error: str) -> None:
        """Verify, carry out and answer one operator command. Refusals are logged, recorded and answered."""
        if signed is None:
            self.metrics.commands.labels("malformed").inc()
            log.warning("agent %s: malformed command refused: %s", self.agent_id, error)
            await self.outbox.append(
                EventType.COMMAND_AUDIT, {"accepted": False, "code": "malformed", "detail": error}
            )
            return
        cmd = signed.command
        try:
            verify_command(
                signed, self.command_key, agent_id=self.agent_id, now=datetime.now(UTC), nonces=self.nonces
            )
        except CommandRejected as exc:
            self.metrics.commands.labels(exc.code).inc()
            log.warning(
                "agent %s: command %s (%s by %s) refused: %s",
                self.agent_id,
                cmd.command_id,
                cmd.action,
                cmd.operator_id,
                exc,
            )
            await self._answer(cmd, False, "refused", exc.code, str(exc))
            return
        await self.outbox.remember_nonce(cmd.nonce, cmd.expires_at.timestamp())  # on disk before it acts
        lane = self.lanes.get(cmd.lane)
        if lane is None:
            await self._answer(
                cmd, False, "refused", "unknown_lane", f"no lane {cmd.lane!r} at {self.agent_id}"
            )
            return
        try:
            accepted, detail = await self._carry_out(lane, cmd)
        except Exception as exc:  # noqa: BLE001 — answer, never crash
            log.exception("agent %s: command %s failed", self.agent_id, cmd.command_id)
            await self._answer(cmd, False, "failed", "error", str(exc))
            return
        self.metrics.commands.labels("done" if accepted else "not_applied").inc()
        await self._answer(
            cmd, accepted, "done" if accepted else "refused", "" if accepted else "not_applicable", detail
        )

    async def _carry_out(self, lane: LaneRuntime, cmd: OperatorCommand) -> tuple[bool, str]:
        p = cmd.params
        match cmd.action:
            case CommandAction.LOCK_LANE | CommandAction.HOLD:
                lane.locked = True
                return True, f"lane {lane.lane.id} locked: the barrier will not open until unlocked"
            case CommandAction.UNLOCK_LANE:
                lane.locked = False
                return True, f"lane {lane.lane.id} unlocked"
            case CommandAction.MANUAL_RELEASE:
                if lane.locked:
                    return False, "lane is locked; unlock it first"
                event = gc.ManualRelease(
                    operator_id=cmd.operator_id,
                    reason_code=cmd.reason_code or "manual",
                    reason_text=cmd.reason_text,
                    second_operator_id=cmd.second_operator_id,
                )
            case CommandAction.ESCALATE:
                event = gc.Escalate(operator_id=cmd.operator_id, reason_text=cmd.reason_text)
            case CommandAction.REGATHER if "field" in p and "value" in p:
                event = gc.KeyIn(operator_id=cmd.operator_id, field=p["field"], value=str(p["value"]))
            case CommandAction.REGATHER:
                event = gc.Regather(operator_id=cmd.operator_id, device=p.get("device", "plate_camera"))
            case _:
                return False, f"unknown action {cmd.action}"
        step = await lane.operator(event)
        for rec in step.records:
            if isinstance(rec, gc.ManualReleaseRecord):
                return rec.authorised, rec.rejection or "barrier opened on manual release"
            if isinstance(rec, gc.OperatorActionRecord):
                return rec.accepted, rec.detail
        return bool(step.records), "applied" if step.records else "nothing to do in the lane's state"

    async def _answer(
        self, cmd: OperatorCommand, accepted: bool, status: str, code: str, detail: str
    ) -> None:
        result = CommandResult(
            command_id=cmd.command_id,
            agent_id=self.agent_id,
            lane=cmd.lane,
            accepted=accepted,
            status=status,
            code=code,
            detail=detail,
        )
        await self.outbox.append(
            EventType.COMMAND_AUDIT,
            {"command": cmd.model_dump(mode="json"), "result": result.model_dump(mode="json")},
            lane=cmd.lane,
        )
        self.uplink.nudge()
        client = self.uplink._client
        if client is not None:
            try:
                await client.publish(
                    Topics.command_results(self.zone.id, self.checkpoint.id), result.to_bytes(), qos=1
                )
            except Exception as exc:  # noqa: BLE001 — the durable copy is in the outbox
                log.warning(
                    "agent %s: command result not published now (%s); it is in the outbox", self.agent_id, exc
                )
