"""Customs code values kept as data, with English names in code.

The string values are exactly what the customs messages carry (DOMAIN.md §3), so a record
imported from the customs system maps 1:1; the enum member names are what our code reads.
"""

from enum import StrEnum


class IoDirection(StrEnum):
    """`ioTypecd`: direction of a gate pass or lane."""

    INTO_ZONE = "I"
    OUT_OF_ZONE = "E"


class PassType(StrEnum):
    """`passportTypecd`: kind of gate pass (核放单类型)."""

    ENTER_FIRST_DECLARE_LATER = "1"
    FIRST_LINE_INTEGRATED = "2"
    SECOND_LINE = "3"
    NON_DECLARATION_MOVEMENT = "4"
    GATE_REGISTERED_GOODS = "5"
    EMPTY_VEHICLE = "6"


class BindType(StrEnum):
    """`bindTypecd`: how vehicles and documents are bound on a pass."""

    ONE_VEHICLE_MANY_DOCUMENTS = "1"
    ONE_VEHICLE_ONE_DOCUMENT = "2"
    ONE_DOCUMENT_MANY_VEHICLES = "3"


class RelatedDocumentType(StrEnum):
    """`rltTbTypecd`: kind of document a pass refers to (`rltNo`)."""

    LEDGER_ENTRY_LIST = "1"
    STOCK_NOTE = "2"
    BILL_OF_LADING = "3"


class PassStatus(StrEnum):
    """`stucd`: gate pass status."""

    APPLIED = "0"
    APPROVED = "1"
    CROSSED = "2"
    CROSSED_GATE_1 = "3"
    CROSSED_GATE_2 = "4"
    DELETED = "5"
    VOIDED = "6"


class ListGateStatus(StrEnum):
    """Ledger entry list gate status: have its goods crossed the gate."""

    NOT_CROSSED = "0"
    CROSSED = "1"


class DeductionMark(StrEnum):
    """Ledger entry list deduction mark (核扣标志)."""

    NONE = "0"
    PRE_DEDUCTED = "1"
    DEDUCTED = "2"
    WRITTEN_OFF = "3"


class CreditGrade(StrEnum):
    """Enterprise credit grade (plan-era names; earlier AA/A/B/C/D)."""

    ADVANCED_CERTIFIED = "advanced_certified"
    GENERAL_CERTIFIED = "general_certified"
    GENERAL_CREDIT = "general_credit"
    DISHONEST = "dishonest"


class VehicleStatus(StrEnum):
    """Vehicle registry status."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    BLACKLISTED = "blacklisted"


class RiskTarget(StrEnum):
    """What a risk instruction (布控) points at."""

    PASS = "pass"
    DECLARATION = "declaration"
    ENTERPRISE = "enterprise"
    VEHICLE = "vehicle"
    CONTAINER = "container"


class RiskAction(StrEnum):
    """What a risk instruction asks the gate to do."""

    INSPECT = "inspect"
    HOLD = "hold"
    ALERT = "alert"


class Line(StrEnum):
    """Supervision line: first line is zone ↔ abroad, second line is zone ↔ domestic China."""

    FIRST = "first"
    SECOND = "second"


class Verdict(StrEnum):
    """The gate's four verdicts (DOMAIN.md §4)."""

    RELEASE = "RELEASE"
    HOLD_MANUAL = "HOLD_MANUAL"
    HOLD_INSPECTION = "HOLD_INSPECTION"
    REFUSE = "REFUSE"


class ReasonCode(StrEnum):
    """Machine-readable reason codes. F/M/I are DOMAIN.md §4; R are our fail-closed codes (design)."""

    F1_NO_USABLE_PASS = "F1"
    F2_WRONG_DIRECTION_OR_ZONE = "F2"
    F3_VEHICLE_OR_DRIVER_INVALID = "F3"
    F4_SECOND_LINE_NOT_CLEARED = "F4"
    F5_NO_MANIFEST_OR_DO_NOT_RELEASED = "F5"
    F6_BINDING_WRONG_OR_DOCUMENT_USED = "F6"
    M1_PLATE_MISMATCH = "M1"
    M2_CONTAINER_MISMATCH = "M2"
    M3_WEIGHT_OUT_OF_TOLERANCE = "M3"
    M4_DOCUMENTS_DISAGREE = "M4"
    M5_TARE_ANOMALY = "M5"
    I1_RISK_INSTRUCTION = "I1"
    I2_RANDOM_DRAW = "I2"
    I3_WEIGHT_GROSSLY_OFF = "I3"
    I4_SEAL_PROBLEM = "I4"
    I5_STILL_FAILING_OR_ESCALATED = "I5"
    R1_RECORDS_STALE_OFFLINE = "R1"
    R2_RECORD_MISSING = "R2"
    R3_READ_MISSING = "R3"

    @property
    def verdict(self) -> Verdict:
        """The verdict this reason forces on its own (R codes fail closed to HOLD_MANUAL)."""
        return _VERDICT_BY_PREFIX[self.value[0]]


_VERDICT_BY_PREFIX = {
    "F": Verdict.REFUSE,
    "M": Verdict.HOLD_MANUAL,
    "R": Verdict.HOLD_MANUAL,
    "I": Verdict.HOLD_INSPECTION,
}

FIRST_LINE_PASS_TYPES = frozenset({PassType.ENTER_FIRST_DECLARE_LATER, PassType.FIRST_LINE_INTEGRATED})
