"""SMA SCP-0499 (PROTOCOLS.md §3.1): request/response, `<LF>cmd<CR>` → `<LF>s r n m f weight(10) unit(3)<CR>`.

The response has no checksum; the decoder checks the fixed 20-byte shape, the field alphabets and the
number. A weight field of dashes (zero, initial-zero or tare error) decodes with `weight=None`.
"""

from dataclasses import dataclass

from edge_agent.codecs.common import FrameError, skip_to_marker

LF, CR = 0x0A, 0x0D
FRAME_LEN = 20
_STATUS = " ZOUEIT"
_MODES = "GTNgn"


@dataclass(frozen=True, slots=True)
class SmaFrame:
    """One standard response; `status` is one of `" ZOUEIT"` (space = none)."""

    weight: float | None
    mode: str = "G"  # G gross, T tare, N net, g/n high resolution
    motion: bool = False
    status: str = " "
    range: int = 1
    unit: str = "kg"

    @property
    def net(self) -> bool:
        return self.mode in "Nn"

    @property
    def overload(self) -> bool:
        return self.status in ("O", "U")

    @property
    def weight_kg(self) -> float | None:
        factor = {"kg": 1.0, "t": 1000.0, "g": 0.001, "lb": 0.45359237}.get(self.unit)
        return None if factor is None or self.weight is None else self.weight * factor


@dataclass(frozen=True, slots=True)
class SmaCommand:
    """A host command letter (`W` weight, `Z` zero, `T` tare, …)."""

    letter: str


def encode_command(letter: str) -> bytes:
    return b"\n" + letter.encode("ascii") + b"\r"


def encode(frame: SmaFrame, *, decimals: int = 1) -> bytes:
    """A 20-byte response, e.g. `\\n 1G     12340.0kg \\r`."""
    weight = "-" * 10 if frame.weight is None else f"{frame.weight:.{decimals}f}".rjust(10)[-10:]
    head = f"{frame.status}{frame.range % 10}{frame.mode}{'M' if frame.motion else ' '} "
    return b"\n" + (head + weight + frame.unit.ljust(3)[:3]).encode("ascii") + b"\r"


def decode_frame(raw: bytes) -> SmaFrame | FrameError:
    if len(raw) != FRAME_LEN or raw[0] != LF or raw[-1] != CR:
        return FrameError("bad length", raw)
    try:
        text = raw[1:-1].decode("ascii")
    except UnicodeDecodeError:
        return FrameError("non-ASCII byte", raw)
    status, rng, mode, motion, _reserved = text[0], text[1], text[2], text[3], text[4]
    weight_text, unit = text[5:15], text[15:18]
    if status not in _STATUS or not rng.isdigit() or mode not in _MODES or motion not in " M":
        return FrameError("bad status field", raw)
    if not unit.strip().isalpha() or not unit.strip():
        return FrameError("bad unit", raw)
    stripped = weight_text.strip()
    if stripped and set(stripped) == {"-"}:
        weight = None
    else:
        body = stripped[1:] if stripped.startswith("-") else stripped
        if not body or any(c not in "0123456789." for c in body) or body.count(".") > 1 or " " in stripped:
            return FrameError("bad weight field", raw)
        try:
            weight = float(stripped)
        except ValueError:
            return FrameError("bad weight field", raw)
    return SmaFrame(weight, mode, motion == "M", status, int(rng), unit.strip())


class _LineFramer:
    """Frames that start with LF and end with CR; anything longer than `max_len` is dropped as noise."""

    def __init__(self, max_len: int):
        self._buf = bytearray()
        self._max = max_len

    def reset(self) -> None:
        self._buf.clear()

    def frames(self, data: bytes) -> list[bytes | FrameError]:
        buf = self._buf
        buf += data
        out: list[bytes | FrameError] = []
        while buf:
            if not skip_to_marker(buf, LF, out, "no LF"):
                break
            end = buf.find(CR, 1, self._max)
            inner = buf.find(LF, 1, end if end > 0 else self._max)
            if inner > 0:
                out.append(FrameError("truncated frame", bytes(buf[:inner])))
                del buf[:inner]
                continue
            if end < 0:
                if len(buf) >= self._max:
                    out.append(FrameError("no CR", bytes(buf[: self._max])))
                    del buf[: self._max]
                    continue
                break
            out.append(bytes(buf[: end + 1]))
            del buf[: end + 1]
        return out


class SmaDecoder:
    """Host side: decodes indicator responses."""

    def __init__(self) -> None:
        self._framer = _LineFramer(FRAME_LEN)

    def reset(self) -> None:
        self._framer.reset()

    def feed(self, data: bytes) -> list[SmaFrame | FrameError]:
        return [
            raw if isinstance(raw, FrameError) else decode_frame(raw) for raw in self._framer.frames(data)
        ]


class SmaCommandDecoder:
    """Indicator side (simulator): decodes `<LF>letter<CR>` commands."""

    def __init__(self) -> None:
        self._framer = _LineFramer(3)

    def reset(self) -> None:
        self._framer.reset()

    def feed(self, data: bytes) -> list[SmaCommand | FrameError]:
        out: list[SmaCommand | FrameError] = []
        for raw in self._framer.frames(data):
            if isinstance(raw, FrameError):
                out.append(raw)
            elif len(raw) == 3 and 0x20 < raw[1] < 0x7F or raw == b"\n\x1b\r":
                out.append(SmaCommand(chr(raw[1])))
            else:
                out.append(FrameError("bad command", raw))
        return out
