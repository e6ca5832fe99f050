"""The efence LED board text protocol (`efence-text`), specified in docs/PROTOCOL_LED.md.

Host → board: `STX cmd line colour text… ETX CHKh CHKl`
  cmd `T` show text on a line, `C` clear (line `0` = every line); line `0`–`8`; colour `R` red, `G` green,
  `Y` yellow; text in the board's encoding (GB18030 by default), at most 64 bytes, no control characters;
  CHK = XOR of the bytes from cmd to ETX inclusive, as two upper-case ASCII hex digits.
Board → host: one byte, ACK 0x06 (shown) or NAK 0x15 (rejected), per frame.
GB18030 and UTF-8 never use bytes below 0x30 inside a multi-byte character, so STX/ETX cannot occur in text.
"""

from dataclasses import dataclass
from typing import Literal

from edge_agent.codecs.common import FrameError, hex2, parse_hex2, skip_to_marker, xor_bytes

STX, ETX, ACK, NAK = 0x02, 0x03, 0x06, 0x15
MAX_TEXT = 64
Colour = Literal["R", "G", "Y"]
COLOURS = {"red": "R", "green": "G", "yellow": "Y"}


@dataclass(frozen=True, slots=True)
class LedText:
    """One frame: show `text` on `line` (1-based) in `colour`, or clear (`command="C"`, line 0 = all)."""

    line: int
    text: str = ""
    colour: Colour = "R"
    command: Literal["T", "C"] = "T"


@dataclass(frozen=True, slots=True)
class LedReply:
    ok: bool


def encode(frame: LedText, *, encoding: str = "gb18030") -> bytes:
    """Raises ValueError for text the board cannot show (too long, control characters, unencodable)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in frame.text):
        raise ValueError("LED text must not contain control characters")
    if not 0 <= frame.line <= 8:
        raise ValueError("LED line must be 0..8")
    text = frame.text.encode(encoding)
    if len(text) > MAX_TEXT:
        raise ValueError(f"LED text is {len(text)} bytes, at most {MAX_TEXT}")
    body = frame.command.encode() + str(frame.line).encode() + frame.colour.encode() + text + bytes((ETX,))
    return bytes((STX,)) + body + hex2(xor_bytes(body))


def encode_reply(reply: LedReply) -> bytes:
    return bytes((ACK if reply.ok else NAK,))


class LedTextDecoder:
    """Board side: decodes host frames (the simulator uses it; so can a field engineer's capture)."""

    def __init__(self, *, encoding: str = "gb18030"):
        self.encoding = encoding
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def _decode(self, raw: bytes) -> LedText | FrameError:
        body = raw[1:-2]
        got = parse_hex2(raw[-2:])
        if got is None or got != xor_bytes(body):
            return FrameError("bad checksum", raw)
        cmd, line, colour, text = body[0:1], body[1:2], body[2:3], body[3:-1]
        if cmd not in (b"T", b"C") or not line.isdigit() or int(line) > 8 or colour not in (b"R", b"G", b"Y"):
            return FrameError("bad header", raw)
        if len(text) > MAX_TEXT or any(b < 0x20 for b in text):
            return FrameError("bad text", raw)
        try:
            decoded = text.decode(self.encoding)
        except UnicodeDecodeError:
            return FrameError("undecodable text", raw)
        return LedText(int(line), decoded, colour.decode(), cmd.decode())  # type: ignore[arg-type]

    def feed(self, data: bytes) -> list[LedText | FrameError]:
        buf = self._buf
        buf += data
        out: list[LedText | FrameError] = []
        max_len = 1 + 3 + MAX_TEXT + 1 + 2
        while buf:
            if not skip_to_marker(buf, STX, out, "no STX"):
                break
            end = buf.find(ETX, 1, max_len)
            nxt = buf.find(STX, 1, end if end > 0 else max_len)
            if nxt > 0:
                out.append(FrameError("truncated frame", bytes(buf[:nxt])))
                del buf[:nxt]
                continue
            if end < 0:
                if len(buf) >= max_len:
                    out.append(FrameError("no ETX", bytes(buf[:max_len])))
                    del buf[:max_len]
                    continue
                break
            if len(buf) < end + 3:
                break
            if end < 4:
                out.append(FrameError("short frame", bytes(buf[: end + 3])))
                del buf[: end + 3]
                continue
            out.append(self._decode(bytes(buf[: end + 3])))
            del buf[: end + 3]
        return out


class LedReplyDecoder:
    """Host side: ACK/NAK bytes; anything else is a `FrameError`."""

    def feed(self, data: bytes) -> list[LedReply | FrameError]:
        out: list[LedReply | FrameError] = []
        for b in data:
            if b == ACK:
                out.append(LedReply(True))
            elif b == NAK:
                out.append(LedReply(False))
            else:
                out.append(FrameError("not ACK/NAK", bytes((b,))))
        return out

    def reset(self) -> None:
        pass
