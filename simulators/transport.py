"""Serving a simulated serial device: on a pseudo-terminal (`/dev/pts/N`) or as serial-over-IP (TCP),
plus the base class and the truck stream the serial simulators share.

Every simulator derives from `SerialDeviceSimulator` and implements `session(channel)`: the conversation
with one connected host (a pty has one for its lifetime, a TCP server one per client). The same
simulator object can serve a pty and several TCP ports at once; all render the same `LaneScene`.

    sim = WeighbridgeSimulator(config)            # builds its own scene with a repeating truck
    port = await sim.serve_tcp("127.0.0.1", 0)    # -> the port; point `socket://127.0.0.1:<port>` at it
    path = sim.serve_pty()                        # -> "/dev/pts/7"
    await sim.run()                               # until cancelled (drives the truck stream)
    await sim.close()
"""

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import pty
import random
import termios
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from simulators.faults import CheckCorrupter, Faults
from simulators.scene import LaneScene, Phase, VehicleSpec

log = logging.getLogger("efence.sim")

PTY_BACKLOG = 512
"""Unread bytes kept in a pty before they are discarded, as a serial line with nobody listening loses them."""


# ----------------------------------------------------------------------------- channels
class Channel(ABC):
    """One host's end of a simulated line."""

    closed = False

    @abstractmethod
    async def read(self) -> bytes:
        """Bytes from the host; b"" when the host went away."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class TcpChannel(Channel):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(4096)
        except (ConnectionError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            self.closed = True
            return
        self.writer.write(data)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


class PtyChannel(Channel):
    """The master side of a pty; the slave path is what a driver (or `screen`, `minicom`) opens.

    The simulator keeps the slave open too, so the pty survives a driver closing and reopening it, and
    discards output the driver has not read once more than `PTY_BACKLOG` bytes pile up.
    """

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF translation: a pty must behave like a plain wire
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        while not self.closed:
            try:
                return os.read(self.master, 4096)
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(self.master, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.master)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                await asyncio.sleep(0.05)
        return b""

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        pending = int.from_bytes(fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"), "little")
        if pending > PTY_BACKLOG:
            termios.tcflush(self.slave, termios.TCIFLUSH)
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


# ----------------------------------------------------------------------------- truck stream
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def demo_vehicle(rng: random.Random, n: int, *, never_settle: bool = False) -> VehicleSpec:
    """A plausible container truck with an e-plate, a driver card and an e-seal (hex ids the readers send)."""
    plate = "沪" + rng.choice("ABCDE") + "".join(rng.choice(PLATE_LETTERS + "0123456789") for _ in range(5))
    return VehicleSpec(
        plate=plate,
        epc="E280" + f"{rng.getrandbits(80):020X}",
        driver_card=f"{rng.randrange(256):02X}{rng.getrandbits(32):08X}",
        seal_id="E2C0" + f"{rng.getrandbits(80):020X}",
        gross_kg=float(rng.randrange(1500, 4900)) * 10,
        fault_weight_never_settles=never_settle,
    )


@dataclass
class TruckStream:
    """Keeps trucks coming through a scene: drive on, settle, (optionally) raise the arm, cross, leave.

    With `open_barrier=False` it only sends trucks; whoever controls the barrier (a lane controller
    through the IO-board simulator) decides, and unserved trucks back out after their patience.
    """

    scene: LaneScene
    open_barrier: bool = True
    hold_s: float = 2.0  # stable on the bridge this long before the autopilot raises the arm
    gap_s: float = 2.0  # empty lane between trucks
    never_settle: bool = False
    seed: int = 0
    make_vehicle: Callable[[random.Random, int], VehicleSpec] | None = None
    count: int = 0
    _empty_since: float | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def step(self, now: float) -> None:
        scene = self.scene
        scene.advance(now)
        if scene.phase is Phase.EMPTY and not scene.queue:
            if self._empty_since is None:
                self._empty_since = now
            if now - self._empty_since >= self.gap_s:
                self.count += 1
                make = self.make_vehicle or (lambda r, n: demo_vehicle(r, n, never_settle=self.never_settle))
                scene.arrive(make(self._rng, self.count))
                self._empty_since = None
                scene.advance(now)
        if not self.open_barrier:
            return
        waited = now - scene.phase_started
        if scene.phase is Phase.WAITING and waited >= scene.settle_s + self.hold_s:
            scene.barrier.command(True)
        elif scene.phase is Phase.EMPTY and not scene.barrier.arm_down:
            scene.barrier.command(False)

    async def run(self, period_s: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        while True:
            self.step(clock())
            await asyncio.sleep(period_s)


def fast_scene(**kw) -> LaneScene:
    """A scene with short phases (tests, demos): a truck cycle takes about 6 s instead of 15."""
    return LaneScene(drive_on_s=1.0, settle_s=1.0, cross_s=1.0, leave_s=0.5, back_out_s=1.0, **kw)


# ----------------------------------------------------------------------------- simulator base
class SerialDeviceSimulator(ABC):
    """Base of the serial simulators: serving, lifecycle, the scene and faults.

    `scene=None` builds a private scene and a `TruckStream` that `run()` drives; pass a shared
    `LaneScene` to have several simulators (and the lane's IO board) render one truck consistently —
    then whoever owns the scene advances it (each simulator also advances it before rendering).
    """

    def __init__(
        self,
        scene: LaneScene | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.faults = faults or Faults()
        self.clock = clock
        if scene is None:
            scene = LaneScene(zero_drift_kg_per_h=self.faults.drift_kg_per_h)
            self.truck_stream: TruckStream | None = TruckStream(scene, never_settle=self.faults.never_settle)
        else:
            self.truck_stream = None
        self.scene = scene
        self.started = clock()
        self.endpoints: list[str] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._channels: set[Channel] = set()
        self._tasks: set[asyncio.Task] = set()
        self.sessions = 0

    def use_fast_truck_stream(self, *, hold_s: float = 1.0, gap_s: float = 1.0) -> None:
        """Standalone simulators only: a short truck cycle (about 6 s) for tests and quick demos."""
        if self.truck_stream is None:
            raise RuntimeError("this simulator renders a shared scene; its owner sets the pace")
        self.scene = fast_scene(zero_drift_kg_per_h=self.faults.drift_kg_per_h)
        self.truck_stream = TruckStream(
            self.scene, never_settle=self.faults.never_settle, hold_s=hold_s, gap_s=gap_s
        )

    # --- to implement
    @abstractmethod
    async def session(self, channel: Channel) -> None:
        """Talk to one connected host until the channel closes or the task is cancelled."""

    # --- helpers for subclasses
    def now(self) -> float:
        """The clock, after bringing the scene (and the private truck stream) up to it."""
        t = self.clock()
        if self.truck_stream is not None:
            self.truck_stream.step(t)
        else:
            self.scene.advance(t)
        return t

    def silent(self) -> bool:
        return self.faults.silent(self.clock() - self.started)

    def send(self, channel: Channel, frame: bytes, corrupt_check: CheckCorrupter | None = None) -> None:
        if not self.silent():
            channel.write(self.faults.apply(frame, corrupt_check))

    # --- serving
    def _start_session(self, channel: Channel) -> asyncio.Task:
        self._channels.add(channel)
        self.sessions += 1

        async def guarded() -> None:
            try:
                if self.faults.disconnect_every_s and isinstance(channel, TcpChannel):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.faults.disconnect_every_s):
                            await self.session(channel)
                else:
                    await self.session(channel)
            except (ConnectionError, OSError) as exc:
                log.info("simulator session ended: %s", exc)
            finally:
                channel.close()
                self._channels.discard(channel)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve as a raw TCP serial server (pyserial `socket://host:port`); returns the bound port."""

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._start_session(TcpChannel(reader, writer))  # tracked in self._tasks, cancelled by close()

        server = await asyncio.start_server(on_client, host, port)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        self.endpoints.append(f"socket://{host}:{bound}")
        return bound

    def serve_pty(self) -> str:
        """Open a pseudo-terminal and serve on it (needs a running event loop); returns the slave path."""
        channel = PtyChannel()
        self._start_session(channel)
        self.endpoints.append(channel.path)
        return channel.path

    async def run(self) -> None:
        """Run until cancelled: drives the private truck stream (if any); serving runs in the background."""
        try:
            if self.truck_stream is not None:
                await self.truck_stream.run(clock=self.clock)
            else:
                await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop serving: close listeners, drop every connection, end every session."""
        for server in self._servers:
            server.close()
        for channel in list(self._channels):
            channel.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._servers.clear()


async def sleep_until(deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
    await asyncio.sleep(max(0.0, deadline - clock()))
