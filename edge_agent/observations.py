"""Typed observations that drivers emit: what a device saw, in the lane's terms, already validated.

Drivers never talk to the lane controller directly; the lane runtime maps these onto controller events.
Times are `time.monotonic()` seconds taken by the driver when the frame arrived (`at`).
"""

from dataclasses import dataclass, field
from typing import Literal

LoopName = Literal["arming", "safety", "exit"]


@dataclass(frozen=True, slots=True)
class LoopState:
    """A debounced loop detector level; `occupied=None` means unknown (stale inputs: treat as occupied)."""

    device_id: str
    loop: LoopName
    occupied: bool | None
    at: float


@dataclass(frozen=True, slots=True)
class ArmPosition:
    """Barrier limit switches. Both False while travelling; both True is a switch fault."""

    device_id: str
    arm_up: bool | None
    arm_down: bool | None
    at: float


@dataclass(frozen=True, slots=True)
class WeightReading:
    """A weight frame after checksum and stability logic; `stable` only when indicator and software window agree."""

    device_id: str
    gross_kg: float | None
    stable: bool
    motion: bool
    at: float
    tare_kg: float | None = None
    net: bool = False
    signal_lost: bool = False
    empty: bool = (
        False  # gross below the configured empty-bridge threshold (added for the weighbridge driver)
    )


@dataclass(frozen=True, slots=True)
class TagRead:
    """One RFID tag (or IC card) read, after de-duplication within the configured window."""

    device_id: str
    role: Literal["e_plate", "e_seal", "driver_card"]
    tag_id: str
    at: float
    rssi: int | None = None
    antenna: int | None = None


@dataclass(frozen=True, slots=True)
class PlateSighting:
    """A plate result pushed by (or read from) a plate camera."""

    device_id: str
    plate: str | None
    confidence: float
    at: float
    plate_color: str | None = None
    images: dict[str, bytes] = field(default_factory=dict, repr=False)
    source_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerSighting:
    """A container number read (ISO 6346 valid, or None when unreadable)."""

    device_id: str
    position: Literal["front", "back"]
    number: str | None
    confidence: float
    at: float
    images: dict[str, bytes] = field(default_factory=dict, repr=False)


Observation = LoopState | ArmPosition | WeightReading | TagRead | PlateSighting | ContainerSighting
