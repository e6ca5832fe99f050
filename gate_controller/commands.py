"""Commands the lane controller asks the shell to carry out on the lane's devices.

Barrier commands are pulses: the shell closes the contact for `duration_s` and releases it, never
latching it, and the barrier controller's own hard-wired presence inhibit stays authoritative.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate_controller.events import Device


class Command(BaseModel):
    """Base of every command."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class BarrierPulse(Command):
    """Pulse the barrier's open or close input once."""

    kind: Literal["barrier_pulse"] = "barrier_pulse"
    action: Literal["open", "close"] = Field(description="Which input to pulse.")
    duration_s: float = Field(gt=0, description="Contact closure time; release afterwards, never latch.")
    transaction_id: str = Field(description="Transaction this movement belongs to.")


class SetLight(Command):
    """Set the lane traffic light."""

    kind: Literal["set_light"] = "set_light"
    color: Literal["red", "green", "yellow"] = Field(
        description="red: stop, green: go, yellow: wait/officer."
    )


class ShowText(Command):
    """Show text on the LED board, Chinese first, English second."""

    kind: Literal["show_text"] = "show_text"
    zh: str = Field(description="Chinese text, e.g. 直接放行.")
    en: str = Field(description="English text.")


class Retrigger(Command):
    """Ask a device to read again (re-gather)."""

    kind: Literal["retrigger"] = "retrigger"
    device: Device = Field(description="Device to re-trigger.")


class RequestRecords(Command):
    """Ask the shell for a RecordView; answer with `RecordsProvided(request_id, view)`."""

    kind: Literal["request_records"] = "request_records"
    request_id: int = Field(description="Echo this in RecordsProvided.")
    transaction_id: str = Field(description="Transaction asking.")
    plate: str | None = Field(description="Plate read (select passes and vehicles by it).")
    eplate: str | None = Field(description="Electronic plate read (select passes and vehicles by it).")
    driver_card: str | None = Field(description="Driver card read.")


LaneCommand = Annotated[
    BarrierPulse | SetLight | ShowText | Retrigger | RequestRecords, Field(discriminator="kind")
]
