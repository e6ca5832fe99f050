"""The edge's evidence uploader against the real hub app (in-process ASGI): upload, idempotence after a
crash, retry while the hub is unreachable, and files the hub must refuse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from central_monitor.api import create_app
from central_monitor.auth import Role
from central_monitor.store import SqliteStore
from edge_agent.evidence_upload import JOURNAL, EvidenceUploader
from simulators.cameras import make_jpeg

KEY = b"k" * 32


@pytest.fixture
def zone() -> str:
    return f"ez{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hub_store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "hub" / "hub.db")
    s.create_user("viewer", "viewer-password", Role.VIEWER)
    yield s
    s.close()


class FlakyTransport(httpx.AsyncBaseTransport):
    """The hub app behind a link that is down for the first `down` requests."""

    def __init__(self, app: object, down: int = 0) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.down = down
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.down:
            raise httpx.ConnectError("hub unreachable", request=request)
        return await self.inner.handle_async_request(request)


def write_evidence(
    edir: Path, agent_id: str, lane: str, seq: int, device: str, name: str, data: bytes
) -> Path:
    """The file `LaneRuntime._keep_evidence` writes for a transaction of `lane`."""
    tid = f"{agent_id}/{lane}-20261128T083000-{seq:06d}"
    folder = edir / "20261128" / lane
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tid.replace('/', '_')}-{device}-{name}"
    path.write_bytes(data)
    old = time.time() - 60  # settled: a scan may take it
    os.utime(path, (old, old))
    return path


@contextlib.asynccontextmanager
async def uploading(up: EvidenceUploader) -> AsyncIterator[EvidenceUploader]:
    task = asyncio.create_task(up.run())
    try:
        yield up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_scan_uploads_and_links_to_the_transaction_and_a_restart_is_harmless(
    tmp_path: Path, hub_store: SqliteStore, zone: str
) -> None:
    agent_id = f"{zone}/port_gate"
    app = create_app(hub_store, key_for=lambda a: KEY if a == agent_id else None)
    edir = tmp_path / "edge" / "evidence"
    jpeg = make_jpeg("沪A12345")
    write_evidence(edir, agent_id, "in_1", 7, "cam-plate", "plate.jpg", jpeg)
    write_evidence(edir, agent_id, "in_1", 7, "cam-plate", "picture.jpg", make_jpeg("wide"))
    write_evidence(edir, agent_id, "in_1", 8, "cam-box", "picture.jpg", jpeg)
    (edir / "20261128" / "in_1" / "untracked-1764318600000-cam-plate-plate.jpg").write_bytes(jpeg)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        up = EvidenceUploader(agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=0.1)
        async with uploading(up):
            await until(lambda: up.uploaded == 3 and up.backlog == 0)
        tid = f"{agent_id}/in_1-20261128T083000-000007"
        rows = hub_store.list_evidence(tid)
        assert sorted(r["name"] for r in rows) == ["cam-plate-picture.jpg", "cam-plate-plate.jpg"]
        assert {r["agent_id"] for r in rows} == {agent_id}
        plate = next(r for r in rows if r["name"] == "cam-plate-plate.jpg")
        login = await client.post("/api/login", json={"username": "viewer", "password": "viewer-password"})
        client.cookies.clear()  # an agent has no session cookie
        got = await client.get(
            f"/api/evidence/{plate['id']}", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert got.status_code == 200 and got.content == jpeg and got.headers["content-type"] == "image/jpeg"

        # the agent crashed after the hub stored the images but before its journal was written:
        # everything goes again, the hub answers "already have it", nothing is duplicated
        (edir / JOURNAL).unlink()
        again = EvidenceUploader(agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=0.1)
        async with uploading(again):
            await until(lambda: again.uploaded == 3)
        assert len(hub_store.list_evidence(tid)) == 2
        assert (
            hub_store.list_evidence(f"{agent_id}/in_1-20261128T083000-000008")[0]["sha256"] == plate["sha256"]
        )

        # with its journal, a restarted uploader sends nothing at all
        quiet = EvidenceUploader(agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=0.1)
        async with uploading(quiet):
            await asyncio.sleep(0.4)
        assert quiet.uploaded == 0 and quiet.failures == 0


async def test_hub_unreachable_is_retried_with_backoff_and_notify_sends_a_fresh_file(
    tmp_path: Path, hub_store: SqliteStore, zone: str
) -> None:
    agent_id = f"{zone}/cp1"
    app = create_app(hub_store, key_for=lambda a: KEY if a == agent_id else None)
    edir = tmp_path / "evidence"
    transport = FlakyTransport(app, down=3)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        # a long scan interval: only notify() can have brought the file in
        up = EvidenceUploader(
            agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=3600, settle_s=3600
        )
        async with uploading(up):
            await asyncio.sleep(0.05)  # the first (empty) scan is done
            path = write_evidence(edir, agent_id, "L1", 1, "cam1", "plate.jpg", make_jpeg("沪B1"))
            started = time.monotonic()
            up.notify(path)
            await until(lambda: up.uploaded == 1, timeout=15)
            waited = time.monotonic() - started
        assert up.failures == 3 and transport.requests == 4
        assert waited >= 0.5 + 1.0 + 2.0 - 0.1  # back-off doubled between the failed attempts
        assert len(hub_store.list_evidence(f"{agent_id}/L1-20261128T083000-000001")) == 1


async def test_the_hub_refuses_what_is_not_an_image_and_the_edge_gives_up_on_it(
    tmp_path: Path, hub_store: SqliteStore, zone: str
) -> None:
    agent_id = f"{zone}/cp1"
    app = create_app(hub_store, key_for=lambda a: KEY if a == agent_id else None)
    edir = tmp_path / "evidence"
    write_evidence(edir, agent_id, "L1", 1, "cam1", "plate.jpg", b"<html><script>alert(1)</script>")
    write_evidence(edir, agent_id, "L1", 2, "cam1", "plate.jpg", make_jpeg("ok"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        up = EvidenceUploader(agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=0.1)
        async with uploading(up):
            await until(lambda: up.uploaded == 1 and up.rejected == 1)
    journal = (edir / JOURNAL).read_text()
    assert "rejected 415" in journal and "stored" in journal
    assert hub_store.list_evidence(f"{agent_id}/L1-20261128T083000-000001") == []


async def test_a_file_that_cannot_be_read_does_not_hold_up_the_others(
    tmp_path: Path, hub_store: SqliteStore, zone: str
) -> None:
    agent_id = f"{zone}/cp1"
    app = create_app(hub_store, key_for=lambda a: KEY if a == agent_id else None)
    edir = tmp_path / "evidence"
    good = write_evidence(edir, agent_id, "L1", 2, "cam1", "plate.jpg", make_jpeg("ok"))
    # named like evidence but unreadable as a file (a directory): reading it raises on every attempt
    broken = good.parent / good.name.replace("000002", "000001")
    broken.mkdir()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        up = EvidenceUploader(agent_id, KEY, "http://hub", edir, client=client, scan_interval_s=3600)
        up.notify(broken)
        up.notify(good)
        async with uploading(up):
            await until(lambda: up.uploaded == 1)
            assert up.failures >= 1 and up.backlog == 1  # still there, to be retried with back-off
    assert len(hub_store.list_evidence(f"{agent_id}/L1-20261128T083000-000002")) == 1
