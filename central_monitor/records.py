"""Record import: parse CSV/JSON with the customs field names and validate every row.

Field names are the customs message names of DOMAIN.md §3 (`passportNo`, `ioTypecd`, ...) and the
same aliases `gate_controller.records` reads on the edge, so a replicated record validates there
unchanged. Names marked (design) have no customs counterpart; docs/HUB.md lists them all.

Validation is all-or-nothing: `validate_rows` returns every problem as (row, field, expected, got),
and the store imports only when there are none, in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from efence.contract import RecordKind

from .timeutil import parse


@dataclass(frozen=True)
class RowError:
    """One problem: 1-based data row (CSV: the header is row 0), the field, and what was expected."""

    row: int
    field: str
    expected: str
    got: str = ""
    kind: str = ""  # set when one import carries several kinds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.kind} " if self.kind else ""
        return f"{where}row {self.row}, field {self.field}: expected {self.expected}, got {self.got!r}"


class ImportRejected(ValueError):
    """The file was refused as a whole; nothing was imported."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        head = "; ".join(str(e) for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} error(s): {head}{more}")


Converter = Callable[[Any], Any]


class _Bad(ValueError):
    pass


def _text(max_len: int | None = None, exact: int | None = None) -> Converter:
    def conv(v: Any) -> str:
        s = str(v).strip()
        if not s:
            raise _Bad("non-empty text")
        if exact is not None and len(s) != exact:
            raise _Bad(f"exactly {exact} characters")
        if max_len is not None and len(s) > max_len:
            raise _Bad(f"at most {max_len} characters")
        return s

    return conv


def _code(*allowed: str) -> Converter:
    def conv(v: Any) -> str:
        s = str(v).strip()
        if isinstance(v, float) and v.is_integer():
            s = str(int(v))
        if s not in allowed:
            raise _Bad("one of " + "/".join(allowed))
        return s

    return conv


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise _Bad("a number (kg)")
    try:
        x = float(str(v).replace(",", "").strip()) if not isinstance(v, int | float) else float(v)
    except ValueError:
        raise _Bad("a number (kg)") from None
    if x < 0 or x != x:
        raise _Bad("a number >= 0 (kg)")
    return x


def _positive(v: Any) -> float:
    x = _number(v)
    if x <= 0:
        raise _Bad("a number > 0")
    return x


def _integer(v: Any) -> int:
    x = _number(v)
    if not float(x).is_integer():
        raise _Bad("a whole number >= 0")
    return int(x)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in {"1", "true", "yes", "y", "t"}:
        return True
    if s in {"0", "false", "no", "n", "f"}:
        return False
    raise _Bad("true/false (or 1/0)")


def _datetime(v: Any) -> str:
    try:
        dt = parse(v) if not isinstance(v, datetime) else v
    except (TypeError, ValueError):
        raise _Bad("an ISO-8601 time with zone, e.g. 2026-11-28T08:00:00+08:00") from None
    if dt is None:
        raise _Bad("an ISO-8601 time with zone")
    if isinstance(v, str) and not (v.endswith("Z") or "+" in v[10:] or "-" in v[10:]):
        raise _Bad("an ISO-8601 time with zone (Z or +08:00)")
    return dt.isoformat()


def _list(v: Any) -> list[str]:
    if isinstance(v, list | tuple):
        return [str(x).strip() for x in v if str(x).strip()]
    return [p.strip() for p in str(v).replace(";", ",").split(",") if p.strip()]


def _number_list(v: Any) -> list[float]:
    return [_number(x) for x in _list(v)]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    conv: Converter
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class KindSpec:
    kind: RecordKind
    key_fields: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    defaults: dict[str, Any]

    def key_of(self, record: dict[str, Any]) -> str:
        return ":".join(str(record[f]) for f in self.key_fields)


def F(name: str, conv: Converter, required: bool = False, description: str = "") -> FieldSpec:  # noqa: N802
    return FieldSpec(name, conv, required, description)


KINDS: dict[RecordKind, KindSpec] = {
    RecordKind.GATE_PASS: KindSpec(
        RecordKind.GATE_PASS,
        ("passportNo",),
        (
            F("passportNo", _text(exact=24), True, "Gate pass number (核放单号), 24 characters."),
            F("ioTypecd", _code("I", "E"), True, "Direction: I into the zone, E out of it."),
            F("passportTypecd", _code("1", "2", "3", "4", "5", "6"), True, "Pass type 1-6."),
            F(
                "bindTypecd",
                _code("1", "2", "3"),
                False,
                "Binding: 1 one vehicle many documents, 2 one-one, 3 one document many vehicles.",
            ),
            F(
                "rltTbTypecd",
                _code("1", "2", "3"),
                False,
                "Related document kind: 1 entry list, 2 stock note, 3 bill of lading.",
            ),
            F("rltNo", _list, False, "Related document numbers, comma-separated."),
            F("zoneId", _text(40), False, "(design) Zone the pass is valid in; defaults to the import zone."),
            F("areainEtpsno", _text(40), False, "In-zone enterprise code."),
            F("vehicleNo", _text(20), False, "Vehicle plate."),
            F("vehicleIcNo", _text(64), False, "Electronic plate / IC id."),
            F("vehicleWt", _number, False, "Vehicle tare, kg."),
            F("vehicleFrameWt", _number, False, "Frame tare, kg."),
            F("containerNo", _list, False, "Container numbers (front, back), comma-separated."),
            F("containerWt", _number, False, "Container tare, kg."),
            F("totalGrossWt", _number, False, "Declared cargo gross, kg."),
            F("totalNetWt", _number, False, "Declared cargo net, kg."),
            F("totalWt", _number, True, "Declared total = vehicle + frame + container + cargo, kg."),
            F(
                "stucd",
                _code("0", "1", "2", "3", "4", "5", "6"),
                False,
                "Status 0-6; defaults to 1 approved.",
            ),
            F("sealNo", _list, False, "(design) Expected electronic seal ids."),
            F("validUntil", _datetime, False, "(design) Expiry of the pass."),
            F("destZoneId", _text(40), False, "(design) Destination zone of a transfer between zones."),
            F(
                "transferLimitMin",
                _positive,
                False,
                "(design) Minutes allowed for the transfer; default 120.",
            ),
            F("passCollectWt", _number, False, "Weighbridge weight at crossing (set by the hub)."),
            F("wtError", _number, False, "|passCollectWt − totalWt| at crossing (set by the hub)."),
        ),
        {"stucd": "1"},
    ),
    RecordKind.VEHICLE: KindSpec(
        RecordKind.VEHICLE,
        ("vehicleNo",),
        (
            F("vehicleNo", _text(20), True, "Registered plate."),
            F("plateColour", _text(10), False, "(design) Plate colour."),
            F("vehicleIcNo", _text(64), False, "Electronic plate (RFID EPC) / IC id."),
            F("vehicleWt", _number, False, "Registered tare, kg."),
            F("owner", _text(100), False, "(design) Owner name or enterprise code."),
            F("status", _code("active", "suspended", "blacklisted"), False, "(design) Registry status."),
            F("tareHistory", _number_list, False, "(design) Recent tares, kg, comma-separated."),
        ),
        {"status": "active"},
    ),
    RecordKind.ENTERPRISE: KindSpec(
        RecordKind.ENTERPRISE,
        ("etpsNo",),
        (
            F("etpsNo", _text(40), True, "Enterprise code (matches a pass's areainEtpsno)."),
            F("etpsNm", _text(200), False, "Enterprise name."),
            F(
                "creditGrade",
                _code("advanced_certified", "general_certified", "general_credit", "dishonest"),
                True,
                "(design) Credit grade.",
            ),
        ),
        {},
    ),
    RecordKind.RISK_INSTRUCTION: KindSpec(
        RecordKind.RISK_INSTRUCTION,
        ("instructionId",),
        (
            F("instructionId", _text(64), True, "(design) Instruction id."),
            F(
                "target",
                _code("pass", "declaration", "enterprise", "vehicle", "container"),
                True,
                "(design) Target kind.",
            ),
            F(
                "targetValue",
                _text(64),
                True,
                "(design) Pass no, declaration no, enterprise, plate or container.",
            ),
            F("action", _code("inspect", "hold", "alert"), True, "(design) What the gate does on a hit."),
            F("validFrom", _datetime, False, "(design) Start of validity."),
            F("validUntil", _datetime, False, "(design) End of validity (exclusive)."),
            F("rateFactor", _positive, False, "(design) Random-inspection factor of an alert hit."),
        ),
        {},
    ),
    RecordKind.LEDGER_LIST: KindSpec(
        RecordKind.LEDGER_LIST,
        ("bondInvtNo",),
        (
            F("bondInvtNo", _text(exact=18), True, "Ledger entry list number (核注清单号), 18 characters."),
            F("putrecNo", _text(20), False, "Electronic account book number."),
            F("entryNo", _text(30), False, "Linked declaration number."),
            F("gateStatus", _code("0", "1"), False, "(design) 0 not crossed / 1 crossed (set by the hub)."),
            F("vrfdedMarkcd", _code("0", "1", "2", "3"), False, "Deduction mark 0-3."),
        ),
        {"gateStatus": "0", "vrfdedMarkcd": "0"},
    ),
    RecordKind.DRIVER_CARD: KindSpec(
        RecordKind.DRIVER_CARD,
        ("cardId",),
        (
            F("cardId", _text(64), True, "(design) Driver IC card id as read by the card reader."),
            F("holder", _text(100), False, "(design) Driver name."),
            F("active", _bool, False, "(design) False when revoked or lost."),
            F("validUntil", _datetime, False, "(design) Expiry of the card."),
        ),
        {"active": True},
    ),
    RecordKind.MANIFEST: KindSpec(
        RecordKind.MANIFEST,
        ("billNo",),
        (
            F("billNo", _text(40), True, "Bill of lading number (舱单提运单号)."),
            F("containerNo", _list, False, "Container numbers, comma-separated."),
            F("packNo", _integer, False, "Number of packages."),
            F("grossWt", _number, False, "Cargo gross weight, kg."),
        ),
        {},
    ),
    RecordKind.DELIVERY_ORDER: KindSpec(
        RecordKind.DELIVERY_ORDER,
        ("billNo",),
        (
            F("billNo", _text(40), True, "Bill of lading number of the delivery order (提货单)."),
            F("containerNo", _list, False, "Container numbers, comma-separated."),
            F("packNo", _integer, False, "Number of packages."),
            F("grossWt", _number, False, "Cargo gross weight, kg."),
            F("released", _bool, True, "(design) Delivery order released."),
        ),
        {},
    ),
    RecordKind.DECLARATION: KindSpec(
        RecordKind.DECLARATION,
        ("entryId",),
        (
            F("entryId", _text(30), True, "Declaration number (报关单号)."),
            F("billNo", _text(40), False, "Bill of lading number."),
            F("containerNo", _list, False, "Container numbers, comma-separated."),
            F("packNo", _integer, False, "Number of packages."),
            F("grossWt", _number, False, "Cargo gross weight, kg."),
            F("released", _bool, True, "(design) Declaration released (放行)."),
            F("taxPaid", _bool, False, "(design) Duties and taxes paid."),
            F("licenceOk", _bool, False, "(design) Licence check passed."),
        ),
        {"taxPaid": True, "licenceOk": True},
    ),
    RecordKind.TRADE_DOCUMENT: KindSpec(
        RecordKind.TRADE_DOCUMENT,
        ("docType", "docNo"),
        (
            F(
                "docType",
                _code("manifest", "delivery_order", "declaration"),
                True,
                "(design) Which document.",
            ),
            F("billNo", _text(40), False, "Bill of lading number (required for manifest / delivery order)."),
            F("entryId", _text(30), False, "Declaration number (required for a declaration)."),
            F("containerNo", _list, False, "Container numbers, comma-separated."),
            F("packNo", _integer, False, "Number of packages."),
            F("grossWt", _number, False, "Cargo gross weight, kg."),
            F("released", _bool, False, "(design) Delivery order / declaration released."),
            F("taxPaid", _bool, False, "(design) Duties and taxes paid (declaration)."),
            F("licenceOk", _bool, False, "(design) Licence check passed (declaration)."),
        ),
        {},
    ),
}

_INFER_ORDER: list[tuple[str, RecordKind]] = [
    ("passportNo", RecordKind.GATE_PASS),
    ("bondInvtNo", RecordKind.LEDGER_LIST),
    ("etpsNo", RecordKind.ENTERPRISE),
    ("instructionId", RecordKind.RISK_INSTRUCTION),
    ("docType", RecordKind.TRADE_DOCUMENT),
    ("entryId", RecordKind.DECLARATION),
    ("cardId", RecordKind.DRIVER_CARD),
    ("vehicleNo", RecordKind.VEHICLE),
]


def infer_kind(rows: list[dict[str, Any]]) -> RecordKind | None:
    """Guess the kind from the first row's field names (each kind has one distinctive key)."""
    if not rows:
        return None
    names = set(rows[0])
    for fname, kind in _INFER_ORDER:
        if fname in names:
            return kind
    return None


def parse_file(data: bytes | str, filename: str = "") -> tuple[list[dict[str, Any]], RecordKind | None]:
    """CSV (header row of field names) or JSON (a list, or {"kind":…, "records": [...]}) → rows."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    stripped = text.lstrip()
    declared: RecordKind | None = None
    if filename.lower().endswith(".json") or stripped.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportRejected([RowError(0, "<file>", "valid JSON", str(exc))]) from None
        if isinstance(doc, dict):
            if "kind" in doc:
                try:
                    declared = RecordKind(doc["kind"])
                except ValueError:
                    raise ImportRejected(
                        [
                            RowError(
                                0, "kind", "one of " + "/".join(k.value for k in RecordKind), str(doc["kind"])
                            )
                        ]
                    ) from None
            doc = doc.get("records", [])
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise ImportRejected([RowError(0, "<file>", "a JSON list of objects", type(doc).__name__)])
        return doc, declared
    reader = csv.DictReader(io.StringIO(text))
    rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
    return rows, None


def validate_rows(
    kind: RecordKind, rows: Iterable[dict[str, Any]], zone: str
) -> tuple[list[tuple[str, dict[str, Any]]], list[RowError]]:
    """Normalise each row to customs-named JSON; return (key, record) pairs and every error found."""
    spec = KINDS[kind]
    out: list[tuple[str, dict[str, Any]]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(rows, start=1):
        rec: dict[str, Any] = dict(spec.defaults)
        row_ok = True
        known = {f.name for f in spec.fields}
        for f in spec.fields:
            v = raw.get(f.name)
            if v is None or (isinstance(v, str) and not v.strip()):
                if f.required:
                    errors.append(RowError(i, f.name, f"a value ({f.description})", ""))
                    row_ok = False
                continue
            try:
                rec[f.name] = f.conv(v)
            except _Bad as exc:
                errors.append(RowError(i, f.name, str(exc), str(v)[:80]))
                row_ok = False
        for k, v in raw.items():  # customs messages carry many more fields; keep them verbatim
            if k not in known and v not in (None, ""):
                rec[k] = v
        if not row_ok:
            continue
        if kind is RecordKind.GATE_PASS:
            rec.setdefault("zoneId", zone)
        if kind is RecordKind.TRADE_DOCUMENT:
            need = "entryId" if rec["docType"] == "declaration" else "billNo"
            if need not in rec:
                errors.append(RowError(i, need, f"a value for a {rec['docType']}", ""))
                continue
            rec["docNo"] = rec[need]
        key = spec.key_of(rec)
        if key in seen:
            errors.append(RowError(i, spec.key_fields[-1], f"a key not already used in row {seen[key]}", key))
            continue
        seen[key] = i
        out.append((key, rec))
    return out, errors


def field_table() -> dict[str, list[dict[str, Any]]]:
    """The import formats, for docs and `GET /api/records/formats`."""
    return {
        kind.value: [
            {"field": f.name, "required": f.required, "description": f.description} for f in spec.fields
        ]
        for kind, spec in KINDS.items()
    }
