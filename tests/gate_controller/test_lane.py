"""Lane transaction behaviour: the happy path, re-gather, manual release, escalation, backing out,
tailgating, barrier faults, double gates, the close interlock, and JSON round-trips."""

from gate_builders import BOXES, EPOCH, PASS_NO, PLATE, Driver, clean_reads, config, gate_pass, view
from pydantic import TypeAdapter

from gate_controller import (
    Alarm,
    BarrierPosition,
    BarrierPulse,
    ContainerRead,
    Decision,
    Escalate,
    KeyIn,
    LaneCommand,
    LaneEvent,
    LaneRecord,
    LaneState,
    LoopChanged,
    ManualRelease,
    ManualReleaseRecord,
    OperatorActionRecord,
    PlateRead,
    RecordsProvided,
    Regather,
    ResetFault,
    Retrigger,
    SetLight,
    ShowText,
    Tick,
    TransactionClosed,
    TransactionStarted,
    Verdict,
)


def pulses(driver: Driver) -> list[str]:
    return [c.action for c in driver.commands_of(BarrierPulse)]


def alarms(driver: Driver) -> list[str]:
    return [a.alarm for a in driver.records_of(Alarm)]


def codes(decision: Decision) -> list[str]:
    return [c.value for c in decision.codes]


def held_on_wrong_container(cfg=None) -> Driver:
    reads = [r for r in clean_reads() if not (isinstance(r, ContainerRead) and r.position == "back")]
    reads.append(ContainerRead(position="back", number="CSQU3054383", confidence=0.9))
    driver = Driver(cfg)
    driver.arrive(reads)
    assert driver.phase == "held"
    return driver


# -- the happy path -------------------------------------------------------------------------------


def test_clean_vehicle_release_sequence() -> None:
    driver = Driver()
    driver.arrive()
    assert driver.phase == "opening"
    assert [r.kind for r in driver.records_of(TransactionStarted)] == ["transaction_started"]
    texts = [c.zh for c in driver.commands_of(ShowText)]
    assert texts[-1] == "直接放行"
    assert driver.commands_of(SetLight)[-1].color == "green"
    (deciding,) = [s for s in driver.steps if any(isinstance(c, BarrierPulse) for c in s.commands)]
    assert isinstance(deciding.commands[0], BarrierPulse)  # before the LED and light round trips
    driver.drive_through()
    assert driver.phase == "idle"
    assert pulses(driver) == ["open", "close"]
    closed = driver.records_of(TransactionClosed)[0]
    assert closed.outcome == "crossed" and not closed.manual_release
    assert closed.crossing is not None
    assert closed.crossing.pass_no == PASS_NO and closed.crossing.new_status.value == "2"
    assert closed.crossing.pass_collect_wt == 39100 and closed.crossing.wt_error == 100
    assert closed.crossing.model_dump(by_alias=True)["passportNo"] == PASS_NO


def test_double_gate_crossing_statuses() -> None:
    gate1 = Driver(config(gate_mode="double", gate_number=1))
    gate1.arrive()
    gate1.drive_through()
    assert gate1.records_of(TransactionClosed)[0].crossing.new_status.value == "3"
    gate2 = Driver(config(gate_mode="double", gate_number=2), view(passes=[gate_pass(stucd="3")]))
    gate2.arrive()
    gate2.drive_through()
    assert gate2.records_of(TransactionClosed)[0].crossing.new_status.value == "4"


def test_early_reads_before_arming_are_used() -> None:
    driver = Driver()
    driver.send_all(clean_reads())
    assert driver.phase == "idle"
    driver.send(LoopChanged(loop="arming", occupied=True))
    assert driver.records_of(Decision)[0].verdict is Verdict.RELEASE


def test_reads_long_before_arming_are_not_used() -> None:
    driver = Driver()
    driver.send(PlateRead(plate="沪C00000", confidence=0.99))
    driver.send(Tick(), dt=5)
    driver.send_all([r for r in clean_reads() if not isinstance(r, PlateRead)])
    driver.send(LoopChanged(loop="arming", occupied=True))
    driver.send(Tick(), dt=9)
    decision = driver.records_of(Decision)[0]
    assert decision.inputs.plate is None and "M1" in codes(decision)


def test_stale_records_answer_is_ignored() -> None:
    driver = Driver(records=None)
    driver.records = None
    driver.arrive()
    driver.send(RecordsProvided(request_id=999, view=view()))
    assert driver.records_of(Decision) == []
    assert driver.lane.next_deadline() == driver.lane.state.txn.gather_deadline


# -- the close interlock --------------------------------------------------------------------------


def through_exit_with_safety_occupied(driver: Driver) -> None:
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    driver.send(LoopChanged(loop="safety", occupied=True))
    driver.send(LoopChanged(loop="arming", occupied=False))
    driver.send(LoopChanged(loop="exit", occupied=True))
    driver.send(LoopChanged(loop="exit", occupied=False))


def test_close_waits_for_the_safety_loop() -> None:
    driver = Driver()
    driver.arrive()
    through_exit_with_safety_occupied(driver)
    assert pulses(driver) == ["open"]
    driver.send(Tick(), dt=5)
    assert pulses(driver) == ["open"]
    driver.send(LoopChanged(loop="safety", occupied=False))
    assert pulses(driver) == ["open", "close"]


def test_close_waits_while_the_safety_loop_is_stale() -> None:
    driver = Driver()
    driver.arrive()
    through_exit_with_safety_occupied(driver)
    driver.send(LoopChanged(loop="safety", occupied=False), dt=0.0)
    assert pulses(driver) == ["open", "close"]

    stale = Driver()
    stale.arrive()
    stale.send(BarrierPosition(arm_up=True, arm_down=False))
    stale.send(LoopChanged(loop="safety", occupied=True))
    stale.send(LoopChanged(loop="safety", occupied=False))
    stale.send(LoopChanged(loop="exit", occupied=True))
    stale.send(LoopChanged(loop="exit", occupied=False), dt=3.0)  # safety report is now 3 s old
    assert pulses(stale) == ["open"]
    assert "loop_stale" in alarms(stale)
    stale.send(LoopChanged(loop="safety", occupied=False))
    assert pulses(stale) == ["open", "close"]


def test_vehicle_under_the_closing_arm_gets_a_second_close_not_an_open() -> None:
    driver = Driver()
    driver.arrive()
    through_exit_with_safety_occupied(driver)
    driver.send(LoopChanged(loop="safety", occupied=False))
    driver.send(LoopChanged(loop="safety", occupied=True))  # hardware inhibit reverses the arm
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    assert "vehicle_stuck" in alarms(driver)
    driver.send(LoopChanged(loop="safety", occupied=False))
    assert pulses(driver) == ["open", "close", "close"]
    driver.send(BarrierPosition(arm_up=False, arm_down=True))
    assert driver.phase == "idle"


# -- re-gather, key-in, manual release, escalation ------------------------------------------------


def test_regather_by_device_then_release() -> None:
    driver = held_on_wrong_container()
    assert codes(driver.records_of(Decision)[0]) == ["M2"]
    driver.send(Regather(operator_id="officer-7", device="container_camera"))
    assert driver.commands_of(Retrigger)[-1].device == "container_camera"
    assert driver.phase == "gathering"
    driver.send(ContainerRead(position="back", number=BOXES[0], confidence=0.9))
    second = driver.records_of(Decision)[-1]
    assert second.attempt == 2 and second.verdict is Verdict.RELEASE
    action = driver.records_of(OperatorActionRecord)[0]
    assert action.action == "regather" and action.accepted and action.operator_id == "officer-7"


def test_regather_still_failing_escalates_to_inspection() -> None:
    driver = held_on_wrong_container()
    driver.send(Regather(operator_id="officer-7", device="container_camera"))
    driver.send(ContainerRead(position="back", number="CSQU3054383", confidence=0.9))
    second = driver.records_of(Decision)[-1]
    assert second.verdict is Verdict.HOLD_INSPECTION
    assert sorted(codes(second)) == ["I5", "M2"]


def test_regather_timeout_reevaluates_with_what_it_has() -> None:
    driver = held_on_wrong_container()
    driver.send(Regather(operator_id="officer-7", device="container_camera"))
    driver.send(Tick(), dt=9)
    assert driver.records_of(Decision)[-1].verdict is Verdict.HOLD_INSPECTION


def test_regathering_another_input_does_not_escalate() -> None:
    driver = held_on_wrong_container()
    driver.send(Regather(operator_id="officer-7", device="weighbridge"))
    from gate_controller import WeightRead

    driver.send(WeightRead(kg=39000, stable=True))
    second = driver.records_of(Decision)[-1]
    assert codes(second) == ["M2"] and second.verdict is Verdict.HOLD_MANUAL


def test_officer_keyed_plate_is_recorded_as_such() -> None:
    reads = [r for r in clean_reads() if not isinstance(r, PlateRead)] + [
        PlateRead(plate=PLATE, confidence=0.2)
    ]
    driver = Driver()
    driver.arrive(reads)
    driver.send(Tick(), dt=9)
    assert codes(driver.records_of(Decision)[0]) == ["M1"]
    driver.send(KeyIn(operator_id="officer-7", field="plate", value=PLATE))
    second = driver.records_of(Decision)[-1]
    assert second.verdict is Verdict.RELEASE
    assert second.inputs.plate.source == "officer"
    assert driver.records_of(OperatorActionRecord)[0].detail == f"plate={PLATE}"


def test_bad_key_in_is_rejected() -> None:
    driver = held_on_wrong_container()
    driver.send(KeyIn(operator_id="officer-7", field="weight_kg", value="heavy"))
    assert driver.records_of(OperatorActionRecord)[0].accepted is False
    assert driver.phase == "held"


def test_manual_release_needs_operator_and_reason() -> None:
    driver = held_on_wrong_container()
    driver.send(ManualRelease(operator_id="officer-7", reason_code="", reason_text=""))
    assert pulses(driver) == []
    assert "manual_release_rejected" in alarms(driver)
    driver.send(ManualRelease(operator_id="", reason_code="R01", reason_text="box seen"))
    assert pulses(driver) == []
    driver.send(
        ManualRelease(operator_id="officer-7", reason_code="R01", reason_text="box number checked by eye")
    )
    assert pulses(driver) == ["open"]
    records = driver.records_of(ManualReleaseRecord)
    assert [r.authorised for r in records] == [False, False, True]
    assert [c.value for c in records[-1].overridden] == ["M2"]
    driver.drive_through()
    closed = driver.records_of(TransactionClosed)[0]
    assert closed.manual_release and closed.outcome == "crossed"


def test_overriding_the_random_draw_needs_a_second_different_officer() -> None:
    driver = Driver(config(base_rate=1.0))
    driver.arrive()
    assert codes(driver.records_of(Decision)[0]) == ["I2"]
    driver.send(ManualRelease(operator_id="officer-7", reason_code="R01", reason_text="urgent"))
    driver.send(
        ManualRelease(
            operator_id="officer-7", reason_code="R01", reason_text="urgent", second_operator_id="officer-7"
        )
    )
    assert pulses(driver) == []
    driver.send(
        ManualRelease(
            operator_id="officer-7", reason_code="R01", reason_text="urgent", second_operator_id="officer-9"
        )
    )
    assert pulses(driver) == ["open"]
    driver.send(
        ManualRelease(
            operator_id="officer-7", reason_code="R01", reason_text="again", second_operator_id="officer-9"
        )
    )
    assert pulses(driver) == ["open"], "one opening per transaction"


def test_risk_instruction_override_needs_a_second_officer() -> None:
    records = view(
        risk_instructions=[
            {"instructionId": "RK1", "target": "vehicle", "targetValue": PLATE, "action": "inspect"}
        ]
    )
    driver = Driver(records=records)
    driver.arrive()
    driver.send(ManualRelease(operator_id="officer-7", reason_code="R01", reason_text="checked"))
    assert pulses(driver) == []


def test_refusal_cannot_be_released_by_hand() -> None:
    driver = Driver(records=view(passes=[]))
    driver.arrive()
    driver.send(
        ManualRelease(
            operator_id="officer-7", reason_code="R01", reason_text="x", second_operator_id="officer-9"
        )
    )
    assert pulses(driver) == []
    assert driver.records_of(ManualReleaseRecord)[0].rejection.startswith("a REFUSE")


def test_escalation_holds_for_inspection() -> None:
    driver = held_on_wrong_container()
    driver.send(Escalate(operator_id="officer-7", reason_text="driver nervous"))
    last = driver.records_of(Decision)[-1]
    assert last.verdict is Verdict.HOLD_INSPECTION and "I5" in codes(last)
    assert last.led.zh == "禁止放行 请驶往查验区"


# -- vehicles leaving, tailgating, timers ---------------------------------------------------------


def test_refused_vehicle_turns_back() -> None:
    driver = Driver(records=view(passes=[]))
    driver.arrive()
    driver.send(LoopChanged(loop="arming", occupied=False))
    driver.send(Tick(), dt=2.5)
    closed = driver.records_of(TransactionClosed)[0]
    assert closed.outcome == "turned_back" and pulses(driver) == []
    assert driver.phase == "idle"


def test_diverted_and_backed_out_outcomes() -> None:
    driver = held_on_wrong_container()
    driver.send(Escalate(operator_id="officer-7"))
    driver.send(LoopChanged(loop="arming", occupied=False))
    driver.send(Tick(), dt=2.5)
    assert driver.records_of(TransactionClosed)[0].outcome == "diverted_to_inspection"

    gathering = Driver()
    gathering.send(LoopChanged(loop="arming", occupied=True))
    gathering.send(LoopChanged(loop="arming", occupied=False))
    gathering.send(LoopChanged(loop="arming", occupied=True), dt=1.0)  # brief gap: not a backout
    gathering.send(LoopChanged(loop="arming", occupied=False))
    gathering.send(Tick(), dt=2.5)
    assert [c.outcome for c in gathering.records_of(TransactionClosed)] == ["backed_out"]


def test_released_vehicle_that_backs_out_gets_the_barrier_closed() -> None:
    driver = Driver()
    driver.arrive()
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    driver.send(LoopChanged(loop="arming", occupied=False))
    driver.send(LoopChanged(loop="safety", occupied=False), dt=2.5)
    assert pulses(driver) == ["open", "close"]
    driver.send(BarrierPosition(arm_up=False, arm_down=True))
    closed = driver.records_of(TransactionClosed)[0]
    assert closed.outcome == "backed_out" and closed.crossing is None


def test_tailgating_alarm_and_next_transaction() -> None:
    driver = Driver()
    driver.arrive()
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    driver.send(LoopChanged(loop="safety", occupied=True))
    driver.send(LoopChanged(loop="arming", occupied=False))
    driver.send(LoopChanged(loop="arming", occupied=True))  # second vehicle
    assert "tailgating" in alarms(driver)
    driver.send(LoopChanged(loop="exit", occupied=True))
    driver.send(LoopChanged(loop="safety", occupied=False))
    driver.send(LoopChanged(loop="exit", occupied=False))
    assert pulses(driver) == ["open", "close"]
    driver.send(BarrierPosition(arm_up=False, arm_down=True))
    assert len(driver.records_of(TransactionStarted)) == 2
    assert driver.phase == "gathering"


def test_hold_unattended_and_vehicle_stuck_alarms() -> None:
    driver = held_on_wrong_container()
    driver.send(Tick(), dt=121)
    assert "hold_unattended" in alarms(driver)
    stuck = Driver()
    stuck.arrive()
    stuck.send(BarrierPosition(arm_up=True, arm_down=False))
    stuck.send(Tick(), dt=31)
    assert "vehicle_stuck" in alarms(stuck)
    assert pulses(stuck) == ["open"]


# -- barrier faults -------------------------------------------------------------------------------


def test_no_arm_up_is_a_fault_and_reset_closes_safely() -> None:
    driver = Driver()
    driver.arrive()
    driver.send(BarrierPosition(arm_up=False, arm_down=False))  # arm leaves down, never reaches up
    driver.send(Tick(), dt=5.1)
    assert driver.phase == "fault" and "barrier_fault" in alarms(driver)
    driver.send(LoopChanged(loop="safety", occupied=True))
    driver.send(ResetFault(operator_id="officer-7"))
    assert pulses(driver) == ["open"], "no close while the safety loop is occupied"
    driver.send(LoopChanged(loop="safety", occupied=False))
    driver.send(LoopChanged(loop="arming", occupied=False))
    assert pulses(driver) == ["open", "close"]
    driver.send(BarrierPosition(arm_up=False, arm_down=True))
    assert driver.records_of(TransactionClosed)[0].outcome == "aborted"
    assert driver.phase == "idle"


def test_arm_down_lost_while_idle_is_forced_lift() -> None:
    driver = Driver()
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    assert driver.phase == "fault"
    assert {"barrier_forced", "barrier_fault"} <= set(alarms(driver))
    driver.send(LoopChanged(loop="arming", occupied=True))
    assert driver.records_of(TransactionStarted) == [], "no transaction while faulted"


def test_no_arm_down_after_close_is_a_fault() -> None:
    driver = Driver()
    driver.arrive()
    driver.send(BarrierPosition(arm_up=True, arm_down=False))
    driver.send(LoopChanged(loop="safety", occupied=True))
    driver.send(LoopChanged(loop="exit", occupied=True))
    driver.send(LoopChanged(loop="safety", occupied=False))
    driver.send(LoopChanged(loop="exit", occupied=False))
    driver.send(Tick(), dt=5.1)
    assert driver.phase == "fault"


# -- serialisation --------------------------------------------------------------------------------


def test_events_commands_records_and_state_round_trip_through_json() -> None:
    driver = held_on_wrong_container()
    driver.send(ManualRelease(operator_id="officer-7", reason_code="R01", reason_text="checked"))
    events = TypeAdapter(list[LaneEvent])
    sample = [
        LoopChanged(loop="exit", occupied=True),
        ManualRelease(operator_id="a", reason_code="b", reason_text="c"),
    ]
    assert events.validate_json(events.dump_json(sample)) == sample
    commands = [c for s in driver.steps for c in s.commands]
    assert (
        TypeAdapter(list[LaneCommand]).validate_python([c.model_dump(mode="json") for c in commands])
        == commands
    )
    records = [r for s in driver.steps for r in s.records]
    assert (
        TypeAdapter(list[LaneRecord]).validate_python([r.model_dump(mode="json") for r in records]) == records
    )
    dumped = driver.lane.state.model_dump(mode="json")
    assert "epoch" not in dumped and EPOCH.key.hex() not in str(dumped)
    restored = LaneState.model_validate(dumped)
    assert restored.phase == driver.lane.state.phase and restored.txn == driver.lane.state.txn


def test_time_running_backwards_is_clamped() -> None:
    driver = Driver()
    driver.arrive()
    before = driver.lane.state.last_now
    driver.lane.handle(Tick(), now=before - 100)
    assert driver.lane.state.last_now == before
