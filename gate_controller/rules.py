"""The release rules of DOMAIN.md §4 as a short table of rule functions.

Read top to bottom the way an officer would:

1. Find the gate pass for the plate / e-plate read.
2. REFUSE rules F1-F6 in order: the first refusal wins and is the only reason given.
3. HOLD rules: every M (manual) and I (inspection) reason is collected, plus the fail-closed
   R reasons (records stale while offline, record missing, read missing).
4. Verdict: any I reason → HOLD_INSPECTION; else any M or R reason → HOLD_MANUAL; else RELEASE.

Each rule is `rule(facts) -> list[Reason]`. A refusal rule may also return R2 (a record it needed
is missing from the local copy); that is a hold, not a refusal, because the copy, not the vehicle,
may be at fault. Only the pass itself (F1) and the manifest / delivery order (F5) refuse when
missing, and only while online.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import combinations
from statistics import median
from typing import TypeVar

from gate_controller.codes import (
    BindType,
    CreditGrade,
    IoDirection,
    ListGateStatus,
    PassStatus,
    PassType,
    ReasonCode,
    RelatedDocumentType,
    RiskAction,
    RiskTarget,
    VehicleStatus,
    Verdict,
)
from gate_controller.config import LaneConfig, RuleSettings
from gate_controller.draw import DrawRecord, EpochKey, perform_draw
from gate_controller.journal import Reason
from gate_controller.observations import Observations
from gate_controller.records import (
    CargoDocument,
    Declaration,
    DeliveryOrder,
    Enterprise,
    GatePass,
    LedgerEntryList,
    Manifest,
    RecordView,
    RiskInstruction,
    Vehicle,
)

C = ReasonCode


def normalise(text: str) -> str:
    """Plates and container numbers compare without case or spaces."""
    return "".join(text.split()).upper()


@dataclass(frozen=True)
class Facts:
    """Everything one evaluation looks at: reads, records, configuration and time."""

    config: LaneConfig
    obs: Observations
    view: RecordView
    now: float
    transaction_id: str
    epoch: EpochKey | None = None
    failed_before_regather: frozenset[ReasonCode] = frozenset()
    regathered: frozenset[str] = frozenset()
    escalation: str | None = None
    gate_pass: GatePass | None = None

    @property
    def offline(self) -> bool:
        return self.view.offline

    @cached_property
    def settings(self) -> RuleSettings:
        return self.config.settings_for(self.gate_pass.pass_type if self.gate_pass else None)

    @cached_property
    def plate(self) -> str | None:
        return normalise(self.obs.plate.value) if self.obs.plate else None

    @property
    def eplate(self) -> str | None:
        return self.obs.eplate.value.strip() if self.obs.eplate else None

    def vehicles(self) -> list[Vehicle]:
        """Registry entries matching the plate or the e-plate read."""
        return [
            v
            for v in self.view.vehicles
            if (self.plate and normalise(v.plate) == self.plate) or (self.eplate and v.eplate == self.eplate)
        ]

    def related(self, kind: RelatedDocumentType) -> tuple[str, ...]:
        p = self.gate_pass
        return p.related_nos if p and p.related_document_type == kind else ()

    def entry_lists(self) -> tuple[list[LedgerEntryList], list[str]]:
        """The pass's ledger entry lists, and the numbers missing from the local copy."""
        wanted = self.related(RelatedDocumentType.LEDGER_ENTRY_LIST)
        by_no = {e.list_no: e for e in self.view.entry_lists}
        return [by_no[n] for n in wanted if n in by_no], [n for n in wanted if n not in by_no]

    def declarations(self) -> tuple[list[Declaration], list[str]]:
        """Declarations linked through the entry lists or sharing the pass's bills of lading."""
        lists, _ = self.entry_lists()
        wanted = [e.declaration_no for e in lists if e.declaration_no]
        bills = set(self.related(RelatedDocumentType.BILL_OF_LADING))
        by_no = {d.declaration_no: d for d in self.view.declarations}
        found = [by_no[n] for n in wanted if n in by_no]
        found += [d for d in self.view.declarations if d.bill_no in bills and d not in found]
        return found, [n for n in wanted if n not in by_no]

    @cached_property
    def risk_hits(self) -> list[RiskInstruction]:
        """Active risk instructions matching pass, declarations, enterprise, vehicle or containers."""
        p, obs = self.gate_pass, self.obs
        if p is None:
            return []
        declarations, _ = self.declarations()
        reads = (obs.container_front, obs.container_back)
        vehicles = (self.plate, self.eplate, p.vehicle_no, p.vehicle_ic_no)
        targets = {
            RiskTarget.PASS: {normalise(p.pass_no)},
            RiskTarget.DECLARATION: {normalise(d.declaration_no) for d in declarations},
            RiskTarget.ENTERPRISE: {normalise(p.enterprise_no)} if p.enterprise_no else set(),
            RiskTarget.VEHICLE: {normalise(x) for x in vehicles if x},
            RiskTarget.CONTAINER: {normalise(n) for n in p.container_nos}
            | {normalise(r.value) for r in reads if r},
        }
        return [
            r
            for r in self.view.risk_instructions
            if r.active_at(self.now) and normalise(r.target_value) in targets[r.target]
        ]

    def enterprise(self) -> Enterprise | None:
        p = self.gate_pass
        if p is None or p.enterprise_no is None:
            return None
        return next((e for e in self.view.enterprises if e.enterprise_no == p.enterprise_no), None)


def missing(detail: str) -> Reason:
    return Reason(code=C.R2_RECORD_MISSING, detail=detail)


# ---------------------------------------------------------------------------------------------
# Pass selection (feeds F1 and F2)


def usable_statuses(config: LaneConfig) -> frozenset[PassStatus]:
    """Gate 2 of a double gate accepts passes that crossed gate 1; every other gate approved ones."""
    if config.gate_mode == "double" and config.gate_number == 2:
        return frozenset({PassStatus.CROSSED_GATE_1})
    return frozenset({PassStatus.APPROVED})


def candidate_passes(view: RecordView, plate: str | None, eplate: str | None) -> list[GatePass]:
    """Passes naming the plate or the e-plate read, in a stable order."""
    hits = [
        p
        for p in view.passes
        if (plate and p.vehicle_no and normalise(p.vehicle_no) == plate)
        or (eplate and p.vehicle_ic_no and p.vehicle_ic_no == eplate)
    ]
    return sorted(hits, key=lambda p: p.pass_no)


def select_pass(facts: Facts) -> tuple[GatePass | None, list[Reason]]:
    """F1 (no usable pass) or the chosen pass; prefers one for this lane's direction and zone."""
    candidates = candidate_passes(facts.view, facts.plate, facts.eplate)
    if not candidates:
        who = f"plate {facts.plate or '-'} / e-plate {facts.eplate or '-'}"
        if facts.offline:
            return None, [missing(f"no gate pass for {who} in the local copy")]
        return None, [Reason(code=C.F1_NO_USABLE_PASS, detail=f"no gate pass for {who}")]
    statuses = usable_statuses(facts.config)
    usable = [
        p
        for p in candidates
        if p.status in statuses and (p.valid_until is None or facts.now < p.valid_until.timestamp())
    ]
    if not usable:
        seen = ", ".join(f"{p.pass_no} stucd={p.status.value}" for p in candidates)
        return None, [
            Reason(code=C.F1_NO_USABLE_PASS, detail=f"no approved, unused, unexpired pass ({seen})")
        ]
    matching = [
        p
        for p in usable
        if p.io_direction == facts.config.direction and p.zone_id in facts.config.accepted_zones
    ]
    return (matching or usable)[0], []


# ---------------------------------------------------------------------------------------------
# REFUSE rules, in order


def f2_direction_and_zone(facts: Facts) -> list[Reason]:
    p, cfg = facts.gate_pass, facts.config
    assert p is not None
    if p.io_direction != cfg.direction:
        return [
            Reason(
                code=C.F2_WRONG_DIRECTION_OR_ZONE,
                detail=f"pass direction {p.io_direction.value}, lane {cfg.direction.value}",
            )
        ]
    if p.zone_id not in cfg.accepted_zones:
        return [
            Reason(
                code=C.F2_WRONG_DIRECTION_OR_ZONE,
                detail=f"pass zone {p.zone_id} not served by gate {cfg.gate_id}",
            )
        ]
    return []


def f3_vehicle_and_driver(facts: Facts) -> list[Reason]:
    reasons: list[Reason] = []
    vehicles = facts.vehicles()
    for v in vehicles:
        if v.status is not VehicleStatus.ACTIVE:
            return [
                Reason(code=C.F3_VEHICLE_OR_DRIVER_INVALID, detail=f"vehicle {v.plate} is {v.status.value}")
            ]
    if not vehicles:
        reasons.append(missing("vehicle not in the registry"))
    card = facts.obs.driver_card
    if card is not None:
        record = next((c for c in facts.view.driver_cards if c.card_id == card.value), None)
        if record is None:
            if facts.offline:
                reasons.append(missing(f"driver card {card.value} not in the local copy"))
            else:
                return [
                    Reason(code=C.F3_VEHICLE_OR_DRIVER_INVALID, detail=f"driver card {card.value} unknown")
                ]
        elif not record.active or (
            record.valid_until is not None and facts.now >= record.valid_until.timestamp()
        ):
            return [
                Reason(
                    code=C.F3_VEHICLE_OR_DRIVER_INVALID, detail=f"driver card {card.value} revoked or expired"
                )
            ]
    return reasons


def f4_second_line_exit_cleared(facts: Facts) -> list[Reason]:
    p = facts.gate_pass
    assert p is not None
    if not (p.pass_type is PassType.SECOND_LINE and p.io_direction is IoDirection.OUT_OF_ZONE):
        return []
    lists, lists_missing = facts.entry_lists()
    declarations, decl_missing = facts.declarations()
    reasons = [missing(f"entry list {n}") for n in lists_missing] + [
        missing(f"declaration {n}") for n in decl_missing
    ]
    if not declarations and not reasons:
        reasons.append(missing("no declaration linked to the pass"))
    for d in declarations:
        problems = [
            text
            for ok, text in (
                (d.released, "not released"),
                (d.tax_paid, "tax unpaid"),
                (d.licence_ok, "licence check failed"),
            )
            if not ok
        ]
        if problems:
            return [
                Reason(
                    code=C.F4_SECOND_LINE_NOT_CLEARED,
                    detail=f"declaration {d.declaration_no}: {', '.join(problems)}",
                )
            ]
    return reasons


def f5_manifest_and_delivery_order(facts: Facts) -> list[Reason]:
    p = facts.gate_pass
    assert p is not None
    if not (p.pass_type is PassType.ENTER_FIRST_DECLARE_LATER and p.io_direction is IoDirection.INTO_ZONE):
        return []
    bills = facts.related(RelatedDocumentType.BILL_OF_LADING)
    if not bills:
        return [Reason(code=C.F5_NO_MANIFEST_OR_DO_NOT_RELEASED, detail="pass names no bill of lading")]
    reasons: list[Reason] = []
    for bill in bills:
        manifest = _by_bill(facts.view.manifests, bill)
        order = _by_bill(facts.view.delivery_orders, bill)
        for record, name in ((manifest, "manifest"), (order, "delivery order")):
            if record is None and facts.offline:
                reasons.append(missing(f"{name} for bill {bill} not in the local copy"))
            elif record is None:
                return [Reason(code=C.F5_NO_MANIFEST_OR_DO_NOT_RELEASED, detail=f"no {name} for bill {bill}")]
        if isinstance(order, DeliveryOrder) and not order.released:
            return [
                Reason(
                    code=C.F5_NO_MANIFEST_OR_DO_NOT_RELEASED,
                    detail=f"delivery order for bill {bill} not released",
                )
            ]
    return reasons


def f6_binding(facts: Facts) -> list[Reason]:
    p = facts.gate_pass
    assert p is not None
    n = len(p.related_nos)
    bound_wrongly = (
        {
            BindType.ONE_VEHICLE_ONE_DOCUMENT: n != 1,
            BindType.ONE_DOCUMENT_MANY_VEHICLES: n != 1,
            BindType.ONE_VEHICLE_MANY_DOCUMENTS: n < 1,
        }.get(p.bind_type, False)
        if p.bind_type
        else False
    )
    if bound_wrongly:
        return [
            Reason(
                code=C.F6_BINDING_WRONG_OR_DOCUMENT_USED,
                detail=f"bind type {p.bind_type.value} with {n} document(s)",
            )
        ]  # type: ignore[union-attr]
    lists, lists_missing = facts.entry_lists()
    for entry in lists:
        if entry.gate_status is ListGateStatus.CROSSED:
            return [
                Reason(
                    code=C.F6_BINDING_WRONG_OR_DOCUMENT_USED,
                    detail=f"entry list {entry.list_no} already fully crossed",
                )
            ]
    return [missing(f"entry list {n}") for n in lists_missing]


REFUSE_RULES: tuple[Callable[[Facts], list[Reason]], ...] = (
    f2_direction_and_zone,
    f3_vehicle_and_driver,
    f4_second_line_exit_cleared,
    f5_manifest_and_delivery_order,
    f6_binding,
)


# ---------------------------------------------------------------------------------------------
# HOLD rules: all are collected


def m1_plate(facts: Facts) -> list[Reason]:
    s, obs = facts.settings, facts.obs
    if obs.plate is None or obs.plate.confidence < s.plate_min_confidence:
        conf = f" (confidence {obs.plate.confidence:.2f})" if obs.plate else ""
        return [Reason(code=C.M1_PLATE_MISMATCH, detail=f"plate unreadable{conf}")]
    plate = facts.plate
    if facts.eplate is not None:
        registered = [v for v in facts.view.vehicles if v.eplate == facts.eplate]
        if not registered:
            return [
                Reason(
                    code=C.M1_PLATE_MISMATCH, detail=f"e-plate {facts.eplate} not registered to any vehicle"
                )
            ]
        if all(normalise(v.plate) != plate for v in registered):
            return [
                Reason(
                    code=C.M1_PLATE_MISMATCH,
                    detail=f"camera plate {plate} ≠ e-plate's plate {registered[0].plate}",
                )
            ]
    elif s.require_eplate:
        return [Reason(code=C.R3_READ_MISSING, detail="no electronic plate read")]
    p = facts.gate_pass
    if p and p.vehicle_no and normalise(p.vehicle_no) != plate:
        return [Reason(code=C.M1_PLATE_MISMATCH, detail=f"camera plate {plate} ≠ pass plate {p.vehicle_no}")]
    return []


def m2_containers(facts: Facts) -> list[Reason]:
    p, s, obs = facts.gate_pass, facts.settings, facts.obs
    assert p is not None
    reads = [r for r in (obs.container_front, obs.container_back) if r is not None]
    expected = sorted(normalise(n) for n in p.container_nos)
    if any(r.confidence < s.container_min_confidence for r in reads):
        return [Reason(code=C.M2_CONTAINER_MISMATCH, detail="container number unreadable")]
    seen = sorted(normalise(r.value) for r in reads)
    if seen != expected:
        return [
            Reason(
                code=C.M2_CONTAINER_MISMATCH, detail=f"containers read {seen or '-'} ≠ pass {expected or '-'}"
            )
        ]
    return []


def weight_tolerance(declared_total: float, settings: RuleSettings) -> float:
    """(design) tol = max(pct × declared total, min kg)."""
    return max(settings.weight_tolerance_pct * declared_total, settings.weight_tolerance_min_kg)


def m3_i3_weight(facts: Facts) -> list[Reason]:
    p, s, weight = facts.gate_pass, facts.settings, facts.obs.weight
    assert p is not None
    if not s.check_weight:
        return []
    if weight is None:
        return [Reason(code=C.R3_READ_MISSING, detail="no stable gross weight")]
    if p.pass_type is PassType.EMPTY_VEHICLE:
        over = weight.kg - p.tare_kg
        if over > s.empty_vehicle_margin_kg:
            return [
                Reason(
                    code=C.I3_WEIGHT_GROSSLY_OFF,
                    detail=f"empty-vehicle pass {over:.0f} kg over tare {p.tare_kg:.0f}",
                )
            ]
        return []
    diff, tol = abs(weight.kg - p.total_wt), weight_tolerance(p.total_wt, s)
    if diff > 2 * tol:
        return [
            Reason(
                code=C.I3_WEIGHT_GROSSLY_OFF,
                detail=f"|{weight.kg:.0f} − {p.total_wt:.0f}| = {diff:.0f} kg > 2·tol {2 * tol:.0f}",
            )
        ]
    if diff > tol:
        return [
            Reason(
                code=C.M3_WEIGHT_OUT_OF_TOLERANCE,
                detail=f"|{weight.kg:.0f} − {p.total_wt:.0f}| = {diff:.0f} kg > tol {tol:.0f}",
            )
        ]
    return []


def m4_documents_agree(facts: Facts) -> list[Reason]:
    s, view = facts.settings, facts.view
    declarations, _ = facts.declarations()
    bills = set(facts.related(RelatedDocumentType.BILL_OF_LADING)) | {
        d.bill_no for d in declarations if d.bill_no
    }
    reasons = []
    for bill in sorted(bills):
        docs: list[tuple[str, CargoDocument]] = [
            (name, doc)
            for name, doc in (
                ("manifest", _by_bill(view.manifests, bill)),
                ("delivery order", _by_bill(view.delivery_orders, bill)),
                ("declaration", next((d for d in declarations if d.bill_no == bill), None)),
            )
            if doc is not None
        ]
        disagreement = _disagreement(docs, s.document_weight_tolerance_pct)
        if disagreement:
            reasons.append(Reason(code=C.M4_DOCUMENTS_DISAGREE, detail=f"bill {bill}: {disagreement}"))
    return reasons


def _disagreement(docs: list[tuple[str, CargoDocument]], weight_pct: float) -> str | None:
    """First field on which the documents disagree (containers, pieces, weight), or None."""
    for (name_a, a), (name_b, b) in combinations(docs, 2):
        if (
            a.container_nos
            and b.container_nos
            and sorted(map(normalise, a.container_nos)) != sorted(map(normalise, b.container_nos))
        ):
            return f"containers differ between {name_a} and {name_b}"
        if a.pieces is not None and b.pieces is not None and a.pieces != b.pieces:
            return f"pieces {a.pieces} ({name_a}) ≠ {b.pieces} ({name_b})"
        if (
            a.gross_wt is not None
            and b.gross_wt is not None
            and abs(a.gross_wt - b.gross_wt) > weight_pct * max(a.gross_wt, b.gross_wt)
        ):
            return f"weight {a.gross_wt:g} ({name_a}) ≠ {b.gross_wt:g} ({name_b})"
    return None


def m5_tare(facts: Facts) -> list[Reason]:
    p, s = facts.gate_pass, facts.settings
    assert p is not None
    for v in facts.vehicles():
        if len(v.tare_history_kg) < s.tare_history_min_samples:
            continue
        typical = median(v.tare_history_kg)
        declared = p.vehicle_wt or v.registered_tare_kg
        allowed = max(s.tare_tolerance_pct * typical, s.tare_tolerance_min_kg)
        if abs(declared - typical) > allowed:
            return [
                Reason(
                    code=C.M5_TARE_ANOMALY,
                    detail=f"tare {declared:.0f} kg vs history median {typical:.0f} (±{allowed:.0f})",
                )
            ]
    return []


def risk_hits(facts: Facts) -> list[RiskInstruction]:
    """Active risk instructions whose target matches the pass, its documents, enterprise, vehicle or boxes."""
    return facts.risk_hits


def i1_risk_instruction(facts: Facts) -> list[Reason]:
    return [
        Reason(
            code=C.I1_RISK_INSTRUCTION,
            detail=f"risk instruction {r.instruction_id}: {r.action.value} {r.target.value} {r.target_value}",
        )
        for r in risk_hits(facts)
        if r.action in (RiskAction.INSPECT, RiskAction.HOLD)
    ]


def i4_seal(facts: Facts) -> list[Reason]:
    p, seal = facts.gate_pass, facts.obs.seal
    assert p is not None
    expected = set(p.seal_nos)
    if seal is not None and seal.state == "opened":
        return [Reason(code=C.I4_SEAL_PROBLEM, detail=f"seal {seal.seal_id} opened")]
    if not expected:
        return []
    if seal is None:
        return [Reason(code=C.I4_SEAL_PROBLEM, detail=f"expected seal {sorted(expected)} missing")]
    if seal.seal_id not in expected:
        return [
            Reason(
                code=C.I4_SEAL_PROBLEM, detail=f"seal {seal.seal_id} is not the expected {sorted(expected)}"
            )
        ]
    return []


def r1_records_fresh(facts: Facts) -> list[Reason]:
    age, bound = facts.view.age_s(facts.now), facts.config.offline_max_age_s
    if facts.offline and age > bound:
        return [
            Reason(
                code=C.R1_RECORDS_STALE_OFFLINE, detail=f"offline, records {age:.0f} s old > {bound:.0f} s"
            )
        ]
    return []


PASS_HOLD_RULES: tuple[Callable[[Facts], list[Reason]], ...] = (
    m2_containers,
    m3_i3_weight,
    m4_documents_agree,
    m5_tare,
    i1_risk_instruction,
    i4_seal,
)


# Which reads each manual-hold rule depends on; None = it depends on records, so any re-gather counts.
REGATHER_INPUTS: dict[ReasonCode, frozenset[str] | None] = {
    C.M1_PLATE_MISMATCH: frozenset({"plate", "eplate"}),
    C.M2_CONTAINER_MISMATCH: frozenset({"containers"}),
    C.M3_WEIGHT_OUT_OF_TOLERANCE: frozenset({"weight"}),
    C.M4_DOCUMENTS_DISAGREE: None,
    C.M5_TARE_ANOMALY: None,
}


def i5_regather_and_escalation(facts: Facts, reasons: Iterable[Reason]) -> list[Reason]:
    """I5: a manual-hold rule fails again after its inputs were re-gathered, or an officer escalated."""
    out = []
    if facts.regathered:
        still = sorted(
            code
            for code in {r.code for r in reasons} & facts.failed_before_regather
            if code in REGATHER_INPUTS
            and (REGATHER_INPUTS[code] is None or REGATHER_INPUTS[code] & facts.regathered)  # type: ignore[operator]
        )
        if still:
            detail = f"{', '.join(c.value for c in still)} still failing after re-gather"
            out.append(Reason(code=C.I5_STILL_FAILING_OR_ESCALATED, detail=detail))
    if facts.escalation is not None:
        out.append(
            Reason(code=C.I5_STILL_FAILING_OR_ESCALATED, detail=f"escalated by officer: {facts.escalation}")
        )
    return out


def evaluate_without_records(
    config: LaneConfig, obs: Observations, escalation: str | None, detail: str
) -> tuple[Verdict, tuple[Reason, ...]]:
    """No RecordView arrived in time: fail closed (R2), keeping M1 and an escalation visible."""
    reasons = [missing(detail)]
    settings = config.settings_for(None)
    if obs.plate is None or obs.plate.confidence < settings.plate_min_confidence:
        reasons.append(Reason(code=C.M1_PLATE_MISMATCH, detail="plate unreadable"))
    if escalation is not None:
        reasons.append(
            Reason(code=C.I5_STILL_FAILING_OR_ESCALATED, detail=f"escalated by officer: {escalation}")
        )
    return verdict_of(reasons), tuple(reasons)


# ---------------------------------------------------------------------------------------------
# The random draw (I2)


def run_draw(facts: Facts) -> tuple[DrawRecord | None, list[Reason]]:
    """I2 with the draw record; R2 when the enterprise or the epoch key is missing."""
    p, policy = facts.gate_pass, facts.config.draw
    assert p is not None
    if facts.epoch is None:
        return None, [missing("no random-draw epoch key installed")]
    enterprise = facts.enterprise()
    if p.enterprise_no is not None and enterprise is None:
        return None, [missing(f"enterprise {p.enterprise_no} (credit grade) not in the local copy")]
    grade = enterprise.credit_grade if enterprise else None
    grade_factor = policy.grade_factors[grade] if grade else policy.no_enterprise_factor
    risk_factor = 1.0
    for r in risk_hits(facts):
        if r.action is RiskAction.ALERT:
            risk_factor *= r.rate_factor
    try:
        draw = perform_draw(
            facts.epoch,
            pass_no=p.pass_no,
            transaction_id=facts.transaction_id,
            rule_version=policy.rule_version,
            base_rate=facts.settings.base_inspection_rate,
            grade_factor=grade_factor,
            risk_factor=risk_factor,
            floor=policy.dishonest_floor if grade is CreditGrade.DISHONEST else 0.0,
        )
    except ValueError as exc:  # e.g. a pass number containing the "|" separator: no fair draw possible
        return None, [missing(f"random draw impossible: {exc}")]
    if draw.selected:
        return draw, [
            Reason(code=C.I2_RANDOM_DRAW, detail=f"random draw u={draw.u:.6f} < rate {draw.rate:.4f}")
        ]
    return draw, []


# ---------------------------------------------------------------------------------------------
# The whole evaluation


@dataclass(frozen=True)
class Evaluation:
    """Verdict, reasons, pass and draw of one evaluation."""

    verdict: Verdict
    reasons: tuple[Reason, ...]
    gate_pass: GatePass | None
    draw: DrawRecord | None
    settings: RuleSettings
    alerts: tuple[RiskInstruction, ...] = field(default=())


def verdict_of(reasons: Iterable[Reason]) -> Verdict:
    """REFUSE if any F; else HOLD_INSPECTION if any I; else HOLD_MANUAL if any M/R; else RELEASE."""
    verdicts = {r.code.verdict for r in reasons}
    for verdict in (Verdict.REFUSE, Verdict.HOLD_INSPECTION, Verdict.HOLD_MANUAL):
        if verdict in verdicts:
            return verdict
    return Verdict.RELEASE


def evaluate(facts: Facts) -> Evaluation:
    """Run the rules of DOMAIN.md §4 on one vehicle."""
    holds: list[Reason] = r1_records_fresh(facts)
    if facts.obs.plate is None and facts.obs.eplate is None:
        holds += m1_plate(facts)
        holds += i5_regather_and_escalation(facts, holds)
        return _hold(facts, holds, None, None)
    gate_pass, reasons = select_pass(facts)
    if any(r.code is C.F1_NO_USABLE_PASS for r in reasons):
        return _refuse(facts, reasons[0], None)
    holds += reasons
    facts = _with_pass(facts, gate_pass)
    # Without a pass (offline, not in the local copy) only the vehicle/driver check can still refuse.
    for rule in REFUSE_RULES if gate_pass is not None else (f3_vehicle_and_driver,):
        found = rule(facts)
        refusal = next((r for r in found if r.code.verdict is Verdict.REFUSE), None)
        if refusal is not None:
            return _refuse(facts, refusal, gate_pass)
        holds += found
    holds += m1_plate(facts)
    if facts.settings.require_driver_card and facts.obs.driver_card is None:
        holds.append(Reason(code=C.R3_READ_MISSING, detail="no driver card read"))
    draw = None
    if gate_pass is not None:
        for rule in PASS_HOLD_RULES:
            holds += rule(facts)
        draw, drawn = run_draw(facts)
        holds += drawn
    holds += i5_regather_and_escalation(facts, holds)
    return _hold(facts, holds, gate_pass, draw)


def _with_pass(facts: Facts, gate_pass: GatePass | None) -> Facts:
    return replace(facts, gate_pass=gate_pass)


def _refuse(facts: Facts, reason: Reason, gate_pass: GatePass | None) -> Evaluation:
    return Evaluation(Verdict.REFUSE, (reason,), gate_pass, None, facts.settings)


def _hold(
    facts: Facts, reasons: list[Reason], gate_pass: GatePass | None, draw: DrawRecord | None
) -> Evaluation:
    unique = tuple(dict.fromkeys(reasons))
    alerts = tuple(r for r in risk_hits(facts) if r.action is RiskAction.ALERT) if gate_pass else ()
    return Evaluation(verdict_of(unique), unique, gate_pass, draw, facts.settings, alerts)


_Doc = TypeVar("_Doc", Manifest, DeliveryOrder)


def _by_bill(records: Iterable[_Doc], bill: str) -> _Doc | None:
    return next((r for r in records if r.bill_no == bill), None)
