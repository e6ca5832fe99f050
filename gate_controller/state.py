"""The lane's state: phase, loop and barrier readings, and the open transaction.

Plain frozen pydantic models so the shell can persist and inspect them (`model_dump(mode="json")`).
The epoch key is excluded from dumps: after restoring a state, install the key again.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gate_controller.codes import ReasonCode, Verdict
from gate_controller.draw import EpochKey
from gate_controller.events import LoopName
from gate_controller.journal import Decision
from gate_controller.observations import Observations
from gate_controller.records import RecordView

Phase = Literal[
    "idle",  # barrier down, no vehicle
    "gathering",  # vehicle on the arming loop, reads and records being collected
    "held",  # decided HOLD_MANUAL / HOLD_INSPECTION / REFUSE: barrier stays down
    "opening",  # RELEASE (or manual release): open pulse sent, waiting for arm-up
    "open",  # arm up, waiting for the vehicle to reach the safety loop
    "passing",  # vehicle on the safety loop (under the arm)
    "exiting",  # vehicle on the exit loop
    "closing",  # close pulse sent (or due, waiting for a clear safety loop), waiting for arm-down
    "fault",  # barrier fault: no automatic barrier command until an officer resets
]

ReadField = Literal["plate", "eplate", "driver_card", "weight", "containers", "seal"]


class Frozen(BaseModel):
    """Base of the state models."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LoopReading(Frozen):
    """Last reported presence of one loop and when it was reported (None = never)."""

    occupied: bool | None = Field(None, description="Last reported presence; None before the first report.")
    as_of: float | None = Field(None, description="When it was last reported (POSIX seconds).")

    def clear_and_fresh(self, now: float, stale_s: float) -> bool:
        """True only for a recent report of no presence; unknown or stale counts as occupied."""
        return self.occupied is False and self.as_of is not None and now - self.as_of <= stale_s

    def present(self, now: float, stale_s: float) -> bool:
        """Occupied, unknown or stale (the safe reading)."""
        return not self.clear_and_fresh(now, stale_s)


class BarrierReading(Frozen):
    """Last reported limit switches (None = never reported)."""

    arm_up: bool | None = Field(None, description="Arm-up limit switch.")
    arm_down: bool | None = Field(None, description="Arm-down limit switch.")


class Transaction(Frozen):
    """One vehicle's passage through the lane."""

    transaction_id: str = Field(description="Lane transaction id.")
    started_at: float = Field(description="Arming time.")
    obs: Observations = Field(default_factory=Observations, description="Reads so far.")
    attempt: int = Field(0, description="Evaluations so far.")
    request_id: int | None = Field(None, description="Outstanding or answered RequestRecords id.")
    requested_for: tuple[str | None, str | None, str | None] | None = Field(
        None, description="Identity requested."
    )
    view: RecordView | None = Field(None, description="Records for the current identity.")
    gather_deadline: float = Field(description="Decide by then at the latest.")
    regathering: bool = Field(False, description="Gathering again after a hold.")
    awaiting: frozenset[ReadField] = Field(frozenset(), description="Re-triggered reads not yet back.")
    regathered: frozenset[ReadField] = Field(
        frozenset(), description="Reads re-gathered since the last decision."
    )
    failed_before: frozenset[ReasonCode] = Field(
        frozenset(), description="Reason codes of the last decision."
    )
    escalation: str | None = Field(None, description="Officer escalation text.")
    decision: Decision | None = Field(None, description="Last decision.")
    hold_since: float | None = Field(
        None, description="When the current hold began (or the last officer action)."
    )
    hold_alarmed: bool = Field(False, description="Unattended-hold alarm raised.")
    released_by: Literal["rule", "manual"] | None = Field(None, description="What authorised the opening.")
    opened: bool = Field(False, description="The one open pulse of this transaction was sent.")
    stage_deadline: float | None = Field(None, description="Fault / stuck deadline of the current stage.")
    stage_alarmed: bool = Field(False, description="Stuck alarm of the current stage raised.")
    all_clear_since: float | None = Field(None, description="Since when every loop has been clear.")
    left_arming: bool = Field(False, description="Released vehicle has left the arming loop.")
    tailgate_alarmed: bool = Field(False, description="Tailgating alarm raised.")
    crossed_at: float | None = Field(None, description="When the vehicle cleared the exit loop.")
    close_due: bool = Field(
        False, description="A close is wanted; sent once the safety loop is clear and fresh."
    )
    close_sent_at: float | None = Field(None, description="When the last close pulse was sent.")
    close_blocked_alarmed: bool = Field(
        False, description="Alarm raised for a close blocked by a stale loop."
    )
    outcome: Literal["crossed", "backed_out", "aborted"] | None = Field(
        None, description="Outcome once closing."
    )

    @property
    def verdict(self) -> Verdict | None:
        return self.decision.verdict if self.decision else None


class LaneState(Frozen):
    """Everything the controller remembers between events."""

    phase: Phase = Field("idle", description="Lane phase.")
    loops: dict[LoopName, LoopReading] = Field(
        default_factory=lambda: {name: LoopReading() for name in ("arming", "safety", "exit")},
        description="Loop readings.",
    )
    barrier: BarrierReading = Field(default_factory=BarrierReading, description="Limit switches.")
    txn: Transaction | None = Field(None, description="Open transaction.")
    early: Observations = Field(default_factory=Observations, description="Reads that arrived before arming.")
    early_since: float | None = Field(None, description="Time of the first early read.")
    seq: int = Field(0, description="Transactions started so far (part of the id).")
    next_request_id: int = Field(1, description="Next RequestRecords id.")
    epoch: EpochKey | None = Field(
        None, exclude=True, repr=False, description="Draw epoch key; never dumped."
    )
    fault: str | None = Field(None, description="Barrier fault description while in `fault`.")
    last_now: float | None = Field(None, description="Latest time seen; time never runs backwards here.")
