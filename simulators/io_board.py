"""A Modbus IO board that renders a `LaneScene`: a pymodbus server speaking the board's real protocol.

Discrete inputs are read live from the scene (`scene.loops()` and the barrier's limit switches) at the
addresses of the board's `IoBoardConfig.inputs`; relay writes drive the barrier: a rising edge on the
`barrier_open` output is the barrier controller's OPEN contact closing (`scene.barrier.command(True)`),
one on `barrier_close` closes it. Coil boards take FC05/FC15 and answer FC01; command-register boards
(R421A08 style) take FC06 register = channel, high byte 01 on / 02 off / 03 toggle / 05 momentary (the
board releases the relay after `MOMENTARY_S`) / 07 all on / 08 all off, and answer FC03 with the relay
state. The wrong family of function code is refused with ILLEGAL FUNCTION, as such boards do.

Usage (one server per board; the lead's 22-lane demo constructs one per configured board)::

    sim = IoBoardSimulator(config, scene)            # scene=None: its own scene with repeating trucks
    port = await sim.start("127.0.0.1", 0)           # 0 picks a free port; returns the port
    ...
    sim.faults.relay_dead = True                     # relay clicks, arm does not move
    sim.faults.stuck_loops["safety"] = True          # a loop detector stuck at "occupied"
    sim.faults.silent = True                         # board stops answering (link stays open)
    await sim.drop_connections()                     # board resets: every client is disconnected
    await sim.stop()                                 # and `start(port=the_same_port)` again

The framer follows the board's link (`socket` Modbus/TCP, `rtu` RTU-over-TCP; an RS-485 `rtu` link is
served as RTU-over-TCP). `relays` holds the current relay states and `relay_log` every change, so a test
can prove a pulse was released. Each simulator is one pymodbus TCP listener plus one 20 ms scene task;
22 of them idle at well under 1 % CPU. (A shared server with many unit ids would be cheaper still, but
every configured board has its own host:port, so one listener per board mirrors the field.)

`TruckFeeder` keeps a standalone scene busy with sample trucks (valid plates and ISO 6346 numbers).
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.plates import iso6346_check_digit
from firmware_configs.devices import IoBoardConfig, IoInputs, IoOutputs, ModbusTcpLink
from simulators.scene import LaneScene, VehicleSpec
from simulators.transport import PtyChannel

log = logging.getLogger("efence.sim.io_board")

MOMENTARY_S = 1.0
FC_READ_COILS, FC_READ_DI, FC_READ_HR = 1, 2, 3
FC_WRITE_COIL, FC_WRITE_REG, FC_WRITE_COILS = 5, 6, 15


@dataclass
class IoBoardFaults:
    """Faults a field engineer (or a test) can switch on while the simulator runs."""

    relay_dead: bool = False  # the relay clicks but the arm never moves
    stuck_loops: dict[str, bool] = field(default_factory=dict)  # loop name → level it is stuck at
    silent: bool = False  # the board swallows every request and answers nothing


def _words(n_bits: int) -> int:
    return max(1, (n_bits + 15) // 16)


class IoBoardSimulator:
    """One simulated IO board; see the module docstring."""

    def __init__(
        self,
        config: IoBoardConfig,
        scene: LaneScene | None = None,
        faults: IoBoardFaults | None = None,
        *,
        advance_scene: bool = True,
        tick_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        trace_packet: Callable[[bool, bytes], None] | None = None,
    ):
        self.config = config
        self.feeder: TruckFeeder | None = None
        if scene is None:
            scene = LaneScene()
            self.feeder = TruckFeeder(scene)
        self.scene = scene
        self.faults = faults or IoBoardFaults()
        self.advance_scene = advance_scene
        self.tick_s = tick_s
        self.clock = clock
        self.trace = trace_packet
        outs = config.outputs
        self.relays: dict[int, bool] = {
            c: False for c in (outs.barrier_open, outs.barrier_close, outs.light_green, outs.light_red)
        }
        self.relay_log: list[tuple[float, int, bool]] = []
        self.requests = 0
        self._momentary: dict[int, asyncio.TimerHandle] = {}
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self._pty: PtyChannel | None = None
        self._bridge: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def framer(self) -> FramerType:
        link = self.config.link
        if isinstance(link, ModbusTcpLink) and link.framer == "socket" and not self._pty:
            return FramerType.SOCKET
        return FramerType.RTU

    def _device(self) -> SimDevice:
        ins = list(self.config.inputs.model_dump().values())
        outs = list(self.config.outputs.model_dump().values())
        n_di = 16 * _words(max(ins) + 1)
        n_co = 16 * _words(max(outs) + 1)
        n_hr = max(outs) + 1
        return SimDevice(
            self.config.unit,
            simdata=(
                [SimData(0, count=n_co, values=False, datatype=DataType.BITS)],
                [SimData(0, count=n_di, values=False, datatype=DataType.BITS)],
                [SimData(0, count=n_hr, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0 = any free port) and start the scene task; returns the port."""
        self._server = ModbusTcpServer(
            self._device(), framer=self.framer, address=(host, port), trace_packet=self._trace
        )
        await self._server.serve_forever(background=True)
        self.host, self.port = host, self._server.transport.sockets[0].getsockname()[1]
        if self.advance_scene and self._task is None:
            self._task = asyncio.create_task(self._advance_forever(), name=f"io-sim-{self.config.id}")
        log.info(
            "IO board simulator %s listening on %s:%d (%s)", self.config.id, host, self.port, self.framer
        )
        return self.port

    async def start_pty(self) -> str:
        """Serve the board on a new pseudo-terminal, RTU-framed as on RS-485; returns its path (/dev/pts/N).

        The pty master is bridged to an internal RTU-over-TCP listener, so one pymodbus server serves both;
        point a driver's `{kind: rtu, serial: {port: <path>}}` link (or any Modbus RTU master) at the path.
        """
        self._pty = PtyChannel()
        port = await self.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        channel = self._pty

        async def to_board() -> None:
            while data := await channel.read():
                writer.write(data)
                await writer.drain()

        async def to_pty() -> None:
            while data := await reader.read(4096):
                channel.write(data)

        self._bridge = [asyncio.create_task(to_board()), asyncio.create_task(to_pty())]
        self._bridge_writer = writer
        return channel.path

    async def stop(self) -> None:
        """Close the listener and every connection; the scene task stops too."""
        for task in self._bridge:
            task.cancel()
        await asyncio.gather(*self._bridge, return_exceptions=True)
        self._bridge = []
        if self._pty is not None:
            self._bridge_writer.close()
            self._pty.close()
            self._pty = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for handle in self._momentary.values():
            handle.cancel()
        self._momentary.clear()
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def drop_connections(self) -> None:
        """Disconnect every client but keep listening: a board reset or a flaky serial server."""
        if self._server is not None:
            for conn in list(self._server.active_connections.values()):
                conn.close()

    async def _advance_forever(self) -> None:
        while True:
            now = self.clock()
            if self.feeder is not None:
                self.feeder.tick(now)
            self.scene.advance(now)
            await asyncio.sleep(self.tick_s)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if self.trace is not None:
            self.trace(sending, data)
        if sending and self.faults.silent:
            return b""  # swallowed: the client sees a timeout
        return data

    # ------------------------------------------------------------------ what the board shows
    def inputs(self) -> dict[str, bool]:
        """Current discrete-input levels by signal name (after stuck-loop faults)."""
        loops = self.scene.loops()
        for name, level in self.faults.stuck_loops.items():
            loops[name] = level
        b = self.scene.barrier
        return {
            "arming_loop": loops["arming"],
            "safety_loop": loops["safety"],
            "exit_loop": loops["exit"],
            "arm_up": b.arm_up,
            "arm_down": b.arm_down,
        }

    def _render_bits(self, regs: list[int], bits: dict[int, bool]) -> None:
        for i in range(len(regs)):
            regs[i] = 0
        for address, on in bits.items():
            if on and address // 16 < len(regs):
                regs[address // 16] |= 1 << (address % 16)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.faults.silent:
            return ExcCodes.DEVICE_BUSY  # nothing happens; the answer is swallowed by `_trace`
        coil_board = self.config.output_mode == "coils"
        if function_code == FC_READ_DI:
            addr = self.config.inputs.model_dump()
            self._render_bits(registers, {addr[name]: level for name, level in self.inputs().items()})
        elif function_code in (FC_READ_COILS, FC_WRITE_COIL, FC_WRITE_COILS):
            if not coil_board:
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values is not None:
                for i, value in enumerate(set_values[: max(1, count * 16)]):
                    if address + i in self.relays or function_code == FC_WRITE_COIL:
                        self._set_relay(address + i, bool(value))
                    if function_code == FC_WRITE_COIL:
                        break
            else:
                self._render_bits(registers, self.relays)
        elif function_code in (FC_READ_HR, FC_WRITE_REG):
            if coil_board:
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values is not None:
                if not self._register_command(address, int(set_values[0])):
                    return ExcCodes.ILLEGAL_VALUE
            else:
                for channel, on in self.relays.items():
                    if channel < len(registers):
                        registers[channel] = int(on)
        else:
            return ExcCodes.ILLEGAL_FUNCTION
        self.requests += 1
        return None

    def _register_command(self, channel: int, value: int) -> bool:
        cmd = value >> 8
        if cmd == 0x07:  # all on
            for c in list(self.relays):
                self._set_relay(c, True)
        elif cmd == 0x08:  # all off
            for c in list(self.relays):
                self._set_relay(c, False)
        elif cmd in (0x01, 0x02, 0x03, 0x05):
            if cmd == 0x03:
                self._set_relay(channel, not self.relays.get(channel, False))
            else:
                self._set_relay(channel, cmd != 0x02)
            if cmd == 0x05:
                loop = asyncio.get_running_loop()
                self._momentary[channel] = loop.call_later(MOMENTARY_S, self._set_relay, channel, False)
        else:
            return False
        return True

    def _set_relay(self, channel: int, on: bool) -> None:
        handle = self._momentary.pop(channel, None)
        if handle is not None and not on:
            handle.cancel()
        was = self.relays.get(channel, False)
        self.relays[channel] = on
        if was == on:
            return
        self.relay_log.append((self.clock(), channel, on))
        outs = self.config.outputs
        if on and not self.faults.relay_dead:
            if channel == outs.barrier_open:
                self.scene.barrier.command(True)
            elif channel == outs.barrier_close:
                self.scene.barrier.command(False)

    def longest_on_s(self, channel: int) -> float:
        """Longest time the relay stayed on (a still-on relay counts up to now): proves pulses are released."""
        longest, since = 0.0, None
        for t, ch, on in self.relay_log:
            if ch != channel:
                continue
            if on:
                since = t
            elif since is not None:
                longest, since = max(longest, t - since), None
        if since is not None:
            longest = max(longest, self.clock() - since)
        return longest


# --------------------------------------------------------------------------- standalone
def _container(rng: random.Random) -> str:
    first = rng.choice(["CSQU", "MSCU", "TGHU", "CMAU", "OOLU", "COSU"]) + f"{rng.randrange(10**6):06d}"
    return first + str(iso6346_check_digit(first))


def sample_vehicle(rng: random.Random) -> VehicleSpec:
    """A plausible container truck: a valid Shanghai/Zhejiang plate and one or two ISO 6346 boxes."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    plate = (
        rng.choice("沪浙苏")
        + rng.choice(letters)
        + "".join(rng.choice(letters[:6] + "0123456789") for _ in range(5))
    )
    boxes = (_container(rng), _container(rng) if rng.random() < 0.5 else None)
    return VehicleSpec(plate=plate, containers=boxes, gross_kg=rng.randrange(15_000, 45_000, 10))


class TruckFeeder:
    """Queues a sample truck every `every_s` seconds when the lane is free (standalone simulators)."""

    def __init__(self, scene: LaneScene, *, every_s: float = 20.0, seed: int = 1):
        self.scene = scene
        self.every_s = every_s
        self.rng = random.Random(seed)
        self._next: float | None = None

    def tick(self, now: float) -> None:
        if self._next is None:
            self._next = now + 1.0
        if now >= self._next and not self.scene.queue and self.scene.vehicle is None:
            self.scene.arrive(sample_vehicle(self.rng))
            self._next = now + self.every_s


def standalone_config(
    *,
    device_id: str = "io",
    output_mode: Literal["coils", "command_register"] = "coils",
    framer: Literal["socket", "rtu"] = "socket",
    port: int = 502,
) -> IoBoardConfig:
    """A typical board (inputs 0–4, outputs 0–3 for coils, channels 1–4 for command registers)."""
    base = 0 if output_mode == "coils" else 1
    return IoBoardConfig(
        id=device_id,
        type="io_board",
        link=ModbusTcpLink(kind="tcp", host="127.0.0.1", port=port, framer=framer),
        output_mode=output_mode,
        inputs=IoInputs(arming_loop=0, safety_loop=1, exit_loop=2, arm_up=3, arm_down=4),
        outputs=IoOutputs(
            barrier_open=base, barrier_close=base + 1, light_green=base + 2, light_red=base + 3
        ),
    )
