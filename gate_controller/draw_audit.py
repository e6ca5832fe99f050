"""Re-run recorded random-inspection draws against revealed epoch keys.

Input format (JSON lines, one object per line; blank lines ignored):

* a `DrawRecord` as dumped by `model_dump(mode="json")`, or
* any record with a `draw` key holding one (e.g. a `Decision`); lines whose `draw` is null are
  skipped, since no draw was run.

Revealed keys: a JSON object mapping epoch id to the key in hex, e.g. `{"2026-11-28": "6b6b..."}`.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from gate_controller.draw import DrawRecord, verify_draw


@dataclass(frozen=True)
class DrawCheck:
    """Outcome of re-running one line."""

    line: int
    transaction_id: str | None
    pass_no: str | None
    epoch_id: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class DrawAudit:
    """All checks of one file."""

    checks: list[DrawCheck] = field(default_factory=list)
    skipped: int = 0

    @property
    def failures(self) -> list[DrawCheck]:
        return [c for c in self.checks if not c.ok]


def parse_keys(text: str) -> dict[str, bytes]:
    """Revealed keys file: {"epoch id": "key hex", ...}."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("keys file must be a JSON object mapping epoch id to key hex")
    return {str(epoch): bytes.fromhex(str(key)) for epoch, key in raw.items()}


def audit_draws(lines: Iterable[str], keys: Mapping[str, bytes]) -> DrawAudit:
    """Re-run every recorded draw; a line that cannot be read or has no revealed key fails."""
    audit = DrawAudit()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            audit.checks.append(DrawCheck(number, None, None, None, (f"not JSON: {exc.msg}",)))
            continue
        if isinstance(obj, dict) and "draw" in obj:
            if obj["draw"] is None:
                audit.skipped += 1
                continue
            obj = obj["draw"]
        try:
            record = DrawRecord.model_validate(obj)
        except ValidationError as exc:
            ids = obj if isinstance(obj, dict) else {}
            problem = f"not a draw record: {exc.error_count()} field error(s)"
            audit.checks.append(
                DrawCheck(
                    number, ids.get("transaction_id"), ids.get("pass_no"), ids.get("epoch_id"), (problem,)
                )
            )
            continue
        key = keys.get(record.epoch_id)
        problems = (
            (f"no revealed key for epoch {record.epoch_id}",)
            if key is None
            else tuple(verify_draw(record, key))
        )
        audit.checks.append(
            DrawCheck(number, record.transaction_id, record.pass_no, record.epoch_id, problems)
        )
    return audit
