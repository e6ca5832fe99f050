"""Pieces every sans-I/O codec shares: the `FrameError` value and a bounded receive buffer.

A corrupted frame is data, not an exception: decoders return `FrameError` values next to good frames so a
driver can count and log them, a test can assert on them, and a replayed capture never unwinds a task.
"""

from dataclasses import dataclass

MAX_BUFFER = 4096
"""Bytes a decoder keeps while waiting for the end of a frame; more than this is line noise, not a frame."""

GARBAGE_HOLD = 64
"""Bytes without any start-of-frame byte kept before they are reported as one `FrameError` (so line noise
arriving byte by byte is counted as a few errors, not one per byte)."""


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that were rejected, and why (`reason` is short and stable enough to count by)."""

    reason: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.reason}: {self.raw[:48].hex(' ')}{' …' if len(self.raw) > 48 else ''}"


def xor_bytes(data: bytes) -> int:
    """XOR of all bytes (Yaohua, EM4100, LED text checks)."""
    out = 0
    for b in data:
        out ^= b
    return out


def hex2(value: int) -> bytes:
    """A byte as two upper-case ASCII hex digits, the way Yaohua and EM4100 send checks."""
    return b"%02X" % (value & 0xFF)


def parse_hex2(two: bytes) -> int | None:
    """Two ASCII hex digits (either case) to an int, or None when they are not hex."""
    try:
        text = two.decode("ascii")
    except UnicodeDecodeError:
        return None
    if len(text) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return int(text, 16)


def with_parity(data: bytes, parity: str) -> bytes:
    """Put an even/odd parity bit into bit 7 of 7-bit characters, as an 8-bit receiver sees a 7E1/7O1 line.

    Simulators use it so tests prove the decoders' `& 0x7F` masking; `parity="N"` returns the data unchanged.
    """
    if parity not in ("E", "O"):
        return bytes(data)
    out = bytearray()
    for b in data:
        ones = (b & 0x7F).bit_count()
        bit = (ones & 1) if parity == "E" else (1 - (ones & 1))
        out.append((b & 0x7F) | (bit << 7))
    return bytes(out)


def skip_to_marker(buf: bytearray, marker: bytes, out: list, reason: str) -> bool:
    """Drop whatever precedes the next frame start `marker`, reporting it as one `FrameError`.

    Returns False when no marker is in the buffer yet (wait for more bytes); a long run of garbage with
    no marker at all is reported and dropped, so a babbling line never grows the buffer without bound.
    """
    start = buf.find(marker)
    if start < 0:
        if len(buf) > GARBAGE_HOLD:
            out.append(FrameError(reason, bytes(buf)))
            buf.clear()
        return False
    if start > 0:
        out.append(FrameError(reason, bytes(buf[:start])))
        del buf[:start]
    return True
