"""Weighbridge indicator driver: Toledo, Yaohua (tF=0, `=`, command mode) and SMA over serial or socket://.

The decision logic is `WeighbridgeLogic`, pure and clock-free so it can be tested and fuzzed on its own:
a weight is `stable` only when the indicator reports no motion AND every reading in the last
`stable_window_s` lies within `stable_tolerance_kg` AND the window is fully covered by good readings.
A corrupted frame is rejected by its codec and never reaches the window; an uncheckable protocol
(`yaohua-reversed`, SMA, Toledo without checksum) can still deliver a plausible wrong number, which then
breaks the window's spread instead of being reported as stable. When no valid frame arrives for
`signal_lost_s` while the port stays open (an indicator that went quiet or only sends garbage), the
driver emits `WeightReading(signal_lost=True, gross_kg=None, stable=False)` and reports a failure.
"""

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from edge_agent.codecs import sma, toledo, yaohua
from edge_agent.codecs.common import FrameError
from edge_agent.drivers.registry import register
from edge_agent.drivers.serial_line import SerialDriver
from edge_agent.observations import WeightReading
from firmware_configs.devices import WeighbridgeConfig

HEARTBEAT_S = 1.0
"""An unchanged reading is re-emitted this often, so consumers can tell "steady" from "stuck"."""


@dataclass(frozen=True, slots=True)
class Sample:
    """A decoded frame in the driver's terms (kg); `gross_kg=None` when the indicator gives no usable mass."""

    gross_kg: float | None
    motion: bool
    net: bool = False
    tare_kg: float | None = None
    out_of_range: bool = False


def sample_of(frame: object) -> Sample | None:
    """Map any weighbridge codec frame to a `Sample` (None for frames that carry no weight)."""
    if isinstance(frame, toledo.ToledoFrame):
        kg, tare = frame.weight_kg, frame.tare_kg
        gross = None if kg is None else (kg + (tare or 0.0) if frame.net else kg)
        return Sample(gross, frame.motion, frame.net, tare, frame.out_of_range)
    if isinstance(frame, yaohua.YaohuaFrame):
        return Sample(frame.weight, motion=False)  # no motion flag: the software window decides alone
    if isinstance(frame, yaohua.YaohuaResponse):
        if frame.weight is None or frame.command != yaohua.CMD_GROSS:
            return None
        return Sample(frame.weight, motion=False)
    if isinstance(frame, sma.SmaFrame):
        return Sample(frame.weight_kg, frame.motion, frame.net, None, frame.overload or frame.status in "EIT")
    return None


class WeighbridgeLogic:
    """Stability window, empty threshold, capacity check and signal-lost watchdog; time is passed in."""

    def __init__(self, config: WeighbridgeConfig):
        self.config = config
        self._window: deque[tuple[float, float]] = deque()
        self.last_valid_at: float | None = None
        self.signal_lost = False
        self._last_emitted: WeightReading | None = None

    def reset(self) -> None:
        self._window.clear()

    def restart(self) -> None:
        """A re-gather: the stability window starts over and the next reading is reported whatever it is."""
        self.reset()
        self._last_emitted = None

    def _stable(self, kg: float, now: float) -> bool:
        w = self._window
        w.append((now, kg))
        horizon = now - self.config.stable_window_s
        while len(w) >= 2 and w[1][0] <= horizon:
            w.popleft()
        if w[0][0] > horizon:  # the window is not yet covered by good readings
            return False
        values = [v for _, v in w]
        return max(values) - min(values) <= self.config.stable_tolerance_kg

    def on_sample(self, sample: Sample, now: float) -> WeightReading:
        """A valid frame arrived: the reading to report (callers decide whether to emit it, see `should_emit`)."""
        self.last_valid_at = now
        self.signal_lost = False
        c = self.config
        gross = sample.gross_kg
        usable = gross is not None and not sample.out_of_range and -c.capacity_kg <= gross <= c.capacity_kg
        if not usable:
            self.reset()
            return WeightReading(c.id, None, False, sample.motion, now, sample.tare_kg, sample.net)
        if sample.motion:
            self.reset()
            stable = False
        else:
            stable = self._stable(gross, now)
        empty = gross < c.empty_threshold_kg
        return WeightReading(c.id, gross, stable, sample.motion, now, sample.tare_kg, sample.net, empty=empty)

    def on_tick(self, now: float) -> WeightReading | None:
        """Watchdog: the signal-lost reading, once per loss, when no valid frame came for `signal_lost_s`."""
        since = self.last_valid_at
        if self.signal_lost or (since is not None and now - since < self.config.signal_lost_s):
            return None
        if since is None:
            self.last_valid_at = now  # first tick of a session starts the clock
            return None
        return self.lose(now)

    def lose(self, now: float) -> WeightReading:
        """Weight unknown from now on (watchdog or disconnect)."""
        self.signal_lost = True
        self.reset()
        return WeightReading(self.config.id, None, False, False, now, signal_lost=True)

    def should_emit(self, reading: WeightReading) -> bool:
        """Emit on any change of state or of weight beyond half the tolerance, plus a heartbeat."""
        last = self._last_emitted
        changed = (
            last is None
            or (last.stable, last.motion, last.empty, last.signal_lost, last.net)
            != (reading.stable, reading.motion, reading.empty, reading.signal_lost, reading.net)
            or (last.gross_kg is None) != (reading.gross_kg is None)
            or (
                reading.gross_kg is not None
                and abs(reading.gross_kg - last.gross_kg) >= max(1.0, self.config.stable_tolerance_kg / 2)
            )
            or reading.at - last.at >= HEARTBEAT_S
        )
        if changed:
            self._last_emitted = reading
        return changed


def decoder_for(config: WeighbridgeConfig):
    if config.protocol == "toledo":
        return toledo.ToledoDecoder(with_checksum=config.checksum)
    if config.protocol == "yaohua":
        return yaohua.YaohuaDecoder()
    if config.protocol == "yaohua-reversed":
        return yaohua.YaohuaReversedDecoder()
    if config.protocol == "yaohua-command":
        return yaohua.YaohuaResponseDecoder()
    return sma.SmaDecoder()


def poll_request(config: WeighbridgeConfig) -> bytes | None:
    """The request a polled protocol sends every `poll_interval_ms` (None for streaming indicators)."""
    if config.protocol == "yaohua-command":
        return yaohua.encode_request(max(1, min(26, config.address)), yaohua.CMD_GROSS)
    if config.protocol == "sma":
        return sma.encode_command("W")
    return None


@register("weighbridge")
class WeighbridgeDriver(SerialDriver):
    config: WeighbridgeConfig
    config_type = WeighbridgeConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logic = WeighbridgeLogic(self.config)
        self.last_reading: WeightReading | None = None
        self._writer: asyncio.StreamWriter | None = None  # the open line, for a request out of turn

    async def regather(self) -> str | None:
        """An officer asked for a fresh weight. The stability window starts over (a weight called stable
        before the truck moved is not reused) and, where the protocol has a request — Yaohua command mode
        `B` (gross), SMA `W` (PROTOCOLS.md §2.3, §3.1) — the indicator is asked now, not at the next poll.

        Returns None when the indicator was asked, else why it was not: the streaming protocols (Toledo
        continuous, Yaohua tF=0 and `=`) have no request at all, they report on their own."""
        self.logic.restart()
        request = poll_request(self.config)
        if request is None:
            return (
                f"{self.config.protocol} indicators stream on their own and take no request; "
                "the stability window restarts on its next frames"
            )
        if self._writer is None or self._writer.is_closing():
            return "line not open; it is asked again as soon as it reconnects"
        self._writer.write(request)
        return None

    def _publish(self, reading: WeightReading) -> None:
        self.last_reading = reading
        if self.logic.should_emit(reading):
            self.emit(reading)

    def feed(self, data: bytes, now: float, decoder) -> None:
        """Run received bytes through the codec and the logic (also used by tests and the benchmark)."""
        for item in decoder.feed(data):
            if isinstance(item, FrameError):
                self.bad_frame(item)
                continue
            if isinstance(item, yaohua.YaohuaResponse) and item.address != self.config.address:
                continue  # another indicator on a shared RS-485 line
            sample = sample_of(item)
            if sample is None:
                continue
            self.health.ok(now)
            reading = self.logic.on_sample(sample, now)
            if reading.gross_kg is None and not reading.signal_lost:
                self.ratelog.warning(
                    f"{self.config.id}:range",
                    "device %s: over capacity or out of range (%r)",
                    self.config.id,
                    item,
                )
            self._publish(reading)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = decoder_for(self.config)
        request = poll_request(self.config)
        self.logic.last_valid_at = None
        self.logic.signal_lost = False
        tick = min(0.25, self.config.signal_lost_s / 4)
        poll_s = self.config.poll_interval_ms / 1000
        next_poll = time.monotonic()
        self._writer = writer  # for a re-gather's request out of turn
        try:
            while True:
                now = time.monotonic()
                if request is not None and now >= next_poll:
                    writer.write(request)
                    next_poll = now + poll_s
                timeout = tick if request is None else max(0.0, min(tick, next_poll - now))
                try:
                    async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancel
                        data = await reader.read(4096)
                except TimeoutError:
                    data = None
                now = time.monotonic()
                if data == b"":
                    return  # EOF: the line closed; supervise reconnects
                if data:
                    self.feed(data, now, decoder)
                lost = self.logic.on_tick(now)
                if lost is not None:
                    self.health.failed(f"signal lost: no valid frame for {self.config.signal_lost_s:g} s")
                    self.log.warning("device %s: signal lost, weight unknown", self.config.id)
                    decoder.reset()
                    self._publish(lost)
        finally:
            self._writer = None

    def on_disconnect(self, now: float) -> None:
        if not self.logic.signal_lost:
            self._publish(self.logic.lose(now))
