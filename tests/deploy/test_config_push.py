"""Agent-side config push (efence.config_push): staged, validated, applied, confirmed or rolled back,
never re-applied when unchanged, and safe against a crash at any step."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from efence.config_push import ConfigSlot, sha256

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


# ---------------------------------------------------------------------- any sequence of events
VARIANTS = [
    V1,
    V2,
    V2.replace("(v2)", "(v3)"),
    "id: [unclosed\n",
    V1.replace("- id: port-gate", "- id: x", 1),
]
VALID = {sha256(t) for t in VARIANTS[:3]}


class SlotMachine(RuleBasedStateMachine):
    """Offers, restarts, confirmations and time in any order: the slot always runs a valid config,
    applies only content it does not run, and never re-applies content it rolled back."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="efence-slot-"))
        self.clock = Clock()
        self.slot = ConfigSlot(self.tmp, "yangshan-port", "port-gate", confirm_within_s=60, clock=self.clock)
        self.slot.install_initial(V1, "v0")
        self.rolled_back: set[str] = set()

    @rule(i=st.integers(0, len(VARIANTS) - 1))
    def offer(self, i: int) -> None:
        text = VARIANTS[i]
        before = self.slot.state
        res = self.slot.offer(text, f"v{i}")
        digest = sha256(text)
        if res.outcome == "applied":
            assert digest in VALID and digest != before.running_sha256 and before.pending is None
            assert digest not in self.rolled_back
        if digest == before.running_sha256:
            assert res.outcome == "unchanged" and not res.restart
        if digest not in VALID:
            assert res.outcome in ("invalid", "unchanged", "rejected") and not res.restart

    @rule()
    def restart(self) -> None:
        pending = self.slot.state.pending
        if self.slot.on_start().outcome == "rolled_back":
            assert pending is not None
            self.rolled_back.add(pending.sha256)

    @rule()
    def confirm(self) -> None:
        self.slot.confirm()

    @rule(dt=st.floats(0, 120))
    def time_passes(self, dt: float) -> None:
        self.clock.t += dt
        pending = self.slot.state.pending
        if self.slot.check_deadline().outcome == "rolled_back":
            assert pending is not None
            self.rolled_back.add(pending.sha256)

    @invariant()
    def runs_a_valid_config_it_knows(self) -> None:
        st_ = self.slot.state
        active = sha256(self.slot.active.read_bytes())
        assert active in VALID
        assert active == (st_.pending.sha256 if st_.pending else st_.running_sha256)
        assert not self.slot.staged.exists()

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


TestSlotMachine = SlotMachine.TestCase
TestSlotMachine.settings = settings(max_examples=15, stateful_step_count=12, deadline=None)
