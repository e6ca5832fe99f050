"""Fault injection shared by the serial device simulators: what a bad cable, a cheap serial server or a
failing indicator does to a byte stream.

One `Faults` value per simulator. Probabilities are per frame (noise, bad checksum) or per byte (bit
flips); times are seconds since the simulator started serving. With a `seed` the faults are repeatable.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field

CheckCorrupter = Callable[[bytes, random.Random], bytes]
"""Returns the frame with a wrong check value (protocol specific; None for protocols without a check)."""


@dataclass
class Faults:
    noise: float = 0.0
    """Probability per frame that a burst of 1–8 random bytes is sent before it."""
    bitflip: float = 0.0
    """Probability per byte that one of its bits is flipped."""
    bad_checksum: float = 0.0
    """Probability per frame that its check value is wrong (no effect for protocols without a check)."""
    never_settle: bool = False
    """Trucks of the built-in truck stream never settle on the bridge (the weight keeps oscillating)."""
    drift_kg_per_h: float = 0.0
    """Zero drift of the weighbridge, kg per hour (applied to a scene the simulator builds itself)."""
    silence_after_s: float | None = None
    """Stop sending (and answering) this many seconds after serving starts."""
    silence_for_s: float | None = None
    """How long a silence lasts; None = for ever."""
    disconnect_every_s: float | None = None
    """TCP only: drop the client connection this often (a serial server rebooting)."""
    seed: int | None = None
    """Seed of the fault generator, for repeatable runs."""
    stats: dict[str, int] = field(
        default_factory=lambda: {"frames": 0, "noise": 0, "bitflips": 0, "bad_checksum": 0}
    )

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        return bool(self.noise or self.bitflip or self.bad_checksum)

    def silent(self, elapsed_s: float) -> bool:
        if self.silence_after_s is None or elapsed_s < self.silence_after_s:
            return False
        return self.silence_for_s is None or elapsed_s < self.silence_after_s + self.silence_for_s

    def apply(self, frame: bytes, corrupt_check: CheckCorrupter | None = None) -> bytes:
        """The bytes actually put on the line for one frame."""
        rng = self.rng
        self.stats["frames"] += 1
        out = frame
        if corrupt_check is not None and self.bad_checksum and rng.random() < self.bad_checksum:
            out = corrupt_check(out, rng)
            self.stats["bad_checksum"] += 1
        if self.bitflip:
            data = bytearray(out)
            for i in range(len(data)):
                if rng.random() < self.bitflip:
                    data[i] ^= 1 << rng.randrange(8)
                    self.stats["bitflips"] += 1
            out = bytes(data)
        if self.noise and rng.random() < self.noise:
            out = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + out
            self.stats["noise"] += 1
        return out


def corrupt_last_byte_7bit(frame: bytes, rng: random.Random) -> bytes:
    """Toledo: change the 7-bit checksum byte."""
    return frame[:-1] + bytes((frame[-1] ^ rng.randint(1, 0x7F),))


def corrupt_hex_check(position: int) -> CheckCorrupter:
    """Two ASCII hex check digits at `position` (negative index of the first digit) replaced by other hex."""

    def corrupt(frame: bytes, rng: random.Random) -> bytes:
        start = len(frame) + position
        try:
            value = int(frame[start : start + 2], 16)
        except ValueError:
            value = 0
        bad = (value + rng.randint(1, 255)) & 0xFF
        return frame[:start] + b"%02X" % bad + frame[start + 2 :]

    return corrupt


def corrupt_crc16(frame: bytes, rng: random.Random) -> bytes:
    """Chafon: a wrong CRC (low byte changed)."""
    return frame[:-2] + bytes((frame[-2] ^ rng.randint(1, 255), frame[-1]))
