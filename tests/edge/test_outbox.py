"""The durable outbox: gap-free seq, priority order, pruning only on the hub's ack, telemetry-only shedding."""

import json
import multiprocessing
import os

import pytest

from edge_agent.outbox import Outbox, OutboxFull

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
