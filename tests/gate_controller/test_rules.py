"""Table-driven tests: every rule and reason code of DOMAIN.md §4 (plus the fail-closed R codes)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from gate_builders import (
    BOXES,
    CARD,
    DECL_NO,
    ENTERPRISE,
    EPC,
    LIST_NO,
    PASS_NO,
    PLATE,
    SEAL,
    T0,
    Driver,
    clean_reads,
    config,
    gate_pass,
    view,
)

from gate_controller import (
    Alarm,
    ContainerRead,
    Decision,
    DriverCardRead,
    EPlateRead,
    Event,
    LaneConfig,
    PlateRead,
    RecordView,
    SealRead,
    Verdict,
    WeightRead,
)
from gate_controller.config import RulePolicy, RuleSettings, SettingsOverride

R, HM, HI, X = Verdict.RELEASE, Verdict.HOLD_MANUAL, Verdict.HOLD_INSPECTION, Verdict.REFUSE
LATER = datetime.fromtimestamp(T0 + 86400, tz=UTC)
EARLIER = datetime.fromtimestamp(T0 - 86400, tz=UTC)


def replace_read(
    reads: list[Event], new: Event | None, kind: type, position: str | None = None
) -> list[Event]:
    """Swap (or drop, with new=None) the read of `kind` in the clean read list."""
    out = [
        r
        for r in reads
        if not (isinstance(r, kind) and (position is None or getattr(r, "position", None) == position))
    ]
    return out + ([new] if new is not None else [])


def first_line_entry_view(**over: object) -> RecordView:
    bill = "BL0001"
    data: dict = {
        "passes": [
            gate_pass(
                passportTypecd="1",
                ioTypecd="I",
                bindTypecd="2",
                rltTbTypecd="3",
                rltNo=bill,
            )
        ],
        "manifests": [{"billNo": bill, "containerNo": ",".join(BOXES), "packNo": 10, "grossWt": 20000}],
        "delivery_orders": [{"billNo": bill, "released": True, "containerNo": ",".join(BOXES), "packNo": 10}],
        "declarations": [],
        "entry_lists": [],
    }
    data.update(over)
    return view(**data)


@dataclass
class Case:
    id: str
    verdict: Verdict
    codes: tuple[str, ...]
    records: RecordView = field(default_factory=view)
    reads: list[Event] = field(default_factory=clean_reads)
    cfg: LaneConfig = field(default_factory=config)


CLEAN = clean_reads()
I_LANE = config(direction="I")

CASES = [
    Case("clean second-line exit releases", R, ()),
    Case(
        "container order is ignored",
        R,
        (),
        reads=replace_read(
            replace_read(
                CLEAN,
                ContainerRead(position="front", number=BOXES[0], confidence=0.9),
                ContainerRead,
                "front",
            ),
            ContainerRead(position="back", number=BOXES[1], confidence=0.9),
            ContainerRead,
            "back",
        ),
    ),
    # F1
    Case("F1 no pass online", X, ("F1",), records=view(passes=[])),
    Case("F1 pass already crossed", X, ("F1",), records=view(passes=[gate_pass(stucd="2")])),
    Case("F1 pass applied, not approved", X, ("F1",), records=view(passes=[gate_pass(stucd="0")])),
    Case("F1 pass deleted", X, ("F1",), records=view(passes=[gate_pass(stucd="5")])),
    Case("F1 pass voided", X, ("F1",), records=view(passes=[gate_pass(stucd="6")])),
    Case("F1 pass expired", X, ("F1",), records=view(passes=[gate_pass(validUntil=EARLIER)])),
    Case(
        "F1 found by e-plate only",
        X,
        ("F1",),
        records=view(passes=[gate_pass(stucd="6", vehicleNo="沪B99999")]),
    ),
    Case("pass not yet expired releases", R, (), records=view(passes=[gate_pass(validUntil=LATER)])),
    Case("double gate 2 needs status 3", X, ("F1",), cfg=config(gate_mode="double", gate_number=2)),
    Case(
        "double gate 2 accepts crossed gate 1",
        R,
        (),
        records=view(passes=[gate_pass(stucd="3")]),
        cfg=config(gate_mode="double", gate_number=2),
    ),
    Case(
        "offline and pass missing holds (R2), never refuses",
        HM,
        ("R2",),
        records=view(offline=True, passes=[]),
    ),
    # F2
    Case("F2 pass direction I at exit lane", X, ("F2",), records=view(passes=[gate_pass(ioTypecd="I")])),
    Case("F2 pass zone not served", X, ("F2",), records=view(passes=[gate_pass(zoneId="pudong-airport")])),
    Case(
        "served zone accepted",
        R,
        (),
        records=view(passes=[gate_pass(zoneId="waigaoqiao-ftz")]),
        cfg=config(served_zones=("yangshan-port", "waigaoqiao-ftz")),
    ),
    Case(
        "first refusal wins (F2 before F3)",
        X,
        ("F2",),
        records=view(
            passes=[gate_pass(ioTypecd="I")],
            vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "status": "blacklisted"}],
        ),
    ),
    # F3
    Case(
        "F3 vehicle blacklisted",
        X,
        ("F3",),
        records=view(vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "status": "blacklisted"}]),
    ),
    Case(
        "F3 vehicle suspended",
        X,
        ("F3",),
        records=view(vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "status": "suspended"}]),
    ),
    Case("F3 driver card unknown online", X, ("F3",), records=view(driver_cards=[])),
    Case(
        "F3 driver card revoked", X, ("F3",), records=view(driver_cards=[{"cardId": CARD, "active": False}])
    ),
    Case(
        "F3 driver card expired",
        X,
        ("F3",),
        records=view(driver_cards=[{"cardId": CARD, "validUntil": EARLIER}]),
    ),
    Case("driver card unknown offline holds", HM, ("R2",), records=view(offline=True, driver_cards=[])),
    Case("vehicle not registered holds", HM, ("R2", "M1"), records=view(vehicles=[])),
    # F4
    Case(
        "F4 declaration not released",
        X,
        ("F4",),
        records=view(declarations=[{"entryId": DECL_NO, "released": False}]),
    ),
    Case(
        "F4 tax unpaid",
        X,
        ("F4",),
        records=view(declarations=[{"entryId": DECL_NO, "released": True, "taxPaid": False}]),
    ),
    Case(
        "F4 licence check failed",
        X,
        ("F4",),
        records=view(declarations=[{"entryId": DECL_NO, "released": True, "licenceOk": False}]),
    ),
    Case("declaration missing holds", HM, ("R2",), records=view(declarations=[])),
    Case("entry list missing holds", HM, ("R2",), records=view(entry_lists=[])),
    # F5
    Case("first-line entry releases", R, (), records=first_line_entry_view(), cfg=I_LANE),
    Case("F5 no manifest", X, ("F5",), records=first_line_entry_view(manifests=[]), cfg=I_LANE),
    Case("F5 no delivery order", X, ("F5",), records=first_line_entry_view(delivery_orders=[]), cfg=I_LANE),
    Case(
        "F5 delivery order not released",
        X,
        ("F5",),
        records=first_line_entry_view(delivery_orders=[{"billNo": "BL0001", "released": False}]),
        cfg=I_LANE,
    ),
    Case(
        "F5 pass names no bill",
        X,
        ("F5",),
        records=first_line_entry_view(
            passes=[
                gate_pass(passportTypecd="1", ioTypecd="I", bindTypecd=None, rltTbTypecd=None, rltNo=None)
            ]
        ),
        cfg=I_LANE,
    ),
    Case(
        "manifest missing offline holds",
        HM,
        ("R2",),
        records=first_line_entry_view(offline=True, manifests=[]),
        cfg=I_LANE,
    ),
    # F6
    Case(
        "F6 one-vehicle-one-document with two documents",
        X,
        ("F6",),
        records=view(
            passes=[gate_pass(passportTypecd="4", rltNo=f"{LIST_NO},QD220126E000000002")],
            entry_lists=[{"bondInvtNo": LIST_NO}, {"bondInvtNo": "QD220126E000000002"}],
        ),
    ),
    Case(
        "F6 one-document-many-vehicles with none",
        X,
        ("F6",),
        records=view(passes=[gate_pass(passportTypecd="4", bindTypecd="3", rltTbTypecd=None, rltNo=None)]),
    ),
    Case(
        "F6 entry list fully crossed",
        X,
        ("F6",),
        records=view(entry_lists=[{"bondInvtNo": LIST_NO, "entryNo": DECL_NO, "gateStatus": "1"}]),
    ),
    # M1
    Case(
        "M1 plate unreadable (low confidence)",
        HM,
        ("M1",),
        reads=replace_read(CLEAN, PlateRead(plate=PLATE, confidence=0.3), PlateRead),
    ),
    Case(
        "M1 plate ≠ e-plate's registered plate",
        HM,
        ("M1",),
        records=view(passes=[gate_pass(vehicleNo=None)]),
        reads=replace_read(CLEAN, PlateRead(plate="沪C00000", confidence=0.95), PlateRead),
    ),
    Case(
        "M1 e-plate not registered",
        HM,
        ("M1",),
        reads=replace_read(CLEAN, EPlateRead(epc="E999"), EPlateRead),
        records=view(vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": "OTHER"}]),
    ),
    Case(
        "M1 no plate and no e-plate",
        HM,
        ("M1",),
        reads=replace_read(replace_read(CLEAN, None, PlateRead), None, EPlateRead),
    ),
    # M2
    Case(
        "M2 container differs",
        HM,
        ("M2",),
        reads=replace_read(
            CLEAN, ContainerRead(position="back", number="CSQU3054383", confidence=0.9), ContainerRead, "back"
        ),
    ),
    Case(
        "M2 container unreadable",
        HM,
        ("M2",),
        reads=replace_read(
            CLEAN, ContainerRead(position="back", number=BOXES[0], confidence=0.2), ContainerRead, "back"
        ),
    ),
    Case("M2 container not on pass", HM, ("M2",), records=view(passes=[gate_pass(containerNo=BOXES[0])])),
    # M3 / I3: declared total 39000, tol = max(5 %, 500) = 1950
    Case(
        "weight exactly at tol releases",
        R,
        (),
        reads=replace_read(CLEAN, WeightRead(kg=39000 + 1950, stable=True), WeightRead),
    ),
    Case(
        "M3 weight beyond tol",
        HM,
        ("M3",),
        reads=replace_read(CLEAN, WeightRead(kg=39000 + 1951, stable=True), WeightRead),
    ),
    Case(
        "M3 weight at 2·tol still manual",
        HM,
        ("M3",),
        reads=replace_read(CLEAN, WeightRead(kg=39000 - 3900, stable=True), WeightRead),
    ),
    Case(
        "I3 weight beyond 2·tol",
        HI,
        ("I3",),
        reads=replace_read(CLEAN, WeightRead(kg=39000 + 3901, stable=True), WeightRead),
    ),
    Case(
        "tol minimum 500 kg on small totals",
        HM,
        ("M3",),
        records=view(
            passes=[gate_pass(totalWt=5000, vehicleWt=0, containerWt=0, totalGrossWt=5000)],
            vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC}],
        ),
        reads=replace_read(CLEAN, WeightRead(kg=5501, stable=True), WeightRead),
    ),
    Case(
        "pass-type override widens tol",
        R,
        (),
        reads=replace_read(CLEAN, WeightRead(kg=39000 + 3000, stable=True), WeightRead),
        cfg=config(
            rules=RulePolicy(
                second_line=RuleSettings(base_inspection_rate=0),
                overrides=(SettingsOverride(pass_type="3", settings={"weight_tolerance_pct": 0.10}),),
            )
        ),
    ),
    Case(
        "lane override of another lane ignored",
        HM,
        ("M3",),
        reads=replace_read(CLEAN, WeightRead(kg=39000 + 3000, stable=True), WeightRead),
        cfg=config(
            rules=RulePolicy(
                second_line=RuleSettings(base_inspection_rate=0),
                overrides=(SettingsOverride(lane_id="OTHER", settings={"weight_tolerance_pct": 0.10}),),
            )
        ),
    ),
    Case(
        "I3 empty vehicle carrying cargo",
        HI,
        ("I3",),
        records=view(
            passes=[
                gate_pass(
                    passportTypecd="6",
                    bindTypecd=None,
                    rltTbTypecd=None,
                    rltNo=None,
                    containerNo=None,
                    containerWt=0,
                    totalGrossWt=0,
                    totalWt=15000,
                    sealNo=None,
                )
            ]
        ),
        reads=replace_read(
            replace_read(
                replace_read(replace_read(CLEAN, None, ContainerRead, "front"), None, ContainerRead, "back"),
                None,
                SealRead,
            ),
            WeightRead(kg=15301, stable=True),
            WeightRead,
        ),
    ),
    Case(
        "empty vehicle within 300 kg releases",
        R,
        (),
        records=view(
            passes=[
                gate_pass(
                    passportTypecd="6",
                    bindTypecd=None,
                    rltTbTypecd=None,
                    rltNo=None,
                    containerNo=None,
                    containerWt=0,
                    totalGrossWt=0,
                    totalWt=15000,
                    sealNo=None,
                )
            ]
        ),
        reads=replace_read(
            replace_read(
                replace_read(replace_read(CLEAN, None, ContainerRead, "front"), None, ContainerRead, "back"),
                None,
                SealRead,
            ),
            WeightRead(kg=15300, stable=True),
            WeightRead,
        ),
    ),
    # M4
    Case(
        "M4 documents disagree on pieces",
        HM,
        ("M4",),
        records=first_line_entry_view(delivery_orders=[{"billNo": "BL0001", "released": True, "packNo": 11}]),
        cfg=I_LANE,
    ),
    Case(
        "M4 documents disagree on containers",
        HM,
        ("M4",),
        records=first_line_entry_view(
            delivery_orders=[{"billNo": "BL0001", "released": True, "containerNo": "CSQU3054383"}]
        ),
        cfg=I_LANE,
    ),
    Case(
        "M4 declaration weight disagrees",
        HM,
        ("M4",),
        records=first_line_entry_view(
            declarations=[{"entryId": "D1", "billNo": "BL0001", "released": True, "grossWt": 21000}]
        ),
        cfg=I_LANE,
    ),
    # M5
    Case(
        "M5 declared tare far from history",
        HM,
        ("M5",),
        records=view(
            vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "tareHistory": [17000, 17100, 16900]}]
        ),
    ),
    Case(
        "tare history too short is not judged",
        R,
        (),
        records=view(vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "tareHistory": [17000]}]),
    ),
    # I1
    Case(
        "I1 inspect instruction on vehicle",
        HI,
        ("I1",),
        records=view(
            risk_instructions=[
                {"instructionId": "RK1", "target": "vehicle", "targetValue": PLATE, "action": "inspect"}
            ]
        ),
    ),
    Case(
        "I1 hold instruction on pass",
        HI,
        ("I1",),
        records=view(
            risk_instructions=[
                {"instructionId": "RK2", "target": "pass", "targetValue": PASS_NO, "action": "hold"}
            ]
        ),
    ),
    Case(
        "I1 instruction on declaration",
        HI,
        ("I1",),
        records=view(
            risk_instructions=[
                {"instructionId": "RK3", "target": "declaration", "targetValue": DECL_NO, "action": "inspect"}
            ]
        ),
    ),
    Case(
        "I1 instruction on enterprise",
        HI,
        ("I1",),
        records=view(
            risk_instructions=[
                {
                    "instructionId": "RK4",
                    "target": "enterprise",
                    "targetValue": ENTERPRISE,
                    "action": "inspect",
                }
            ]
        ),
    ),
    Case(
        "I1 instruction on container",
        HI,
        ("I1",),
        records=view(
            risk_instructions=[
                {"instructionId": "RK5", "target": "container", "targetValue": BOXES[1], "action": "inspect"}
            ]
        ),
    ),
    Case(
        "expired instruction ignored",
        R,
        (),
        records=view(
            risk_instructions=[
                {
                    "instructionId": "RK6",
                    "target": "vehicle",
                    "targetValue": PLATE,
                    "action": "inspect",
                    "validUntil": EARLIER,
                }
            ]
        ),
    ),
    Case(
        "future instruction ignored",
        R,
        (),
        records=view(
            risk_instructions=[
                {
                    "instructionId": "RK7",
                    "target": "vehicle",
                    "targetValue": PLATE,
                    "action": "inspect",
                    "validFrom": LATER,
                }
            ]
        ),
    ),
    Case(
        "alert instruction does not hold",
        R,
        (),
        records=view(
            risk_instructions=[
                {"instructionId": "RK8", "target": "vehicle", "targetValue": PLATE, "action": "alert"}
            ]
        ),
    ),
    # I2
    Case("I2 rate 1 always selects", HI, ("I2",), cfg=config(base_rate=1.0)),
    # I4
    Case("I4 seal missing", HI, ("I4",), reads=replace_read(CLEAN, None, SealRead)),
    Case(
        "I4 seal opened",
        HI,
        ("I4",),
        reads=replace_read(CLEAN, SealRead(seal_id=SEAL, state="opened"), SealRead),
    ),
    Case(
        "I4 wrong seal",
        HI,
        ("I4",),
        reads=replace_read(CLEAN, SealRead(seal_id="SEAL9999", state="intact"), SealRead),
    ),
    # inspection outranks manual, all hold reasons collected
    Case(
        "inspection outranks manual; both reasons kept",
        HI,
        ("M1", "I4"),
        reads=replace_read(
            replace_read(CLEAN, PlateRead(plate=PLATE, confidence=0.3), PlateRead), None, SealRead
        ),
    ),
    # R codes: fail closed
    Case("R1 offline, records older than bound", HM, ("R1",), records=view(offline=True, age_s=901)),
    Case("offline with fresh records releases", R, (), records=view(offline=True, age_s=880)),
    Case("online, old records still release", R, (), records=view(offline=False, age_s=90000)),
    Case("R2 enterprise missing", HM, ("R2",), records=view(enterprises=[])),
    Case(
        "R2 pass number unusable for the draw",
        HM,
        ("R2",),
        records=view(passes=[gate_pass(passportNo="Z2201E26112800000000|001")]),
        cfg=config(base_rate=0.5),
    ),
    Case(
        "R3 no stable weight",
        HM,
        ("R3",),
        reads=replace_read(CLEAN, WeightRead(kg=39000, stable=False), WeightRead),
    ),
    Case("R3 no driver card", HM, ("R3",), reads=replace_read(CLEAN, None, DriverCardRead)),
    Case("R3 no e-plate", HM, ("R3",), reads=replace_read(CLEAN, None, EPlateRead)),
]


def decide(case: Case) -> tuple[Driver, Decision]:
    driver = Driver(case.cfg, case.records)
    driver.arrive(case.reads)
    driver.send_tick_until_decided()
    decisions = driver.records_of(Decision)
    assert len(decisions) == 1
    return driver, decisions[0]


def _tick_until_decided(self: Driver) -> None:
    from gate_controller import Tick

    for _ in range(100):
        if self.records_of(Decision):
            return
        self.send(Tick(), dt=1.0)


Driver.send_tick_until_decided = _tick_until_decided  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_table(case: Case) -> None:
    driver, decision = decide(case)
    assert decision.verdict is case.verdict, decision.reasons
    assert sorted(c.value for c in decision.codes) == sorted(case.codes), decision.reasons
    opens = [c for s in driver.steps for c in s.commands if getattr(c, "action", None) == "open"]
    assert len(opens) == (1 if case.verdict is R else 0)


def test_every_reason_code_is_covered_by_the_table() -> None:
    from gate_controller import ReasonCode

    covered = {code for case in CASES for code in case.codes} | {"I5"}  # I5: test_lane_regather.py
    assert covered == {c.value for c in ReasonCode}


def test_decision_carries_version_offline_flag_inputs_and_led_text() -> None:
    _, decision = decide(Case("x", R, (), records=view(offline=True, age_s=5)))
    assert decision.record_version == 42
    assert decision.offline is True
    assert decision.led.zh == "直接放行"
    assert decision.inputs.plate is not None and decision.inputs.plate.value == PLATE
    assert decision.inputs.weight is not None and decision.inputs.weight.kg == 39100
    assert decision.settings["weight_tolerance_pct"] == 0.05
    assert decision.pass_no == PASS_NO
    dumped = decision.model_dump(mode="json")
    assert dumped["verdict"] == "RELEASE" and dumped["inputs"]["plate"]["source"] == "device"


def test_refusal_text_and_alarm() -> None:
    driver, decision = decide(Case("x", X, ("F1",), records=view(passes=[])))
    assert decision.led.zh == "禁止放行 请退出车道"
    alarms = driver.records_of(Alarm)
    assert [a.alarm for a in alarms] == ["gate_exception"] and alarms[0].severity == "critical"


def test_blacklisted_vehicle_raises_its_own_alarm() -> None:
    driver, _ = decide(
        Case(
            "x",
            X,
            ("F3",),
            records=view(vehicles=[{"vehicleNo": PLATE, "vehicleIcNo": EPC, "status": "blacklisted"}]),
        )
    )
    assert "blacklisted_vehicle" in [a.alarm for a in driver.records_of(Alarm)]


def test_alert_instruction_raises_risk_alert_and_raises_rate() -> None:
    records = view(
        risk_instructions=[
            {
                "instructionId": "RK8",
                "target": "vehicle",
                "targetValue": PLATE,
                "action": "alert",
                "rateFactor": 3,
            }
        ]
    )
    driver, decision = decide(Case("x", R, (), records=records, cfg=config(base_rate=0.1)))
    assert "risk_alert" in [a.alarm for a in driver.records_of(Alarm)]
    assert (
        decision.draw is not None
        and decision.draw.risk_factor == 3
        and decision.draw.rate == pytest.approx(0.3)
    )


@pytest.mark.parametrize(
    ("grade", "base", "rate"),
    [
        ("advanced_certified", 0.024, 0.2 * 0.024),
        ("general_certified", 0.024, 0.5 * 0.024),
        ("general_credit", 0.024, 0.024),
        ("dishonest", 0.024, 0.8),
    ],
)
def test_draw_rate_by_credit_grade(grade: str, base: float, rate: float) -> None:
    records = view(enterprises=[{"etpsNo": ENTERPRISE, "creditGrade": grade}])
    _, decision = decide(Case("x", R, (), records=records, cfg=config(base_rate=base)))
    draw = decision.draw
    assert draw is not None and draw.rate == pytest.approx(rate)
    assert draw.selected == (draw.u < draw.rate)
    assert ("I2" in [c.value for c in decision.codes]) == draw.selected


def test_no_epoch_key_fails_closed() -> None:
    from gate_builders import Driver as D

    driver = D(config(base_rate=0.5))
    driver.lane.state = driver.lane.state.model_copy(update={"epoch": None})
    driver.arrive()
    decision = driver.records_of(Decision)[0]
    assert decision.verdict is HM and [c.value for c in decision.codes] == ["R2"]


def test_no_records_answer_fails_closed_at_gather_timeout() -> None:
    from gate_controller import Tick

    driver = Driver(records=None)
    driver.records = None
    driver.arrive()
    assert driver.records_of(Decision) == []
    driver.send(Tick(), dt=10.0)
    decision = driver.records_of(Decision)[0]
    assert decision.verdict is HM and decision.record_version is None
    assert "R2" in [c.value for c in decision.codes]
