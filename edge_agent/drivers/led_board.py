"""LED text board driver (`efence-text`, docs/PROTOCOL_LED.md): shows the lane's messages.

`ShowText(lines)` replaces the whole board: each configured line is written (empty text for lines not
given) and acknowledged by the board. `command()` only queues the text, so a dead board never delays
the lane's barrier commands; text that does not fit is cut (and logged) rather than refused. The latest text is kept and written again after every reconnect,
because a board that lost power comes back blank.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from edge_agent.codecs import led_text
from edge_agent.codecs.common import FrameError
from edge_agent.drivers.base import DeviceCommand
from edge_agent.drivers.registry import register
from edge_agent.drivers.serial_line import SerialDriver
from firmware_configs.devices import LedBoardConfig

ACK_TIMEOUT_S = 1.0
COMMAND_WAIT_S = 3.0
REFRESH_S = 60.0
RETRY_S = 5.0
"""The text is written again this often, for boards that reboot without the line dropping."""


@dataclass(frozen=True)
class ShowText(DeviceCommand):
    """Show these lines (top first) in one colour; lines beyond the list are cleared."""

    lines: list[str] = field(default_factory=list)
    colour: Literal["red", "green", "yellow"] = "red"


@register("led_board")
class LedBoardDriver(SerialDriver):
    config: LedBoardConfig
    config_type = LedBoardConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._frames: list[bytes] = []
        self._version = 0  # of the text asked for
        self._shown = 0  # version the board acknowledged
        self._changed = asyncio.Event()
        self._shown_cond: asyncio.Condition | None = None

    def _fit(self, text: str) -> str:
        """Text the board can show: control characters blanked, cut to the frame's byte budget."""
        text = "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
        encodable = text.encode(self.config.encoding, errors="replace").decode(self.config.encoding)
        while len(encodable.encode(self.config.encoding)) > led_text.MAX_TEXT:
            encodable = encodable[:-1]
        return encodable

    def frames_for(self, command: ShowText) -> list[bytes]:
        """Encode a command for this board. Never raises: what does not fit is cut, and logged."""
        texts = [self._fit(t) for t in command.lines[: self.config.lines]]
        if texts != list(command.lines):
            self.ratelog.warning(
                f"{self.config.id}:fit",
                "device %s: text cut to fit the board (%d lines, %d bytes a line): %r",
                self.config.id,
                self.config.lines,
                led_text.MAX_TEXT,
                command.lines,
            )
        colour = led_text.COLOURS.get(command.colour, "R")
        texts += [""] * (self.config.lines - len(texts))
        return [
            led_text.encode(led_text.LedText(i + 1, text, colour), encoding=self.config.encoding)
            for i, text in enumerate(texts)
        ]

    async def command(self, command: DeviceCommand) -> None:
        """Queue the text and return at once: a slow or dead board never holds up the lane.

        The board's acknowledgement shows in the health; `wait_shown()` waits for it.
        """
        if not isinstance(command, ShowText):
            await super().command(command)
            return
        self._frames = self.frames_for(command)
        self._version += 1
        self._changed.set()

    async def wait_shown(self, timeout: float = COMMAND_WAIT_S) -> bool:
        """True once the board acknowledged the latest text (within `timeout` seconds)."""
        if self._shown_cond is None:
            self._shown_cond = asyncio.Condition()
        version = self._version
        async with self._shown_cond:
            try:
                async with asyncio.timeout(timeout):
                    await self._shown_cond.wait_for(lambda: self._shown >= version)
                return True
            except TimeoutError:
                return False

    async def _reply(self, reader: asyncio.StreamReader, replies: led_text.LedReplyDecoder) -> bool | None:
        """The board's answer to the frame just written: True ACK, False NAK, None nothing in time."""
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancel on 3.11
                    data = await reader.read(64)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("board closed the line")
            for reply in replies.feed(data):
                if isinstance(reply, FrameError):
                    self.bad_frame(reply)
                else:
                    return reply.ok
        return None

    async def _write_frame(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: bytes
    ) -> bool:
        """Write one line, retrying once after a NAK or a missing ACK."""
        replies = led_text.LedReplyDecoder()
        for _attempt in range(2):
            writer.write(frame)
            answer = await self._reply(reader, replies)
            if answer:
                self.health.ok(time.monotonic())
                return True
            reason = "board answered NAK" if answer is False else "no ACK from board"
            self.health.failed(reason, bad_frame=answer is False)
            self.ratelog.warning(f"{self.config.id}:ack", "device %s: %s", self.config.id, reason)
        return False

    async def _idle(self, reader: asyncio.StreamReader) -> None:
        """Wait for new text, a refresh, or the line closing (raises ConnectionError on EOF)."""
        changed = asyncio.ensure_future(self._changed.wait())
        line = asyncio.ensure_future(reader.read(64))
        try:
            done, _ = await asyncio.wait(
                {changed, line}, timeout=REFRESH_S, return_when=asyncio.FIRST_COMPLETED
            )
            if line in done and line.result() == b"":
                raise ConnectionError("board closed the line")
            if not done:
                self._changed.set()  # periodic refresh: a board that rebooted on its own comes back blank
        finally:
            for task in (changed, line):
                task.cancel()
            # wait for the cancelled read to finish: a second read() on the stream while the first is
            # still pending raises "read() called while another coroutine is already waiting"
            await asyncio.wait({changed, line})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._changed.set()  # (re)connected: write the current text again
        if self._shown_cond is None:
            self._shown_cond = asyncio.Condition()
        while True:
            while not self._changed.is_set():
                await self._idle(reader)
            self._changed.clear()
            version, frames = self._version, list(self._frames)
            ok = True
            for frame in frames:
                ok = await self._write_frame(reader, writer, frame) and ok
            if not ok:  # try again soon; a new text or a reconnect also retries
                asyncio.get_running_loop().call_later(RETRY_S, self._changed.set)
            elif frames:
                async with self._shown_cond:
                    self._shown = max(self._shown, version)
                    self._shown_cond.notify_all()
