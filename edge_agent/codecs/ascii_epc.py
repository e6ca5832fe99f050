"""Plain ASCII EPC lines (PROTOCOLS.md §5.5 item 2): readers in "active" mode printing `EPC<CR><LF>`.

No source defines this format, so the decoder is lenient where it is harmless (CR, LF or CR LF line ends,
blank lines ignored, upper or lower case) and strict where it matters: a line must be an even number
(8–64) of hex digits, else it is a `FrameError`. A line longer than 128 bytes is noise and is dropped.
"""

import re
from dataclasses import dataclass

from edge_agent.codecs.common import FrameError

MAX_LINE = 128
_HEX = frozenset(b"0123456789abcdefABCDEF")
_EOL = re.compile(rb"[\r\n]+")


@dataclass(frozen=True, slots=True)
class EpcLine:
    epc: str  # upper-case hex


def encode(line: EpcLine) -> bytes:
    return line.epc.upper().encode("ascii") + b"\r\n"


class AsciiEpcDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line that was already reported

    def reset(self) -> None:
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[EpcLine | FrameError]:
        buf = self._buf
        buf += data
        out: list[EpcLine | FrameError] = []
        while True:
            m = _EOL.search(buf)
            if m is None:
                if len(buf) > MAX_LINE:
                    if not self._skipping:
                        out.append(FrameError("line too long", bytes(buf)))
                    self._skipping = True
                    buf.clear()
                return out
            line = bytes(buf[: m.start()])
            del buf[: m.end()]
            if self._skipping:
                self._skipping = False
            elif not line:
                continue
            elif len(line) % 2 or not 8 <= len(line) <= 64 or not set(line) <= _HEX:
                out.append(FrameError("not a hex EPC line", line))
            else:
                out.append(EpcLine(line.decode("ascii").upper()))
