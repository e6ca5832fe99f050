"""Alarms carry their camera pictures: a perimeter alarm its fence snapshot (by incident id), a gate
exception its lane images (by transaction id), in `GET /api/alarms` and in the live pushes, read with one
evidence query per list; a snapshot uploaded after its alarm is pushed as an `evidence` event."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from central_monitor.api import create_app
from central_monitor.auth import Role
from central_monitor.live import LiveBus
from central_monitor.store import SqliteStore
from efence.contract import EventEnvelope, agent_http_auth
from simulators.cameras import make_jpeg

from .hubkit import tx_event

KEY = b"s" * 32


def intrusion(agent_id: str, seq: int, segment: str, incident_id: str | None) -> EventEnvelope:
    """The `perimeter` event `edge_agent.perimeter_watch` appends (payload trimmed to what matters here)."""
    payload: dict[str, Any] = {
        "kind": "intrusion",
        "source": "video",
        "segment": segment,
        "camera_id": "cam-n",
    }
    if incident_id:
        payload |= {
            "incident_id": incident_id,
            "snapshot": f"{incident_id.replace('/', '_')}-cam-n-snapshot.jpg",
        }
    return EventEnvelope.new(
        agent_id=agent_id, seq=seq, type="perimeter", lane=None, payload=payload, correlation_id=incident_id
    )


@pytest.fixture
def live() -> LiveBus:
    return LiveBus()


@pytest.fixture
async def client(store: SqliteStore, zone: str, live: LiveBus) -> AsyncIterator[httpx.AsyncClient]:
    for role in Role:
        store.create_user(role.label, f"{role.label}-password", role)
    app = create_app(store, live=live, key_for={f"{zone}/cp1": KEY}.get)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        yield c


async def bearer(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/api/login", json={"username": role, "password": f"{role}-password"})
    client.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def upload(
    client: httpx.AsyncClient, agent_id: str, key_id: str, body: bytes, name: str
) -> httpx.Response:
    """What `edge_agent.evidence_upload` sends for one file (the id is an incident or transaction id)."""
    path = f"/api/evidence/{key_id}/{hashlib.sha256(body).hexdigest()}/{name}"
    auth = agent_http_auth(agent_id, KEY, "POST", path)
    return await client.post(
        path, content=body, headers={"Authorization": auth, "Content-Type": "image/jpeg"}
    )


async def test_alarms_list_their_pictures_viewer_reads_them_and_a_late_snapshot_is_pushed(
    client: httpx.AsyncClient, store: SqliteStore, zone: str, live: LiveBus
) -> None:
    agent = f"{zone}/cp1"
    inc_early = f"{agent}/perimeter-20261128T083000-000001"  # snapshot uploaded before the event arrives
    inc_late = f"{agent}/perimeter-20261128T083005-000002"  # snapshot uploaded after the alarm rang
    tid = f"{agent}/L1-20261128T083010-000003"
    early, late, plate = make_jpeg("N-01"), make_jpeg("N-02"), make_jpeg("HU A 12345")

    assert (await upload(client, agent, inc_early, early, "cam-n-snapshot.jpg")).status_code == 201
    res = store.ingest(
        [
            intrusion(agent, 1, "n-01", inc_early),
            intrusion(agent, 2, "n-02", inc_late),
            intrusion(agent, 3, "n-03", None),  # written without a snapshot (the disk was full)
            tx_event(agent, 4, tid, verdict="REFUSE", reasons=["B1"], plate="沪A12345"),
        ]
    )
    pushed = {
        a["data"]["details"].get("segment") or "gate": a["data"] for a in res.live if a["type"] == "alarm"
    }
    # the live `alarm` push already carries what the hub has: the early snapshot, nothing for the others
    assert [e["name"] for e in pushed["n-01"]["evidence"]] == ["cam-n-snapshot.jpg"]
    assert pushed["n-02"]["evidence"] == [] and pushed["n-03"]["evidence"] == []
    assert pushed["gate"]["kind"] == "gate_exception" and pushed["gate"]["evidence"] == []

    async with live.subscribe() as q:
        assert (await upload(client, agent, inc_late, late, "cam-n-snapshot.jpg")).status_code == 201
        assert (await upload(client, agent, tid, plate, "cam-plate-plate.jpg")).status_code == 201
        again = await upload(client, agent, inc_late, late, "cam-n-snapshot.jpg")  # an edge retrying
        assert again.status_code == 200
        items = [q.get_nowait() for _ in range(q.qsize())]
    # one push per new picture, naming the incident/transaction it belongs to; none for the retry
    assert [(i["type"], i["data"]["transaction_id"]) for i in items] == [
        ("evidence", inc_late),
        ("evidence", tid),
    ]
    assert items[0]["data"]["url"] == f"/api/evidence/{items[0]['data']['id']}"

    h = await bearer(client, "viewer")
    r = await client.get("/api/alarms", headers=h)
    assert r.status_code == 200
    by_kind_segment = {(a["kind"], a["details"].get("segment")): a for a in r.json()}
    n01 = by_kind_segment[("perimeter_intrusion", "n-01")]
    n02 = by_kind_segment[("perimeter_intrusion", "n-02")]
    n03 = by_kind_segment[("perimeter_intrusion", "n-03")]
    gate = by_kind_segment[("gate_exception", None)]
    assert n03["evidence"] == []
    assert [(e["transaction_id"], e["name"]) for e in n02["evidence"]] == [(inc_late, "cam-n-snapshot.jpg")]
    assert [e["name"] for e in gate["evidence"]] == ["cam-plate-plate.jpg"]
    # the same shape as the transaction detail's evidence
    detail = (await client.get(f"/api/transactions/{tid}", headers=h)).json()
    assert gate["evidence"] == detail["evidence"]
    # a viewer (the wall screen's role) reads the pictures; without a token nobody does
    for alarm, body in ((n01, early), (n02, late)):
        img = await client.get(alarm["evidence"][0]["url"], headers=h)
        assert img.status_code == 200 and img.content == body and img.headers["content-type"] == "image/jpeg"
    assert (await client.get(n02["evidence"][0]["url"])).status_code == 401
    # the ringing queue and an acknowledgement keep the pictures
    ringing = (await client.get("/api/alarms?ringing=true", headers=h)).json()
    assert {a["id"]: len(a["evidence"]) for a in ringing}[n02["id"]] == 1
    op = await bearer(client, "operator")
    acked = (await client.post(f"/api/alarms/{n02['id']}/ack", json={"note": "patrol"}, headers=op)).json()
    assert acked["ringing"] is False and acked["evidence"] == n02["evidence"]


async def test_one_evidence_query_per_alarm_list(store: SqliteStore, zone: str) -> None:
    """The wall loads up to 150 alarms: their pictures come from one query, not one per alarm."""
    agent = f"{zone}/cp1"
    store.ingest(
        [
            intrusion(agent, i, f"s-{i:02d}", f"{agent}/perimeter-20261128T0900{i:02d}-0000{i:02d}")
            for i in range(1, 21)
        ]
    )
    for i in range(1, 21, 2):
        jpeg = make_jpeg(f"S{i}")
        store.add_evidence(
            f"{agent}/perimeter-20261128T0900{i:02d}-0000{i:02d}",
            agent,
            "snap.jpg",
            hashlib.sha256(jpeg).hexdigest(),
            "image/jpeg",
            len(jpeg),
        )
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        alarms = store.list_alarms()
    finally:
        store._db.set_trace_callback(None)
    assert len(alarms) == 20
    assert sorted(len(a["evidence"]) for a in alarms) == [0] * 10 + [1] * 10
    assert sum("FROM evidence" in s for s in statements) == 1
    assert len(statements) == 2  # the alarms, then their evidence
