"""Fence-sensor watch: the electronic fence's beams, microwave, vibration cable and fibre, read by the edge
agent whose checkpoint the sensor's `FenceSensor.checkpoint` names (`Zone.fence_sensors_of`).

Two kinds of controller, one connection per controller however many sensors it serves:

* **Modbus** (`modbus://host:port/unit/input`): beam, microwave and vibration-cable controllers close an
  alarm relay; its contact is wired to a discrete input of a Modbus/TCP IO module, optionally with the
  controller's tamper contact on `tamper_input`. The module is polled (FC02, PROTOCOLS.md §4) every
  `poll_interval_ms`; each contact is debounced (`fence_signals.ContactTracker`, normally closed unless
  the config says otherwise): opening raises an intrusion (or tamper), closing again reports it cleared.
* **Line protocol** (`socket://host:port`): fibre/cable controllers that locate an event send JSON lines
  (the (design) protocol in `edge_agent.fence_signals` and docs/DEVICES.md; a gateway maps the vendor's
  protocol to it) naming their zone, the position in metres along the segment, a level and a kind.
  Repeated intrusion lines within `realarm_after_s` are counted into the alarm already sent. A line
  that does not parse is logged with what was expected and counted; it never ends the watch.

Every alarm becomes a `perimeter` event in the durable outbox — `{"kind": "intrusion" | "tamper",
"segment", "sensor", "position_m", "incident_id", "snapshot", …}`, which `central_monitor.alarms`
turns into `perimeter_intrusion` / `perimeter_tamper` on `<zone>/<segment>` — and a restore becomes
`{"kind": "cleared", "cleared": "intrusion", …}`. "An alarm pops up the linked camera": when a camera of
the segment is watched by this agent (a `PerimeterWatch`), a snapshot is taken from it (bounded by
`SNAPSHOT_TIMEOUT_S`) and filed as the incident's evidence like a video intrusion's; an unreachable
camera only costs the picture, never the alarm.

A controller that goes quiet (Modbus timeouts, refused connection, no line or heartbeat for
`stale_after_s`) reports each of its sensors down — `DeviceHealth`, the log and one `device_offline`
alarm event — and keeps reconnecting under `supervise`; when it answers again each sensor is reported
up (a `device_health` event, which clears the alarm at the hub). Nothing here ends the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.drivers.base import supervise
from edge_agent.drivers.health import DeviceHealth
from edge_agent.fence_signals import ContactTracker, FenceLine, FenceLineError, parse_fence_line
from edge_agent.outbox import Outbox
from edge_agent.perimeter_watch import _INCIDENTS
from efence.contract import DeviceStatus, EventType
from firmware_configs.schema import FenceSegment, FenceSensor

if TYPE_CHECKING:
    from edge_agent.perimeter_watch import PerimeterWatch

log = logging.getLogger("efence.fence")

SNAPSHOT_TIMEOUT_S = 2.0  # the alarm waits at most this long for the linked camera's picture
MAX_READ_BITS = 2000  # FC02 limit per request
MAX_BACKOFF_S = 5.0


@dataclass
class SensorState:
    """What the watch knows about one sensor: its contacts, open incidents and health."""

    segment: FenceSegment
    sensor: FenceSensor
    health: DeviceHealth
    alarm: ContactTracker
    tamper: ContactTracker | None
    open: dict[str, str] = field(default_factory=dict)  # "intrusion"/"tamper" → incident id
    last_intrusion_at: float | None = None


@dataclass(frozen=True)
class _Report:
    """One thing for the outbox, queued so raise, clear, down and up keep their order."""

    what: str  # "alarm" | "cleared" | "down" | "up"
    state: SensorState
    kind: str = ""  # "intrusion" | "tamper"
    when: datetime = field(default_factory=lambda: datetime.now(UTC))
    position_m: float | None = None
    level: float | None = None
    detail: str = ""
    incident: str = ""  # alarm: the `<ts>-<seq>` stamp of its incident id; cleared: the incident id


class FenceSensorWatch:
    """Read every fence sensor of one agent and report alarms; `await run()` until cancelled."""

    def statuses(self) -> list[DeviceStatus]:
        """Each sensor's health for the agent's retained status (`fence_devices`, beside the fence
        cameras), so the hub lists it from the start and clears its `device_offline` when it is back."""
        return [
            DeviceStatus(type=f"fence_{st.sensor.type}", **st.health.snapshot())
            for st in self.states.values()
        ]

    def __init__(
        self,
        agent_id: str,
        sensors: list[tuple[FenceSegment, FenceSensor]],
        outbox: Outbox,
        evidence_dir: Path,
        *,
        cameras: dict[str, PerimeterWatch] | None = None,
        on_evidence: Callable[[Path], None] = lambda path: None,
        on_event: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent_id = agent_id
        self.outbox = outbox
        self.evidence_dir = Path(evidence_dir)
        self.cameras = cameras or {}  # segment id → the perimeter watch of its first watched camera
        self.on_evidence = on_evidence
        self.on_event = on_event
        self.clock = clock
        self.stopping = False
        self.counters: dict[str, int] = defaultdict(int)
        self.states: dict[str, SensorState] = {}
        modbus: dict[tuple[str, int], list[SensorState]] = defaultdict(list)
        lines: dict[tuple[str, int], list[SensorState]] = defaultdict(list)
        for segment, sensor in sensors:
            where = sensor.where
            hold = sensor.debounce_ms / 1000
            state = SensorState(
                segment,
                sensor,
                DeviceHealth(sensor.id, failures_before_down=1),
                ContactTracker(hold, normally_closed=sensor.normally_closed),
                ContactTracker(hold, normally_closed=sensor.normally_closed)
                if sensor.tamper_input is not None
                else None,
            )
            state.health.counters.update({"intrusions": 0, "tampers": 0, "cleared": 0})
            self.states[sensor.id] = state
            if where.kind == "modbus":
                modbus[(where.host, where.port)].append(state)
            elif where.kind == "socket":
                lines[(where.host, where.port)].append(state)
        self.controllers: list[ModbusController | LineController] = [
            ModbusController(self, host, port, group) for (host, port), group in modbus.items()
        ] + [LineController(self, host, port, group) for (host, port), group in lines.items()]
        self._queue: asyncio.Queue[_Report] = asyncio.Queue()
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ task
    async def run(self) -> None:
        if not self.controllers:
            return
        log.info(
            "agent %s: reading %d fence sensors on %d controllers (%s)",
            self.agent_id,
            len(self.states),
            len(self.controllers),
            ", ".join(c.name for c in self.controllers),
        )
        async with httpx.AsyncClient(timeout=SNAPSHOT_TIMEOUT_S) as http:
            self._http = http
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._reporter(), name="fence reports")
                    for controller in self.controllers:
                        tg.create_task(controller.run(), name=f"fence {controller.name}")
            finally:
                self.stopping = True
                self._http = None

    # ------------------------------------------------------------------ called by the controllers
    def contact(self, state: SensorState, which: str, bit: bool, now: float) -> None:
        """One polled contact bit (`which` = "intrusion" or "tamper") through its debouncer."""
        tracker = state.alarm if which == "intrusion" else state.tamper
        assert tracker is not None
        edge = tracker.update(bit, now)
        if edge == "raised":
            self._raise(
                state, which, detail=f"{'alarm' if which == 'intrusion' else 'tamper'} contact tripped"
            )
        elif edge == "cleared":
            self._clear(state, which)

    def line(self, state: SensorState, line: FenceLine, now: float) -> None:
        """One valid line of the line protocol addressed to this sensor."""
        if line.kind == "intrusion":
            last = state.last_intrusion_at
            if "intrusion" in state.open and last is not None and now - last < state.sensor.realarm_after_s:
                state.health.counters["intrusion_lines_merged"] = (
                    state.health.counters.get("intrusion_lines_merged", 0) + 1
                )
                return
            state.last_intrusion_at = now
            position, detail = line.position_m, line.detail or ""
            length = state.segment.length_m
            if position is not None and position > length:
                self.counters["bad_position"] += 1
                log.warning(
                    "fence sensor %s: position_m %.1f is beyond segment %s (%.0f m); alarm sent without it",
                    state.sensor.id,
                    position,
                    state.segment.id,
                    length,
                )
                detail = f"{detail} (reported position {position:.1f} m beyond the segment)".strip()
                position = None
            self._raise(state, "intrusion", position_m=position, level=line.level, detail=detail)
        elif line.kind == "tamper":
            if "tamper" not in state.open:
                self._raise(state, "tamper", level=line.level, detail=line.detail or "")
        elif line.kind == "clear":
            for kind in list(state.open):
                self._clear(state, kind)
            state.last_intrusion_at = None

    def controller_ok(self, states: list[SensorState], now: float) -> None:
        for state in states:
            was_down = state.health.observed == "down"
            state.health.ok(now)
            if was_down:
                log.info("fence sensor %s is back", state.sensor.id)
                self._queue.put_nowait(_Report("up", state))

    def controller_down(self, states: list[SensorState], reason: str) -> None:
        for state in states:
            if state.health.failed(reason):
                log.warning(
                    "fence sensor %s (segment %s, %s) down: %s",
                    state.sensor.id,
                    state.segment.id,
                    state.sensor.endpoint,
                    reason,
                )
                self._queue.put_nowait(_Report("down", state, detail=reason))

    def _raise(self, state: SensorState, kind: str, **kw: Any) -> None:
        when = datetime.now(UTC)
        seq = f"{when.microsecond // 1000:03d}{next(_INCIDENTS) % 1000:03d}"
        stamp = f"{when:%Y%m%dT%H%M%S}-{seq}"  # the evidence uploader's `<lane>-<ts>-<seq>` shape
        state.open[kind] = f"{self.agent_id}/perimeter-{stamp}"
        self._queue.put_nowait(_Report("alarm", state, kind, when, incident=stamp, **kw))
        state.health.counters["intrusions" if kind == "intrusion" else "tampers"] += 1

    def _clear(self, state: SensorState, kind: str) -> None:
        incident_id = state.open.pop(kind, None)
        if incident_id is not None:
            self._queue.put_nowait(_Report("cleared", state, kind, incident=incident_id))
            state.health.counters["cleared"] += 1

    # ------------------------------------------------------------------ reports, in order
    async def _reporter(self) -> None:
        try:
            while True:
                report = await self._queue.get()
                try:
                    await self._send(report)
                except Exception:  # noqa: BLE001 — one report failing (disk) must not stop the others
                    log.exception("fence sensor %s: %s not recorded", report.state.sensor.id, report.what)
                self.on_event()
        except asyncio.CancelledError:
            await self._flush_on_stop()
            raise

    async def _flush_on_stop(self) -> None:
        """The agent is stopping: write what is still queued (an alarm seen a moment before the stop must
        not vanish), without waiting for snapshots; bounded, so a stuck disk cannot hold the stop."""
        self.stopping = True
        left = self._queue.qsize()
        try:
            async with asyncio.timeout(2.0):
                while not self._queue.empty():
                    await self._send(self._queue.get_nowait())
        except Exception as exc:  # noqa: BLE001 — logged with how much was lost
            log.error("fence sensors: %d report(s) not recorded at stop: %s", self._queue.qsize() + 1, exc)
        else:
            if left:
                log.info("fence sensors: %d pending report(s) recorded at stop", left)

    async def _send(self, r: _Report) -> None:
        s, seg = r.state.sensor, r.state.segment
        base = {
            "source": "sensor",
            "sensor": s.id,
            "sensor_type": s.type,
            "segment": seg.id,
            "segment_name": seg.name,
        }
        if r.what == "alarm":
            await self._send_alarm(r, base)
        elif r.what == "cleared":
            incident_id = r.incident or None
            await self.outbox.append(
                EventType.PERIMETER,
                {
                    **base,
                    "kind": "cleared",
                    "cleared": r.kind,
                    "incident_id": incident_id,
                    "detail": f"{_words(s)} {s.id} on fence segment {seg.id} ({seg.name}) back to normal "
                    f"({r.kind} cleared)",
                },
                correlation_id=incident_id,
                observed_at=r.when,
            )
            log.info("fence sensor %s: %s cleared on segment %s", s.id, r.kind, seg.id)
        elif r.what == "down":
            await self.outbox.append(
                EventType.ALARM,
                {
                    "kind": "alarm",
                    "alarm": "device_offline",
                    "severity": "warning",
                    "device_id": s.id,
                    "segment": seg.id,
                    "sensor_type": s.type,
                    "endpoint": s.endpoint,
                    "detail": f"fence sensor {s.id} (segment {seg.id}) down: {r.detail}",
                },
                observed_at=r.when,
            )
        elif r.what == "up":
            await self.outbox.append(
                EventType.DEVICE_HEALTH,
                {"device_id": s.id, "observed": "up", "type": s.type, "segment": seg.id},
                observed_at=r.when,
            )

    async def _send_alarm(self, r: _Report, base: dict[str, Any]) -> None:
        s, seg = r.state.sensor, r.state.segment
        stamp = r.incident
        incident_id = f"{self.agent_id}/perimeter-{stamp}"
        name, path, stopped = None, None, False
        try:
            snap = None if self.stopping else await self._snapshot(seg.id)
            if snap is not None:
                camera_id, jpeg = snap
                name = f"{self.agent_id.replace('/', '_')}_perimeter-{stamp}-{camera_id}-snapshot.jpg"
                path = self.evidence_dir / r.when.strftime("%Y%m%d") / "perimeter" / name
                try:
                    await asyncio.to_thread(_write, path, jpeg)
                except OSError as exc:  # no picture is bad; no alarm would be worse
                    log.error("fence sensor %s: snapshot not written (%s)", s.id, exc)
                    name = path = None
        except asyncio.CancelledError:  # stopping while the picture was fetched: the alarm goes without it
            name, path, stopped = None, None, True
        watch = self.cameras.get(seg.id)
        where = f" at {r.position_m:.1f} m" if r.position_m is not None else ""
        what = "Intrusion" if r.kind == "intrusion" else "Tamper"
        payload = {
            **base,
            "kind": r.kind,
            "position_m": r.position_m,
            "locate_resolution_m": s.locate_resolution_m,
            "level": r.level,
            "camera_id": watch.camera.id if watch is not None else None,
            "incident_id": incident_id,
            "snapshot": name,
            "detail": f"{what} on fence segment {seg.id} ({seg.name}){where}, {_words(s)} {s.id}"
            + (f": {r.detail}" if r.detail else ""),
        }
        await self.outbox.append(EventType.PERIMETER, payload, correlation_id=incident_id, observed_at=r.when)
        log.warning("%s on fence segment %s%s (sensor %s): %s", r.kind, seg.id, where, s.id, incident_id)
        if path is not None:
            self.on_evidence(path)
        if stopped:
            raise asyncio.CancelledError

    async def _snapshot(self, segment_id: str) -> tuple[str, bytes] | None:
        """A JPEG from the segment's camera this agent watches, or None (no camera, unreachable, slow)."""
        watch = self.cameras.get(segment_id)
        if watch is None:
            return None
        camera = watch.camera
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                if camera.source == "snapshot":
                    assert self._http is not None
                    response = await self._http.get(camera.stream_url)
                    response.raise_for_status()
                    return camera.id, response.content
                source = getattr(watch, "_source", None)  # the watch's capture thread, when it runs
                frame = source.buffer.latest() if source is not None else None
                if frame is None or time.monotonic() - frame.monotonic > camera.stale_after_s:
                    raise LookupError("no fresh frame from its stream")
                return camera.id, await asyncio.to_thread(_jpeg, frame.image)
        except (httpx.HTTPError, TimeoutError, OSError, LookupError, ValueError, ImportError) as exc:
            self.counters["snapshots_missed"] += 1
            log.warning(
                "fence segment %s: no snapshot from camera %s (%s: %s); alarm sent without it",
                segment_id,
                camera.id,
                type(exc).__name__,
                exc,
            )
            return None


class _Controller:
    """What both kinds of controller share: one supervised connection and a staleness watchdog."""

    kind = ""

    def __init__(self, watch: FenceSensorWatch, host: str, port: int, states: list[SensorState]) -> None:
        self.watch = watch
        self.host, self.port = host, port
        self.states = states
        self.name = f"{self.kind}://{host}:{port}"
        self.stale_s = min(s.sensor.stale_after_s for s in states)
        self.link = DeviceHealth(self.name, failures_before_down=1)
        self.log = logging.getLogger(f"efence.fence.{host}:{port}")
        self.last_ok = watch.clock()

    async def run(self) -> None:
        self.last_ok = self.watch.clock()  # quiet is counted from the start, not from construction
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watchdog())
            tg.create_task(
                supervise(
                    self._serve,
                    self.link,
                    self.log,
                    max_backoff_s=min(MAX_BACKOFF_S, self.stale_s),
                    stopping=lambda: self.watch.stopping,
                )
            )

    async def _serve(self) -> None:
        raise NotImplementedError

    def ok(self) -> None:
        self.last_ok = self.watch.clock()
        self.watch.controller_ok(self.states, self.last_ok)

    async def _watchdog(self) -> None:
        tick = min(0.2, self.stale_s / 4)
        while True:
            await asyncio.sleep(tick)
            quiet = self.watch.clock() - self.last_ok
            if quiet > self.stale_s:
                why = f" (last error: {self.link.last_error})" if self.link.last_error else ""
                self.watch.controller_down(self.states, f"{self.name}: no answer for {quiet:.1f} s{why}")


class ModbusController(_Controller):
    """An IO module with the alarm (and tamper) contacts of one or more fence controllers."""

    kind = "modbus"

    def __init__(self, watch: FenceSensorWatch, host: str, port: int, states: list[SensorState]) -> None:
        super().__init__(watch, host, port, states)
        self.interval_s = min(s.sensor.poll_interval_ms for s in states) / 1000
        self.timeout_s = max(0.2, min(1.0, self.stale_s / 3))
        # per unit: the contacts to read and the span of discrete inputs covering them
        self.units: dict[int, list[tuple[SensorState, str, int]]] = defaultdict(list)
        for state in states:
            where = state.sensor.where
            self.units[where.unit].append((state, "intrusion", where.input))
            if state.sensor.tamper_input is not None:
                self.units[where.unit].append((state, "tamper", state.sensor.tamper_input))
        self.spans = {
            unit: (
                min(a for *_, a in contacts),
                max(a for *_, a in contacts) - min(a for *_, a in contacts) + 1,
            )
            for unit, contacts in self.units.items()
        }
        for unit, (start, count) in self.spans.items():
            if count > MAX_READ_BITS:
                raise ValueError(
                    f"fence IO module {self.name} unit {unit}: inputs {start}..{start + count - 1} span more "
                    f"than the {MAX_READ_BITS} one read can return; use nearby input numbers"
                )

    async def _serve(self) -> None:
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            framer=FramerType.SOCKET,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        try:
            async with asyncio.timeout(self.timeout_s + 1.0):
                connected = await client.connect()
            if not connected:
                raise ConnectionError(f"cannot connect to fence IO module {self.host}:{self.port}")
            while not self.watch.stopping:
                started = self.watch.clock()
                await self.poll_once(client)
                await asyncio.sleep(max(0.0, self.interval_s - (self.watch.clock() - started)))
        finally:
            client.close()

    async def poll_once(self, client: AsyncModbusTcpClient) -> None:
        readings: list[tuple[SensorState, str, bool]] = []
        for unit, contacts in self.units.items():
            start, count = self.spans[unit]
            try:
                # asyncio.timeout, not wait_for: the latter can swallow the agent's cancellation (3.11)
                async with asyncio.timeout(self.timeout_s + 0.2):
                    result = await client.read_discrete_inputs(start, count=count, device_id=unit)
            except TimeoutError:
                raise ConnectionError(f"unit {unit}: no answer within {self.timeout_s:.2f} s") from None
            if result.isError():
                raise ConnectionError(f"unit {unit}: read discrete inputs {start}+{count}: {result}")
            bits = result.bits
            if len(bits) < count:
                raise ConnectionError(f"unit {unit}: short read, {len(bits)} of {count} inputs")
            readings += [(state, which, bool(bits[a - start])) for state, which, a in contacts]
        now = self.watch.clock()
        self.ok()
        for state, which, bit in readings:
            self.watch.contact(state, which, bit, now)


class LineController(_Controller):
    """A fibre/cable controller (or its gateway) speaking the fence line protocol over TCP."""

    kind = "socket"

    def __init__(self, watch: FenceSensorWatch, host: str, port: int, states: list[SensorState]) -> None:
        super().__init__(watch, host, port, states)
        self.zones = {s.sensor.controller_zone or s.sensor.id: s for s in states}
        self._unknown_zones: set[str] = set()

    async def _serve(self) -> None:
        async with asyncio.timeout(min(5.0, self.stale_s)):
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=8192)
        self.log.info("fence controller %s connected", self.name)
        try:
            while not self.watch.stopping:
                try:
                    async with asyncio.timeout(self.stale_s):
                        raw = await reader.readline()
                except TimeoutError:
                    raise ConnectionError(f"no line or heartbeat for {self.stale_s:.1f} s") from None
                except ValueError:  # longer than the reader's limit: skipped up to the next newline
                    self.ok()
                    self._malformed(b"", "line longer than 8 KiB")
                    continue
                if not raw:
                    return  # controller closed the connection: supervise reconnects
                self.ok()
                text = raw.rstrip(b"\r\n")
                if not text.strip():
                    continue
                try:
                    line = parse_fence_line(text)
                except FenceLineError as exc:
                    self._malformed(text, str(exc))
                    continue
                if line.kind == "heartbeat":
                    continue
                state = self.zones.get(line.zone or "")
                if state is None:
                    self.watch.counters["unknown_zone"] += 1
                    if line.zone not in self._unknown_zones:
                        self._unknown_zones.add(line.zone or "")
                        self.log.warning(
                            "fence controller %s: line for zone %r ignored: no sensor of this agent has "
                            "controller_zone (or id) %r; known: %s",
                            self.name,
                            line.zone,
                            line.zone,
                            ", ".join(sorted(self.zones)),
                        )
                    continue
                self.watch.line(state, line, self.watch.clock())
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _malformed(self, text: bytes, why: str) -> None:
        self.watch.counters["malformed_lines"] += 1
        n = self.watch.counters["malformed_lines"]
        if n <= 20 or n % 100 == 0:  # a babbling controller must not flood the log
            self.log.warning(
                "fence controller %s: malformed line ignored (#%d): %s; got %r",
                self.name,
                n,
                why,
                text[:120],
            )


def _words(sensor: FenceSensor) -> str:
    return {
        "vibration_fibre": "vibration fibre",
        "vibration_cable": "vibration cable",
        "ir_beam": "IR beam",
        "microwave": "microwave",
    }[sensor.type]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _jpeg(image: Any) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("frame could not be encoded as JPEG")
    return buf.tobytes()
