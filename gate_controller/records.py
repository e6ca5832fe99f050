"""The customs records a lane decision reads, as plain immutable data.

Field names are English; aliases are the customs message field names (DOMAIN.md §3, the
Jin'er/SAS gate-pass message: `passportNo`, `ioTypecd`, ...), so the hub importer can validate a
customs JSON message directly (`GatePass.model_validate(msg)`) and the edge cache can store either
form. Aliases marked "(design)" have no customs counterpart; they are ours.

Records ignore unknown keys (a customs message carries dozens of fields the gate never reads);
configuration models, by contrast, forbid them.

The controller never fetches records itself: it asks with a `RequestRecords` command and the shell
answers with a `RecordsProvided` event carrying a `RecordView` (see docs/GATE_CONTROLLER.md).
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from gate_controller.codes import (
    BindType,
    CreditGrade,
    DeductionMark,
    IoDirection,
    ListGateStatus,
    PassStatus,
    PassType,
    RelatedDocumentType,
    RiskAction,
    RiskTarget,
    VehicleStatus,
)


def _split_numbers(value: object) -> object:
    """Customs messages join several numbers in one string (`"TGHU1234567,MSCU7654321"`)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.replace(";", ",").split(",") if part.strip())
    return value


NumberList = Annotated[tuple[str, ...], BeforeValidator(_split_numbers)]


class Record(BaseModel):
    """Base of every record: immutable, accepts customs names or English names, ignores extras."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class GatePass(Record):
    """Gate pass (核放单): authorises one vehicle, one crossing, one direction."""

    pass_no: str = Field(alias="passportNo", description="Gate pass number, 24 characters.")
    io_direction: IoDirection = Field(alias="ioTypecd", description="I into the zone, E out of it.")
    pass_type: PassType = Field(alias="passportTypecd", description="Pass type code 1-6.")
    bind_type: BindType | None = Field(
        default=None,
        alias="bindTypecd",
        description="Vehicle/document binding code 1-3; none for passes without documents.",
    )
    related_document_type: RelatedDocumentType | None = Field(
        default=None, alias="rltTbTypecd", description="Kind of the related documents in `related_nos`."
    )
    related_nos: NumberList = Field(
        default=(),
        alias="rltNo",
        description="Related document numbers (entry lists, stock notes or bills of lading).",
    )
    zone_id: str = Field(
        alias="zoneId", description="(design) Zone the pass is valid in, e.g. `yangshan-port`."
    )
    enterprise_no: str | None = Field(
        default=None, alias="areainEtpsno", description="In-zone enterprise code; keys `Enterprise`."
    )
    vehicle_no: str | None = Field(default=None, alias="vehicleNo", description="Vehicle plate on the pass.")
    vehicle_ic_no: str | None = Field(
        default=None, alias="vehicleIcNo", description="Electronic plate / IC id."
    )
    vehicle_wt: float = Field(default=0.0, alias="vehicleWt", ge=0, description="Declared vehicle tare, kg.")
    frame_wt: float = Field(default=0.0, alias="vehicleFrameWt", ge=0, description="Declared frame tare, kg.")
    container_nos: NumberList = Field(
        default=(),
        alias="containerNo",
        description="Container numbers (up to two boxes; order not significant).",
    )
    container_wt: float = Field(
        default=0.0, alias="containerWt", ge=0, description="Declared container tare, kg."
    )
    total_gross_wt: float = Field(
        default=0.0, alias="totalGrossWt", ge=0, description="Declared cargo gross, kg."
    )
    total_net_wt: float = Field(default=0.0, alias="totalNetWt", ge=0, description="Declared cargo net, kg.")
    total_wt: float = Field(
        alias="totalWt", ge=0, description="Declared total = vehicle + frame + container + cargo, kg."
    )
    status: PassStatus = Field(alias="stucd", description="Pass status code 0-6.")
    seal_nos: NumberList = Field(
        default=(),
        alias="sealNo",
        description="(design) Expected electronic seal ids; empty when no seal is expected.",
    )
    valid_until: AwareDatetime | None = Field(
        default=None, alias="validUntil", description="(design) Expiry of the pass; none means no expiry."
    )

    @property
    def tare_kg(self) -> float:
        """Declared vehicle + frame + container tare."""
        return self.vehicle_wt + self.frame_wt + self.container_wt


class Vehicle(Record):
    """Vehicle registry entry."""

    plate: str = Field(alias="vehicleNo", description="Registered plate.")
    plate_colour: str | None = Field(default=None, alias="plateColour", description="(design) Plate colour.")
    eplate: str | None = Field(
        default=None, alias="vehicleIcNo", description="Electronic plate (RFID EPC) / IC id."
    )
    registered_tare_kg: float = Field(
        default=0.0, alias="vehicleWt", ge=0, description="Registered tare, kg."
    )
    owner: str | None = Field(
        default=None, alias="owner", description="(design) Owner name or enterprise code."
    )
    status: VehicleStatus = Field(
        default=VehicleStatus.ACTIVE, alias="status", description="Registry status."
    )
    tare_history_kg: tuple[float, ...] = Field(
        default=(), alias="tareHistory", description="(design) Recent weighbridge tares of this vehicle, kg."
    )


class DriverCard(Record):
    """Driver IC card registry entry."""

    card_id: str = Field(alias="cardId", description="(design) Card id as read by the card reader.")
    holder: str | None = Field(default=None, alias="holder", description="(design) Driver name.")
    active: bool = Field(default=True, alias="active", description="(design) False when revoked or lost.")
    valid_until: AwareDatetime | None = Field(
        default=None, alias="validUntil", description="(design) Expiry."
    )


class Enterprise(Record):
    """Enterprise with customs credit grade."""

    enterprise_no: str = Field(alias="etpsNo", description="Enterprise code (matches a pass `areainEtpsno`).")
    name: str | None = Field(default=None, alias="etpsNm", description="Enterprise name.")
    credit_grade: CreditGrade = Field(alias="creditGrade", description="(design) Credit grade.")


class RiskInstruction(Record):
    """Risk instruction (布控) from the risk/intelligence system."""

    instruction_id: str = Field(alias="instructionId", description="(design) Instruction id.")
    target: RiskTarget = Field(alias="target", description="What kind of thing the instruction targets.")
    target_value: str = Field(
        alias="targetValue", description="Pass no, declaration no, enterprise, plate or container."
    )
    action: RiskAction = Field(alias="action", description="inspect / hold / alert.")
    valid_from: AwareDatetime | None = Field(
        default=None, alias="validFrom", description="Start of validity."
    )
    valid_until: AwareDatetime | None = Field(
        default=None, alias="validUntil", description="End of validity (exclusive)."
    )
    rate_factor: float = Field(
        default=1.0,
        alias="rateFactor",
        gt=0,
        description="(design) Random-inspection risk factor of an alert hit.",
    )

    def active_at(self, now: float) -> bool:
        """True when `now` (POSIX seconds) lies in [valid_from, valid_until)."""
        if self.valid_from is not None and now < self.valid_from.timestamp():
            return False
        return not (self.valid_until is not None and now >= self.valid_until.timestamp())


class CargoDocument(Record):
    """Fields the three-document check compares (bill, containers, pieces, weight)."""

    bill_no: str = Field(alias="billNo", description="Bill of lading number.")
    container_nos: NumberList = Field(default=(), alias="containerNo", description="Container numbers.")
    pieces: int | None = Field(default=None, alias="packNo", ge=0, description="Number of packages.")
    gross_wt: float | None = Field(default=None, alias="grossWt", ge=0, description="Cargo gross weight, kg.")


class Manifest(CargoDocument):
    """Manifest (舱单) record."""


class DeliveryOrder(CargoDocument):
    """Delivery order (提货单)."""

    released: bool = Field(alias="released", description="(design) True when the delivery order is released.")


class Declaration(CargoDocument):
    """Customs declaration (报关单)."""

    bill_no: str | None = Field(default=None, alias="billNo", description="Bill of lading number, if any.")  # type: ignore[assignment]
    declaration_no: str = Field(alias="entryId", description="Declaration number.")
    released: bool = Field(alias="released", description="(design) Declaration released (放行).")
    tax_paid: bool = Field(default=True, alias="taxPaid", description="(design) Duties and taxes paid.")
    licence_ok: bool = Field(default=True, alias="licenceOk", description="(design) Licence check passed.")


class LedgerEntryList(Record):
    """Ledger entry list (核注清单)."""

    list_no: str = Field(alias="bondInvtNo", description="Entry list number, 18 characters.")
    account_book_no: str | None = Field(
        default=None, alias="putrecNo", description="Electronic account book number."
    )
    declaration_no: str | None = Field(
        default=None, alias="entryNo", description="Linked declaration number."
    )
    gate_status: ListGateStatus = Field(
        default=ListGateStatus.NOT_CROSSED,
        alias="gateStatus",
        description="(design) 0 not crossed / 1 crossed.",
    )
    deduction_mark: DeductionMark = Field(
        default=DeductionMark.NONE, alias="vrfdedMarkcd", description="Deduction mark 0-3."
    )


class RecordView(BaseModel):
    """The slice of the edge's record cache one transaction needs, with its version and age.

    The shell builds it in answer to `RequestRecords`: every pass whose plate or e-plate matches,
    the matching vehicles and driver card, the enterprises of those passes, every risk instruction
    (the rules filter by target and validity), and the documents those passes refer to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_version: int = Field(
        ge=0, description="Replication sequence number of the cache this view came from."
    )
    records_as_of: AwareDatetime = Field(description="When the cache was last known to match the hub.")
    offline: bool = Field(description="True when the edge has no live link to the hub.")
    passes: tuple[GatePass, ...] = Field(default=(), description="Candidate gate passes (any status).")
    vehicles: tuple[Vehicle, ...] = Field(
        default=(), description="Registry entries for the plate and e-plate read."
    )
    driver_cards: tuple[DriverCard, ...] = Field(default=(), description="Registry entry for the card read.")
    enterprises: tuple[Enterprise, ...] = Field(
        default=(), description="Enterprises of the candidate passes."
    )
    risk_instructions: tuple[RiskInstruction, ...] = Field(
        default=(), description="Risk instructions in force."
    )
    manifests: tuple[Manifest, ...] = Field(
        default=(), description="Manifests of the passes' bills of lading."
    )
    delivery_orders: tuple[DeliveryOrder, ...] = Field(
        default=(), description="Delivery orders of those bills."
    )
    declarations: tuple[Declaration, ...] = Field(
        default=(), description="Declarations linked to the passes."
    )
    entry_lists: tuple[LedgerEntryList, ...] = Field(
        default=(), description="Ledger entry lists of the passes."
    )

    def age_s(self, now: float) -> float:
        """Seconds between `records_as_of` and `now` (POSIX seconds)."""
        return now - self.records_as_of.timestamp()


def as_utc_datetime(value: float) -> datetime:
    """POSIX seconds to an aware UTC datetime (used for record timestamps)."""
    return datetime.fromtimestamp(value, tz=UTC)
