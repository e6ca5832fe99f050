"""Yaohua XK3190 indicators and clones (PROTOCOLS.md §2): three wire formats of one family.

* `tF=0` continuous, 12 bytes: STX, sign, 6 digits, decimals, XOR as two ASCII hex digits, ETX.
* `=` reversed format, 9 bytes back to back: `=`, 7 characters lowest digit first (decimal point
  included), sign `0`/`-`. No checksum, so a decoder can only check the shape.
* `tF=1` command mode: host sends `STX addr cmd XORh XORl ETX`; the indicator answers
  `STX addr cmd data XORh XORl ETX`, data being sign + 6 digits + decimals for gross/tare/net.
"""

from dataclasses import dataclass

from edge_agent.codecs.common import FrameError, hex2, parse_hex2, skip_to_marker, xor_bytes

STX, ETX = 0x02, 0x03
CMD_HANDSHAKE, CMD_GROSS, CMD_TARE, CMD_NET = "A", "B", "C", "D"


@dataclass(frozen=True, slots=True)
class YaohuaFrame:
    """A displayed weight (continuous formats); `decimals` digits after the point."""

    weight: float
    decimals: int = 0

    @property
    def negative(self) -> bool:
        return self.weight < 0


@dataclass(frozen=True, slots=True)
class YaohuaRequest:
    """A host request in command mode: `address` 1..26 (`A`..`Z`), `command` one letter."""

    address: int
    command: str


@dataclass(frozen=True, slots=True)
class YaohuaResponse:
    """An indicator answer in command mode; `weight` is None for the handshake (`A`)."""

    address: int
    command: str
    weight: float | None = None
    decimals: int = 0


# ----------------------------------------------------------------------------- value fields
def _value_field(weight: float, decimals: int) -> bytes:
    """Sign + 6 digits + decimal count (8 bytes), as in tF=0 frames and command responses."""
    scaled = round(abs(weight) * 10**decimals)
    sign = b"-" if weight < 0 else b"+"
    return sign + b"%06d" % min(scaled, 999_999) + b"%d" % decimals


def _parse_value_field(field: bytes) -> tuple[float, int] | None:
    if len(field) != 8 or field[0] not in b"+-" or not field[1:7].isdigit() or field[7] not in b"01234":
        return None
    decimals = field[7] - 0x30
    value = int(field[1:7]) / 10**decimals
    value = round(value, decimals)
    return (-value if field[0] == 0x2D else value), decimals


def _address_byte(address: int) -> bytes:
    if not 1 <= address <= 26:
        raise ValueError(f"XK3190 address must be 1..26, got {address}")
    return bytes((0x40 + address,))


# ----------------------------------------------------------------------------- tF=0
def encode(frame: YaohuaFrame) -> bytes:
    """A 12-byte tF=0 frame."""
    body = _value_field(frame.weight, frame.decimals)
    return bytes((STX,)) + body + hex2(xor_bytes(body)) + bytes((ETX,))


class _StxEtxFramer:
    """Shared STX…ETX framing with resync: yields candidate frames of an expected set of lengths."""

    def __init__(self, lengths: tuple[int, ...]):
        self._buf = bytearray()
        self._max = max(lengths)
        self._lengths = lengths

    def reset(self) -> None:
        self._buf.clear()

    def frames(self, data: bytes) -> list[bytes | FrameError]:
        buf = self._buf
        buf += data
        out: list[bytes | FrameError] = []
        while buf:
            if not skip_to_marker(buf, STX, out, "no STX"):
                break
            end = buf.find(ETX, 1, self._max)
            if end < 0:
                if len(buf) >= self._max:  # no ETX where one must be: drop up to the next STX
                    nxt = buf.find(STX, 1)
                    cut = nxt if nxt > 0 else len(buf)
                    out.append(FrameError("no ETX", bytes(buf[:cut])))
                    del buf[:cut]
                    continue
                break
            candidate = bytes(buf[: end + 1])
            inner_stx = candidate.find(STX, 1)
            if inner_stx > 0:  # a frame restarted: the part before it is a broken frame
                out.append(FrameError("truncated frame", candidate[:inner_stx]))
                del buf[:inner_stx]
                continue
            del buf[: end + 1]
            if len(candidate) not in self._lengths:
                out.append(FrameError("bad length", candidate))
                continue
            out.append(candidate)
        return out


def _check_xor(frame: bytes) -> bool:
    got = parse_hex2(frame[-3:-1])
    return got is not None and got == xor_bytes(frame[1:-3])


class _XorFramedDecoder:
    """STX…ETX frames with an XOR check (tF=0 and command mode): framing and check here, fields in `_parse`."""

    LENGTHS: tuple[int, ...] = ()

    def __init__(self) -> None:
        self._framer = _StxEtxFramer(self.LENGTHS)

    def reset(self) -> None:
        self._framer.reset()

    def _parse(self, raw: bytes) -> object:  # each subclass returns its own frame type or a FrameError
        raise NotImplementedError

    def feed(self, data: bytes) -> list:
        out: list = []
        for raw in self._framer.frames(data):
            if isinstance(raw, FrameError):
                out.append(raw)
            elif not _check_xor(raw):
                out.append(FrameError("bad checksum", raw))
            else:
                out.append(self._parse(raw))
        return out


class YaohuaDecoder(_XorFramedDecoder):
    """Decoder of tF=0 continuous 12-byte frames."""

    LENGTHS = (12,)

    def _parse(self, raw: bytes) -> YaohuaFrame | FrameError:
        if (value := _parse_value_field(raw[1:9])) is None:
            return FrameError("bad weight field", raw)
        return YaohuaFrame(*value)


# ----------------------------------------------------------------------------- "=" reversed
def encode_reversed(frame: YaohuaFrame) -> bytes:
    """A 9-byte `=` frame: 7 characters (with the decimal point) lowest digit first, then the sign."""
    if frame.decimals:
        text = f"{abs(frame.weight):0{7}.{frame.decimals}f}"
    else:
        text = f"{round(abs(frame.weight)):07d}"
    text = text[-7:]
    return b"=" + text[::-1].encode("ascii") + (b"-" if frame.weight < 0 else b"0")


class YaohuaReversedDecoder:
    """Decoder of the `=` reversed-digit format (no checksum: shape checks only)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[YaohuaFrame | FrameError]:
        buf = self._buf
        buf += data
        out: list[YaohuaFrame | FrameError] = []
        while buf:
            if not skip_to_marker(buf, b"=", out, "no '='"):
                break
            if len(buf) < 9:
                break
            raw = bytes(buf[:9])
            digits, sign = raw[1:8][::-1], raw[8]
            ok = (
                sign in b"0-"
                and all(c in b"0123456789." for c in digits)
                and digits.count(b".") <= 1
                and not digits.endswith(b".")
                and not digits.startswith(b".")
            )
            if not ok:
                nxt = buf.find(b"=", 1, 9)
                cut = nxt if nxt > 0 else 9
                out.append(FrameError("bad '=' frame", bytes(buf[:cut])))
                del buf[:cut]
                continue
            del buf[:9]
            text = digits.decode("ascii")
            decimals = len(text) - text.index(".") - 1 if "." in text else 0
            value = round(float(text), decimals)
            out.append(YaohuaFrame(-value if sign == 0x2D else value, decimals))
        return out


# ----------------------------------------------------------------------------- command mode
def encode_request(address: int, command: str) -> bytes:
    """`STX addr cmd XORh XORl ETX`, e.g. address 1, gross: `02 41 42 30 33 03`."""
    body = _address_byte(address) + command.encode("ascii")
    return bytes((STX,)) + body + hex2(xor_bytes(body)) + bytes((ETX,))


def encode_response(response: YaohuaResponse) -> bytes:
    """`STX addr cmd [sign 6 digits decimals] XORh XORl ETX` (6 bytes for a handshake, 14 with a weight)."""
    body = _address_byte(response.address) + response.command.encode("ascii")
    if response.weight is not None:
        body += _value_field(response.weight, response.decimals)
    return bytes((STX,)) + body + hex2(xor_bytes(body)) + bytes((ETX,))


def _addr_cmd(raw: bytes) -> tuple[int, str] | None:
    addr, cmd = raw[1], raw[2]
    if not 0x41 <= addr <= 0x5A or not 0x41 <= cmd <= 0x5A:
        return None
    return addr - 0x40, chr(cmd)


class YaohuaRequestDecoder(_XorFramedDecoder):
    """Indicator side of command mode (used by the simulator): decodes host requests."""

    LENGTHS = (6,)

    def _parse(self, raw: bytes) -> YaohuaRequest | FrameError:
        if (ac := _addr_cmd(raw)) is None:
            return FrameError("bad address or command", raw)
        return YaohuaRequest(*ac)


class YaohuaResponseDecoder(_XorFramedDecoder):
    """Host side of command mode: decodes indicator answers (6-byte handshake, 14-byte weight)."""

    LENGTHS = (6, 14)

    def _parse(self, raw: bytes) -> YaohuaResponse | FrameError:
        if (ac := _addr_cmd(raw)) is None:
            return FrameError("bad address or command", raw)
        if len(raw) == 6:
            return YaohuaResponse(*ac)
        if (value := _parse_value_field(raw[3:11])) is None:
            return FrameError("bad weight field", raw)
        return YaohuaResponse(*ac, weight=value[0], decimals=value[1])
