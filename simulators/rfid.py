"""RFID reader simulator: the tags a `LaneScene` puts in the reader's field, in the reader's protocol.

`chafon` answers inventory commands addressed to it (or broadcast) with one frame per tag (status 0x03,
more follow) and a closing frame (status 0x01); `em4100` and `ascii-epc` readers stream a frame for each
tag in the field every `repeat_s`, as real readers in auto mode do. Only tags of the reader's role are
seen (an e-plate reader does not read the driver's card). Tag ids in the scene must be hex (EPC bytes,
or 10 hex digits for EM4100 cards); others are skipped with a warning.

    sim = RfidSimulator(RfidReaderConfig(...), scene=lane_scene)   # scene=None: own truck stream
    port = await sim.serve_tcp("127.0.0.1", 0)
"""

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable

from edge_agent.codecs import ascii_epc, chafon, em4100
from firmware_configs.devices import RfidReaderConfig
from simulators.faults import Faults, corrupt_crc16, corrupt_hex_check
from simulators.scene import LaneScene
from simulators.transport import Channel, SerialDeviceSimulator

log = logging.getLogger("efence.sim.rfid")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


class RfidSimulator(SerialDeviceSimulator):
    def __init__(
        self,
        config: RfidReaderConfig,
        scene: LaneScene | None = None,
        faults: Faults | None = None,
        *,
        repeat_s: float = 0.3,
        layout: str = "288",
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(scene, faults, clock=clock)
        self.config = config
        self.repeat_s = repeat_s
        self.layout = layout  # "288": antenna + RSSI per tag; "18": UHFReader18
        self.inventories = 0
        self._warned: set[str] = set()
        self._rng = random.Random(0)

    def tags(self) -> list[str]:
        """Tag ids of this reader's role in the field now, validated for the protocol."""
        self.now()
        ok = []
        for role, tag in self.scene.tags_in_field():
            if role != self.config.role:
                continue
            valid = bool(_HEX.match(tag)) and (self.config.protocol != "em4100" or len(tag) == 10)
            if valid:
                ok.append(tag.upper())
            elif tag not in self._warned:
                self._warned.add(tag)
                log.warning(
                    "reader %s: tag id %r cannot be sent by a %s reader",
                    self.config.id,
                    tag,
                    self.config.protocol,
                )
        return ok

    def inventory_frames(self, address: int) -> list[bytes]:
        tags = [chafon.InventoryTag(bytes.fromhex(t), 1, self._rng.randint(0x50, 0x70)) for t in self.tags()]
        antenna = 1 if self.layout == "288" else None
        frames = []
        for tag in tags:
            data = chafon.inventory_data([tag], antenna=antenna)
            frames.append(
                chafon.encode_response(
                    chafon.ChafonResponse(address, chafon.CMD_INVENTORY, chafon.STATUS_MORE, data)
                )
            )
        data = chafon.inventory_data([], antenna=antenna)
        frames.append(
            chafon.encode_response(
                chafon.ChafonResponse(address, chafon.CMD_INVENTORY, chafon.STATUS_DONE, data)
            )
        )
        return frames

    def stream_frames(self) -> list[bytes]:
        if self.config.protocol == "em4100":
            return [
                em4100.encode(
                    em4100.Em4100Frame(t),
                    frame_length=self.config.em4100_frame_length,
                    check=self.config.em4100_check,
                )
                for t in self.tags()
            ]
        return [ascii_epc.encode(ascii_epc.EpcLine(t)) for t in self.tags()]

    async def session(self, channel: Channel) -> None:
        if self.config.protocol == "chafon":
            await self._answer(channel)
            return
        spoil = corrupt_hex_check(-3 if self.config.em4100_frame_length == 14 else -5)
        while not channel.closed:
            for frame in self.stream_frames():
                self.send(channel, frame, spoil if self.config.protocol == "em4100" else None)
            await asyncio.sleep(self.repeat_s)

    async def _answer(self, channel: Channel) -> None:
        decoder = chafon.ChafonDecoder(responses=False)
        mine = self.config.reader_address
        while True:
            data = await channel.read()
            if not data:
                return
            for cmd in decoder.feed(data):
                if not isinstance(cmd, chafon.ChafonCommand) or cmd.address not in (mine, chafon.BROADCAST):
                    continue
                if cmd.command == chafon.CMD_INVENTORY:
                    self.inventories += 1
                    for frame in self.inventory_frames(mine):
                        self.send(channel, frame, corrupt_crc16)
