"""Chafon / UHFReader18 / UHFReader288 binary protocol (PROTOCOLS.md §5.1).

Command `Len Adr Cmd Data… CRC_LSB CRC_MSB`, response `Len Adr reCmd Status Data… CRC`, `Len` counting
the bytes after itself; CRC-16/MCRF4XX (reflected poly 0x8408, init 0xFFFF, no final XOR) over
everything before the CRC. An inventory answer may span several frames (status 0x03 = more follow).
UHFReader18 inventory data is `Num (Len EPC)*`; the 288M adds an antenna byte before `Num` and an RSSI
byte after each EPC. `parse_inventory` tells them apart by which layout accounts for every byte.
"""

from dataclasses import dataclass

from edge_agent.codecs.common import FrameError

CMD_INVENTORY = 0x01
CMD_READER_INFO = 0x21
BROADCAST = 0xFF
STATUS_DONE = 0x01
STATUS_TIMEOUT = 0x02
STATUS_MORE = 0x03
STATUS_FULL = 0x04


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16_mcrf4xx(data: bytes) -> int:
    """CRC-16/MCRF4XX, table-driven (reflected 0x8408, init 0xFFFF, no final XOR)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _with_crc(body: bytes) -> bytes:
    crc = crc16_mcrf4xx(body)
    return body + bytes((crc & 0xFF, crc >> 8))


@dataclass(frozen=True, slots=True)
class ChafonCommand:
    address: int
    command: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ChafonResponse:
    address: int
    command: int
    status: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class InventoryTag:
    epc: bytes
    antenna: int | None = None
    rssi: int | None = None

    @property
    def epc_hex(self) -> str:
        return self.epc.hex().upper()


def encode_command(command: ChafonCommand) -> bytes:
    """E.g. inventory, broadcast: `04 FF 01 1B B4`."""
    return _with_crc(bytes((4 + len(command.data), command.address, command.command)) + command.data)


def encode_response(response: ChafonResponse) -> bytes:
    body = bytes((5 + len(response.data), response.address, response.command, response.status))
    return _with_crc(body + response.data)


def inventory_data(tags: list[InventoryTag], *, antenna: int | None = None) -> bytes:
    """Inventory answer data: 288M layout (antenna, RSSI) when `antenna` is given, else UHFReader18."""
    out = bytearray()
    if antenna is not None:
        out.append(antenna)
    out.append(len(tags))
    for tag in tags:
        out.append(len(tag.epc))
        out += tag.epc
        if antenna is not None:
            out.append(tag.rssi if tag.rssi is not None else 0)
    return bytes(out)


def _parse_tags(data: bytes, pos: int, count: int, rssi: bool) -> list[tuple[bytes, int | None]] | None:
    tags = []
    for _ in range(count):
        if pos >= len(data):
            return None
        n = data[pos]
        end = pos + 1 + n + (1 if rssi else 0)
        if n == 0 or end > len(data):
            return None
        tags.append((bytes(data[pos + 1 : pos + 1 + n]), data[pos + 1 + n] if rssi else None))
        pos = end
    return tags if pos == len(data) else None


def parse_inventory(response: ChafonResponse) -> list[InventoryTag] | FrameError:
    """The tags of one inventory response frame, in whichever layout fits the data exactly."""
    data = response.data
    if response.command != CMD_INVENTORY:
        return FrameError("not an inventory response", bytes(data))
    if response.status not in (STATUS_DONE, STATUS_TIMEOUT, STATUS_MORE, STATUS_FULL):
        return FrameError(f"inventory status 0x{response.status:02X}", bytes(data))
    if len(data) >= 2:
        found = _parse_tags(data, 2, data[1], rssi=True)
        if found is not None:
            return [InventoryTag(epc, data[0], rssi) for epc, rssi in found]
    if len(data) >= 1:
        found = _parse_tags(data, 1, data[0], rssi=False)
        if found is not None:
            return [InventoryTag(epc) for epc, _ in found]
    if not data:
        return []
    return FrameError("inventory data does not parse", bytes(data))


class ChafonDecoder:
    """Length-prefixed stream decoder for responses (`responses=True`, host side) or commands (reader side).

    After a CRC failure it drops one byte and tries again, so it resynchronises inside a stream of
    back-to-back frames; `reset()` (the driver calls it when a poll times out) drops a partial frame.
    """

    def __init__(self, *, responses: bool = True):
        self.responses = responses
        self._min_len = 5 if responses else 4
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def _complete_frame_after(self, buf: bytearray) -> int | None:
        for i in range(1, len(buf) - self._min_len):
            n = buf[i]
            if n >= self._min_len and i + n + 1 <= len(buf):
                raw = buf[i : i + n + 1]
                if crc16_mcrf4xx(raw[:-2]) == raw[-2] | (raw[-1] << 8):
                    return i
        return None

    def feed(self, data: bytes) -> list[ChafonResponse | ChafonCommand | FrameError]:
        buf = self._buf
        buf += data
        out: list[ChafonResponse | ChafonCommand | FrameError] = []
        junk = bytearray()
        while buf:
            n = buf[0]
            if n < self._min_len:
                junk.append(buf.pop(0))
                continue
            if len(buf) < n + 1:
                # Maybe a garbage byte posing as a long length: skip to a complete, CRC-valid frame
                # further on if there is one, rather than stalling until `n` more bytes arrive.
                later = self._complete_frame_after(buf)
                if later is None:
                    break
                junk += buf[:later]
                del buf[:later]
                continue
            raw = bytes(buf[: n + 1])
            if crc16_mcrf4xx(raw[:-2]) != raw[-2] | (raw[-1] << 8):
                junk.append(buf.pop(0))
                continue
            if junk:
                out.append(FrameError("bad CRC or garbage", bytes(junk)))
                junk.clear()
            del buf[: n + 1]
            if self.responses:
                out.append(ChafonResponse(raw[1], raw[2], raw[3], raw[4:-2]))
            else:
                out.append(ChafonCommand(raw[1], raw[2], raw[3:-2]))
        if junk:
            out.append(FrameError("bad CRC or garbage", bytes(junk)))
        return out
