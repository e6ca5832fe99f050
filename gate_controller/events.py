"""Events the shell feeds the lane controller: loop, read, barrier, record, operator and timer events.

Every event is a frozen pydantic model with a `kind` tag, so `LaneEvent` (a discriminated union)
round-trips through JSON: `TypeAdapter(LaneEvent).validate_json(raw)`.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate_controller.draw import EpochKey
from gate_controller.records import RecordView

LoopName = Literal["arming", "safety", "exit"]
Device = Literal["plate_camera", "rfid", "card_reader", "weighbridge", "container_camera", "seal_reader"]
ReadSource = Literal["device", "officer"]


class Event(BaseModel):
    """Base of every input event."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LoopChanged(Event):
    """A loop detector's presence state. Send on every change AND periodically (≤ loop_stale_s)."""

    kind: Literal["loop"] = "loop"
    loop: LoopName = Field(description="arming (before the arm), safety (under it) or exit (after it).")
    occupied: bool = Field(description="True while a vehicle is present (presence mode).")


class PlateRead(Event):
    """Plate camera (ANPR) read, or a plate keyed in by an officer (via `KeyIn`)."""

    kind: Literal["plate"] = "plate"
    plate: str = Field(min_length=1, description="Plate text as read.")
    confidence: float = Field(ge=0, le=1, description="Camera confidence 0-1; 1 for keyed values.")
    source: ReadSource = Field("device", description="device, or officer when keyed in (re-gather).")


class EPlateRead(Event):
    """UHF RFID electronic plate read."""

    kind: Literal["eplate"] = "eplate"
    epc: str = Field(min_length=1, description="Electronic plate id (EPC) as read.")
    source: ReadSource = Field("device", description="device, or officer when keyed in.")


class DriverCardRead(Event):
    """Driver IC card read."""

    kind: Literal["driver_card"] = "driver_card"
    card_id: str = Field(min_length=1, description="Card id.")
    source: ReadSource = Field("device", description="device, or officer when keyed in.")


class WeightRead(Event):
    """Weighbridge gross weight. Only stable readings are used for the decision."""

    kind: Literal["weight"] = "weight"
    kg: float = Field(description="Gross weight, kg.")
    stable: bool = Field(description="Indicator reports no motion.")
    source: ReadSource = Field("device", description="device, or officer when keyed in.")


class ContainerRead(Event):
    """Container number OCR read of the front or back box."""

    kind: Literal["container"] = "container"
    position: Literal["front", "back"] = Field(description="Which box.")
    number: str = Field(min_length=1, description="ISO 6346 container number as read.")
    confidence: float = Field(ge=0, le=1, description="OCR confidence 0-1; 1 for keyed values.")
    source: ReadSource = Field("device", description="device, or officer when keyed in.")


class SealRead(Event):
    """Electronic seal read."""

    kind: Literal["seal"] = "seal"
    seal_id: str = Field(min_length=1, description="Seal id.")
    state: Literal["intact", "opened"] = Field(description="Seal state as reported by the seal.")
    source: ReadSource = Field("device", description="device, or officer when keyed in.")


class BarrierPosition(Event):
    """Barrier limit switches. Send on every change."""

    kind: Literal["barrier"] = "barrier"
    arm_up: bool = Field(description="Arm-up limit switch closed.")
    arm_down: bool = Field(description="Arm-down limit switch closed.")


class RecordsProvided(Event):
    """The shell's answer to `RequestRecords` (same `request_id`)."""

    kind: Literal["records"] = "records"
    request_id: int = Field(description="Echo of RequestRecords.request_id; stale answers are ignored.")
    view: RecordView = Field(description="The records this transaction needs.")


class EpochKeyInstalled(Event):
    """Install the current random-draw epoch key. Contains the secret: never publish this event."""

    kind: Literal["epoch_key"] = "epoch_key"
    epoch: EpochKey = Field(description="Epoch id and key.")


class Tick(Event):
    """Time passes. Deliver at least at `next_deadline(state)` and periodically (e.g. every 0.5 s)."""

    kind: Literal["tick"] = "tick"


class ManualRelease(Event):
    """Officer releases from a hold (人工放行). I1/I2 holds need a second, different officer."""

    kind: Literal["manual_release"] = "manual_release"
    operator_id: str = Field(description="Authenticated officer id (the shell verifies the signature).")
    reason_code: str = Field(description="Override reason code from the site's code list.")
    reason_text: str = Field(description="Free-text reason.")
    second_operator_id: str | None = Field(None, description="Second officer, required to override I1 or I2.")


class Regather(Event):
    """Officer re-gathers (补采) by re-triggering a device; the lane re-evaluates afterwards."""

    kind: Literal["regather"] = "regather"
    operator_id: str = Field(min_length=1, description="Officer id.")
    device: Device = Field(description="Device to re-trigger.")


class KeyIn(Event):
    """Officer keys in a value by hand (re-gather); recorded with source `officer`."""

    kind: Literal["key_in"] = "key_in"
    operator_id: str = Field(min_length=1, description="Officer id.")
    field: Literal[
        "plate", "eplate", "driver_card", "weight_kg", "container_front", "container_back", "seal"
    ] = Field(description="Which read the value replaces.")
    value: str = Field(min_length=1, description="The value (kg as a decimal string for weight_kg).")


class Escalate(Event):
    """Officer escalates the vehicle to inspection (I5)."""

    kind: Literal["escalate"] = "escalate"
    operator_id: str = Field(min_length=1, description="Officer id.")
    reason_text: str = Field("", description="Why.")


class ResetFault(Event):
    """Officer acknowledges a barrier fault after checking the barrier by eye."""

    kind: Literal["reset_fault"] = "reset_fault"
    operator_id: str = Field(min_length=1, description="Officer id.")


OperatorAction = ManualRelease | Regather | KeyIn | Escalate | ResetFault

LaneEvent = Annotated[
    LoopChanged
    | PlateRead
    | EPlateRead
    | DriverCardRead
    | WeightRead
    | ContainerRead
    | SealRead
    | BarrierPosition
    | RecordsProvided
    | EpochKeyInstalled
    | Tick
    | ManualRelease
    | Regather
    | KeyIn
    | Escalate
    | ResetFault,
    Field(discriminator="kind"),
]
