"""Lane configuration: identity, timeouts, rule tolerances and random-inspection rates.

Typed pydantic models that forbid unknown keys and describe every field, so a wrong key in a
firmware config is an error that names its path. Tolerances and rates come from a first-line or
second-line profile (chosen by pass type), then overrides matched on zone, lane and pass type,
least specific first.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from gate_controller.codes import CreditGrade, IoDirection, Line, PassType


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSettings(ConfigModel):
    """Tolerances and rates the release rules use for one profile."""

    weight_tolerance_pct: float = Field(
        0.05, ge=0, le=1, description="M3/I3: tol = max(pct × declared total, min)."
    )
    weight_tolerance_min_kg: float = Field(
        500.0, ge=0, description="M3/I3: lower bound of the weight tolerance, kg."
    )
    empty_vehicle_margin_kg: float = Field(
        300.0, ge=0, description="I3: empty-vehicle pass may weigh this much over tare."
    )
    tare_tolerance_pct: float = Field(
        0.03, ge=0, le=1, description="M5: allowed tare deviation from history median."
    )
    tare_tolerance_min_kg: float = Field(
        300.0, ge=0, description="M5: lower bound of the tare tolerance, kg."
    )
    tare_history_min_samples: int = Field(
        3, ge=1, description="M5: fewer samples than this means no tare check."
    )
    document_weight_tolerance_pct: float = Field(
        0.0, ge=0, le=1, description="M4: relative weight difference tolerated between the three documents."
    )
    plate_min_confidence: float = Field(
        0.8, ge=0, le=1, description="M1: plate reads below this are unreadable."
    )
    container_min_confidence: float = Field(
        0.8, ge=0, le=1, description="M2: container reads below this are unreadable."
    )
    require_eplate: bool = Field(True, description="R3: hold when no electronic plate was read.")
    require_driver_card: bool = Field(True, description="R3: hold when no driver card was read.")
    check_weight: bool = Field(
        True, description="Run M3/I3 (weight) at this lane; gate 2 of a double gate may skip it."
    )
    base_inspection_rate: float = Field(0.024, ge=0, le=1, description="I2: base random-inspection rate.")


def _patch_model() -> type[BaseModel]:
    """Same fields as RuleSettings, all optional: an override sets only what it names."""
    fields = {
        name: (info.annotation | None, Field(None, description=info.description))
        for name, info in RuleSettings.model_fields.items()
    }
    return create_model("RuleSettingsPatch", __base__=ConfigModel, **fields)  # type: ignore[call-overload]


RuleSettingsPatch = _patch_model()


class SettingsOverride(ConfigModel):
    """Settings that apply where zone, lane and pass type match (an unset key matches anything)."""

    zone_id: str | None = Field(None, description="Match this zone only.")
    lane_id: str | None = Field(None, description="Match this lane only.")
    pass_type: PassType | None = Field(None, description="Match this pass type only (customs code 1-6).")
    settings: RuleSettingsPatch = Field(description="The settings to change.")  # type: ignore[valid-type]

    @property
    def specificity(self) -> int:
        """Number of keys this override matches on; more specific overrides apply later."""
        return sum(key is not None for key in (self.zone_id, self.lane_id, self.pass_type))


def _second_line_default() -> RuleSettings:
    return RuleSettings()


def _first_line_default() -> RuleSettings:
    """First line is "open": light checks, no driver card, low base rate (design)."""
    return RuleSettings(require_driver_card=False, base_inspection_rate=0.005)


class RulePolicy(ConfigModel):
    """First-line and second-line profiles plus overrides."""

    first_line: RuleSettings = Field(
        default_factory=_first_line_default, description="Profile for pass types 1-2."
    )
    second_line: RuleSettings = Field(
        default_factory=_second_line_default, description="Profile for other types."
    )
    line_by_pass_type: dict[PassType, Line] = Field(
        default_factory=lambda: {
            PassType.ENTER_FIRST_DECLARE_LATER: Line.FIRST,
            PassType.FIRST_LINE_INTEGRATED: Line.FIRST,
            PassType.SECOND_LINE: Line.SECOND,
            PassType.NON_DECLARATION_MOVEMENT: Line.SECOND,
            PassType.GATE_REGISTERED_GOODS: Line.SECOND,
            PassType.EMPTY_VEHICLE: Line.SECOND,
        },
        description="Which profile each pass type uses.",
    )
    overrides: tuple[SettingsOverride, ...] = Field((), description="Zone/lane/pass-type specific settings.")


class DrawPolicy(ConfigModel):
    """Random inspection calibration (DOMAIN.md §4)."""

    rule_version: str = Field(
        "2026.1", min_length=1, pattern=r"^[^|]+$", description="Rule version; part of the HMAC message."
    )
    grade_factors: dict[CreditGrade, float] = Field(
        default_factory=lambda: {
            CreditGrade.ADVANCED_CERTIFIED: 0.2,
            CreditGrade.GENERAL_CERTIFIED: 0.5,
            CreditGrade.GENERAL_CREDIT: 1.0,
            CreditGrade.DISHONEST: 1.0,
        },
        description="Multiplier of the base rate per credit grade.",
    )
    dishonest_floor: float = Field(
        0.8, ge=0, le=1, description="Absolute minimum rate for dishonest enterprises."
    )
    no_enterprise_factor: float = Field(
        1.0, ge=0, description="Grade factor for passes without an enterprise."
    )

    @model_validator(mode="after")
    def _every_grade_has_a_factor(self) -> "DrawPolicy":
        missing = set(CreditGrade) - set(self.grade_factors)
        if missing:
            raise ValueError(f"grade_factors missing {sorted(missing)}")
        return self


class Timeouts(ConfigModel):
    """Every stage's time limit, in seconds. The shell delivers time; these are compared to `now`."""

    gather_s: float = Field(
        8.0, gt=0, description="Longest wait for reads and records before deciding anyway."
    )
    early_read_s: float = Field(
        3.0,
        ge=0,
        description="Reads this long before the arming loop triggers count for the arriving vehicle.",
    )
    backout_confirm_s: float = Field(
        2.0, ge=0, description="Arming loop clear this long before a decision = backed out."
    )
    hold_alarm_s: float = Field(
        120.0, gt=0, description="Alarm when a hold has had no officer action this long."
    )
    barrier_open_s: float = Field(3.0, gt=0, description="Configured barrier opening time.")
    barrier_close_s: float = Field(3.0, gt=0, description="Configured barrier closing time.")
    barrier_margin_s: float = Field(
        2.0, ge=0, description="Added to open/close time before declaring a fault."
    )
    enter_s: float = Field(
        30.0, gt=0, description="Barrier up, vehicle not yet on the safety loop: alarm after this."
    )
    passage_s: float = Field(
        60.0, gt=0, description="Vehicle under the arm but not yet out: alarm after this."
    )
    loop_stale_s: float = Field(2.0, gt=0, description="A loop state older than this counts as occupied.")
    pulse_s: float = Field(0.7, gt=0, le=2, description="Length of a barrier contact pulse.")


class LaneConfig(ConfigModel):
    """One lane: identity, direction, double-gate position, timeouts, rules and draw policy."""

    lane_id: str = Field(min_length=1, pattern=r"^[^|]+$", description="Lane id, unique across all zones.")
    gate_id: str = Field(min_length=1, description="Gate (checkpoint) id recorded at crossing.")
    zone_id: str = Field(min_length=1, description="Zone this lane's gate belongs to.")
    served_zones: tuple[str, ...] = Field(
        (), description="Zones whose passes this gate accepts; empty = own zone."
    )
    direction: IoDirection = Field(description="I: zone-entry lane, E: zone-exit lane.")
    gate_mode: Literal["single", "double"] = Field(
        "single", description="Single gate, or double-gate (gate 1 / 2)."
    )
    gate_number: Literal[1, 2] = Field(1, description="In double-gate mode, which gate this lane is.")
    offline_max_age_s: float = Field(
        900.0, gt=0, description="Offline: records older than this never auto-release."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Stage timeouts.")
    rules: RulePolicy = Field(default_factory=RulePolicy, description="Rule tolerances and rates.")
    draw: DrawPolicy = Field(default_factory=DrawPolicy, description="Random inspection calibration.")

    @property
    def accepted_zones(self) -> frozenset[str]:
        """Zones whose passes are valid at this gate."""
        return frozenset(self.served_zones or (self.zone_id,))

    def settings_for(self, pass_type: PassType | None) -> RuleSettings:
        """Effective rule settings for a pass type at this lane (profile, then matching overrides)."""
        line = self.rules.line_by_pass_type.get(pass_type, Line.SECOND) if pass_type else Line.SECOND
        settings = self.rules.first_line if line is Line.FIRST else self.rules.second_line
        matching = [
            o
            for o in self.rules.overrides
            if o.zone_id in (None, self.zone_id)
            and o.lane_id in (None, self.lane_id)
            and o.pass_type in (None, pass_type)
        ]
        for override in sorted(matching, key=lambda o: o.specificity):
            patch = override.settings.model_dump(exclude_none=True)
            if patch:
                settings = settings.model_copy(update=patch)
        return settings

    def line_for(self, pass_type: PassType) -> Line:
        """Supervision line of a pass type."""
        return self.rules.line_by_pass_type.get(pass_type, Line.SECOND)
