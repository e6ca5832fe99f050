"""Mettler Toledo "Standard Continuous Output" (PROTOCOLS.md §1): STX, SWA, SWB, SWC, 6+6 digits, CR, [CHK].

Every byte is masked to 7 bits before decoding, so the same decoder reads a 7E1 line opened as 7E1 or as
8N1 (where bit 7 is the parity bit). Leading blanks in the digit fields are accepted. The checksum (two's
complement of the 7-bit sum) is expected when `checksum=True` and must then be right; without it a frame
is still checked for STX, the CR at byte 17 and digit-only fields.
"""

from dataclasses import dataclass

from edge_agent.codecs.common import FrameError, skip_to_marker, with_parity

STX, CR = 0x02, 0x0D
_INCREMENTS = {(1, 0): 1, (0, 1): 2, (1, 1): 5, (0, 0): 0}
_UNIT_CODES = {1: "g", 2: "t", 3: "oz", 7: "none"}
_MASK7 = bytes(b & 0x7F for b in range(256))  # bytes.translate table: drop the parity bit
_TO_KG = {"kg": 1.0, "t": 1000.0, "g": 0.001, "lb": 0.45359237}


@dataclass(frozen=True, slots=True)
class ToledoFrame:
    """One continuous-output frame with every status bit decoded."""

    displayed: int  # the 6 displayed digits as an integer (no sign, no decimal point)
    tare: int = 0  # the 6 tare digits as an integer
    decimal_code: int = 2  # SWA bits 0-2: value = digits × 10^(2 - code)
    increment: int = 1  # SWA bits 3,4: 1, 2 or 5 (0: bits not set)
    net: bool = False  # SWB bit 0
    negative: bool = False  # SWB bit 1
    out_of_range: bool = False  # SWB bit 2: over capacity or under zero
    motion: bool = False  # SWB bit 3
    unit: str = "kg"  # SWB bit 4 with SWC bits 0-2: kg, lb, g, t, oz, none, unknown
    power_up_not_zeroed: bool = False  # SWB bit 6
    print_request: bool = False  # SWC bit 3
    expanded: bool = False  # SWC bit 4: display ×10

    @property
    def scale(self) -> float:
        return 10.0 ** (2 - self.decimal_code)

    @property
    def weight(self) -> float:
        """Displayed weight in the indicator's unit, signed and scaled."""
        value = round(self.displayed * self.scale, max(0, self.decimal_code - 2))
        return -value if self.negative else value

    @property
    def tare_weight(self) -> float:
        return round(self.tare * self.scale, max(0, self.decimal_code - 2))

    @property
    def weight_kg(self) -> float | None:
        """Displayed weight in kg, or None for a unit that is not a mass we can convert (oz, none)."""
        factor = _TO_KG.get(self.unit)
        return None if factor is None else self.weight * factor

    @property
    def tare_kg(self) -> float | None:
        factor = _TO_KG.get(self.unit)
        return None if factor is None else self.tare_weight * factor


def checksum(body: bytes) -> int:
    """Two's complement of the 7-bit sum of STX..CR."""
    return (-sum(b & 0x7F for b in body)) & 0x7F


def _status(frame: ToledoFrame) -> bytes:
    inc_bits = {1: (1, 0), 2: (0, 1), 5: (1, 1)}.get(frame.increment, (0, 0))
    swa = 0x20 | (frame.decimal_code & 7) | (inc_bits[0] << 3) | (inc_bits[1] << 4)
    unit_code = {v: k for k, v in _UNIT_CODES.items()}.get(frame.unit, 0)
    swb = (
        0x20
        | int(frame.net)
        | (int(frame.negative) << 1)
        | (int(frame.out_of_range) << 2)
        | (int(frame.motion) << 3)
        | (int(frame.unit != "lb") << 4)
        | (int(frame.power_up_not_zeroed) << 6)
    )
    swc = 0x20 | unit_code | (int(frame.print_request) << 3) | (int(frame.expanded) << 4)
    return bytes((swa, swb, swc))


def _digits(value: int, leading_spaces: bool) -> bytes:
    text = f"{max(0, min(999_999, value)):06d}"
    if leading_spaces:
        stripped = text.lstrip("0") or "0"
        text = stripped.rjust(6)
    return text.encode("ascii")


def encode(
    frame: ToledoFrame, *, with_checksum: bool = True, leading_spaces: bool = False, parity: str = "N"
) -> bytes:
    """The wire bytes of a frame; `parity="E"` sets bit 7 as a 7E1 line read by an 8-bit receiver sees it."""
    body = (
        bytes((STX,))
        + _status(frame)
        + _digits(frame.displayed, leading_spaces)
        + _digits(frame.tare, leading_spaces)
        + bytes((CR,))
    )
    if with_checksum:
        body += bytes((checksum(body),))
    return with_parity(body, parity)


def _digit_field(field: bytes) -> int | None:
    if any(b not in b"0123456789 " for b in field):
        return None
    text = field.decode("ascii").strip()
    if " " in text:  # blanks are only allowed as leading zeros
        return None
    return int(text) if text else 0


def decode_frame(raw: bytes, with_checksum: bool) -> ToledoFrame | FrameError:
    """Decode exactly one frame (17 or 18 bytes, already 7-bit masked)."""
    size = 18 if with_checksum else 17
    if len(raw) != size or raw[0] != STX:
        return FrameError("bad length", raw)
    if raw[16] != CR:
        return FrameError("no CR at byte 17", raw)
    if with_checksum and sum(raw) % 128 != 0:
        return FrameError("bad checksum", raw)
    displayed, tare = _digit_field(raw[4:10]), _digit_field(raw[10:16])
    if displayed is None or tare is None:
        return FrameError("non-digit in weight field", raw)
    swa, swb, swc = raw[1], raw[2], raw[3]
    unit_code = swc & 7
    unit = ("kg" if swb & 0x10 else "lb") if unit_code == 0 else _UNIT_CODES.get(unit_code, "unknown")
    return ToledoFrame(
        displayed=displayed,
        tare=tare,
        decimal_code=swa & 7,
        increment=_INCREMENTS[((swa >> 3) & 1, (swa >> 4) & 1)],
        net=bool(swb & 0x01),
        negative=bool(swb & 0x02),
        out_of_range=bool(swb & 0x04),
        motion=bool(swb & 0x08),
        unit=unit,
        power_up_not_zeroed=bool(swb & 0x40),
        print_request=bool(swc & 0x08),
        expanded=bool(swc & 0x10),
    )


class ToledoDecoder:
    """Stream decoder: feed any chunks, get frames and `FrameError`s; resynchronises on the next STX."""

    def __init__(self, *, with_checksum: bool = True):
        self.with_checksum = with_checksum
        self._size = 18 if with_checksum else 17
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[ToledoFrame | FrameError]:
        self._buf += data.translate(_MASK7)
        out: list[ToledoFrame | FrameError] = []
        buf = self._buf
        while buf:
            if not skip_to_marker(buf, STX, out, "no STX"):
                break
            if len(buf) < self._size:
                break
            result = decode_frame(bytes(buf[: self._size]), self.with_checksum)
            if isinstance(result, FrameError):
                nxt = buf.find(STX, 1, self._size)
                cut = nxt if nxt > 0 else self._size
                out.append(FrameError(result.reason, bytes(buf[:cut])))
                del buf[:cut]
            else:
                out.append(result)
                del buf[: self._size]
        return out
