"""LED board simulator (`efence-text`, docs/PROTOCOL_LED.md): decodes what the host writes, answers
ACK/NAK, and keeps the board's current text so tests and the demo can read it.

    sim = LedBoardSimulator(LedBoardConfig(...))
    port = await sim.serve_tcp("127.0.0.1", 0)
    ...
    sim.lines     # ["沪A12345", "请通行"] — what the board shows now
    sim.colours   # ["G", "G"]

Faults: `silence_after_s` stops answering (the driver sees no ACK), bit flips and noise spoil the
replies, and a frame with a bad checksum is answered NAK as a real board would.
"""

import time
from collections.abc import Callable

from edge_agent.codecs import led_text
from edge_agent.codecs.common import FrameError
from firmware_configs.devices import LedBoardConfig
from simulators.faults import Faults
from simulators.scene import LaneScene
from simulators.transport import Channel, SerialDeviceSimulator


class LedBoardSimulator(SerialDeviceSimulator):
    def __init__(
        self,
        config: LedBoardConfig,
        scene: LaneScene | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[list[str]], None] | None = None,
    ):
        super().__init__(scene, faults, clock=clock)
        self.config = config
        self.lines: list[str] = [""] * config.lines
        self.colours: list[str] = ["R"] * config.lines
        self.frames_ok = 0
        self.frames_bad = 0
        self.on_change = on_change

    @property
    def text(self) -> str:
        """The board as one string, lines separated by newlines."""
        return "\n".join(self.lines)

    def show(self, frame: led_text.LedText) -> bool:
        """Apply a frame; False when it names a line the board does not have."""
        if frame.command == "C":
            targets = range(self.config.lines) if frame.line == 0 else [frame.line - 1]
            text = ""
        else:
            targets, text = [frame.line - 1], frame.text
        if any(not 0 <= i < self.config.lines for i in targets):
            return False
        for i in targets:
            self.lines[i], self.colours[i] = text, frame.colour
        if self.on_change:
            self.on_change(list(self.lines))
        return True

    async def session(self, channel: Channel) -> None:
        decoder = led_text.LedTextDecoder(encoding=self.config.encoding)
        while True:
            data = await channel.read()
            if not data:
                return
            for item in decoder.feed(data):
                if isinstance(item, FrameError):
                    self.frames_bad += 1
                    if item.reason != "no STX":
                        self.send(channel, led_text.encode_reply(led_text.LedReply(False)))
                    continue
                ok = self.show(item)
                self.frames_ok += ok
                self.frames_bad += not ok
                self.send(channel, led_text.encode_reply(led_text.LedReply(ok)))
