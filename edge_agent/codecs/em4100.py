"""EM4100 125 kHz card readers with ASCII output (PROTOCOLS.md §5.2).

RDM6300 style, 14 bytes: STX, 10 hex digits (version byte + 4-byte card id), 2 hex check digits, ETX.
ID-12 style, 16 bytes: the same with CR LF before ETX. The check is the XOR of the 5 data bytes, or
their sum modulo 256 on some readers (`check="sum"`).
"""

from dataclasses import dataclass
from typing import Literal

from edge_agent.codecs.common import FrameError, hex2, parse_hex2, skip_to_marker, xor_bytes

STX, ETX = 0x02, 0x03
Check = Literal["xor", "sum"]


@dataclass(frozen=True, slots=True)
class Em4100Frame:
    """A card: `tag_hex` is the 10 hex digits (upper case) as printed on many cards' readers."""

    tag_hex: str

    @property
    def version(self) -> int:
        return int(self.tag_hex[:2], 16)

    @property
    def card_number(self) -> int:
        """The 32-bit card id (data bytes 1..4), as ESPHome reports it."""
        return int(self.tag_hex[2:], 16)


def check_value(data: bytes, check: Check) -> int:
    return xor_bytes(data) if check == "xor" else sum(data) & 0xFF


def encode(frame: Em4100Frame, *, frame_length: int = 14, check: Check = "xor") -> bytes:
    data = bytes.fromhex(frame.tag_hex)
    if len(data) != 5:
        raise ValueError(f"EM4100 tag must be 10 hex digits, got {frame.tag_hex!r}")
    tail = b"\r\n" if frame_length == 16 else b""
    return (
        bytes((STX,))
        + frame.tag_hex.upper().encode("ascii")
        + hex2(check_value(data, check))
        + tail
        + bytes((ETX,))
    )


class Em4100Decoder:
    def __init__(self, *, frame_length: int = 14, check: Check = "xor"):
        if frame_length not in (14, 16):
            raise ValueError("frame_length must be 14 or 16")
        self.frame_length, self.check = frame_length, check
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def _decode(self, raw: bytes) -> Em4100Frame | FrameError:
        if raw[-1] != ETX or (self.frame_length == 16 and raw[13:15] != b"\r\n"):
            return FrameError("no ETX", raw)
        digits = raw[1:11].decode("latin-1")
        if any(c not in "0123456789abcdefABCDEF" for c in digits):
            return FrameError("non-hex data", raw)
        data = bytes.fromhex(digits)
        got = parse_hex2(raw[11:13])
        if got is None or got != check_value(data, self.check):
            return FrameError("bad checksum", raw)
        return Em4100Frame(digits.upper())

    def feed(self, data: bytes) -> list[Em4100Frame | FrameError]:
        buf = self._buf
        buf += data
        out: list[Em4100Frame | FrameError] = []
        size = self.frame_length
        while buf:
            if not skip_to_marker(buf, STX, out, "no STX"):
                break
            if len(buf) < size:
                break
            result = self._decode(bytes(buf[:size]))
            if isinstance(result, FrameError):
                nxt = buf.find(STX, 1, size)
                cut = nxt if nxt > 0 else size
                out.append(FrameError(result.reason, bytes(buf[:cut])))
                del buf[:cut]
            else:
                out.append(result)
                del buf[:size]
        return out
