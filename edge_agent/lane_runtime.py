"""The imperative shell of one lane: drivers → pure lane controller → outbox, then barrier/light/LED.

One task per lane consumes an inbox of controller events in order, so the controller sees one event at
a time. For every step the records go to the durable outbox first and only then are the commands carried
out — every decision is on disk before the barrier moves. Loop levels are re-fed every second while they
are fresh (the controller treats a loop it has not heard about for `loop_stale_s` as occupied), and a
`Tick` is delivered at the controller's next deadline.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gate_controller as gc
from edge_agent.drivers import io_board, led_board
from edge_agent.drivers.base import Driver
from edge_agent.observations import (
    ArmPosition,
    ContainerSighting,
    LoopState,
    Observation,
    PlateSighting,
    TagRead,
    WeightReading,
)
from edge_agent.outbox import Outbox
from edge_agent.record_cache import RecordCache
from efence.contract import EventType, LaneStatus, TransactionPayload
from firmware_configs.devices import (
    ContainerCameraConfig,
    IoBoardConfig,
    LedBoardConfig,
    PlateCameraConfig,
    RfidReaderConfig,
    WeighbridgeConfig,
)
from firmware_configs.schema import Checkpoint, Lane, Zone

log = logging.getLogger("efence.lane")

LOOP_REFRESH_S = 1.0
# the controller's device names → (driver config class, RFID role or None)
RETRIGGER_TARGETS: dict[str, tuple[type, str | None]] = {
    "plate_camera": (PlateCameraConfig, None),
    "container_camera": (ContainerCameraConfig, None),
    "weighbridge": (WeighbridgeConfig, None),
    "rfid": (RfidReaderConfig, "e_plate"),
    "card_reader": (RfidReaderConfig, "driver_card"),
    "seal_reader": (RfidReaderConfig, "e_seal"),
}
RECORD_MODELS: dict[str, type] = {
    "passes": gc.GatePass,
    "vehicles": gc.Vehicle,
    "driver_cards": gc.DriverCard,
    "enterprises": gc.Enterprise,
    "risk_instructions": gc.RiskInstruction,
    "manifests": gc.Manifest,
    "delivery_orders": gc.DeliveryOrder,
    "declarations": gc.Declaration,
    "entry_lists": gc.LedgerEntryList,
}


def image_file_name(name: str, data: bytes) -> str:
    """A safe file name with the extension the bytes call for: cameras label parts `licensePlatePicture`."""
    base = Path(name).name or "image"
    kind = ".jpg" if data[:2] == b"\xff\xd8" else ".png" if data[:4] == b"\x89PNG" else ".bin"
    return (
        base
        if base.lower().endswith(kind) or (kind == ".jpg" and base.lower().endswith(".jpeg"))
        else base + kind
    )


def lane_config(zone: Zone, checkpoint: Checkpoint, lane: Lane) -> gc.LaneConfig:
    """The controller's view of a firmware-config lane."""
    return gc.LaneConfig(
        lane_id=f"{zone.id}/{checkpoint.id}/{lane.id}",
        gate_id=f"{zone.id}/{checkpoint.id}",
        zone_id=zone.id,
        direction=lane.direction,
        gate_mode=lane.gate_mode,
        gate_number=lane.gate_no,
        offline_max_age_s=checkpoint.agent.max_record_age_s,
        timeouts=lane.timeouts,
        rules=zone.rules,
        draw=zone.draw,
    )


@dataclass
class _Pending:
    event: "gc.Event | _ReAnswer"
    done: asyncio.Future | None = None


@dataclass(frozen=True)
class _ReAnswer:
    """Shell-internal: build a fresh RecordView for a request already answered once."""

    request: gc.RequestRecords


@dataclass
class LaneRuntime:
    zone: Zone
    checkpoint: Checkpoint
    lane: Lane
    outbox: Outbox
    records: RecordCache
    is_online: Callable[[], bool]
    records_fresh_at: Callable[[], datetime | None]
    drivers: dict[str, Driver]
    evidence_dir: Path
    on_event: Callable[[], None] = lambda: None
    on_decision: Callable[[str, float], Awaitable[None] | None] | None = None
    on_evidence: Callable[[Path], None] = lambda path: None  # told about every evidence file written
    epoch: gc.EpochKey | None = None
    locked: bool = False
    light: str = "red"
    controller: gc.LaneController = field(init=False)
    inbox: asyncio.Queue = field(init=False)
    _loops: dict[str, tuple[bool, float]] = field(init=False, default_factory=dict)
    _arm: tuple[bool, bool] | None = field(init=False, default=None)
    _answered: tuple[gc.RequestRecords, bool] | None = field(init=False, default=None)
    _evidence_writes: set[asyncio.Task] = field(init=False, default_factory=set)  # strong refs until done

    def __post_init__(self) -> None:
        self.controller = gc.LaneController(lane_config(self.zone, self.checkpoint, self.lane))
        self.inbox = asyncio.Queue()
        self.log = logging.getLogger(f"efence.lane.{self.zone.id}.{self.checkpoint.id}.{self.lane.id}")
        self.io = next((d for d in self.drivers.values() if isinstance(d.config, IoBoardConfig)), None)
        self.led = next((d for d in self.drivers.values() if isinstance(d.config, LedBoardConfig)), None)

    # ------------------------------------------------------------------ inputs
    def observe(self, obs: Observation) -> None:
        """Driver callback (sync, on the loop): translate a device observation into controller events."""
        event: gc.Event | None = None
        match obs:
            case LoopState(loop=loop, occupied=occupied):
                if occupied is None:
                    self._loops.pop(
                        loop, None
                    )  # unknown: stop refreshing, the controller will count it occupied
                    return
                if loop == "arming" and occupied and not self._loops.get(loop, (False, 0.0))[0]:
                    self._arming_triggered(obs.at)
                self._loops[loop] = (occupied, obs.at)
                event = gc.LoopChanged(loop=loop, occupied=occupied)
            case ArmPosition(arm_up=up, arm_down=down):
                if up is None or down is None:
                    return
                self._arm = (up, down)
                event = gc.BarrierPosition(arm_up=up, arm_down=down)
            case WeightReading(gross_kg=kg, stable=stable) if (
                kg is not None and not obs.signal_lost and not obs.empty
            ):
                # an empty bridge is not a vehicle's weight: the controller waits for a loaded, stable reading
                event = gc.WeightRead(kg=kg, stable=stable)
            case TagRead(role="e_plate", tag_id=tag):
                event = gc.EPlateRead(epc=tag)
            case TagRead(role="driver_card", tag_id=tag):
                event = gc.DriverCardRead(card_id=tag)
            case TagRead(role="e_seal", tag_id=tag):
                event = gc.SealRead(seal_id=tag, state="intact")
            case PlateSighting(plate=plate, confidence=conf):
                self._keep_evidence(obs.device_id, obs.images)  # unreadable too: the officer reviews it
                if plate:
                    event = gc.PlateRead(plate=plate, confidence=conf)
            case ContainerSighting(number=number, confidence=conf, position=pos):
                self._keep_evidence(obs.device_id, obs.images)
                if number:
                    event = gc.ContainerRead(position=pos, number=number, confidence=conf)
        if event is not None:
            self.inbox.put_nowait(_Pending(event))

    def _arming_triggered(self, at: float) -> None:
        """A vehicle drove onto the arming loop: cameras that read on demand (`vision`) start now."""
        for driver in self.drivers.values():
            on_arming = getattr(driver, "on_arming", None)
            if on_arming is not None:
                on_arming(at)

    async def operator(self, event: gc.Event) -> gc.Step:
        """Feed an officer's (already authenticated) action; returns the controller's step."""
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait(_Pending(event, done))
        return await done

    def install_epoch(self, epoch: gc.EpochKey) -> None:
        self.epoch = epoch
        self.inbox.put_nowait(_Pending(gc.EpochKeyInstalled(epoch=epoch)))

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume())
            tg.create_task(self._clock())

    async def _clock(self) -> None:
        """Re-feed fresh loop levels and deliver ticks (at least every 0.5 s, or at the next deadline)."""
        last_refresh = 0.0
        while True:
            deadline = self.controller.next_deadline()
            wait = 0.5 if deadline is None else min(0.5, max(0.02, deadline - time.time()))
            await asyncio.sleep(wait)
            mono = time.monotonic()
            if mono - last_refresh >= LOOP_REFRESH_S:
                last_refresh = mono
                io_down = self.io is not None and self.io.health.observed == "down"
                for loop, (occupied, _at) in list(self._loops.items()):
                    if (
                        not io_down
                    ):  # levels from a board we lost are not re-asserted: they go stale = occupied
                        self.inbox.put_nowait(_Pending(gc.LoopChanged(loop=loop, occupied=occupied)))
            self._refresh_view_on_link_change()
            self.inbox.put_nowait(_Pending(gc.Tick()))

    def _refresh_view_on_link_change(self) -> None:
        """The hub went away (or came back) while a vehicle is still being gathered: answer its record
        request again, so the decision says how the gate really stood when it was made — a view taken
        online seconds before an outage must not make an offline decision look online."""
        if self._answered is None:
            return
        req, online = self._answered
        txn = self.controller.state.txn
        if self.controller.state.phase != "gathering" or txn is None or txn.request_id != req.request_id:
            self._answered = None
            return
        if self.is_online() != online:
            self._answered = (req, not online)  # queued once; the fresh view sets it for real
            self.inbox.put_nowait(_Pending(_ReAnswer(req)))

    async def _consume(self) -> None:
        while True:
            pending: _Pending = await self.inbox.get()
            if isinstance(pending.event, _ReAnswer):
                try:
                    await self._answer_records(pending.event.request)
                except Exception:  # noqa: BLE001 — the view already given stands
                    self.log.exception("lane %s: record view not refreshed", self.lane.id)
                continue
            try:
                step = self.controller.handle(pending.event, now=time.time())
                items = await self._record(step.records)  # durable first …
                await self._execute(step.commands)  # … then the barrier, light and LED …
                await self._report(step.records, items)  # … then logs and metrics, off the barrier's path
            except Exception as exc:  # noqa: BLE001 — a bad event must never kill the lane
                self.log.exception(
                    "lane %s: event %s failed: %s", self.lane.id, type(pending.event).__name__, exc
                )
                if pending.done and not pending.done.done():
                    pending.done.set_exception(exc)
                continue
            if pending.done and not pending.done.done():
                pending.done.set_result(step)

    # ------------------------------------------------------------------ records → outbox
    async def _record(self, records: tuple[gc.Entry, ...]) -> list[tuple[str, dict[str, Any], str | None]]:
        """The step's records into the outbox in one transaction (one fsync), before any command runs."""
        if not records:
            return []
        items = [self._event_of(rec) for rec in records]
        await self.outbox.append_many([(t, p, txn) for t, p, txn in items], lane=self.lane.id)
        self.on_event()
        return items

    async def _report(
        self, records: tuple[gc.Entry, ...], items: list[tuple[str, dict[str, Any], str | None]]
    ) -> None:
        """A recorded step's decisions into the log and the metrics."""
        for rec, (_type, payload, _txn) in zip(records, items, strict=True):
            if isinstance(rec, gc.Decision):
                self.log.info(
                    "lane %s: %s %s %s%s",
                    self.lane.id,
                    rec.verdict.value,
                    payload.get("plate") or "-",
                    ",".join(payload["reasons"]) or "clean",
                    " (offline)" if rec.offline else "",
                )
                if self.on_decision:
                    started = (
                        self.controller.state.txn.started_at if self.controller.state.txn else time.time()
                    )
                    result = self.on_decision(rec.verdict.value, max(0.0, rec.at.timestamp() - started))
                    if asyncio.iscoroutine(result):
                        await result

    def _event_of(self, rec: gc.Entry) -> tuple[str, dict[str, Any], str | None]:
        txn = getattr(rec, "transaction_id", None)
        if isinstance(rec, gc.Decision):
            obs = rec.inputs
            payload = TransactionPayload(
                transaction_id=rec.transaction_id,
                verdict=rec.verdict.value,
                reasons=[r.code.value for r in rec.reasons],
                plate=obs.plate.value if obs.plate else None,
                e_plate=obs.eplate.value if obs.eplate else None,
                pass_no=rec.pass_no,
                gross_kg=obs.weight.kg if obs.weight else None,
                containers=[v.value if v else None for v in (obs.container_front, obs.container_back)],
                record_version=rec.record_version,
                offline=rec.offline,
                led_zh=rec.led.zh,
                led_en=rec.led.en,
                inputs=rec.model_dump(
                    mode="json", include={"inputs", "settings", "attempt", "rule_version", "records_as_of"}
                ),
                draw=rec.draw.model_dump(mode="json") if rec.draw else None,
            ).model_dump(mode="json")
            payload["reason_details"] = [{"code": r.code.value, "detail": r.detail} for r in rec.reasons]
            return EventType.TRANSACTION, payload, txn
        body = rec.model_dump(mode="json", by_alias=True)
        if isinstance(rec, gc.TransactionClosed):
            return EventType.TRANSACTION_CLOSED, body, txn
        if isinstance(rec, gc.Alarm):
            return EventType.ALARM, body, txn
        if isinstance(rec, gc.ManualReleaseRecord | gc.OperatorActionRecord):
            return EventType.COMMAND_AUDIT, body, txn
        if isinstance(rec, gc.TransactionStarted):
            return EventType.TRANSACTION_STARTED, body, txn
        return EventType.LANE_STATE, body, txn

    # ------------------------------------------------------------------ commands → devices
    async def _execute(self, commands: tuple[gc.Command, ...]) -> None:
        for cmd in commands:
            try:
                await self._execute_one(cmd)
            except Exception as exc:  # noqa: BLE001 — a device refusing must not stop the lane
                self.log.error("lane %s: %s not carried out: %s", self.lane.id, cmd.kind, exc)
                await self.outbox.append(
                    EventType.ALARM,
                    {
                        "kind": "alarm",
                        "alarm": "device_command_failed",
                        "severity": "warning",
                        "detail": f"{cmd.kind}: {exc}",
                    },
                    lane=self.lane.id,
                )

    async def _execute_one(self, cmd: gc.Command) -> None:
        match cmd:
            case gc.BarrierPulse(action=action):
                if action == "open" and self.locked:
                    raise RuntimeError("lane is locked by the monitoring room: opening suppressed")
                if self.io is None:
                    raise RuntimeError("no IO board configured")
                await self.io.command(io_board.BarrierPulse(action=action))
            case gc.SetLight(color=color):
                self.light = color
                if self.io is not None:
                    await self.io.command(io_board.SetLight(color="green" if color == "green" else "red"))
            case gc.ShowText(zh=zh, en=en):
                if self.led is not None:
                    colour = "green" if self.light == "green" else "red"
                    await self.led.command(led_board.ShowText(lines=[zh, en], colour=colour))
            case gc.RequestRecords():
                await self._answer_records(cmd)
            case gc.Retrigger(device=device):
                await self._regather(device)

    def drivers_for(self, device: str) -> list[Driver]:
        """The lane's drivers behind one of the controller's device names."""
        kind, role = RETRIGGER_TARGETS[device]
        return [
            d
            for d in self.drivers.values()
            if isinstance(d.config, kind) and (role is None or getattr(d.config, "role", None) == role)
        ]

    async def _regather(self, device: str) -> None:
        """An officer asked for a fresh reading: ask the devices that can be asked (a driver with
        `regather()` that returns None: it sent the device a request), and say plainly which only report
        on their own (no `regather()`, e.g. the cameras, or one that returns the reason it could not ask)."""
        drivers = self.drivers_for(device)
        if not drivers:
            self.log.warning("lane %s: re-gather from %s: no such device on this lane", self.lane.id, device)
            return
        for driver in drivers:
            regather = getattr(driver, "regather", None)
            if regather is None:
                self.log.info(
                    "lane %s: re-gather from %s: %s reports on its own; waiting for its next reading",
                    self.lane.id,
                    device,
                    driver.config.id,
                )
                continue
            result = regather()
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, str):
                self.log.info(
                    "lane %s: re-gather from %s: %s not asked (%s); waiting for its next reading",
                    self.lane.id,
                    device,
                    driver.config.id,
                    result,
                )
                continue
            self.log.info(
                "lane %s: re-gather from %s: %s asked to read again", self.lane.id, device, driver.config.id
            )

    async def _answer_records(self, req: gc.RequestRecords) -> None:
        view = await self._record_view(req)
        self._answered = (req, not view.offline)
        self.inbox.put_nowait(_Pending(gc.RecordsProvided(request_id=req.request_id, view=view)))

    async def _record_view(self, req: gc.RequestRecords) -> gc.RecordView:
        txn = self.controller.state.txn
        containers = []
        if txn is not None:
            containers = [v.value for v in (txn.obs.container_front, txn.obs.container_back) if v]
        related = await self.records.related(
            plate=req.plate, epc=req.eplate, card=req.driver_card, containers=containers
        )
        state = await self.records.state(count=False)
        groups: dict[str, tuple] = {}
        for name, rows in related.items():
            model = RECORD_MODELS[name]
            good = []
            for row in rows:
                try:
                    good.append(model.model_validate(row))
                except Exception as exc:  # noqa: BLE001 — one bad record must not blind the lane
                    self.log.warning("lane %s: unusable %s record skipped: %s", self.lane.id, name, exc)
            groups[name] = tuple(good)
        online = self.is_online()
        as_of = (
            datetime.now(UTC)
            if online
            else (self.records_fresh_at() or state.records_as_of or datetime.fromtimestamp(0, UTC))
        )
        return gc.RecordView(
            record_version=state.record_version, records_as_of=as_of, offline=not online, **groups
        )

    def _keep_evidence(self, device_id: str, images: dict[str, bytes]) -> None:
        """Name the files now (they belong to the transaction of this moment), write them off the loop.

        A camera sends several JPEGs per sighting and the disk of an edge box can stall for hundreds of ms:
        written here, that would hold up every lane's controller and the uplink. Each file is complete
        before the uploader hears of it."""
        if not images:
            return
        txn = self.controller.state.txn
        stem = txn.transaction_id.replace("/", "_") if txn else f"untracked-{int(time.time() * 1000)}"
        folder = self.evidence_dir / datetime.now(UTC).strftime("%Y%m%d") / self.lane.id
        files = [
            (folder / f"{stem}-{device_id}-{image_file_name(name, data)}", data)
            for name, data in images.items()
        ]
        try:
            task = asyncio.get_running_loop().create_task(self._write_evidence(folder, files))
        except RuntimeError:  # no loop (a synchronous caller, e.g. a replay tool): write in place
            for path in _write_files(folder, files):
                self.on_evidence(path)
            return
        self._evidence_writes.add(task)
        task.add_done_callback(self._evidence_writes.discard)

    async def _write_evidence(self, folder: Path, files: list[tuple[Path, bytes]]) -> None:
        try:
            written = await asyncio.to_thread(_write_files, folder, files)
        except OSError as exc:  # a full or failing disk loses the pictures, never the lane
            self.log.error("lane %s: evidence images not written to %s: %s", self.lane.id, folder, exc)
            return
        for path in written:
            self.on_evidence(path)

    # ------------------------------------------------------------------ status
    def status(self) -> LaneStatus:
        s = self.controller.state
        barrier = "unknown"
        if self._arm is not None:
            barrier = "up" if self._arm[0] else "down" if self._arm[1] else "moving"
        return LaneStatus(
            lane=self.lane.id,
            name=self.lane.name,
            direction=self.lane.direction,
            line=self.lane.line,
            state=str(s.phase),
            locked=self.locked,
            barrier=barrier,
            light=self.light,
            devices=[d.status() for d in self.drivers.values()],
        )


def _write_files(folder: Path, files: list[tuple[Path, bytes]]) -> list[Path]:
    """Blocking: each file written under a temporary name and renamed, so no reader sees half a JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in files:
        tmp = path.with_name(f".{path.name}.part")  # the uploader's scan skips dot files
        tmp.write_bytes(data)
        tmp.replace(path)
    return [path for path, _ in files]
