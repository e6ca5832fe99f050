"""Auditable random inspection draw (DOMAIN.md §4, design).

    u = HMAC-SHA256(epoch_key, pass_no | transaction_id | rule_version)  read as a fraction in [0, 1)
    selected  iff  u < rate,  rate = min(1, base_rate × grade_factor × risk_factor)
                              (dishonest enterprises: rate = max(rate, dishonest_floor))

The message is the UTF-8 of the three fields joined by "|" (0x7C); none of them may contain "|".
The fraction is the first 8 bytes of the MAC as a big-endian integer, keeping the top 53 bits so
it is exact in a float: `(int.from_bytes(mac[:8], "big") >> 11) / 2**53`.

The hub publishes `commitment = SHA256(epoch_key)` (hex) when an epoch starts and reveals the key
after it ends; anyone can then re-run every stored `DrawRecord` with `verify_draw`. The draw is a
pure function of its inputs: re-gathering or re-evaluating a transaction cannot re-roll it.
"""

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field

_SEPARATOR = "|"
_TOP_53_BITS = 2**53


class EpochKey(BaseModel):
    """The secret key of one draw epoch. Never serialise it into events before the epoch ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch_id: str = Field(min_length=1, description="Epoch id, e.g. `2026-11-28`.")
    key: bytes = Field(min_length=16, repr=False, exclude=True, description="Secret HMAC key (≥ 16 bytes).")

    @property
    def commitment(self) -> str:
        """SHA256(epoch_key) as hex: published at epoch start."""
        return key_commitment(self.key)


def key_commitment(key: bytes) -> str:
    """SHA256 of the key, hex: what the hub publishes before revealing the key."""
    return hashlib.sha256(key).hexdigest()


def draw_message(pass_no: str, transaction_id: str, rule_version: str) -> bytes:
    """The exact bytes MACed: the three fields joined by "|"."""
    fields = (pass_no, transaction_id, rule_version)
    for value in fields:
        if _SEPARATOR in value:
            raise ValueError(f"draw input {value!r} contains the separator {_SEPARATOR!r}")
    return _SEPARATOR.join(fields).encode("utf-8")


def draw_fraction(key: bytes, pass_no: str, transaction_id: str, rule_version: str) -> float:
    """u in [0, 1) from the HMAC; exact (53-bit) so it round-trips through JSON unchanged."""
    mac = hmac.new(key, draw_message(pass_no, transaction_id, rule_version), hashlib.sha256).digest()
    return (int.from_bytes(mac[:8], "big") >> 11) / _TOP_53_BITS


def inspection_rate(base_rate: float, grade_factor: float, risk_factor: float, floor: float = 0.0) -> float:
    """min(1, base × grade × risk), then raised to `floor` (the dishonest floor, else 0)."""
    return max(min(1.0, base_rate * grade_factor * risk_factor), floor)


class DrawRecord(BaseModel):
    """Everything needed to re-run one draw: inputs, rate, u and outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch_id: str = Field(description="Epoch whose key was used.")
    commitment: str = Field(description="SHA256(epoch_key), hex, as published at epoch start.")
    pass_no: str = Field(description="Gate pass number (HMAC input 1).")
    transaction_id: str = Field(description="Lane transaction id (HMAC input 2).")
    rule_version: str = Field(description="Rule version (HMAC input 3).")
    base_rate: float = Field(ge=0, le=1, description="Base rate of the line / pass type profile.")
    grade_factor: float = Field(ge=0, description="Credit grade factor.")
    risk_factor: float = Field(gt=0, description="Risk factor (product of alert-level risk hits).")
    floor: float = Field(ge=0, le=1, description="Absolute floor applied (0.8 for dishonest, else 0).")
    rate: float = Field(ge=0, le=1, description="Resulting selection probability.")
    u: float = Field(ge=0, lt=1, description="The HMAC fraction.")
    selected: bool = Field(description="u < rate.")


def perform_draw(
    epoch: EpochKey,
    *,
    pass_no: str,
    transaction_id: str,
    rule_version: str,
    base_rate: float,
    grade_factor: float,
    risk_factor: float,
    floor: float,
) -> DrawRecord:
    """Run one draw and return its full record."""
    rate = inspection_rate(base_rate, grade_factor, risk_factor, floor)
    u = draw_fraction(epoch.key, pass_no, transaction_id, rule_version)
    return DrawRecord(
        epoch_id=epoch.epoch_id,
        commitment=epoch.commitment,
        pass_no=pass_no,
        transaction_id=transaction_id,
        rule_version=rule_version,
        base_rate=base_rate,
        grade_factor=grade_factor,
        risk_factor=risk_factor,
        floor=floor,
        rate=rate,
        u=u,
        selected=u < rate,
    )


def verify_draw(record: DrawRecord, key: bytes) -> list[str]:
    """Re-run a recorded draw with the revealed key; return the discrepancies (empty = reproduces)."""
    problems: list[str] = []
    if key_commitment(key) != record.commitment:
        problems.append("revealed key does not match the published commitment")
    rate = inspection_rate(record.base_rate, record.grade_factor, record.risk_factor, record.floor)
    if rate != record.rate:
        problems.append(f"rate {record.rate!r} recorded, inputs give {rate!r}")
    try:
        u = draw_fraction(key, record.pass_no, record.transaction_id, record.rule_version)
    except ValueError as exc:
        problems.append(str(exc))
        return problems
    if u != record.u:
        problems.append(f"u {record.u!r} recorded, key gives {u!r}")
    if (u < rate) != record.selected:
        problems.append(
            f"outcome {'selected' if record.selected else 'not selected'} recorded, re-run disagrees"
        )
    return problems
