"""Modbus IO board: loop detectors, barrier relays, limit switches and the traffic light of one lane.

The board is polled (FC02 read discrete inputs) every `poll_interval_ms`. What the lane gets:

* `LoopState` for the arming, safety and exit loops — a *debounced* level, emitted on change; a level
  counts only once the raw input has held it for `debounce_ms` (PROTOCOLS.md §7: 50–100 ms).
* `ArmPosition` from the arm-up / arm-down limit switches, debounced the same way, emitted on change.
  A relay that clicks but does not move the arm simply produces *no* new `ArmPosition`: the lane
  controller's open-timeout turns that silence into a fault.
* When no poll has succeeded for `stale_after_ms`, every loop is emitted as `occupied=None` and the arm
  as `ArmPosition(None, None)` — unknown. The controller treats an unknown safety loop as occupied.

Commands (`await driver.command(...)`):

* `BarrierPulse(action="open" | "close")` — a *pulse* on the barrier controller's dry-contact input,
  never a latched relay. Coil boards: FC05 on, `pulse_ms`, FC05 off (the off is sent even if the caller
  is cancelled mid-pulse). Command-register boards (R421A08 style, PROTOCOLS.md §4.2): FC06 register =
  channel, command 05 *momentary* (the board releases the relay itself) or, with
  `register_pulse: open_close`, command 01, `pulse_ms`, command 02. On every (re)connect both barrier
  outputs are driven off, so a pulse cut short by a lost link cannot leave a contact closed.
* A close pulse is *refused* (`CommandRefused`) unless the safety loop reads free — both the debounced
  level and a fresh read taken immediately before the relay is driven. This is defence in depth behind
  the lane controller and the barrier's own hard-wired presence inhibit, which stays authoritative.
* `SetLight(color="red" | "green" | "off")` — traffic-light lamps are levels (one lamp on, the other off).

The per-board register map (`OutputMap`) hides coil vs. command-register boards; discrete inputs are read
with FC02 on both kinds. Connection loss is handled by `supervise` (reconnect with back-off); health is
up after a good poll, down after `failures_before_down` consecutive failures.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edge_agent.drivers.base import CommandNotSupported, DeviceCommand, Driver, Emit, supervise
from edge_agent.drivers.registry import register
from edge_agent.observations import ArmPosition, LoopName, LoopState
from firmware_configs.devices import IoBoardConfig

LOOPS: tuple[LoopName, ...] = ("arming", "safety", "exit")

# R421A08 command byte (high byte of the FC06 value), PROTOCOLS.md §4.2.
CMD_OPEN = 0x01  # relay on ("open" in the vendor's wording: 打开)
CMD_CLOSE = 0x02  # relay off
CMD_MOMENTARY = 0x05  # relay on, released by the board after about 1 s
MOMENTARY_S = 1.0


@dataclass(frozen=True, slots=True)
class BarrierPulse(DeviceCommand):
    """Pulse the barrier controller's OPEN or CLOSE input."""

    action: Literal["open", "close"]


@dataclass(frozen=True, slots=True)
class SetLight(DeviceCommand):
    """Show one traffic-light lamp (or none)."""

    color: Literal["red", "green", "off"]


class CommandRefused(Exception):
    """The driver will not carry out a command: safety re-check failed, or the board is unreachable."""


class ModbusRequestFailed(Exception):
    """The board answered with a Modbus exception, or not at all."""


class Debouncer:
    """A level that changes only after the raw input held the new value for `hold_s`.

    The first reading after an unknown period is taken at once: there is no earlier level to protect.
    """

    __slots__ = ("hold_s", "level", "_candidate", "_since")

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self.level: bool | None = None
        self._candidate: bool | None = None
        self._since = 0.0

    def update(self, raw: bool, now: float) -> bool:
        """Feed one sample; True when the accepted level changed."""
        if self.level is None or (raw != self.level and self.hold_s <= 0):
            changed = self.level != raw
            self.level, self._candidate = raw, None
            return changed
        if raw == self.level:
            self._candidate = None
            return False
        if self._candidate != raw:
            self._candidate, self._since = raw, now
        if now - self._since >= self.hold_s:
            self.level, self._candidate = raw, None
            return True
        return False

    def forget(self) -> None:
        self.level = self._candidate = None


# --------------------------------------------------------------------------- register map
@dataclass(frozen=True, slots=True)
class Write:
    """One Modbus write: FC05 (coil) or FC06 (register)."""

    function: Literal[5, 6]
    address: int
    value: int | bool


class OutputMap:
    """How relays of one board are driven: which function code, address and value per relay state."""

    def __init__(self, config: IoBoardConfig):
        self.mode = config.output_mode
        self.momentary = config.output_mode == "command_register" and config.register_pulse == "momentary"

    def set(self, channel: int, on: bool) -> Write:
        if self.mode == "coils":
            return Write(5, channel, on)
        return Write(6, channel, (CMD_OPEN if on else CMD_CLOSE) << 8)

    def pulse_writes(self, channel: int) -> tuple[Write, Write | None]:
        """(start, end) of a pulse; end is None when the board times the pulse itself."""
        if self.momentary:
            return Write(6, channel, CMD_MOMENTARY << 8), None
        return self.set(channel, True), self.set(channel, False)


def make_client(config: IoBoardConfig, timeout_s: float) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """A pymodbus client for the board's link, with pymodbus' own reconnect off (`supervise` does that)."""
    link = config.link
    common: dict[str, Any] = {"timeout": timeout_s, "retries": 0, "reconnect_delay": 0}
    if link.kind == "tcp":
        framer = FramerType.SOCKET if link.framer == "socket" else FramerType.RTU
        return AsyncModbusTcpClient(link.host, port=link.port, framer=framer, **common)
    s = link.serial
    return AsyncModbusSerialClient(
        s.port,
        framer=FramerType.RTU,
        baudrate=s.baudrate,
        bytesize=s.bytesize,
        parity=s.parity,
        stopbits=s.stopbits,
        **common,
    )


# --------------------------------------------------------------------------- driver
@register("io_board")
class IoBoardDriver(Driver):
    """Polls one IO board and drives its relays; see the module docstring for the contract."""

    config_type = IoBoardConfig
    config: IoBoardConfig

    def __init__(
        self,
        config: IoBoardConfig,
        emit: Emit,
        *,
        lane: str = "",
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(config, emit, lane=lane, log=log)
        self.clock = clock
        self.outputs = OutputMap(config)
        hold = config.debounce_ms / 1000
        self.loops: dict[LoopName, Debouncer] = {name: Debouncer(hold) for name in LOOPS}
        self.arm_up = Debouncer(hold)
        self.arm_down = Debouncer(hold)
        self.safety_raw: bool | None = None
        ins = config.inputs
        self._addr = {
            "arming": ins.arming_loop,
            "safety": ins.safety_loop,
            "exit": ins.exit_loop,
            "arm_up": ins.arm_up,
            "arm_down": ins.arm_down,
        }
        self._di_start = min(self._addr.values())
        self._di_count = max(self._addr.values()) - self._di_start + 1
        self._timeout_s = min(0.5, config.stale_after_ms / 2000)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._pulse_lock = asyncio.Lock()
        self._last_read_at: float | None = None
        self._stale = True
        self._stale_announced = False
        self.counters = self.health.counters
        self.counters.update({"polls": 0, "pulses": 0, "refused": 0, "relay_release_failed": 0})

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        if not self.config.enabled:
            await asyncio.Event().wait()  # operator switched it off: no polling, no alarms
        self._last_read_at = self.clock()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._stop_when_cancelled())
            tg.create_task(self._stale_watchdog())
            tg.create_task(
                supervise(
                    self._connect_and_poll,
                    self.health,
                    self.log,
                    max_backoff_s=self.config.reconnect_max_s,
                    stopping=lambda: self.stopping,
                )
            )

    async def _stop_when_cancelled(self) -> None:
        """Cancelled with its siblings when `run` is: sets `stopping`, which ends the poll loop and
        `supervise` even if pymodbus swallowed the cancellation inside connect (asyncio.wait_for, 3.11)."""
        try:
            await asyncio.Event().wait()
        finally:
            self.stopping = True

    async def _connect_and_poll(self) -> None:
        client = make_client(self.config, self._timeout_s)
        try:
            if not await client.connect():
                raise ConnectionError(f"cannot connect to IO board {self._where()}")
            self._client = client
            await self._release_barrier_outputs()
            interval = self.config.poll_interval_ms / 1000
            while not self.stopping:
                started = self.clock()
                await self.poll_once()
                await asyncio.sleep(max(0.0, interval - (self.clock() - started)))
        finally:
            self._client = None
            client.close()

    def _where(self) -> str:
        link = self.config.link
        return f"{link.host}:{link.port}" if link.kind == "tcp" else link.serial.port

    async def _request(self, function: str, *args: Any, **kwargs: Any) -> Any:
        client = self._client
        if client is None or not client.connected:
            raise ConnectionError("IO board not connected")
        method = getattr(client, function)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # races with the answer, and the driver would poll on through the agent's shutdown
            async with asyncio.timeout(self._timeout_s + 0.2):
                result = await method(*args, **kwargs, device_id=self.config.unit)
        except TimeoutError as exc:
            raise ModbusRequestFailed(f"{function}: no answer within {self._timeout_s:.2f} s") from exc
        if result.isError():
            raise ModbusRequestFailed(f"{function}: {result}")
        return result

    async def _write(self, w: Write) -> None:
        if w.function == 5:
            await self._request("write_coil", w.address, bool(w.value))
        else:
            await self._request("write_register", w.address, int(w.value))

    async def _release_barrier_outputs(self) -> None:
        """Drive both barrier outputs off: nothing a lost link interrupted may stay latched."""
        for channel in (self.config.outputs.barrier_open, self.config.outputs.barrier_close):
            await self._write(self.outputs.set(channel, False))

    # ------------------------------------------------------------------ inputs
    async def poll_once(self) -> None:
        """Read the discrete inputs once and emit whatever changed."""
        result = await self._request("read_discrete_inputs", self._di_start, count=self._di_count)
        now = self.clock()
        bits = result.bits
        if len(bits) < self._di_count:
            raise ModbusRequestFailed(f"short read: {len(bits)} of {self._di_count} inputs")
        self.counters["polls"] += 1
        self.health.ok(now)
        self._apply({name: bool(bits[a - self._di_start]) for name, a in self._addr.items()}, now)

    def _apply(self, raw: dict[str, bool], now: float) -> None:
        self._last_read_at = now
        self._stale = self._stale_announced = False
        self.safety_raw = raw["safety"]
        for name in LOOPS:
            if self.loops[name].update(raw[name], now):
                self.emit(LoopState(self.config.id, name, self.loops[name].level, now))
        up = self.arm_up.update(raw["arm_up"], now)
        down = self.arm_down.update(raw["arm_down"], now)
        if up or down:
            self.emit(ArmPosition(self.config.id, self.arm_up.level, self.arm_down.level, now))

    async def _stale_watchdog(self) -> None:
        stale_s = self.config.stale_after_ms / 1000
        tick = min(0.1, stale_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            if self._last_read_at is not None and now - self._last_read_at > stale_s:
                self._go_stale(now)

    def _go_stale(self, now: float) -> None:
        self._stale = True
        self.safety_raw = None
        if self._stale_announced:
            return
        self._stale_announced = True
        self.log.warning(
            "IO board %s: no input reading for %d ms, loops unknown",
            self.config.id,
            self.config.stale_after_ms,
        )
        for name in LOOPS:
            self.loops[name].forget()
            self.emit(LoopState(self.config.id, name, None, now))
        self.arm_up.forget()
        self.arm_down.forget()
        self.emit(ArmPosition(self.config.id, None, None, now))

    @property
    def safety_loop_free(self) -> bool:
        """True only if the latest reading is fresh and both the debounced and raw safety loop are free."""
        return not self._stale and self.loops["safety"].level is False and self.safety_raw is False

    # ------------------------------------------------------------------ commands
    async def command(self, command: DeviceCommand) -> None:
        if isinstance(command, BarrierPulse):
            await self._barrier_pulse(command.action)
        elif isinstance(command, SetLight):
            await self._set_light(command.color)
        else:
            raise CommandNotSupported(f"io_board {self.config.id} cannot {command!r}")

    async def _barrier_pulse(self, action: Literal["open", "close"]) -> None:
        outs = self.config.outputs
        channel = outs.barrier_open if action == "open" else outs.barrier_close
        async with self._pulse_lock:
            if self._client is None:
                self.counters["refused"] += 1
                raise CommandRefused(f"barrier {action}: IO board {self.config.id} not connected")
            if action == "close":
                await self._recheck_safety()
            start, end = self.outputs.pulse_writes(channel)
            await self._write(start)
            self.counters["pulses"] += 1
            if end is None:
                await asyncio.sleep(MOMENTARY_S)  # the board releases the relay; do not overlap pulses
                return
            try:
                await asyncio.sleep(self.config.pulse_ms / 1000)
            finally:
                # Shielded: a cancelled caller must not leave the relay on.
                await asyncio.shield(self._end_pulse(end, action))

    async def _end_pulse(self, end: Write, action: str) -> None:
        try:
            await self._write(end)
        except Exception as exc:  # noqa: BLE001 — reported; the reconnect path releases the relay again
            self.counters["relay_release_failed"] += 1
            self.health.failed(f"barrier {action} relay release failed: {exc}")
            self.log.error(
                "IO board %s: releasing barrier %s relay failed (%s); will release on reconnect",
                self.config.id,
                action,
                exc,
            )
            client = self._client
            if client is not None:
                client.close()  # force a reconnect, whose first act is to release both barrier outputs

    async def _recheck_safety(self) -> None:
        if not self.safety_loop_free:
            self.counters["refused"] += 1
            raise CommandRefused(f"barrier close refused: safety loop {self._safety_words()}")
        try:
            await self.poll_once()  # a fresh reading, immediately before the relay moves
        except Exception as exc:
            self.counters["refused"] += 1
            raise CommandRefused(f"barrier close refused: safety re-read failed ({exc})") from exc
        if not self.safety_loop_free:
            self.counters["refused"] += 1
            raise CommandRefused(f"barrier close refused: safety loop {self._safety_words()}")

    def _safety_words(self) -> str:
        if self._stale or self.safety_raw is None:
            return "unknown (stale inputs)"
        return "occupied"

    async def _set_light(self, color: Literal["red", "green", "off"]) -> None:
        outs = self.config.outputs
        if self._client is None:
            raise CommandRefused(f"light {color}: IO board {self.config.id} not connected")
        # Switch the lamp going off first, so two lamps are never lit together.
        off = [
            c
            for c, lit in ((outs.light_green, color == "green"), (outs.light_red, color == "red"))
            if not lit
        ]
        on = [c for c, lit in ((outs.light_green, color == "green"), (outs.light_red, color == "red")) if lit]
        for channel in off:
            await self._write(self.outputs.set(channel, False))
        for channel in on:
            await self._write(self.outputs.set(channel, True))

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "loops": {name: d.level for name, d in self.loops.items()},
            "arm_up": self.arm_up.level,
            "arm_down": self.arm_down.level,
            "stale": self._stale,
        }
