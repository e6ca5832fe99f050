"""Weighbridge indicator simulator: renders a `LaneScene`'s weight in any of the five indicator protocols.

Streaming protocols (`toledo`, `yaohua`, `yaohua-reversed`) send a frame every `1/rate_hz` seconds (never
faster than the configured baud rate allows); `yaohua-command` and `sma` answer requests. Standalone it
builds its own scene with a truck that drives on, settles, is let through and drives off, repeatedly:

    sim = WeighbridgeSimulator(WeighbridgeConfig(...), faults=Faults(noise=0.01))
    path = sim.serve_pty()                # or: port = await sim.serve_tcp("127.0.0.1", 0)
    await sim.run()

In a lane demo pass the lane's shared scene: `WeighbridgeSimulator(cfg, scene=lane_scene)`.
"""

import asyncio
import time
from collections.abc import Callable

from edge_agent.codecs import sma, toledo, yaohua
from firmware_configs.devices import WeighbridgeConfig
from simulators.faults import Faults, corrupt_hex_check, corrupt_last_byte_7bit
from simulators.scene import LaneScene
from simulators.transport import Channel, SerialDeviceSimulator

DEFAULT_RATE_HZ = 10.0
FRAME_BYTES = {"toledo": 18, "yaohua": 12, "yaohua-reversed": 9, "yaohua-command": 14, "sma": 20}


class WeighbridgeSimulator(SerialDeviceSimulator):
    def __init__(
        self,
        config: WeighbridgeConfig,
        scene: LaneScene | None = None,
        faults: Faults | None = None,
        *,
        rate_hz: float = DEFAULT_RATE_HZ,
        leading_spaces: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(scene, faults, clock=clock)
        self.config = config
        self.leading_spaces = leading_spaces
        bits_per_char = 1 + config.serial.bytesize + (config.serial.parity != "N") + config.serial.stopbits
        line_limit = config.serial.baudrate / bits_per_char / FRAME_BYTES[config.protocol]
        self.period_s = 1.0 / min(rate_hz, line_limit)
        self.frames_sent = 0

    # ----------------------------------------------------------------- rendering
    def weight(self) -> tuple[float, bool]:
        return self.scene.weight_kg(self.now())

    def frame(self) -> tuple[bytes, Callable | None]:
        """The current weight as one streaming frame, with the function that spoils its check value."""
        kg, motion = self.weight()
        protocol = self.config.protocol
        if protocol == "toledo":
            displayed = round(abs(kg))
            f = toledo.ToledoFrame(
                displayed=min(displayed, 999_999),
                negative=kg < 0,
                motion=motion,
                out_of_range=displayed > 999_999 or kg > self.config.capacity_kg,
            )
            raw = toledo.encode(
                f,
                with_checksum=self.config.checksum,
                leading_spaces=self.leading_spaces,
                parity=self.config.serial.parity if self.config.serial.bytesize == 7 else "N",
            )
            return raw, corrupt_last_byte_7bit if self.config.checksum else None
        if protocol == "yaohua":
            return yaohua.encode(yaohua.YaohuaFrame(round(kg))), corrupt_hex_check(-3)
        return yaohua.encode_reversed(yaohua.YaohuaFrame(round(kg))), None

    def answer(self, request: object) -> tuple[bytes, Callable | None] | None:
        """The reply to a host request (command-mode protocols), or None when the indicator stays silent."""
        if isinstance(request, yaohua.YaohuaRequest):
            if request.address != self.config.address:
                return None
            if request.command == yaohua.CMD_HANDSHAKE:
                reply = yaohua.YaohuaResponse(request.address, request.command)
            elif request.command in (yaohua.CMD_GROSS, yaohua.CMD_NET):
                reply = yaohua.YaohuaResponse(
                    request.address, request.command, float(round(self.weight()[0]))
                )
            elif request.command == yaohua.CMD_TARE:
                reply = yaohua.YaohuaResponse(request.address, request.command, 0.0)
            else:
                return None
            return yaohua.encode_response(reply), corrupt_hex_check(-3)
        if isinstance(request, sma.SmaCommand) and request.letter in "WHSR":
            kg, motion = self.weight()
            return sma.encode(sma.SmaFrame(float(round(kg)), "G", motion)), None
        return None

    # ----------------------------------------------------------------- serving
    async def session(self, channel: Channel) -> None:
        if self.config.protocol in ("yaohua-command", "sma"):
            await self._answer_requests(channel)
        else:
            await self._stream(channel)

    async def _stream(self, channel: Channel) -> None:
        next_at = self.clock()
        while not channel.closed:
            frame, spoil = self.frame()
            self.send(channel, frame, spoil)
            self.frames_sent += 1
            next_at += self.period_s
            delay = next_at - self.clock()
            if delay < -1.0:  # fell far behind (suspended): do not burst to catch up
                next_at = self.clock()
            await asyncio.sleep(max(0.0, delay))

    async def _answer_requests(self, channel: Channel) -> None:
        decoder = (
            yaohua.YaohuaRequestDecoder()
            if self.config.protocol == "yaohua-command"
            else sma.SmaCommandDecoder()
        )
        while True:
            data = await channel.read()
            if not data:
                return
            for request in decoder.feed(data):
                reply = self.answer(request)
                if reply is not None:
                    self.send(channel, *reply)
                    self.frames_sent += 1
