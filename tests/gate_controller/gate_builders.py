"""Builders for gate_controller tests: one clean second-line exit, and ways to spoil it."""

from collections.abc import Iterable
from datetime import UTC, datetime

from gate_controller import (
    BarrierPosition,
    ContainerRead,
    DriverCardRead,
    EPlateRead,
    EpochKey,
    EpochKeyInstalled,
    Event,
    LaneConfig,
    LaneController,
    LoopChanged,
    PlateRead,
    RecordsProvided,
    RecordView,
    RequestRecords,
    SealRead,
    Step,
    WeightRead,
)
from gate_controller.config import RulePolicy, RuleSettings

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC).timestamp()
PLATE = "沪A12345"
EPC = "E2801160600002049C1A2B3C"
CARD = "DC0001"
PASS_NO = "Z2201E261128000000000001"
LIST_NO = "QD220126E000000001"
DECL_NO = "220120261000000001"
ENTERPRISE = "3122000001"
BOXES = ("TGHU1234567", "MSCU7654321")
SEAL = "SEAL0001"
EPOCH = EpochKey(epoch_id="2026-11-28", key=b"k" * 32)


def config(base_rate: float = 0.0, **lane: object) -> LaneConfig:
    """A second-line exit lane at Yangshan; random draw off unless `base_rate` is given."""
    rules = RulePolicy(
        first_line=RuleSettings(require_driver_card=False, base_inspection_rate=base_rate),
        second_line=RuleSettings(base_inspection_rate=base_rate),
    )
    fields: dict = {
        "lane_id": "YS-E-01",
        "gate_id": "YS-G1",
        "zone_id": "yangshan-port",
        "direction": "E",
        "rules": rules,
    }
    fields.update(lane)
    return LaneConfig(**fields)


def gate_pass(**over: object) -> dict:
    """A customs-style gate pass message (customs field names)."""
    msg = {
        "passportNo": PASS_NO,
        "ioTypecd": "E",
        "passportTypecd": "3",
        "bindTypecd": "2",
        "rltTbTypecd": "1",
        "rltNo": LIST_NO,
        "zoneId": "yangshan-port",
        "areainEtpsno": ENTERPRISE,
        "vehicleNo": PLATE,
        "vehicleIcNo": EPC,
        "vehicleWt": 15000,
        "vehicleFrameWt": 0,
        "containerNo": ",".join(BOXES),
        "containerWt": 4000,
        "totalGrossWt": 20000,
        "totalNetWt": 19000,
        "totalWt": 39000,
        "stucd": "1",
        "sealNo": SEAL,
    }
    msg.update(over)
    return msg


def view(offline: bool = False, age_s: float = 10.0, now: float = T0, **over: object) -> RecordView:
    """A RecordView in which the clean vehicle is released; `over` replaces whole collections."""
    data: dict = {
        "record_version": 42,
        "records_as_of": datetime.fromtimestamp(now - age_s, tz=UTC),
        "offline": offline,
        "passes": [gate_pass()],
        "vehicles": [
            {"vehicleNo": PLATE, "vehicleIcNo": EPC, "vehicleWt": 15000, "tareHistory": [15000, 15100, 14900]}
        ],
        "driver_cards": [{"cardId": CARD}],
        "enterprises": [{"etpsNo": ENTERPRISE, "creditGrade": "general_credit"}],
        "declarations": [{"entryId": DECL_NO, "released": True, "billNo": "BL0001"}],
        "entry_lists": [{"bondInvtNo": LIST_NO, "entryNo": DECL_NO}],
    }
    data.update(over)
    return RecordView.model_validate(data)


def clean_reads(weight: float = 39100.0) -> list[Event]:
    return [
        PlateRead(plate=PLATE, confidence=0.95),
        EPlateRead(epc=EPC),
        DriverCardRead(card_id=CARD),
        WeightRead(kg=weight, stable=True),
        ContainerRead(position="front", number=BOXES[1], confidence=0.9),
        ContainerRead(position="back", number=BOXES[0], confidence=0.9),
        SealRead(seal_id=SEAL, state="intact"),
    ]


class Driver:
    """Feeds events to a LaneController, answering RequestRecords with a fixed view, clock advancing."""

    def __init__(
        self, cfg: LaneConfig | None = None, records: RecordView | None = None, now: float = T0
    ) -> None:
        self.lane = LaneController(cfg or config())
        self.records = records if records is not None else view()
        self.now = now
        self.steps: list[Step] = []
        self.send(EpochKeyInstalled(epoch=EPOCH))
        self.send(BarrierPosition(arm_up=False, arm_down=True))
        for loop in ("arming", "safety", "exit"):
            self.send(LoopChanged(loop=loop, occupied=False))

    def send(self, event: Event, dt: float = 0.1) -> Step:
        self.now += dt
        result = self.lane.handle(event, self.now)
        self.steps.append(result)
        for command in result.commands:
            if isinstance(command, RequestRecords) and self.records is not None:
                self.send(RecordsProvided(request_id=command.request_id, view=self.records), dt=0.0)
        return result

    def send_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.send(event)

    @property
    def phase(self) -> str:
        return self.lane.state.phase

    def records_of(self, kind: type) -> list:
        return [r for s in self.steps for r in s.records if isinstance(r, kind)]

    def commands_of(self, kind: type) -> list:
        return [c for s in self.steps for c in s.commands if isinstance(c, kind)]

    def arrive(self, reads: Iterable[Event] | None = None) -> None:
        """Vehicle arms the lane and every read arrives."""
        self.send(LoopChanged(loop="arming", occupied=True))
        self.send_all(clean_reads() if reads is None else reads)

    def drive_through(self) -> None:
        """Barrier goes up, vehicle crosses safety and exit loops, barrier comes down."""
        self.send(BarrierPosition(arm_up=True, arm_down=False))
        self.send(LoopChanged(loop="safety", occupied=True))
        self.send(LoopChanged(loop="arming", occupied=False))
        self.send(LoopChanged(loop="exit", occupied=True))
        self.send(LoopChanged(loop="safety", occupied=False))
        self.send(LoopChanged(loop="exit", occupied=False))
        self.send(BarrierPosition(arm_up=False, arm_down=True))
