"""Records the lane controller writes: the durable account of what happened at the lane.

The shell appends every one to its outbox (before it carries out the step's commands) and
publishes them; all are JSON-serialisable with `model_dump(mode="json")`.
"""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gate_controller.codes import PassStatus, ReasonCode, Verdict
from gate_controller.draw import DrawRecord
from gate_controller.observations import Observations


class Entry(BaseModel):
    """Base of every journal entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(Entry):
    """One reason code with a human-readable detail."""

    code: ReasonCode = Field(description="F1-F6, M1-M5, I1-I5, or R1-R3 (fail closed).")
    detail: str = Field(description="What failed, with the numbers that made it fail.")


class LedText(Entry):
    """LED board text, Chinese and English."""

    zh: str = Field(description="Chinese text.")
    en: str = Field(description="English text.")


class TransactionStarted(Entry):
    """A vehicle armed the lane."""

    kind: Literal["transaction_started"] = "transaction_started"
    transaction_id: str = Field(description="Lane transaction id.")
    lane_id: str = Field(description="Lane.")
    at: AwareDatetime = Field(description="When the arming loop was occupied.")


class Decision(Entry):
    """The gate's verdict with everything it was based on."""

    kind: Literal["decision"] = "decision"
    transaction_id: str = Field(description="Lane transaction id.")
    attempt: int = Field(ge=1, description="1 for the first evaluation, +1 per re-gather.")
    verdict: Verdict = Field(description="RELEASE, HOLD_MANUAL, HOLD_INSPECTION or REFUSE.")
    reasons: tuple[Reason, ...] = Field(description="Every reason found (empty for RELEASE).")
    pass_no: str | None = Field(description="Gate pass matched, if any.")
    inputs: Observations = Field(description="The reads the decision used, with their sources.")
    settings: dict[str, float | bool] = Field(description="Tolerances and rates in force.")
    record_version: int | None = Field(description="Record cache version used; None if no records arrived.")
    records_as_of: AwareDatetime | None = Field(description="Age stamp of the records used.")
    offline: bool = Field(description="The gate decided from its local copy without a hub link.")
    rule_version: str = Field(description="Rule version.")
    draw: DrawRecord | None = Field(description="The random draw, when one was run.")
    led: LedText = Field(description="LED text shown.")
    at: AwareDatetime = Field(description="Decision time.")

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        """Just the reason codes."""
        return tuple(r.code for r in self.reasons)


class ManualReleaseRecord(Entry):
    """An officer's manual release attempt, accepted or rejected."""

    kind: Literal["manual_release"] = "manual_release"
    transaction_id: str = Field(description="Lane transaction id.")
    operator_id: str = Field(description="Officer releasing.")
    second_operator_id: str | None = Field(description="Second officer (I1/I2 overrides).")
    reason_code: str = Field(description="Override reason code.")
    reason_text: str = Field(description="Override reason text.")
    overridden: tuple[ReasonCode, ...] = Field(description="Hold reasons the release overrides.")
    authorised: bool = Field(description="True if the barrier was opened.")
    rejection: str | None = Field(description="Why it was rejected, if it was.")
    at: AwareDatetime = Field(description="When.")


class OperatorActionRecord(Entry):
    """Re-gather, key-in, escalation or fault reset, recorded as such."""

    kind: Literal["operator_action"] = "operator_action"
    transaction_id: str | None = Field(description="Transaction, if one was open.")
    operator_id: str = Field(description="Officer.")
    action: str = Field(description="regather / key_in / escalate / reset_fault.")
    detail: str = Field(description="Device, field=value, or reason text.")
    accepted: bool = Field(description="False when the action did not apply in the lane's state.")
    at: AwareDatetime = Field(description="When.")


Severity = Literal["info", "warning", "critical"]


class Alarm(Entry):
    """Something the monitoring room must see."""

    kind: Literal["alarm"] = "alarm"
    alarm: Literal[
        "gate_exception",
        "tailgating",
        "barrier_fault",
        "barrier_forced",
        "loop_stale",
        "hold_unattended",
        "vehicle_stuck",
        "manual_release_rejected",
        "risk_alert",
        "blacklisted_vehicle",
        "empty_vehicle_with_cargo",
        "seal_opened",
    ] = Field(description="Alarm kind.")
    severity: Severity = Field(description="info, warning or critical.")
    detail: str = Field(description="What happened.")
    transaction_id: str | None = Field(description="Transaction, if any.")
    at: AwareDatetime = Field(description="When.")


class PassCrossing(Entry):
    """What the hub needs to mark the pass crossed (DOMAIN.md §4 'On RELEASE')."""

    pass_no: str = Field(serialization_alias="passportNo", description="Gate pass.")
    new_status: PassStatus = Field(serialization_alias="stucd", description="2, or 3/4 at double gates.")
    pass_collect_wt: float | None = Field(serialization_alias="passCollectWt", description="Weighbridge kg.")
    wt_error: float | None = Field(serialization_alias="wtError", description="|weighbridge − totalWt|, kg.")
    gate_id: str = Field(description="Gate id.")
    crossed_at: AwareDatetime = Field(description="Exit-loop time.")


class TransactionClosed(Entry):
    """The transaction ended; the lane is ready for the next vehicle."""

    kind: Literal["transaction_closed"] = "transaction_closed"
    transaction_id: str = Field(description="Lane transaction id.")
    outcome: Literal["crossed", "backed_out", "turned_back", "diverted_to_inspection", "aborted"] = Field(
        description="crossed: through the gate; others: left on the arming side or cleared by an officer."
    )
    verdict: Verdict | None = Field(description="Last verdict, if any.")
    manual_release: bool = Field(description="The barrier opened on a manual release.")
    crossing: PassCrossing | None = Field(description="Pass crossing for the hub, when crossed with a pass.")
    started_at: AwareDatetime = Field(description="Transaction start.")
    at: AwareDatetime = Field(description="Close time.")


LaneRecord = Annotated[
    TransactionStarted | Decision | ManualReleaseRecord | OperatorActionRecord | Alarm | TransactionClosed,
    Field(discriminator="kind"),
]
