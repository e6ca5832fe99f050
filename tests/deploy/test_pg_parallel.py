"""Hub workers on one PostgreSQL database commit in parallel, yet each event is stored once, each agent's
seq bookkeeping stays exact and each alarm rings once.

Two `PgStore`s are two workers (two connections). One of them is held *inside* its write transaction
(after its events are inserted, before it commits) at a chosen step; what the other can or cannot
commit meanwhile shows which locks are really taken: with one hub-wide write lock the other worker
could commit nothing at all.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_monitor.store import IngestResult, SqliteStore
from central_monitor.store_pg import PgStore
from efence.contract import AgentStatus, EventEnvelope

HOLD_S = 0.5  # how long a worker held mid-transaction is watched for others getting through
WAIT_S = 20.0


class HeldStore(PgStore):
    """A worker that stops inside its write transaction, the first time it reaches `step`."""

    def __init__(self, url: str, step: str) -> None:
        super().__init__(url)
        self.step = step
        self.inside = threading.Event()
        self.go_on = threading.Event()

    def _hold(self) -> None:
        if not self.inside.is_set():
            self.inside.set()
            assert self.go_on.wait(WAIT_S), "the test never released the held worker"

    def _advance(self, db: Any, agent_id: str, res: IngestResult) -> None:
        super()._advance(db, agent_id, res)
        if self.step == "advance":
            self._hold()

    def _raise(self, db: Any, spec: Any, now: Any) -> Any:
        alarm = super()._raise(db, spec, now)
        if self.step == "raise":
            self._hold()
        return alarm


class Bg:
    """A store call on its own thread (a second worker), with its result or error kept."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def done_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        if self.error is not None:
            raise self.error
        return not self.thread.is_alive()


@pytest.fixture
def stores(pg_url: str) -> Iterator[Callable[..., PgStore]]:
    made: list[PgStore] = []

    def make(step: str | None = None) -> PgStore:
        s = HeldStore(pg_url, step) if step else PgStore(pg_url)
        made.append(s)
        return s

    yield make
    for s in made:
        if isinstance(s, HeldStore):
            s.go_on.set()
        s.close()


@pytest.fixture
def sqlite_and_pg(pg_url: str, tmp_path: Path) -> Iterator[tuple[SqliteStore, PgStore]]:
    lite, pg = SqliteStore(tmp_path / "ref.db"), PgStore(pg_url)
    yield lite, pg
    lite.close()
    pg.close()


def ev(agent: str, seq: int, type_: str = "telemetry", **payload: Any) -> EventEnvelope:
    return EventEnvelope.new(agent_id=agent, seq=seq, type=type_, payload=payload or {"n": seq})


def test_other_agents_commit_while_one_is_held_and_the_same_agent_waits(stores, pg_url: str) -> None:
    a, b = stores("advance"), stores()
    x, y = f"z1/x-{uuid.uuid4().hex[:6]}", f"z1/y-{uuid.uuid4().hex[:6]}"
    xs = [ev(x, s) for s in range(1, 51)]
    held = Bg(a.ingest, xs)
    assert a.inside.wait(WAIT_S)
    # worker A is inside its transaction for agent x (events inserted, not committed) ...
    other = Bg(b.ingest, [ev(y, s) for s in range(1, 51)])
    assert other.done_within(WAIT_S), "worker B could not commit agent y while A held agent x"
    assert other.result.inserted == 50 and other.result.contiguous == {y: 50}
    # ... and the very same events of x, delivered to B as well, wait for A instead of being stored twice
    same = Bg(b.ingest, xs)
    assert not same.done_within(HOLD_S), "the same agent's events were committed beside a held transaction"
    a.go_on.set()
    assert held.done_within(WAIT_S) and same.done_within(WAIT_S)
    assert (held.result.inserted, held.result.duplicates) == (50, 0)
    assert (same.result.inserted, same.result.duplicates) == (0, 50)
    assert same.result.contiguous == {x: 50} == held.result.contiguous
    with psycopg.connect(pg_url) as db:
        counts = db.execute(
            "SELECT agent_id, count(*), count(DISTINCT seq) FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        heads = dict(db.execute("SELECT agent_id, contiguous_seq FROM agent_seq").fetchall())
    assert counts == [(x, 50, 50), (y, 50, 50)] and heads == {x: 50, y: 50}


def test_an_alarm_two_agents_raise_at_once_rings_once(stores, pg_url: str) -> None:
    """A fence segment both checkpoints of a zone watch: its intrusion alarm is one alarm, counted twice."""
    a, b = stores("raise"), stores()
    zone = f"z{uuid.uuid4().hex[:6]}"
    first = EventEnvelope.new(
        agent_id=f"{zone}/gate-1", seq=1, type="perimeter", payload={"kind": "intrusion", "segment": "S7"}
    )
    second = EventEnvelope.new(
        agent_id=f"{zone}/gate-2", seq=1, type="perimeter", payload={"kind": "intrusion", "segment": "S7"}
    )
    held = Bg(a.ingest, [first])
    assert a.inside.wait(WAIT_S)  # A has raised the alarm, not committed it
    other = Bg(b.ingest, [second])
    assert not other.done_within(HOLD_S), "B decided about the alarm without waiting for A's"
    a.go_on.set()
    assert held.done_within(WAIT_S) and other.done_within(WAIT_S)
    rang = [item for r in (held.result, other.result) for item in r.live if item["type"] == "alarm"]
    assert len(rang) == 1
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT kind, count FROM alarms WHERE subject=%s", (f"{zone}/S7",)).fetchall()
    assert rows == [("perimeter_intrusion", 2)]


def test_many_overlapping_deliveries_to_two_workers_store_each_event_once(stores, pg_url: str) -> None:
    """Batches mixing three agents; about half of the events reach both workers (redelivery), in
    different orders. Everything lands once, every agent is contiguous to its last seq, and each
    alarm-raising event rings its alarm once."""
    a, b = stores(), stores()
    rnd = random.Random(8)
    run = uuid.uuid4().hex[:6]
    agents = [f"z{run}/gate-{i}" for i in (1, 2, 3)]
    per_agent = 240
    evs = {
        ag: [
            ev(ag, s, "alarm", alarm="forced_passage", transaction_id=f"t{s}") if s % 60 == 0 else ev(ag, s)
            for s in range(1, per_agent + 1)
        ]
        for ag in agents
    }
    everything = [e for ag in agents for e in evs[ag]]
    to_a, to_b = [], []
    for e in everything:
        r = rnd.random()
        (to_a if r < 0.25 else to_b if r < 0.5 else to_a).append(e)
        if r >= 0.5:
            to_b.append(e)  # delivered to both
    for lst in (to_a, to_b):
        lst.sort(key=lambda e: (e.seq + rnd.randint(0, 30), e.agent_id))  # roughly in order, interleaved

    def work(store: PgStore, lst: list[EventEnvelope]) -> list[IngestResult]:
        return [store.ingest(lst[i : i + 25]) for i in range(0, len(lst), 25)]

    jobs = [Bg(work, a, to_a), Bg(work, b, to_b)]
    assert all(j.done_within(60) for j in jobs)
    results = [r for j in jobs for r in j.result]
    assert sum(r.inserted for r in results) == len(everything)
    assert sum(r.duplicates for r in results) == len(to_a) + len(to_b) - len(everything) > 0
    assert sum(r.conflicts for r in results) == 0
    alarms_rung = [i for r in results for i in r.live if i["type"] == "alarm"]
    assert len(alarms_rung) == len(agents) * (per_agent // 60)
    with psycopg.connect(pg_url) as db:
        counts = db.execute(
            "SELECT agent_id, count(*), count(DISTINCT seq), max(seq) FROM events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        heads = dict(db.execute("SELECT agent_id, contiguous_seq FROM agent_seq").fetchall())
        alarm_rows = db.execute(
            "SELECT dedupe_key, count(*) FROM alarms GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
    assert counts == [(ag, per_agent, per_agent, per_agent) for ag in agents]
    assert heads == {ag: per_agent for ag in agents}
    assert alarm_rows == []


def test_last_will_seen_by_every_worker_rings_agent_offline_once(stores) -> None:
    """Every worker subscribes to agent status directly, so each one applies the same last will."""
    a, b = stores(), stores()
    agent = f"z{uuid.uuid4().hex[:6]}/gate-1"
    zone, _, cp = agent.partition("/")
    online = AgentStatus(agent_id=agent, zone=zone, checkpoint=cp, online=True)
    a.apply_status(online)
    will = AgentStatus(agent_id=agent, zone=zone, checkpoint=cp, online=False)
    jobs = [Bg(s.apply_status, will) for s in (a, b, a, b)]
    assert all(j.done_within(WAIT_S) for j in jobs)
    rang = [i for j in jobs for i in j.result.live if i["type"] == "alarm"]
    assert [i["data"]["kind"] for i in rang] == ["agent_offline"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    deliveries=st.lists(
        st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=15), min_size=1, max_size=6
    ),
    other_agent_too=st.booleans(),
)
def test_batched_bookkeeping_answers_exactly_as_sqlite(
    sqlite_and_pg: tuple[SqliteStore, PgStore], deliveries: list[list[int]], other_agent_too: bool
) -> None:
    """Any order of deliveries (gaps, repeats, redeliveries within and across batches): the PostgreSQL
    write path (batch insert, batched seq heads) acks, counts and reports gaps exactly like SQLite."""
    lite, pg = sqlite_and_pg
    agent, other = f"zp/{uuid.uuid4().hex[:8]}", f"zp/{uuid.uuid4().hex[:8]}"
    made: dict[tuple[str, int], EventEnvelope] = {}

    def event(a: str, seq: int) -> EventEnvelope:  # one id per (agent, seq): a redelivery, not a new event
        return made.setdefault((a, seq), ev(a, seq))

    for seqs in deliveries:
        batch = [event(agent, s) for s in seqs]
        if other_agent_too:
            batch += [event(other, s) for s in reversed(seqs)]
        want, got = lite.ingest(batch), pg.ingest(batch)
        assert (got.inserted, got.duplicates, got.conflicts) == (
            want.inserted,
            want.duplicates,
            want.conflicts,
        )
        assert (got.contiguous, got.max_seq, got.gaps) == (want.contiguous, want.max_seq, want.gaps)
    assert pg.contiguous_seq(agent) == lite.contiguous_seq(agent)
