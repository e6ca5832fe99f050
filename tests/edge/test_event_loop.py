"""Blocking work stays off the event loop: building a status message reads no SQLite, and evidence images
are written by a worker thread (STYLE.md "Async"). Each test would fail if the blocking call came back."""

import asyncio
import logging
import secrets
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.lane_runtime import LaneRuntime
from edge_agent.outbox import Outbox
from edge_agent.record_cache import RecordCache
from firmware_configs.loader import load_zone
from tests.edge.site import ZONE_FILE

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


def _forbid_blocking_reads(*dbs) -> None:
    def refuse(_fn):
        raise AssertionError("a blocking SQLite call from the event loop")

    for db in dbs:
        db.call = refuse


async def test_status_message_is_built_without_touching_sqlite(tmp_path: Path) -> None:
    zone = load_zone(ZONE_FILE)
    agent = EdgeAgent(
        zone, zone.checkpoints[0], secrets.token_bytes(32), data_dir=tmp_path, broker_url="mqtt://127.0.0.1:1"
    )
    try:
        for i in range(3):
            await agent.outbox.append("lane_state", {"i": i})
        _forbid_blocking_reads(agent.outbox.db, agent.records.db)
        before = agent.status(True)  # the last will and heartbeat path: memory only
        assert before.outbox_depth == 0
        await agent.refresh_status()  # the reads, on the SQLite threads
        after = agent.status(True)
        assert (after.outbox_depth, after.last_seq) == (3, 3)
        assert [lane.lane for lane in after.lanes] == [lane.id for lane in zone.checkpoints[0].lanes]
    finally:
        agent.outbox.close()
        agent.records.close()


@pytest.fixture
def lane_runtime(tmp_path: Path):
    zone = load_zone(ZONE_FILE)
    cp = zone.checkpoints[0]
    outbox, records = Outbox(tmp_path / "o.sqlite", "z/c"), RecordCache(tmp_path / "r.sqlite", zone.id)
    seen: list[Path] = []
    runtime = LaneRuntime(
        zone=zone,
        checkpoint=cp,
        lane=cp.lanes[0],
        outbox=outbox,
        records=records,
        is_online=lambda: True,
        records_fresh_at=lambda: None,
        drivers={},
        evidence_dir=tmp_path / "evidence",
        on_evidence=seen.append,
    )
    yield runtime, seen
    outbox.close()
    records.close()


async def test_evidence_images_are_written_off_the_loop_and_announced_when_complete(lane_runtime) -> None:
    runtime, seen = lane_runtime
    runtime._keep_evidence("plate-cam", {"front.jpg": JPEG, "plate.jpg": JPEG[:40] + b"\xff\xd9"})
    # the loop has not yielded since: a write on the loop would already have left the files behind
    assert not list(runtime.evidence_dir.rglob("*.jpg")) and seen == []
    await asyncio.gather(*runtime._evidence_writes)
    files = sorted(runtime.evidence_dir.rglob("*.jpg"))
    assert len(files) == 2 and sorted(seen) == files
    assert files[0].read_bytes()[:2] == b"\xff\xd8" and not list(runtime.evidence_dir.rglob("*.part"))


async def test_a_failing_evidence_disk_is_logged_and_the_lane_carries_on(lane_runtime, caplog) -> None:
    runtime, seen = lane_runtime
    runtime.evidence_dir.write_text("not a directory")  # every mkdir below it fails
    caplog.set_level(logging.ERROR, "efence.lane")
    runtime._keep_evidence("plate-cam", {"front.jpg": JPEG})
    await asyncio.gather(*runtime._evidence_writes)
    assert seen == [] and "evidence images not written" in caplog.text
