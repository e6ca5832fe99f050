"""What the lane has read about the vehicle in the current transaction.

Each read keeps its source (device or officer) so a decision shows whether a value was keyed in
by hand during a re-gather. A newer read of the same kind replaces the older one.
"""

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gate_controller.events import (
    ContainerRead,
    DriverCardRead,
    EPlateRead,
    KeyIn,
    PlateRead,
    ReadSource,
    SealRead,
    WeightRead,
)

Read = PlateRead | EPlateRead | DriverCardRead | WeightRead | ContainerRead | SealRead


class Value(BaseModel):
    """One observed value with its confidence and source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str = Field(description="The value as read or keyed.")
    confidence: float = Field(1.0, description="Reader confidence 0-1 (1 for keyed values).")
    source: ReadSource = Field("device", description="device or officer.")


class Weight(BaseModel):
    """A stable gross weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kg: float = Field(description="Gross weight, kg.")
    source: ReadSource = Field("device", description="device or officer.")


class Seal(BaseModel):
    """An electronic seal read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seal_id: str = Field(description="Seal id.")
    state: Literal["intact", "opened"] = Field(description="Seal state.")
    source: ReadSource = Field("device", description="device or officer.")


class Observations(BaseModel):
    """All reads gathered so far for one vehicle; the `inputs` of a decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate: Value | None = Field(None, description="Plate.")
    eplate: Value | None = Field(None, description="Electronic plate.")
    driver_card: Value | None = Field(None, description="Driver IC card.")
    weight: Weight | None = Field(None, description="Latest stable gross weight.")
    container_front: Value | None = Field(None, description="Front box container number.")
    container_back: Value | None = Field(None, description="Back box container number.")
    seal: Seal | None = Field(None, description="Electronic seal.")

    def with_read(self, read: Read) -> "Observations":
        """Return a copy with this read applied (unstable weights are ignored)."""
        match read:
            case PlateRead():
                return self.model_copy(
                    update={"plate": Value(value=read.plate, confidence=read.confidence, source=read.source)}
                )
            case EPlateRead():
                return self.model_copy(update={"eplate": Value(value=read.epc, source=read.source)})
            case DriverCardRead():
                return self.model_copy(update={"driver_card": Value(value=read.card_id, source=read.source)})
            case WeightRead():
                if not read.stable:
                    return self
                return self.model_copy(update={"weight": Weight(kg=read.kg, source=read.source)})
            case ContainerRead():
                value = Value(value=read.number, confidence=read.confidence, source=read.source)
                return self.model_copy(update={f"container_{read.position}": value})
            case SealRead():
                return self.model_copy(
                    update={"seal": Seal(seal_id=read.seal_id, state=read.state, source=read.source)}
                )
        raise TypeError(f"not a read: {read!r}")


def read_from_key_in(action: KeyIn) -> Read | None:
    """Turn an officer's keyed value into a read with source `officer`; None if the value is unusable."""
    value = action.value.strip()
    match action.field:
        case "plate":
            return PlateRead(plate=value, confidence=1.0, source="officer")
        case "eplate":
            return EPlateRead(epc=value, source="officer")
        case "driver_card":
            return DriverCardRead(card_id=value, source="officer")
        case "weight_kg":
            try:
                kg = float(value)
            except ValueError:
                return None
            return WeightRead(kg=kg, stable=True, source="officer") if math.isfinite(kg) and kg >= 0 else None
        case "container_front" | "container_back":
            position = "front" if action.field == "container_front" else "back"
            return ContainerRead(position=position, number=value, confidence=1.0, source="officer")
        case "seal":
            return SealRead(seal_id=value, state="intact", source="officer")
    return None
