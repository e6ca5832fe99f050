"""Configuration and record models: typed, described, strict where it is config, customs-compatible."""

import pytest
from gate_builders import gate_pass
from pydantic import BaseModel, ValidationError

from gate_controller import GatePass, LaneConfig, PassType
from gate_controller.config import DrawPolicy, RulePolicy, RuleSettings, SettingsOverride, Timeouts

CONFIG_MODELS = [LaneConfig, Timeouts, RulePolicy, RuleSettings, SettingsOverride, DrawPolicy]


def lane(**over: object) -> LaneConfig:
    fields: dict = {"lane_id": "PD-E-02", "gate_id": "PD-G1", "zone_id": "pudong-airport", "direction": "E"}
    fields.update(over)
    return LaneConfig(**fields)


@pytest.mark.parametrize("model", CONFIG_MODELS, ids=lambda m: m.__name__)
def test_every_config_field_is_described(model: type[BaseModel]) -> None:
    undocumented = [name for name, info in model.model_fields.items() if not info.description]
    assert undocumented == []


def test_unknown_config_key_is_an_error_naming_its_path() -> None:
    with pytest.raises(ValidationError) as err:
        LaneConfig.model_validate(
            {"lane_id": "L", "gate_id": "G", "zone_id": "Z", "direction": "E", "timeouts": {"gather": 3}}
        )
    assert "timeouts.gather" in str(err.value)


def test_profiles_by_line_then_overrides_least_specific_first() -> None:
    cfg = lane(
        rules=RulePolicy(
            overrides=(
                SettingsOverride(
                    zone_id="pudong-airport", lane_id="PD-E-02", settings={"weight_tolerance_pct": 0.03}
                ),
                SettingsOverride(
                    zone_id="pudong-airport",
                    settings={"weight_tolerance_pct": 0.04, "tare_tolerance_min_kg": 200},
                ),
                SettingsOverride(pass_type="6", settings={"empty_vehicle_margin_kg": 200}),
                SettingsOverride(zone_id="yangshan-port", settings={"weight_tolerance_pct": 0.5}),
            )
        )
    )
    second = cfg.settings_for(PassType.SECOND_LINE)
    assert second.weight_tolerance_pct == 0.03  # lane-specific wins over zone-wide
    assert second.tare_tolerance_min_kg == 200  # zone-wide still applies where the lane says nothing
    assert second.empty_vehicle_margin_kg == 300
    assert cfg.settings_for(PassType.EMPTY_VEHICLE).empty_vehicle_margin_kg == 200
    first = cfg.settings_for(PassType.ENTER_FIRST_DECLARE_LATER)
    assert first.require_driver_card is False and first.base_inspection_rate == 0.005
    assert second.require_driver_card is True and second.base_inspection_rate == 0.024


def test_separator_is_forbidden_in_draw_inputs_from_config() -> None:
    with pytest.raises(ValidationError):
        lane(lane_id="A|B")
    with pytest.raises(ValidationError):
        DrawPolicy(rule_version="1|2")


def test_draw_policy_needs_every_grade() -> None:
    with pytest.raises(ValidationError, match="grade_factors missing"):
        DrawPolicy(grade_factors={"dishonest": 1.0})


def test_gate_pass_reads_customs_message_and_english_names() -> None:
    customs = GatePass.model_validate(gate_pass(extraCustomsField="ignored"))
    english = GatePass.model_validate(customs.model_dump())
    assert customs == english
    assert customs.pass_type is PassType.SECOND_LINE and customs.status.value == "1"
    assert customs.container_nos == ("TGHU1234567", "MSCU7654321")
    assert customs.tare_kg == 19000
    assert customs.model_dump(by_alias=True)["passportNo"] == customs.pass_no


def test_unknown_code_value_is_rejected() -> None:
    with pytest.raises(ValidationError):
        GatePass.model_validate(gate_pass(passportTypecd="9"))
