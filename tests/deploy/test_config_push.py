"""Agent-side config push (efence.config_push): staged, validated, applied, confirmed or rolled back,
never re-applied when unchanged, and safe against a crash at any step."""

from __future__ import annotations

from pathlib import Path

import pytest

from efence.config_push import ConfigSlot

ZONE_FILE = Path(__file__).resolve().parents[2] / "firmware_configs" / "zones" / "yangshan-port.yaml"
V1 = ZONE_FILE.read_text()
V2 = V1.replace("name: Yangshan Free Trade Port Area\n", "name: Yangshan Free Trade Port Area (v2)\n", 1)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def slot(tmp_path: Path) -> tuple[ConfigSlot, Clock]:
    clock = Clock()
    s = ConfigSlot(tmp_path / "config", "yangshan-port", "port-gate", confirm_within_s=60, clock=clock)
    s.install_initial(V1, "v1")
    return s, clock


def test_texts_differ() -> None:
    assert V1 != V2 and "(v2)" in V2


def test_apply_then_confirm(slot: tuple[ConfigSlot, Clock]) -> None:
    s, _ = slot
    res = s.offer(V2, "v2")
    assert res.outcome == "applied" and res.restart
    assert s.active.read_text() == V2 and s.previous.read_text() == V1
    assert s.running_version() == "v2"  # reported while it is tried
    assert s.on_start().outcome == "nothing_pending"  # the restart into v2
    assert s.confirm().outcome == "confirmed"
    assert s.state.running_version == "v2" and s.state.pending is None


def test_same_config_is_never_re_applied(slot: tuple[ConfigSlot, Clock]) -> None:
    s, _ = slot
    assert s.offer(V1, "v1-again").outcome == "unchanged"
    assert s.offer(V2, "v2").outcome == "applied"
    assert s.offer(V2, "v2").outcome == "unchanged"  # pushed twice while pending
    s.confirm()
    res = s.offer(V2, "v2")
    assert res.outcome == "unchanged" and not res.restart


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("id: [unclosed\n", "not valid YAML"),
        (V1.replace("schema_version: 1", "schema_version: 1\nbogus_key: 1"), "bogus_key"),
        (V1.replace("id: yangshan-port", "id: pudong-airport", 1), "this agent is in 'yangshan-port'"),
        (V1.replace("- id: port-gate", "- id: other-gate", 1), "no checkpoint 'port-gate'"),
    ],
    ids=["yaml", "schema", "other-zone", "other-checkpoint"],
)
def test_invalid_config_is_refused_and_nothing_changes(
    slot: tuple[ConfigSlot, Clock], text: str, why: str
) -> None:
    s, _ = slot
    res = s.offer(text, "bad")
    assert res.outcome == "invalid" and why in res.detail and not res.restart
    assert s.active.read_text() == V1 and not s.staged.exists()
    assert s.state.running_version == "v1" and s.state.pending is None


def test_no_reconnect_before_the_deadline_rolls_back(slot: tuple[ConfigSlot, Clock]) -> None:
    s, clock = slot
    s.offer(V2, "v2")
    s.on_start()
    clock.t += 30
    assert s.check_deadline().outcome == "nothing_pending"
    clock.t += 31
    res = s.check_deadline()
    assert res.outcome == "rolled_back" and res.restart and "v1" in res.detail
    assert s.active.read_text() == V1 and s.state.running_version == "v1"
    # the hub pushing the same bad config again does not loop
    assert s.offer(V2, "v2").outcome == "rejected"


def test_agent_down_past_the_deadline_rolls_back_at_start(slot: tuple[ConfigSlot, Clock]) -> None:
    s, clock = slot
    s.offer(V2, "v2")
    clock.t += 3600  # the agent was dead (or the box off) the whole time
    assert s.on_start().outcome == "rolled_back"
    assert s.active.read_text() == V1


def test_a_crash_loop_with_the_new_config_rolls_back(slot: tuple[ConfigSlot, Clock]) -> None:
    s, _ = slot
    s.offer(V2, "v2")
    outcomes = [s.on_start().outcome for _ in range(4)]
    assert outcomes == ["nothing_pending"] * 3 + ["rolled_back"]
    assert s.active.read_text() == V1


def test_crash_between_intent_and_switch_rolls_back_cleanly(slot: tuple[ConfigSlot, Clock]) -> None:
    s, _ = slot
    s.offer(V2, "v2")
    s.active.write_text(V1)  # as if the power failed after state.json but before the rename
    assert s.on_start().outcome == "rolled_back"
    assert s.active.read_text() == V1 and s.state.running_version == "v1"


def test_a_second_push_while_one_is_tried_is_refused(slot: tuple[ConfigSlot, Clock]) -> None:
    s, _ = slot
    s.offer(V2, "v2")
    v3 = V2.replace("(v2)", "(v3)")
    assert s.offer(v3, "v3").outcome == "rejected"
    s.confirm()
    assert s.offer(v3, "v3").outcome == "applied"
