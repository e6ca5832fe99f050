"""The durable outbox: gap-free seq, priority order, pruning only on the hub's ack, telemetry-only shedding
by the capacity and the age bound, and the alarm that rings well before either."""

import asyncio
import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edge_agent.outbox import Outbox, OutboxAlarm, OutboxFull, OutboxStats

AGENT = "yangshan-port/port-gate"


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", AGENT, capacity=1000)
    yield box
    box.close()


async def test_seq_is_gap_free_and_survives_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", AGENT)
    seqs = [(await box.append("telemetry", {"i": i})).seq for i in range(5)]
    box.close()
    box = Outbox(tmp_path / "o.sqlite", AGENT)
    seqs.append((await box.append("transaction", {"v": "RELEASE"})).seq)
    box.close()
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_decisions_and_alarms_go_out_before_telemetry(outbox):
    for t in ("telemetry", "telemetry", "alarm", "transaction", "barrier"):
        await outbox.append(t, {})
    order = [json.loads(body)["type"] for _, body in await outbox.due(10, resend_after_s=5)]
    assert order == ["transaction", "alarm", "barrier", "telemetry", "telemetry"]


async def test_rows_leave_only_on_ack_and_unacked_rows_are_resent(outbox):
    for i in range(4):
        await outbox.append("transaction", {"i": i})
    await outbox.mark_sent([1, 2, 3, 4])
    assert await outbox.due(10, resend_after_s=60) == []
    assert await outbox.acknowledge(2) == 2
    stats = await outbox.stats()
    assert (stats.depth, stats.acked_seq, stats.last_seq) == (2, 2, 4)
    assert [s for s, _ in await outbox.due(10, resend_after_s=0)] == [3, 4]  # sent long enough ago: due again
    assert await outbox.request_resend(1, 3) == 1  # 1 and 2 are gone (acked); 3 is still held
    await outbox.requeue_all()
    assert [s for s, _ in await outbox.due(10, resend_after_s=60)] == [3, 4]


async def test_full_outbox_sheds_telemetry_only_and_counts_it(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", AGENT, capacity=1000)
    box.capacity = 3  # below the config minimum, to reach the bound quickly
    for _ in range(3):
        await box.append("telemetry", {})
    with pytest.raises(OutboxFull):
        await box.append("telemetry", {})
    decision = await box.append("transaction", {"v": "HOLD_MANUAL"})
    alarm = await box.append("alarm", {})
    stats = await box.stats()
    box.close()
    assert (decision.seq, alarm.seq) == (4, 5)  # shedding telemetry does not consume a seq
    assert stats.shed == 1 and stats.depth == 5


async def test_a_lane_step_is_committed_in_one_transaction_with_consecutive_seqs(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", AGENT, capacity=1000)
    box.capacity = 2
    await box.append("telemetry", {})
    await box.append("telemetry", {})  # at capacity now
    events = await box.append_many(
        [
            ("transaction", {"v": "RELEASE"}, "t1"),
            ("telemetry", {}, None),
            ("lane_state", {"p": "open"}, "t1"),
        ],
        lane="in-1",
    )
    stats = await box.stats()
    box.close()
    assert [e.seq if e else None for e in events] == [3, None, 4]  # telemetry shed, the rest kept, no gap
    assert events[0].correlation_id == "t1" and events[2].lane == "in-1"
    assert (stats.shed, stats.last_seq, stats.depth) == (1, 4, 4)


def _append_then_die(path: str, n: int) -> None:
    import asyncio

    async def go() -> None:
        box = Outbox(path, AGENT)
        for i in range(n):
            await box.append("transaction", {"i": i})
        os._exit(0)  # no close, no flush: what kill -9 leaves behind

    asyncio.run(go())


async def test_committed_events_survive_a_hard_exit(tmp_path):
    path = str(tmp_path / "o.sqlite")
    proc = multiprocessing.get_context("spawn").Process(target=_append_then_die, args=(path, 25))
    proc.start()
    proc.join(30)
    box = Outbox(path, AGENT)
    rows = await box.due(100, resend_after_s=0)
    box.close()
    assert [s for s, _ in rows] == list(range(1, 26))


# ---------------------------------------------------------------------------- the age bound


class FakeClock:
    """Seconds that tests move by hand: the age bound is hours in production."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_age_bound_tombstones_old_telemetry_only_and_keeps_the_seq(tmp_path):
    clock = FakeClock()
    box = Outbox(tmp_path / "o.sqlite", AGENT, capacity=1000, max_age_s=3600, clock=clock)
    old_tel = await box.append("telemetry", {"reading": 1})
    old_dec = await box.append("transaction", {"verdict": "RELEASE"})
    old_alarm = await box.append("alarm", {"alarm": "loop_stale"})
    clock.t += 3000
    young_tel = await box.append("telemetry", {"reading": 2})
    assert await box.shed_expired() == 0  # nothing past the bound yet
    clock.t += 700  # the first three are 3700 s old, the young one 700 s
    assert await box.shed_expired() == 1
    assert await box.shed_expired() == 0  # a tombstone is not shed (or counted) twice
    rows = {json.loads(b)["seq"]: json.loads(b) for _, b in await box.due(10, resend_after_s=0)}
    stats = await box.stats()
    box.close()
    assert sorted(rows) == [old_tel.seq, old_dec.seq, old_alarm.seq, young_tel.seq]  # no seq gap for the hub
    assert rows[old_tel.seq]["payload"]["shed"] is True and rows[old_tel.seq]["id"] == old_tel.id
    assert rows[old_tel.seq]["type"] == "telemetry"
    assert rows[old_dec.seq]["payload"] == {"verdict": "RELEASE"}
    assert rows[old_alarm.seq]["payload"] == {"alarm": "loop_stale"}
    assert rows[young_tel.seq]["payload"] == {"reading": 2}
    assert (stats.shed_age, stats.shed, stats.depth) == (1, 0, 4)
    assert stats.oldest_age_s == pytest.approx(3700)


async def test_rows_claimed_by_the_publisher_are_never_tombstoned(tmp_path):
    """The publisher claims rows (due + sent in one transaction) before publishing: an old row on its way
    to the hub keeps its body, so the hub never stores an original the agent counted as shed. Unclaimed
    old rows are still shed; a reconnect puts claimed rows back and then they can be."""
    clock = FakeClock()
    box = Outbox(tmp_path / "o.sqlite", AGENT, capacity=1000, max_age_s=3600, clock=clock)
    first = await box.append("telemetry", {"reading": 1})
    second = await box.append("telemetry", {"reading": 2})
    claimed = await box.claim(1, resend_after_s=60)
    assert [s for s, _ in claimed] == [first.seq]
    rest = await box.claim(10, resend_after_s=60)
    assert [s for s, _ in rest] == [second.seq]  # the first is in flight: not handed out twice
    assert await box.due(10, resend_after_s=60) == []
    clock.t += 4000
    assert await box.shed_expired() == 0  # both are in flight
    await box.requeue_all()  # the link broke: nothing is in flight any more
    assert await box.shed_expired() == 2
    box.close()


def test_outbox_alarm_rings_at_the_ratio_of_either_bound_and_clears_under_half_of_it():
    def stats(depth: int, age: float) -> OutboxStats:
        return OutboxStats(
            depth=depth, oldest_age_s=age, last_seq=depth, acked_seq=0, shed=0, capacity=1000, max_age_s=7200
        )

    alarm = OutboxAlarm(0.5)
    assert alarm.check(stats(400, 100)) is None
    rung = alarm.check(stats(10, 3700))  # 51 % of the age bound, 1 % of capacity
    assert rung is not None and rung["alarm"] == "outbox_filling" and rung["severity"] == "critical"
    assert "10 events" in rung["detail"] and "3700 s" in rung["detail"] and "7200 s" in rung["detail"]
    assert alarm.check(stats(600, 3700)) is None  # still ringing: not repeated
    assert alarm.check(stats(300, 1000)) is None  # under the ratio but not under half of it: no flapping
    cleared = alarm.check(stats(100, 1000))
    assert cleared is not None and cleared["alarm"] == "outbox_recovered" and not alarm.raised
    again = alarm.check(stats(500, 0))  # capacity alone rings too
    assert again is not None and again["alarm"] == "outbox_filling"


KEPT = ["transaction", "transaction_closed", "alarm", "command_audit", "perimeter", "barrier", "lane_state"]


class NeverDropsDecisions(RuleBasedStateMachine):
    """Random appends, clock jumps past the age bound, the capacity bound, sends and acks: every event
    that is not telemetry is always either still in the outbox with its payload intact or acknowledged
    by the hub after it was sent. Telemetry is the only thing either bound ever takes."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.clock = FakeClock()
        self.box = Outbox(Path(self.dir.name) / "o.sqlite", AGENT, max_age_s=600, clock=self.clock)
        self.box.capacity = 12  # below the config minimum, so random runs hit it
        self.kept: dict[int, dict] = {}  # seq → payload of every non-telemetry event appended
        self.acked: set[int] = set()
        self.sent: set[int] = set()
        self.refused = 0

    def teardown(self) -> None:
        self.box.close()
        self.dir.cleanup()

    @rule(type_=st.sampled_from([*KEPT, "telemetry", "telemetry"]), n=st.integers(0, 10**6))
    def append(self, type_: str, n: int) -> None:
        try:
            event = asyncio.run(self.box.append(type_, {"n": n}))
        except OutboxFull:
            assert type_ == "telemetry", f"{type_} refused at capacity"
            self.refused += 1
            return
        if type_ != "telemetry":
            self.kept[event.seq] = {"n": n}

    @rule(types=st.lists(st.sampled_from([*KEPT, "telemetry"]), min_size=1, max_size=4))
    def append_step(self, types: list[str]) -> None:
        events = asyncio.run(self.box.append_many([(t, {"step": i}, None) for i, t in enumerate(types)]))
        for i, (t, event) in enumerate(zip(types, events, strict=True)):
            if event is None:
                assert t == "telemetry", f"{t} refused at capacity"
                self.refused += 1
            elif t != "telemetry":
                self.kept[event.seq] = {"step": i}

    @rule(seconds=st.floats(0, 1500))
    def time_passes(self, seconds: float) -> None:
        self.clock.t += seconds

    @rule()
    def shed(self) -> None:
        asyncio.run(self.box.shed_expired())

    @rule(k=st.integers(1, 8))
    def send_some(self, k: int) -> None:
        rows = asyncio.run(self.box.due(k, resend_after_s=30))
        asyncio.run(self.box.mark_sent([s for s, _ in rows]))
        self.sent.update(s for s, _ in rows)

    @rule(data=st.data())
    def hub_acks(self, data: st.DataObject) -> None:
        last = self.box.stats_now().last_seq
        if last:
            upto = data.draw(st.integers(1, last))
            asyncio.run(self.box.acknowledge(upto))
            self.acked.update(s for s in self.sent if s <= upto)

    @rule()
    def reconnect(self) -> None:
        asyncio.run(self.box.requeue_all())
        self.sent.clear()

    @invariant()
    def no_decision_or_alarm_is_lost(self) -> None:
        held = {
            json.loads(b)["seq"]: json.loads(b)
            for (b,) in self.box.db.call(lambda c: c.execute("SELECT body FROM outbox").fetchall())
        }
        for seq, payload in self.kept.items():
            if seq in held:
                assert held[seq]["payload"] == payload, f"seq {seq} altered"
            else:
                assert seq in self.acked, f"{seq} gone without the hub's ack"
        stats = self.box.stats_now()
        assert stats.shed == self.refused


TestNeverDropsDecisions = NeverDropsDecisions.TestCase
TestNeverDropsDecisions.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
