"""The auditable random draw: exact definition, selection rate, reproducibility, tamper detection,
and the `efence audit draws` command."""

import hashlib
import hmac
import json
import math
from pathlib import Path

import pytest
from gate_builders import EPOCH as LANE_EPOCH
from gate_builders import Driver, clean_reads, config
from typer.testing import CliRunner

from efence.cli import app
from gate_controller import (
    ContainerRead,
    Decision,
    EpochKey,
    Regather,
    Tick,
    draw_fraction,
    key_commitment,
    perform_draw,
    verify_draw,
)
from gate_controller.draw import draw_message, inspection_rate

KEY = bytes(range(32))
EPOCH = EpochKey(epoch_id="2026-W48", key=KEY)
N = 100_000


def draw(i: int, base_rate: float = 0.024, grade_factor: float = 1.0, floor: float = 0.0):
    return perform_draw(
        EPOCH,
        pass_no=f"Z2201E2611280000{i:08d}",
        transaction_id=f"YS-E-01-20261128T080000-{i:06d}",
        rule_version="2026.1",
        base_rate=base_rate,
        grade_factor=grade_factor,
        risk_factor=1.0,
        floor=floor,
    )


def test_u_is_the_documented_hmac_fraction() -> None:
    mac = hmac.new(KEY, b"Z2201E261128000000000001|YS-E-01-1|2026.1", hashlib.sha256).digest()
    expected = (int.from_bytes(mac[:8], "big") >> 11) / 2**53
    assert draw_fraction(KEY, "Z2201E261128000000000001", "YS-E-01-1", "2026.1") == expected
    assert 0 <= expected < 1


def test_commitment_is_sha256_of_the_key() -> None:
    assert key_commitment(KEY) == hashlib.sha256(KEY).hexdigest() == EPOCH.commitment


def test_separator_in_an_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="separator"):
        draw_message("A|B", "t", "v")


def test_rate_caps_at_one_and_floor_applies() -> None:
    assert inspection_rate(0.5, 1.0, 3.0) == 1.0
    assert inspection_rate(0.024, 0.2, 1.0, floor=0.8) == 0.8
    assert inspection_rate(0.024, 0.5, 2.0) == pytest.approx(0.024)


def fractions(n: int = N) -> list[float]:
    return [draw_fraction(KEY, f"Z2201E2611280000{i:08d}", f"YS-E-01-{i:06d}", "2026.1") for i in range(n)]


@pytest.mark.parametrize("rate", [0.024 * 0.2, 0.024 * 0.5, 0.024, 0.8])
def test_selection_rate_within_statistical_bounds(rate: float) -> None:
    us = fractions()
    selected = sum(u < rate for u in us)
    sigma = math.sqrt(N * rate * (1 - rate))
    assert abs(selected - N * rate) < 5 * sigma, (selected, N * rate)


def test_fractions_are_uniform_chi_square() -> None:
    bins = [0] * 20
    for u in fractions():
        bins[int(u * 20)] += 1
    expected = N / 20
    chi2 = sum((b - expected) ** 2 / expected for b in bins)
    assert chi2 < 43.8  # df = 19, p = 0.001


def test_draws_reproduce_and_are_deterministic() -> None:
    records = [draw(i) for i in range(2000)]
    assert all(verify_draw(r, KEY) == [] for r in records)
    assert [draw(i).u for i in range(50)] == [r.u for r in records[:50]]
    again = [type(r).model_validate_json(r.model_dump_json()) for r in records[:200]]
    assert again == records[:200], "u must survive a JSON round-trip exactly"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"u": 0.5}, "u "),
        ({"rate": 0.9}, "rate"),
        ({"pass_no": "Z2201E261128999999999999"}, "u "),
        ({"commitment": "00" * 32}, "commitment"),
    ],
)
def test_tampering_is_detected(change: dict, message: str) -> None:
    record = draw(7).model_copy(update=change)
    problems = verify_draw(record, KEY)
    assert any(message in p for p in problems), problems


def test_flipped_outcome_is_detected() -> None:
    record = draw(7, base_rate=0.5)
    flipped = record.model_copy(update={"selected": not record.selected})
    assert any("outcome" in p for p in verify_draw(flipped, KEY))


def test_wrong_key_is_detected() -> None:
    assert verify_draw(draw(3), b"x" * 32)


def test_lane_draw_is_not_rerolled_by_regather() -> None:
    """Re-evaluating the same transaction draws the same u (the shell cannot re-roll the dice)."""
    driver = Driver(config(base_rate=0.3))
    driver.arrive([r for r in clean_reads() if not isinstance(r, ContainerRead)])
    driver.send(Tick(), dt=9)
    driver.send(Regather(operator_id="officer-7", device="container_camera"))
    driver.send(Tick(), dt=9)
    draws = [d.draw for d in driver.records_of(Decision)]
    assert len(draws) == 2 and draws[0] is not None and draws[0] == draws[1]


# -- efence audit draws ---------------------------------------------------------------------------


def write_inputs(tmp_path: Path, lines: list[str]) -> tuple[Path, Path]:
    draws_file = tmp_path / "draws.jsonl"
    draws_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({EPOCH.epoch_id: KEY.hex()}), encoding="utf-8")
    return draws_file, keys_file


def good_lines() -> list[str]:
    lines = [draw(i, base_rate=0.3).model_dump_json() for i in range(20)]
    driver = Driver(config(base_rate=0.3))
    driver.arrive()
    decision = driver.records_of(Decision)[0]
    lines.append(decision.model_dump_json())  # a Decision line carrying its draw
    lines.append(json.dumps({"kind": "decision", "draw": None}))  # no draw: skipped
    return lines


def test_audit_cli_good_file_passes(tmp_path: Path) -> None:
    draws_file, keys_file = write_inputs(tmp_path, good_lines())
    keys_file.write_text(json.dumps({EPOCH.epoch_id: KEY.hex(), LANE_EPOCH.epoch_id: LANE_EPOCH.key.hex()}))
    result = CliRunner().invoke(app, ["audit", "draws", str(draws_file), "--keys", str(keys_file)])
    assert result.exit_code == 0, result.output
    assert "21 of 21 draws reproduce" in result.output
    assert "1 record(s) without a draw skipped" in result.output


def test_audit_cli_reports_tampered_draw(tmp_path: Path) -> None:
    lines = [draw(i, base_rate=0.3).model_dump_json() for i in range(5)]
    tampered = json.loads(lines[2])
    tampered["selected"] = not tampered["selected"]
    lines[2] = json.dumps(tampered)
    lines.append("{not json")
    draws_file, keys_file = write_inputs(tmp_path, lines)
    result = CliRunner().invoke(
        app, ["audit", "draws", str(draws_file), "--keys", str(keys_file)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert tampered["transaction_id"] in result.output
    assert "outcome" in result.output and "not JSON" in result.output
    assert "4 of 6 draws reproduce" in result.output


def test_audit_cli_missing_key_fails(tmp_path: Path) -> None:
    draws_file, keys_file = write_inputs(tmp_path, [draw(1).model_dump_json()])
    keys_file.write_text(json.dumps({"other-epoch": KEY.hex()}))
    result = CliRunner().invoke(
        app, ["audit", "draws", str(draws_file), "--keys", str(keys_file)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "no revealed key" in result.output
