"""The lane transaction state machine: `step(config, state, event, now) -> Step`.

idle → gathering → (decided) → held | opening → open → passing → exiting → closing → idle,
with `fault` reachable from any barrier stage. Pure: the shell passes time in (`now`, POSIX
seconds or an aware datetime) and delivers `Tick` events; timeouts are comparisons with `now`.

Every step first runs the timers due at `now`, then handles the event, then sends a pending close
if, and only if, the safety loop is reported clear and fresh (barrier interlock). The two barrier
pulses are built in exactly one place each (`_open_barrier`, `_close_barrier`), which check the
interlock conditions themselves.
"""

from dataclasses import dataclass
from datetime import datetime

from gate_controller.codes import PassStatus, ReasonCode, Verdict
from gate_controller.commands import BarrierPulse, Command, RequestRecords, Retrigger, SetLight, ShowText
from gate_controller.config import LaneConfig
from gate_controller.events import (
    BarrierPosition,
    ContainerRead,
    Device,
    DriverCardRead,
    EPlateRead,
    EpochKeyInstalled,
    Escalate,
    Event,
    KeyIn,
    LoopChanged,
    ManualRelease,
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
    LedText,
    ManualReleaseRecord,
    OperatorActionRecord,
    PassCrossing,
    TransactionClosed,
    TransactionStarted,
)
from gate_controller.observations import Observations, Read, read_from_key_in
from gate_controller.records import as_utc_datetime
from gate_controller.rules import Facts, evaluate, evaluate_without_records, normalise, select_pass
from gate_controller.state import LaneState, ReadField, Transaction

C = ReasonCode

LED: dict[str, LedText] = {
    "checking": LedText(zh="车辆识别中 请稍候", en="Checking vehicle, please wait"),
    Verdict.RELEASE: LedText(zh="直接放行", en="Released, proceed"),
    Verdict.HOLD_MANUAL: LedText(zh="禁止放行 等待人工处理", en="No release: wait for officer"),
    Verdict.HOLD_INSPECTION: LedText(zh="禁止放行 请驶往查验区", en="No release: go to inspection yard"),
    Verdict.REFUSE: LedText(zh="禁止放行 请退出车道", en="No release: turn back"),
    "manual": LedText(zh="人工放行", en="Released by officer"),
    "idle": LedText(zh="停车 等待识别", en="Stop for identification"),
}

DEVICE_FIELD: dict[Device, ReadField] = {
    "plate_camera": "plate",
    "rfid": "eplate",
    "card_reader": "driver_card",
    "weighbridge": "weight",
    "container_camera": "containers",
    "seal_reader": "seal",
}

READ_FIELD: dict[type, ReadField] = {
    PlateRead: "plate",
    EPlateRead: "eplate",
    DriverCardRead: "driver_card",
    WeightRead: "weight",
    ContainerRead: "containers",
    SealRead: "seal",
}

HOLD_CLOSE_OUTCOME = {
    Verdict.REFUSE: "turned_back",
    Verdict.HOLD_INSPECTION: "diverted_to_inspection",
    Verdict.HOLD_MANUAL: "backed_out",
}


@dataclass(frozen=True)
class Step:
    """Result of one event: the new state, commands to carry out, records to keep.

    The shell must append `records` to its durable outbox before carrying out `commands`
    (every decision is recorded before the barrier moves).
    """

    state: LaneState
    commands: tuple[Command, ...]
    records: tuple[Entry, ...]

    @property
    def barrier_pulses(self) -> tuple[BarrierPulse, ...]:
        return tuple(c for c in self.commands if isinstance(c, BarrierPulse))


def seconds(now: float | datetime) -> float:
    """POSIX seconds from a float or an aware datetime."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


def initial_state() -> LaneState:
    """A lane that has seen nothing: loops and barrier unknown (treated as occupied / not down)."""
    return LaneState()


def step(config: LaneConfig, state: LaneState, event: Event, now: float | datetime) -> Step:
    """Feed one event at time `now`; return the new state, commands and records."""
    run = _Run(config, state, seconds(now))
    run.timers()
    run.handle(event)
    run.timers()
    run.send_due_close()
    return Step(run.s, tuple(run.commands), tuple(run.records))


def next_deadline(config: LaneConfig, state: LaneState) -> float | None:
    """The earliest time at which a `Tick` would change something (the shell schedules it)."""
    t, times = state.txn, []
    if t is None:
        return None
    times.append(t.stage_deadline if not t.stage_alarmed else None)
    if state.phase == "gathering":
        times.append(t.gather_deadline)
    if state.phase == "held" and t.hold_since is not None and not t.hold_alarmed:
        times.append(t.hold_since + config.timeouts.hold_alarm_s)
    if t.all_clear_since is not None and state.phase in ("gathering", "held", "open", "passing"):
        times.append(t.all_clear_since + config.timeouts.backout_confirm_s)
    if t.close_due:
        safety = state.loops["safety"]
        if safety.as_of is not None:
            times.append(safety.as_of + config.timeouts.loop_stale_s)
    due = [x for x in times if x is not None]
    return min(due) if due else None


class _Run:
    """One step's working copy: accumulates state updates, commands and records."""

    def __init__(self, config: LaneConfig, state: LaneState, now: float) -> None:
        self.cfg = config
        self.t = config.timeouts
        self.now = max(now, state.last_now) if state.last_now is not None else now
        self.s = state.model_copy(update={"last_now": self.now})
        self.commands: list[Command] = []
        self.records: list[Entry] = []

    # -- small helpers ------------------------------------------------------------------------

    @property
    def at(self) -> datetime:
        return as_utc_datetime(self.now)

    @property
    def txn(self) -> Transaction:
        assert self.s.txn is not None
        return self.s.txn

    def put(self, **update: object) -> None:
        self.s = self.s.model_copy(update=update)

    def set_txn(self, **update: object) -> None:
        self.s = self.s.model_copy(update={"txn": self.txn.model_copy(update=update)})

    def phase(self, phase: str, **txn_update: object) -> None:
        self.put(phase=phase)
        if txn_update:
            self.set_txn(**txn_update)

    def alarm(self, kind: str, severity: str, detail: str) -> None:
        tid = self.s.txn.transaction_id if self.s.txn else None
        self.records.append(
            Alarm(alarm=kind, severity=severity, detail=detail, transaction_id=tid, at=self.at)
        )  # type: ignore[arg-type]

    def show(self, led: LedText, light: str) -> None:
        self.commands.append(ShowText(zh=led.zh, en=led.en))
        self.commands.append(SetLight(color=light))  # type: ignore[arg-type]

    def present(self, loop: str) -> bool:
        """Occupied, unknown or stale."""
        return self.s.loops[loop].present(self.now, self.t.loop_stale_s)  # type: ignore[index]

    def all_clear(self) -> bool:
        return not any(self.present(name) for name in ("arming", "safety", "exit"))

    # -- barrier: the only two places pulses are built -----------------------------------------

    def _open_barrier(self, by: str) -> None:
        """One opening per transaction, and only for a RELEASE or an authorised manual release."""
        t = self.txn
        authorised = by == "manual" or (t.decision is not None and t.decision.verdict is Verdict.RELEASE)
        if t.opened or not authorised or self.s.phase == "fault":
            raise AssertionError(f"interlock: refused to open ({by=}, opened={t.opened})")
        self.commands.append(
            BarrierPulse(action="open", duration_s=self.t.pulse_s, transaction_id=t.transaction_id)
        )
        self.phase(
            "opening",
            opened=True,
            released_by=by,
            stage_deadline=self.now + self.t.barrier_open_s + self.t.barrier_margin_s,
            stage_alarmed=False,
            all_clear_since=None,
        )

    def send_due_close(self) -> None:
        """Send a wanted close only when the safety loop is reported clear and the report is fresh."""
        t = self.s.txn
        if t is None or not t.close_due or self.s.phase == "fault":
            return
        if not self.s.loops["safety"].clear_and_fresh(self.now, self.t.loop_stale_s):
            return
        self.commands.append(
            BarrierPulse(action="close", duration_s=self.t.pulse_s, transaction_id=t.transaction_id)
        )
        self.phase(
            "closing",
            close_due=False,
            close_sent_at=self.now,
            stage_deadline=self.now + self.t.barrier_close_s + self.t.barrier_margin_s,
            stage_alarmed=False,
        )

    def want_close(self, outcome: str) -> None:
        self.phase(
            "closing", close_due=True, outcome=outcome, close_blocked_alarmed=False, stage_deadline=None
        )

    # -- timers -------------------------------------------------------------------------------

    def timers(self) -> None:
        t, phase, now = self.s.txn, self.s.phase, self.now
        if t is None:
            return
        if phase == "gathering" and now >= t.gather_deadline:
            self.decide()
            return
        if (
            phase in ("gathering", "held", "open", "passing")
            and t.all_clear_since is not None
            and now - t.all_clear_since >= self.t.backout_confirm_s
        ):
            self.vehicle_left()
            return
        if (
            phase == "held"
            and t.hold_since is not None
            and not t.hold_alarmed
            and now - t.hold_since >= self.t.hold_alarm_s
        ):
            self.alarm(
                "hold_unattended",
                "warning",
                f"hold {t.verdict} unattended for {now - t.hold_since:.0f} s",
            )
            self.set_txn(hold_alarmed=True)
        if t.stage_deadline is None or now < t.stage_deadline or t.stage_alarmed:
            self.closing_blocked_check()
            return
        if phase == "opening":
            self.barrier_fault(
                f"no arm-up within {self.t.barrier_open_s + self.t.barrier_margin_s:.1f} s of open"
            )
        elif phase == "closing" and t.close_sent_at is not None:
            self.barrier_fault(
                f"no arm-down within {self.t.barrier_close_s + self.t.barrier_margin_s:.1f} s of close"
            )
        elif phase in ("open", "passing", "exiting"):
            self.alarm("vehicle_stuck", "warning", f"vehicle has not moved on ({phase}) in time")
            self.set_txn(stage_alarmed=True)

    def closing_blocked_check(self) -> None:
        t = self.s.txn
        if t is None or not t.close_due or t.close_blocked_alarmed:
            return
        safety = self.s.loops["safety"]
        if safety.occupied is None or (
            safety.as_of is not None and self.now - safety.as_of > self.t.loop_stale_s
        ):
            self.alarm("loop_stale", "warning", "close held back: safety loop state unknown or stale")
            self.set_txn(close_blocked_alarmed=True)

    def barrier_fault(self, detail: str) -> None:
        self.alarm("barrier_fault", "critical", detail)
        self.put(phase="fault", fault=detail)
        if self.s.txn is not None:
            self.set_txn(close_due=False, stage_deadline=None)
        self.show(LedText(zh="道闸故障 请等待", en="Barrier fault, please wait"), "red")

    # -- events -------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        match event:
            case LoopChanged():
                self.on_loop(event)
            case BarrierPosition():
                self.on_barrier(event)
            case PlateRead() | EPlateRead() | DriverCardRead() | WeightRead() | ContainerRead() | SealRead():
                self.on_read(event)
            case RecordsProvided():
                self.on_records(event)
            case EpochKeyInstalled():
                self.put(epoch=event.epoch)
            case ManualRelease():
                self.on_manual_release(event)
            case Regather() | KeyIn() | Escalate() | ResetFault():
                self.on_officer(event)
            case Tick():
                pass
            case _:
                raise TypeError(f"unknown event {event!r}")
        self.maybe_decide()

    def on_loop(self, event: LoopChanged) -> None:
        loops = dict(self.s.loops)
        before = loops[event.loop]
        loops[event.loop] = before.model_copy(update={"occupied": event.occupied, "as_of": self.now})
        self.put(loops=loops)
        changed = before.occupied != event.occupied
        phase, t = self.s.phase, self.s.txn
        if t is not None:
            self.set_txn(all_clear_since=None if not self.all_clear() else (t.all_clear_since or self.now))
            t = self.txn
        if phase == "idle":
            if event.loop == "arming" and event.occupied:
                self.start_transaction()
            return
        if t is None or not changed:
            return
        if t.opened:
            self.track_passage(event)

    def track_passage(self, event: LoopChanged) -> None:
        """Follow the released vehicle through the lane and spot a second vehicle behind it."""
        t, phase = self.txn, self.s.phase
        if event.loop == "arming" and not event.occupied:
            self.set_txn(left_arming=True)
        elif event.loop == "arming" and event.occupied and t.left_arming and not t.tailgate_alarmed:
            self.alarm("tailgating", "critical", "second vehicle entered before the barrier closed")
            self.set_txn(tailgate_alarmed=True)
        if phase == "open" and event.loop == "safety" and event.occupied:
            self.phase("passing", stage_deadline=self.now + self.t.passage_s, stage_alarmed=False)
        elif phase in ("open", "passing") and event.loop == "exit" and event.occupied:
            self.phase("exiting", stage_deadline=self.now + self.t.passage_s, stage_alarmed=False)
        elif phase == "exiting" and event.loop == "exit" and not event.occupied:
            self.set_txn(crossed_at=self.now)
            self.want_close("crossed")
        elif phase == "closing" and event.loop == "safety" and event.occupied and t.close_sent_at is not None:
            # The barrier's own presence inhibit reverses the arm; ask again once the loop is clear.
            self.alarm("vehicle_stuck", "warning", "vehicle on the safety loop while the arm was closing")
            self.set_txn(close_due=True, stage_deadline=None)

    def on_barrier(self, event: BarrierPosition) -> None:
        self.put(
            barrier=self.s.barrier.model_copy(update={"arm_up": event.arm_up, "arm_down": event.arm_down})
        )
        phase, t = self.s.phase, self.s.txn
        if phase == "opening" and event.arm_up:
            if self.present("safety") and self.s.loops["safety"].occupied:
                self.phase("passing", stage_deadline=self.now + self.t.passage_s, stage_alarmed=False)
            else:
                self.phase("open", stage_deadline=self.now + self.t.enter_s, stage_alarmed=False)
        elif phase == "closing" and event.arm_down and t is not None:
            self.finish(t.outcome or "aborted")
        elif phase in ("idle", "gathering", "held") and not event.arm_down:
            self.alarm("barrier_forced", "critical", f"arm-down lost while {phase} (up={event.arm_up})")
            self.barrier_fault("arm-down lost without an open command")
        elif phase in ("open", "passing", "exiting") and event.arm_down:
            self.barrier_fault(f"arm came down before the vehicle cleared ({phase})")

    def on_read(self, read: Read) -> None:
        phase = self.s.phase
        if phase == "idle":
            # Keep only reads close to the arming time: older ones may belong to another vehicle.
            since, early = self.s.early_since, self.s.early
            if since is None or self.now - since > self.t.early_read_s:
                since, early = self.now, Observations()
            self.put(early=early.with_read(read), early_since=since)
        elif phase == "gathering":
            self.apply_read(read)

    def apply_read(self, read: Read) -> None:
        field = READ_FIELD[type(read)]
        self.set_txn(obs=self.txn.obs.with_read(read), awaiting=self.txn.awaiting - {field})
        if read.source == "officer" or self.txn.regathering:
            self.set_txn(regathered=self.txn.regathered | {field})
        self.request_records_if_needed()

    def on_records(self, event: RecordsProvided) -> None:
        t = self.s.txn
        if self.s.phase == "gathering" and t is not None and t.request_id == event.request_id:
            self.set_txn(view=event.view)

    # -- transaction lifecycle ----------------------------------------------------------------

    def start_transaction(self) -> None:
        seq = self.s.seq + 1
        tid = f"{self.cfg.lane_id}-{self.at.strftime('%Y%m%dT%H%M%S')}-{seq:06d}"
        early = (
            self.s.early
            if self.s.early_since is not None and self.now - self.s.early_since <= self.t.early_read_s
            else Observations()
        )
        txn = Transaction(
            transaction_id=tid, started_at=self.now, obs=early, gather_deadline=self.now + self.t.gather_s
        )
        self.put(phase="gathering", txn=txn, seq=seq, early=Observations(), early_since=None)
        self.records.append(TransactionStarted(transaction_id=tid, lane_id=self.cfg.lane_id, at=self.at))
        self.show(LED["checking"], "red")
        self.request_records_if_needed()

    def identity(self) -> tuple[str | None, str | None, str | None]:
        obs = self.txn.obs
        return (
            normalise(obs.plate.value) if obs.plate else None,
            obs.eplate.value if obs.eplate else None,
            obs.driver_card.value if obs.driver_card else None,
        )

    def request_records_if_needed(self) -> None:
        ident = self.identity()
        if ident == (None, None, None) or ident == self.txn.requested_for:
            return
        rid = self.s.next_request_id
        self.put(next_request_id=rid + 1)
        self.set_txn(request_id=rid, requested_for=ident, view=None)
        plate, eplate, card = ident
        self.commands.append(
            RequestRecords(
                request_id=rid,
                transaction_id=self.txn.transaction_id,
                plate=plate,
                eplate=eplate,
                driver_card=card,
            )
        )

    def maybe_decide(self) -> None:
        if self.s.phase == "gathering" and self.ready():
            self.decide()

    def ready(self) -> bool:
        """Records for the current identity are in, and every read the rules will want has arrived."""
        t = self.txn
        if t.view is None or t.awaiting:
            return False
        if t.regathering:
            return True
        obs = t.obs
        facts = Facts(config=self.cfg, obs=obs, view=t.view, now=self.now, transaction_id=t.transaction_id)
        gate_pass, _ = select_pass(facts)
        s = self.cfg.settings_for(gate_pass.pass_type if gate_pass else None)
        wanted = [
            obs.plate is not None and obs.plate.confidence >= s.plate_min_confidence,
            obs.eplate is not None or not s.require_eplate,
            obs.driver_card is not None or not s.require_driver_card,
            obs.weight is not None or not s.check_weight,
        ]
        if gate_pass is not None:
            boxes = sum(r is not None for r in (obs.container_front, obs.container_back))
            wanted.append(boxes >= len(gate_pass.container_nos))
            wanted.append(obs.seal is not None or not gate_pass.seal_nos)
        return all(wanted)

    def decide(self) -> None:
        t = self.txn
        attempt = t.attempt + 1
        if t.view is None:
            detail = "no records received" if t.request_id else "no plate or e-plate read"
            verdict, reasons = evaluate_without_records(self.cfg, t.obs, t.escalation, detail)
            gate_pass = draw = None
            settings = self.cfg.settings_for(None)
            alerts: tuple = ()
        else:
            facts = Facts(
                config=self.cfg,
                obs=t.obs,
                view=t.view,
                now=self.now,
                transaction_id=t.transaction_id,
                epoch=self.s.epoch,
                failed_before_regather=t.failed_before,
                regathered=frozenset(t.regathered),
                escalation=t.escalation,
            )
            ev = evaluate(facts)
            verdict, reasons, gate_pass, draw, settings, alerts = (
                ev.verdict,
                ev.reasons,
                ev.gate_pass,
                ev.draw,
                ev.settings,
                ev.alerts,
            )
        decision = Decision(
            transaction_id=t.transaction_id,
            attempt=attempt,
            verdict=verdict,
            reasons=reasons,
            pass_no=gate_pass.pass_no if gate_pass else None,
            inputs=t.obs,
            settings=settings.model_dump(),
            record_version=t.view.record_version if t.view else None,
            records_as_of=t.view.records_as_of if t.view else None,
            offline=t.view.offline if t.view else True,
            rule_version=self.cfg.draw.rule_version,
            draw=draw,
            led=LED[verdict],
            at=self.at,
        )
        self.records.append(decision)
        self.set_txn(
            decision=decision,
            attempt=attempt,
            regathering=False,
            awaiting=frozenset(),
            regathered=frozenset(),
            failed_before=frozenset(decision.codes),
        )
        self.decision_alarms(decision, alerts)
        if verdict is Verdict.RELEASE:
            # the barrier first: the LED's serial write and the light's Modbus write must not delay it
            self._open_barrier("rule")
            self.show(LED[verdict], "green")
        else:
            self.show(LED[verdict], "yellow" if verdict is Verdict.HOLD_MANUAL else "red")
            self.phase("held", hold_since=self.now, hold_alarmed=False, stage_deadline=None)

    def decision_alarms(self, decision: Decision, alerts: tuple) -> None:
        if decision.verdict is not Verdict.RELEASE:
            codes = ",".join(code.value for code in decision.codes)
            severity = "critical" if decision.verdict is Verdict.REFUSE else "warning"
            self.alarm("gate_exception", severity, f"{decision.verdict.value} {codes}")
        for reason in decision.reasons:
            if reason.code is C.F3_VEHICLE_OR_DRIVER_INVALID and "blacklisted" in reason.detail:
                self.alarm("blacklisted_vehicle", "critical", reason.detail)
            elif reason.code is C.I3_WEIGHT_GROSSLY_OFF and "empty-vehicle" in reason.detail:
                self.alarm("empty_vehicle_with_cargo", "critical", reason.detail)
            elif reason.code is C.I4_SEAL_PROBLEM and "opened" in reason.detail:
                self.alarm("seal_opened", "critical", reason.detail)
        for alert in alerts:
            self.alarm(
                "risk_alert",
                "info",
                f"risk instruction {alert.instruction_id} on {alert.target.value} {alert.target_value}",
            )

    def vehicle_left(self) -> None:
        """Every loop clear long enough: the vehicle left on the arming side (or was never there)."""
        t, phase = self.txn, self.s.phase
        if phase in ("open", "passing"):
            self.want_close("backed_out")
            return
        outcome = HOLD_CLOSE_OUTCOME.get(t.verdict, "backed_out") if phase == "held" else "backed_out"
        self.finish(outcome)

    def finish(self, outcome: str) -> None:
        t = self.txn
        crossing = None
        if outcome == "crossed" and t.decision is not None and t.decision.pass_no is not None:
            crossing = self.crossing(t)
        self.records.append(
            TransactionClosed(
                transaction_id=t.transaction_id,
                outcome=outcome,  # type: ignore[arg-type]
                verdict=t.verdict,
                manual_release=t.released_by == "manual",
                crossing=crossing,
                started_at=as_utc_datetime(t.started_at),
                at=self.at,
            )
        )
        self.put(phase="idle", txn=None, fault=None)
        self.show(LED["idle"], "red")
        if self.s.loops["arming"].occupied:
            self.start_transaction()

    def crossing(self, t: Transaction) -> PassCrossing:
        assert t.decision is not None and t.decision.pass_no is not None
        cfg = self.cfg
        if cfg.gate_mode == "double":
            status = PassStatus.CROSSED_GATE_1 if cfg.gate_number == 1 else PassStatus.CROSSED_GATE_2
        else:
            status = PassStatus.CROSSED
        total = next(
            (p.total_wt for p in (t.view.passes if t.view else ()) if p.pass_no == t.decision.pass_no), None
        )
        weight = t.obs.weight.kg if t.obs.weight else None
        return PassCrossing(
            pass_no=t.decision.pass_no,
            new_status=status,
            pass_collect_wt=weight,
            wt_error=abs(weight - total) if weight is not None and total is not None else None,
            gate_id=cfg.gate_id,
            crossed_at=as_utc_datetime(t.crossed_at or self.now),
        )

    # -- officers -----------------------------------------------------------------------------

    def officer_record(self, action: str, operator_id: str, detail: str, accepted: bool) -> None:
        tid = self.s.txn.transaction_id if self.s.txn else None
        self.records.append(
            OperatorActionRecord(
                transaction_id=tid,
                operator_id=operator_id,
                action=action,
                detail=detail,
                accepted=accepted,
                at=self.at,
            )
        )

    def on_manual_release(self, event: ManualRelease) -> None:
        t = self.s.txn
        overridden = t.decision.codes if t and t.decision else ()
        rejection = self.manual_release_rejection(event)
        self.records.append(
            ManualReleaseRecord(
                transaction_id=t.transaction_id if t else "",
                operator_id=event.operator_id,
                second_operator_id=event.second_operator_id,
                reason_code=event.reason_code,
                reason_text=event.reason_text,
                overridden=overridden,
                authorised=rejection is None,
                rejection=rejection,
                at=self.at,
            )
        )
        if rejection is not None:
            self.alarm("manual_release_rejected", "warning", rejection)
            return
        self._open_barrier("manual")
        self.show(LED["manual"], "green")

    def manual_release_rejection(self, event: ManualRelease) -> str | None:
        """Why this manual release may not open the barrier, or None when it may."""
        t = self.s.txn
        if self.s.phase != "held" or t is None or t.decision is None:
            return f"no hold to release (lane {self.s.phase})"
        if t.decision.verdict is Verdict.REFUSE:
            return "a REFUSE is not a hold: no valid authorisation to release"
        if not event.operator_id.strip():
            return "operator id missing"
        if not event.reason_code.strip() or not event.reason_text.strip():
            return "reason code and text required"
        if {C.I1_RISK_INSTRUCTION, C.I2_RANDOM_DRAW} & set(t.decision.codes):
            second = (event.second_operator_id or "").strip()
            if not second:
                return "overriding I1/I2 needs a second officer"
            if second == event.operator_id.strip():
                return "the second officer must be a different officer"
        return None

    def on_officer(self, event: Regather | KeyIn | Escalate | ResetFault) -> None:
        phase, t = self.s.phase, self.s.txn
        match event:
            case ResetFault():
                accepted = phase == "fault"
                self.officer_record("reset_fault", event.operator_id, self.s.fault or "", accepted)
                if accepted:
                    self.reset_fault()
                return
            case Escalate():
                accepted = t is not None and phase in ("gathering", "held")
                self.officer_record("escalate", event.operator_id, event.reason_text, accepted)
                if accepted:
                    self.set_txn(
                        escalation=event.reason_text or "escalated", hold_since=self.now, hold_alarmed=False
                    )
                    self.decide()
                return
            case Regather():
                accepted = t is not None and phase in ("gathering", "held")
                self.officer_record("regather", event.operator_id, event.device, accepted)
                if accepted:
                    self.commands.append(Retrigger(device=event.device))
                    self.begin_regather(awaiting={DEVICE_FIELD[event.device]})
                return
            case KeyIn():
                read = read_from_key_in(event)
                accepted = t is not None and phase in ("gathering", "held") and read is not None
                self.officer_record("key_in", event.operator_id, f"{event.field}={event.value}", accepted)
                if accepted:
                    assert read is not None
                    self.begin_regather(awaiting=set())
                    self.apply_read(read)

    def begin_regather(self, awaiting: set[ReadField]) -> None:
        if self.s.phase == "held":
            self.phase(
                "gathering", regathering=True, gather_deadline=self.now + self.t.gather_s, hold_since=None
            )
        # A re-triggered input counts as re-gathered even if the device never answers (I5 at timeout).
        self.set_txn(awaiting=self.txn.awaiting | awaiting, regathered=self.txn.regathered | awaiting)

    def reset_fault(self) -> None:
        t = self.s.txn
        if t is None and self.s.barrier.arm_down:
            self.put(phase="idle", fault=None)
            self.show(LED["idle"], "red")
            return
        if t is None:
            tid = f"{self.cfg.lane_id}-{self.at.strftime('%Y%m%dT%H%M%S')}-reset"
            self.put(txn=Transaction(transaction_id=tid, started_at=self.now, gather_deadline=self.now))
        self.put(fault=None)
        if self.s.barrier.arm_down:
            self.finish("aborted")
        else:
            self.want_close("aborted")
