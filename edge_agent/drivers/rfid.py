"""RFID reader driver: Chafon binary (polled inventory), EM4100 ASCII and plain ASCII EPC lines (streamed).

Reads become `TagRead`s with the reader's configured role. Readers repeat a tag many times a second while
it is in the field; `TagDeduper` lets one tag through at most once per `dedupe_window_s`. Tag ids are
upper-case hex: the EPC for UHF readers, the 10 hex digits (version + 32-bit card id) for EM4100 cards.
"""

import asyncio
import contextlib
import time

from edge_agent.codecs import ascii_epc, chafon, em4100
from edge_agent.codecs.common import FrameError
from edge_agent.drivers.registry import register
from edge_agent.drivers.serial_line import SerialDriver
from edge_agent.observations import TagRead
from firmware_configs.devices import RfidReaderConfig

ANSWER_TIMEOUT_S = 1.0
"""A Chafon reader that has not finished answering an inventory within this time has failed that poll."""


class TagDeduper:
    """Let a tag through when it was not let through in the last `window_s` seconds (time passed in)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._last: dict[str, float] = {}

    def admit(self, tag_id: str, now: float) -> bool:
        last = self._last.get(tag_id)
        if last is not None and now - last < self.window_s:
            return False
        self._last[tag_id] = now
        if len(self._last) > 4096:  # forget tags long gone, so a busy gate does not grow memory
            self._last = {t: at for t, at in self._last.items() if now - at < self.window_s}
        return True

    def forget(self) -> None:
        """A re-gather: every tag still in the field is passed on again at its next read."""
        self._last.clear()


@register("rfid_reader")
class RfidReaderDriver(SerialDriver):
    config: RfidReaderConfig
    config_type = RfidReaderConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deduper = TagDeduper(self.config.dedupe_window_s)
        self._inventory_now = asyncio.Event()

    async def regather(self) -> str | None:
        """An officer asked for a fresh read. The de-duplication memory is dropped, so the tags in the field
        are reported again; a Chafon reader is sent its inventory command (0x01, PROTOCOLS.md §5.1) now
        rather than at the next poll. EM4100 and ASCII EPC readers have no command: they report on their
        own, and their next read of a tag in the field is passed on. Returns None when the reader was asked,
        else why it was not."""
        self.deduper.forget()
        if self.config.protocol != "chafon":
            return (
                f"{self.config.protocol} readers report on their own and take no command; "
                "their next read is passed on"
            )
        if not self.connected:
            return "line not open; the reader is polled again as soon as it reconnects"
        self._inventory_now.set()
        return None

    def tag(self, tag_id: str, now: float, *, rssi: int | None = None, antenna: int | None = None) -> None:
        if self.deduper.admit(tag_id, now):
            self.emit(TagRead(self.config.id, self.config.role, tag_id, now, rssi=rssi, antenna=antenna))

    def decoder(self):
        c = self.config
        if c.protocol == "chafon":
            return chafon.ChafonDecoder(responses=True)
        if c.protocol == "em4100":
            return em4100.Em4100Decoder(frame_length=c.em4100_frame_length, check=c.em4100_check)
        return ascii_epc.AsciiEpcDecoder()

    def feed(self, data: bytes, now: float, decoder) -> bool:
        """Handle received bytes; returns True when a Chafon inventory answer is complete."""
        done = False
        for item in decoder.feed(data):
            if isinstance(item, FrameError):
                self.bad_frame(item)
            elif isinstance(item, em4100.Em4100Frame):
                self.health.ok(now)
                self.tag(item.tag_hex, now)
            elif isinstance(item, ascii_epc.EpcLine):
                self.health.ok(now)
                self.tag(item.epc, now)
            elif isinstance(item, chafon.ChafonResponse):
                mine = self.config.reader_address
                if item.command != chafon.CMD_INVENTORY or (
                    mine != chafon.BROADCAST and item.address != mine
                ):
                    continue  # not ours: another reader on a shared RS-485 line
                tags = chafon.parse_inventory(item)
                if isinstance(tags, FrameError):
                    self.bad_frame(tags)
                    continue
                self.health.ok(now)
                for t in tags:
                    self.tag(t.epc_hex, now, rssi=t.rssi, antenna=t.antenna)
                done = done or item.status != chafon.STATUS_MORE
        return done

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = self.decoder()
        if self.config.protocol == "chafon":
            await self._poll(reader, writer, decoder)
            return
        while True:
            data = await reader.read(4096)
            if not data:
                return
            self.feed(data, time.monotonic(), decoder)

    async def _poll(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder) -> None:
        request = chafon.encode_command(
            chafon.ChafonCommand(self.config.reader_address, chafon.CMD_INVENTORY)
        )
        interval = self.config.poll_interval_ms / 1000
        while True:
            decoder.reset()
            writer.write(request)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            done = False
            while not done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.health.failed("no answer to inventory")
                    self.ratelog.warning(
                        f"{self.config.id}:timeout", "device %s: no answer to inventory", self.config.id
                    )
                    break
                try:
                    async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancel on 3.11
                        data = await reader.read(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                done = self.feed(data, time.monotonic(), decoder)
            with contextlib.suppress(TimeoutError):  # the poll period, or at once on a re-gather
                async with asyncio.timeout(interval):
                    await self._inventory_now.wait()
            self._inventory_now.clear()
