"""The lane's brain: transaction state machine, release rules, barrier interlock, auditable draw.

Pure: no I/O, no clock, no threads. The edge agent drives it like this::

    from gate_controller import LaneConfig, LaneController, LoopChanged, Tick

    lane = LaneController(LaneConfig(lane_id="YS-E-01", gate_id="YS-G1", zone_id="yangshan-port",
                                     direction="E"))
    step = lane.handle(LoopChanged(loop="arming", occupied=True), now=time.time())
    outbox.append(step.records)        # first: every decision is recorded before the barrier moves
    for command in step.commands:      # then: pulses, light, LED text, record requests
        execute(command)
    schedule_tick(lane.next_deadline())

See docs/GATE_CONTROLLER.md for states, events, commands, rules and the draw.
"""

from datetime import datetime

from gate_controller.codes import (
    BindType,
    CreditGrade,
    IoDirection,
    Line,
    PassStatus,
    PassType,
    ReasonCode,
    RiskAction,
    RiskTarget,
    VehicleStatus,
    Verdict,
)
from gate_controller.commands import (
    BarrierPulse,
    Command,
    LaneCommand,
    RequestRecords,
    Retrigger,
    SetLight,
    ShowText,
)
from gate_controller.config import (
    DrawPolicy,
    LaneConfig,
    RulePolicy,
    RuleSettings,
    SettingsOverride,
    Timeouts,
)
from gate_controller.draw import (
    DrawRecord,
    EpochKey,
    draw_fraction,
    key_commitment,
    perform_draw,
    verify_draw,
)
from gate_controller.events import (
    BarrierPosition,
    ContainerRead,
    DriverCardRead,
    EPlateRead,
    EpochKeyInstalled,
    Escalate,
    Event,
    KeyIn,
    LaneEvent,
    LoopChanged,
    ManualRelease,
    OperatorAction,
    PlateRead,
    RecordsProvided,
    Regather,
    ResetFault,
    SealRead,
    Tick,
    WeightRead,
)
from gate_controller.journal import (
    Alarm,
    Decision,
    Entry,
    LaneRecord,
    LedText,
    ManualReleaseRecord,
    OperatorActionRecord,
    PassCrossing,
    Reason,
    TransactionClosed,
    TransactionStarted,
)
from gate_controller.lane import Step, initial_state, next_deadline, step
from gate_controller.observations import Observations
from gate_controller.records import (
    Declaration,
    DeliveryOrder,
    DriverCard,
    Enterprise,
    GatePass,
    LedgerEntryList,
    Manifest,
    RecordView,
    RiskInstruction,
    Vehicle,
)
from gate_controller.state import LaneState


class LaneController:
    """Convenience wrapper holding one lane's config and state; `handle` is `step` plus bookkeeping."""

    def __init__(self, config: LaneConfig, state: LaneState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else initial_state()

    def handle(self, event: Event, now: float | datetime) -> Step:
        """Feed one event; keep the new state; return the step (commands and records)."""
        result = step(self.config, self.state, event, now)
        self.state = result.state
        return result

    def next_deadline(self) -> float | None:
        """When the shell should deliver the next `Tick` at the latest (POSIX seconds), if any."""
        return next_deadline(self.config, self.state)


__all__ = [
    "Alarm",
    "BarrierPosition",
    "BarrierPulse",
    "BindType",
    "Command",
    "ContainerRead",
    "CreditGrade",
    "Decision",
    "Declaration",
    "DeliveryOrder",
    "DrawPolicy",
    "DrawRecord",
    "DriverCard",
    "DriverCardRead",
    "EPlateRead",
    "Enterprise",
    "Entry",
    "EpochKey",
    "EpochKeyInstalled",
    "Escalate",
    "Event",
    "GatePass",
    "IoDirection",
    "KeyIn",
    "LaneCommand",
    "LaneConfig",
    "LaneController",
    "LaneEvent",
    "LaneRecord",
    "LaneState",
    "LedText",
    "LedgerEntryList",
    "Line",
    "LoopChanged",
    "ManualRelease",
    "ManualReleaseRecord",
    "Manifest",
    "Observations",
    "OperatorAction",
    "OperatorActionRecord",
    "PassCrossing",
    "PassStatus",
    "PassType",
    "PlateRead",
    "Reason",
    "ReasonCode",
    "RecordView",
    "RecordsProvided",
    "Regather",
    "RequestRecords",
    "ResetFault",
    "Retrigger",
    "RiskAction",
    "RiskInstruction",
    "RiskTarget",
    "RulePolicy",
    "RuleSettings",
    "SealRead",
    "SetLight",
    "SettingsOverride",
    "ShowText",
    "Step",
    "Tick",
    "Timeouts",
    "TransactionClosed",
    "TransactionStarted",
    "Vehicle",
    "VehicleStatus",
    "Verdict",
    "WeightRead",
    "draw_fraction",
    "initial_state",
    "key_commitment",
    "next_deadline",
    "perform_draw",
    "step",
    "verify_draw",
]
