"""Fence-controller simulators: what the edge agent's fence-sensor watch reads (docs/DEVICES.md).

* `FenceIoSimulator` — a Modbus/TCP IO module (pymodbus server, FC02 discrete inputs) with the alarm
  relay contacts of beam, microwave and vibration-cable controllers wired to its inputs. Contacts are
  normally closed: an input reads 1 while all is well and 0 while its controller is in alarm (or its
  tamper contact is open). `silent = True` makes the module swallow every request (the agent sees
  timeouts); `stop()` kills it.
* `FibreControllerSimulator` — a fibre/cable controller (or its gateway) on TCP speaking the fence line
  protocol (`edge_agent.fence_signals`): a heartbeat every `heartbeat_s`, and `intrusion(zone,
  position_m)`, `tamper(zone)`, `clear(zone)`, `send_raw(bytes)` for what a test or operator scripts.
  `quiet = True` stops every line, heartbeats included, with the connection left open.

Usage::

    io = FenceIoSimulator(unit=1)
    port = await io.start("127.0.0.1", 0)          # 0: any free port
    io.break_beam(0, hold_s=2.0)                   # input 0 opens for 2 s, then closes again
    io.set_contact(1, closed=False)                # tamper contact on input 1 opens
    fibre = FibreControllerSimulator()
    port = await fibre.start("127.0.0.1", 0)
    await fibre.intrusion("fibre-n-01", position_m=412.5, level=80)

`efence sim device fence --modbus 1502 --fibre 5100 --zones fibre-n-01 --every 30` runs both with an
occasional scripted intrusion, for commissioning an agent without a fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.fence_signals import encode_fence_line

log = logging.getLogger("efence.sim.fence")
FC_READ_DI = 2


class FenceIoSimulator:
    """A Modbus/TCP IO module carrying fence controllers' alarm contacts; see the module docstring."""

    def __init__(self, *, unit: int = 1, inputs: int = 32) -> None:
        self.unit = unit
        self.n_inputs = 16 * max(1, (inputs + 15) // 16)
        self.closed: dict[int, bool] = dict.fromkeys(range(self.n_inputs), True)  # NC: closed = secure
        self.silent = False
        self.requests = 0
        self.host, self.port = "127.0.0.1", 0
        self._server: ModbusTcpServer | None = None
        self._timers: list[asyncio.TimerHandle] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        device = SimDevice(
            self.unit,
            simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=self.n_inputs, values=True, datatype=DataType.BITS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._server = ModbusTcpServer(
            device, framer=FramerType.SOCKET, address=(host, port), trace_packet=self._trace
        )
        await self._server.serve_forever(background=True)
        self.host, self.port = host, self._server.transport.sockets[0].getsockname()[1]
        log.info("fence IO module simulator (unit %d) on %s:%d", self.unit, host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection: the module is gone."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    # ------------------------------------------------------------------ what the contacts do
    def set_contact(self, address: int, *, closed: bool) -> None:
        """Close (secure) or open (alarm) the contact on one input."""
        self.closed[address] = closed

    def break_beam(self, address: int, hold_s: float) -> None:
        """Open the contact for `hold_s` seconds, then close it again (an intruder crossing a beam)."""
        self.set_contact(address, closed=False)
        self._timers.append(
            asyncio.get_running_loop().call_later(hold_s, lambda: self.set_contact(address, closed=True))
        )

    async def chatter(self, address: int, *, pulse_s: float, gap_s: float, count: int) -> None:
        """Open the contact `count` times for `pulse_s` each, `gap_s` apart: a loose wire, birds, wind."""
        for _ in range(count):
            self.set_contact(address, closed=False)
            await asyncio.sleep(pulse_s)
            self.set_contact(address, closed=True)
            await asyncio.sleep(gap_s)

    # ------------------------------------------------------------------ the protocol
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending and self.silent:
            return b""  # swallowed: the client sees a timeout
        return data

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.silent:
            return ExcCodes.DEVICE_BUSY  # nothing happens; the answer is swallowed by `_trace`
        if function_code != FC_READ_DI:
            return ExcCodes.ILLEGAL_FUNCTION  # an input-only module
        for i in range(len(registers)):
            registers[i] = 0
        for addr, closed in self.closed.items():
            if closed and addr // 16 < len(registers):
                registers[addr // 16] |= 1 << (addr % 16)
        self.requests += 1
        return None


class FibreControllerSimulator:
    """A fibre/cable controller speaking the fence line protocol over TCP; see the module docstring."""

    def __init__(self, *, heartbeat_s: float = 1.0) -> None:
        self.heartbeat_s = heartbeat_s
        self.quiet = False
        self.sent = 0
        self.host, self.port = "127.0.0.1", 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._heartbeat: asyncio.Task | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: any free port) and start the heartbeat; returns the port."""
        self._server = await asyncio.start_server(self._client, host, port)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        self._heartbeat = asyncio.create_task(self._beat(), name=f"fibre-sim-{self.port}")
        log.info("fibre controller simulator on %s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    @property
    def connected(self) -> int:
        return len(self._clients)

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not self._clients:
                await asyncio.sleep(0.05)

    async def intrusion(
        self, zone: str, *, position_m: float | None = None, level: float | None = None
    ) -> None:
        await self.send_raw(encode_fence_line("intrusion", zone, position_m=position_m, level=level))

    async def tamper(self, zone: str) -> None:
        await self.send_raw(encode_fence_line("tamper", zone))

    async def clear(self, zone: str) -> None:
        await self.send_raw(encode_fence_line("clear", zone))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are to every connected client (malformed lines included)."""
        if self.quiet:
            return
        for writer in list(self._clients):
            try:
                writer.write(data)
                await writer.drain()
                self.sent += 1
            except (ConnectionError, RuntimeError):
                self._clients.discard(writer)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while await reader.read(1024):  # the agent sends nothing; wait for it to hang up
                pass
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self.send_raw(encode_fence_line("heartbeat"))


async def scripted_intrusions(
    io: FenceIoSimulator | None,
    io_inputs: Iterable[int],
    fibre: FibreControllerSimulator | None,
    fibre_zones: Iterable[tuple[str, float]],
    *,
    every_s: float,
    seed: int = 1,
) -> None:
    """Now and then, one intrusion somewhere: a beam broken for 2–6 s or a fibre event at a random
    position (zone, segment length); `every_s` is the mean time between two. Runs until cancelled."""
    rng = random.Random(seed)
    inputs, zones = list(io_inputs), list(fibre_zones)
    while True:
        await asyncio.sleep(rng.expovariate(1 / every_s))
        if inputs and io is not None and (not zones or rng.random() < 0.5):
            address = rng.choice(inputs)
            io.break_beam(address, hold_s=rng.uniform(2.0, 6.0))
            log.info("fence sim: beam on input %d broken", address)
        elif zones and fibre is not None:
            zone, length = rng.choice(zones)
            await fibre.intrusion(
                zone, position_m=round(rng.uniform(0, length), 1), level=rng.randint(40, 95)
            )
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            await fibre.clear(zone)
            log.info("fence sim: fibre intrusion on zone %s", zone)
