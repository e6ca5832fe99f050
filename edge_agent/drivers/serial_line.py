"""What the serial drivers (weighbridge, RFID, LED board) share: opening the line, rate-limited logging,
and the supervised read loop.

The line is opened with pyserial-asyncio-fast, which also understands `socket://host:port` (a Moxa-style
serial server). A dead or unplugged line surfaces as an exception or EOF, and `supervise` reconnects.
"""

import asyncio
import logging
import time
from abc import abstractmethod

import serial_asyncio_fast

from edge_agent.codecs.common import FrameError
from edge_agent.drivers.base import Driver, supervise
from edge_agent.drivers.health import DeviceHealth
from firmware_configs.devices import SerialLink

READ_CHUNK = 4096


async def open_serial(
    link: SerialLink, log: logging.Logger | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a local port or a `socket://` URL with the configured speed and framing.

    Linux pseudo-terminals refuse 7-bit and parity settings (EINVAL). A pty carries bytes, not line
    framing, so on a pty the line is opened 8N1 instead: the 7-bit decoders mask bit 7 anyway, which is
    exactly what reading a 7E1 line with an 8-bit receiver needs.
    """
    kwargs = dict(bytesize=link.bytesize, parity=link.parity, stopbits=link.stopbits)
    try:
        return await serial_asyncio_fast.open_serial_connection(
            url=link.port, baudrate=link.baudrate, **kwargs
        )
    except Exception:  # pyserial reports the refused termios setting as SerialException or termios.error
        if not link.port.startswith("/dev/pts/") or link.framing == "8N1":
            raise
    if log is not None:
        log.info("%s is a pseudo-terminal: opening it 8N1 instead of %s", link.port, link.framing)
    return await serial_asyncio_fast.open_serial_connection(url=link.port, baudrate=link.baudrate)


class RateLimitedLog:
    """At most `burst` messages per `period_s` per key; the rest are counted and summarised later.

    A noisy line can produce hundreds of bad frames a second; the log must stay readable and cheap.
    """

    def __init__(self, log: logging.Logger, *, period_s: float = 10.0, burst: int = 5):
        self.log, self.period_s, self.burst = log, period_s, burst
        self._window: dict[str, tuple[float, int, int]] = {}  # key -> (window start, logged, suppressed)

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        start, logged, suppressed = self._window.get(key, (now, 0, 0))
        if now - start >= self.period_s:
            if suppressed:
                self.log.warning(
                    "%s: %d more like this suppressed in the last %.0f s", key, suppressed, now - start
                )
            start, logged, suppressed = now, 0, 0
        if logged < self.burst:
            self.log.warning(msg, *args)
            logged += 1
        else:
            suppressed += 1
        self._window[key] = (start, logged, suppressed)


def mark_connected(health: DeviceHealth, at: float) -> None:
    """The port opened: the device is reachable (frames will tell us whether it talks sense)."""
    health.consecutive_failures = 0
    health.last_ok_at = at
    health.observed = "up"


class SerialDriver(Driver):
    """Base of the serial drivers: `run` supervises `serve(reader, writer)` on a freshly opened line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ratelog = RateLimitedLog(self.log)
        self.connected = False
        self.stopping = getattr(self, "stopping", False)  # set by the agent at shutdown (see `supervise`)

    async def run(self) -> None:
        if not self.config.enabled:
            await asyncio.Event().wait()  # operator disabled: neither polled nor alarmed on
        await supervise(
            self._session,
            self.health,
            self.log,
            max_backoff_s=self.config.reconnect_max_s,
            stopping=lambda: self.stopping,
        )

    async def _session(self) -> None:
        reader, writer = await open_serial(self.config.serial, self.log)
        self.connected = True
        mark_connected(self.health, time.monotonic())
        self.log.info("device %s: connected to %s", self.config.id, self.config.serial.port)
        try:
            await self.serve(reader, writer)
        finally:
            self.connected = False
            writer.close()
            self.on_disconnect(time.monotonic())

    @abstractmethod
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Talk to the device until the line closes (return) or fails (raise)."""

    def on_disconnect(self, now: float) -> None:
        """Called after every session ends; drivers withdraw what they can no longer vouch for."""

    def bad_frame(self, error: FrameError) -> None:
        """Count, log (rate-limited, with the device id) and move on: a bad frame never stops the driver."""
        self.health.failed(error.reason, bad_frame=True)
        self.ratelog.warning(
            f"{self.config.id}:{error.reason}", "device %s: rejected frame (%s)", self.config.id, error
        )
