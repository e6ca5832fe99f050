"""Firmware configs: the shipped zones validate, broken files fail naming file, line and key."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from efence.cli import app
from efence.commands.config import SCHEMA_FILE, zone_json_schema
from firmware_configs.devices import IoBoardConfig, WeighbridgeConfig
from firmware_configs.loader import ZONES_DIR, ConfigError, check_files, load_zone, validate_text
from firmware_configs.schema import Zone

runner = CliRunner()
ZONE_IDS = {"waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport"}
GOOD = (ZONES_DIR / "waigaoqiao-ftz.yaml").read_text(encoding="utf-8")


def test_shipped_zones_cover_the_four_zones_with_complete_lanes():
    zones, issues = check_files([ZONES_DIR])
    assert issues == []
    assert {z.id for z in zones} == ZONE_IDS
    for zone in zones:
        assert len(zone.checkpoints) >= 2
        assert {lane.direction for c in zone.checkpoints for lane in c.lanes} == {"I", "E"}
        assert len(zone.fence.segments) >= 4
        for cp in zone.checkpoints:
            for lane in cp.lanes:
                assert len(lane.of_type(IoBoardConfig)) == 1
                assert lane.of_type(WeighbridgeConfig)
    lines = {lane.line for z in zones for c in z.checkpoints for lane in c.lanes}
    assert lines == {"first", "second"}


def test_check_command_passes_on_shipped_configs():
    result = runner.invoke(app, ["config", "check", "firmware_configs/"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok") == 4


def _broken(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    assert old in GOOD
    path = tmp_path / "zone.yaml"
    path.write_text(GOOD.replace(old, new, count), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        (
            "pulse_ms: 700",
            "pulse_msec: 700",
            "checkpoints[gate-1].lanes[in-1].devices[io].pulse_msec",
            "unknown key",
        ),
        ("protocol: toledo", "protocol: toledoo", "devices[weighbridge].protocol", "'yaohua'"),
        ("baudrate: 57600", "baudrate: 57601", "devices[eplate].serial.baudrate", "57601"),
        ("type: weighbridge", "type: scale", "devices[weighbridge]", "unknown type 'scale'"),
        ("direction: I", "direction: X", "lanes[in-1].direction", "'I' or 'E'"),
        ("framing: 7E1", "framing: 9Z1", "serial.framing", "pattern"),
    ],
)
def test_broken_file_names_file_line_and_key(tmp_path, old, new, key, expected):
    path = _broken(tmp_path, old, new)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert str(path) in first and key in first and expected in first, first
    # the reported line really is where the bad key sits
    line_no = int(first.split(f"{path}:")[1].split(":")[0])
    assert new.split(":")[0].strip() in path.read_text().splitlines()[line_no - 1] or key.endswith("]")


def test_missing_required_key_and_cross_field_rules():
    zone, issues = validate_text(GOOD.replace("  - id: plate-cam\n", "  - id: weighbridge\n", 1), "x.yaml")
    assert zone is None
    assert any("unique" in i.message for i in issues)
    zone, issues = validate_text(GOOD.replace("site_category: '31'\n", ""), "x.yaml")
    assert [i.path for i in issues] == ["site_category"] and "missing" in issues[0].message


def test_invalid_yaml_and_wrong_top_level_are_clear(tmp_path):
    assert "not valid YAML" in str(validate_text("a: [1, 2\n", "f.yaml")[1][0])
    assert "expected a mapping" in str(validate_text("- 1\n- 2\n", "f.yaml")[1][0])
    with pytest.raises(ConfigError) as exc:
        load_zone(tmp_path / "nope.yaml")
    assert "no such file" in str(exc.value)


def test_duplicate_zone_ids_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    _, issues = check_files([tmp_path])
    assert len(issues) == 1 and "also used by" in issues[0].message


def test_every_field_is_described_and_unknown_keys_are_forbidden():
    schema = zone_json_schema()

    def walk(node):
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                if name not in ("type", "kind", "schema_version") and "$ref" not in prop:
                    assert prop.get("description"), f"field {name} has no description"
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_shipped_json_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == zone_json_schema(), "run: efence config schema -o " + str(
        SCHEMA_FILE
    )


def test_show_prints_resolved_defaults():
    result = runner.invoke(app, ["config", "show", "--zone", "yangshan-port", "--format", "json"])
    assert result.exit_code == 0
    zone = Zone.model_validate(json.loads(result.output))
    lane = zone.checkpoints[0].lanes[0]
    assert lane.gate_mode == "single"  # a default filled in
    result = runner.invoke(app, ["config", "show", "--zone", "atlantis"])
    assert result.exit_code == 1


def test_lane_timeouts_and_zone_rules_reach_the_lane_controller(tmp_path):
    """A vision lane needs a longer gather window and zone rules set the weight tolerance: both must arrive
    in the controller's LaneConfig, and a misspelt timeout key is reported with its lane path."""
    from edge_agent.lane_runtime import lane_config

    tuned = GOOD.replace("    devices:\n", "    timeouts: {gather_s: 14}\n    devices:\n", 1)
    tuned += "rules:\n  first_line: {weight_tolerance_min_kg: 800}\n"
    zone, issues = validate_text(tuned, "zone.yaml")
    assert issues == [] and zone is not None
    cp = zone.checkpoints[0]
    first, second = cp.lanes[0], cp.lanes[1]
    assert lane_config(zone, cp, first).timeouts.gather_s == 14.0
    assert lane_config(zone, cp, second).timeouts.gather_s == 8.0  # untouched lanes keep the default
    assert lane_config(zone, cp, second).rules.first_line.weight_tolerance_min_kg == 800.0

    bad = _broken(tmp_path, "    devices:\n", "    timeouts: {gather_sec: 12}\n    devices:\n")
    with pytest.raises(ConfigError) as err:
        load_zone(bad)
    assert f"lanes[{first.id}].timeouts.gather_sec" in str(err.value)
    assert "unknown key" in str(err.value)


def test_check_warns_about_fence_devices_no_agent_reads(tmp_path):
    """Valid but unwatched: a fence camera without `checkpoint` is analysed by nobody. `check` says so
    (exit 0), and stops saying it once the camera is assigned."""
    zone, issues = validate_text(GOOD, "zone.yaml")
    assert zone is not None and not issues
    unwatched = zone.unwatched_fence_devices()
    assert any("camera cam-w-02" in w for w in unwatched)
    result = runner.invoke(app, ["config", "check", "--verbose", str(ZONES_DIR / "waigaoqiao-ftz.yaml")])
    assert result.exit_code == 0
    assert "camera cam-w-02 has no `checkpoint`" in result.output
    cp = zone.checkpoints[0].id
    assigned = GOOD.replace("    - id: cam-w-02\n", f"    - id: cam-w-02\n      checkpoint: {cp}\n", 1)
    zone2, issues2 = validate_text(assigned, "zone.yaml")
    assert zone2 is not None and not issues2
    assert not any("cam-w-02" in w for w in zone2.unwatched_fence_devices())
    assert len(zone2.unwatched_fence_devices()) == len(unwatched) - 1
