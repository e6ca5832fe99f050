"""The HTTP API without a broker: authentication on every route, roles, login, records, agent auth."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

from central_monitor.api import create_app
from central_monitor.auth import Role
from central_monitor.store import SqliteStore
from efence.contract import RecordKind, agent_http_auth

from .hubkit import tx_event

KEY = b"s" * 32
PUBLIC = {("GET", "/api/health"), ("POST", "/api/login")}


@pytest.fixture
async def app_client(store: SqliteStore, zone: str) -> AsyncIterator[httpx.AsyncClient]:
    for role in Role:
        store.create_user(role.label, f"{role.label}-password", role)
    app = create_app(store, key_for=lambda aid: KEY if aid == f"{zone}/cp1" else None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        yield client


async def token(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/api/login", json={"username": role, "password": f"{role}-password"})
    assert r.status_code == 200, r.text
    client.cookies.clear()  # test the bearer token, not the cookie
    return {"Authorization": f"Bearer {r.json()['token']}"}


def all_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    app = client._transport.app  # type: ignore[attr-defined]
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            out += [(m, path) for m in route.methods]
    return out


async def test_every_route_but_health_and_login_needs_a_token(app_client: httpx.AsyncClient) -> None:
    routes = all_routes(app_client)
    assert len(routes) > 20
    for method, path in routes:
        r = await app_client.request(method, path, json={})
        if (method, path) in PUBLIC:
            assert r.status_code != 401, (method, path)
        elif path in ("/", "/login.html"):
            assert path == "/login.html" or (r.status_code == 303 and r.headers["location"] == "/login.html")
        else:
            assert r.status_code == 401, (method, path, r.status_code)
    for path in ("/api/openapi.json", "/api/docs", "/api/stream", "/api/nonexistent"):
        assert (await app_client.get(path)).status_code == 401, path
    assert (
        await app_client.get("/api/transactions", headers={"Authorization": "Bearer forged"})
    ).status_code == 401
    assert (await app_client.get("/static/style.css")).status_code == 200  # login page assets are public


async def test_login_wrong_password_and_cookie(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/api/login", json={"username": "admin", "password": "nope"})
    assert r.status_code == 401
    r = await app_client.post("/api/login", json={"username": "viewer", "password": "viewer-password"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert (await app_client.get("/api/me")).json() == {"username": "viewer", "role": "viewer"}  # via cookie
    await app_client.post("/api/logout")
    app_client.cookies.clear()
    assert (
        await app_client.get("/api/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
    ).status_code == 401


async def test_openapi_is_published_to_users(app_client: httpx.AsyncClient) -> None:
    h = await token(app_client, "viewer")
    spec = (await app_client.get("/api/openapi.json", headers=h)).json()
    assert "/api/transactions" in spec["paths"] and "/api/records/{zone}" in spec["paths"]


async def test_roles_are_enforced(app_client: httpx.AsyncClient, store: SqliteStore, zone: str) -> None:
    from central_monitor.alarms import AlarmSpec

    alarm = store.raise_alarm(AlarmSpec(kind="tailgating", subject="x", message="two trucks", zone=zone))
    assert alarm is not None
    viewer, operator, supervisor, admin = [
        await token(app_client, r) for r in ("viewer", "operator", "supervisor", "admin")
    ]
    ack = f"/api/alarms/{alarm['id']}/ack"
    imp = {"zone": zone, "kind": "vehicle", "records": [{"vehicleNo": "沪A1"}]}
    user = {"username": "newbie", "password": "long-enough-1", "role": "viewer"}
    assert (await app_client.get("/api/alarms", headers=viewer)).status_code == 200
    assert (await app_client.post(ack, json={"note": "x"}, headers=viewer)).status_code == 403
    assert (await app_client.post("/api/records/import", json=imp, headers=operator)).status_code == 403
    assert (await app_client.get("/api/audit", headers=operator)).status_code == 403
    assert (await app_client.post("/api/users", json=user, headers=supervisor)).status_code == 403
    r = await app_client.post(ack, json={"note": "seen on camera 3"}, headers=operator)
    assert r.status_code == 200 and r.json()["acked_by"] == "operator"
    assert (await app_client.post("/api/records/import", json=imp, headers=supervisor)).status_code == 200
    assert (await app_client.get("/api/audit/verify", headers=supervisor)).json() == {
        "ok": True,
        "problems": [],
    }
    assert (await app_client.post("/api/users", json=user, headers=admin)).status_code == 200
    audit = (await app_client.get("/api/audit", headers=admin)).json()
    assert {"alarm.ack", "records.import"} <= {a["action"] for a in audit}


async def test_transactions_filters(app_client: httpx.AsyncClient, store: SqliteStore, zone: str) -> None:
    agent = f"{zone}/cp1"
    store.ingest([
        tx_event(agent, 1, "t1", plate="沪A11111", pass_no="P1", containers=["TGHU1234567", None]),
        tx_event(agent, 2, "t2", verdict="REFUSE", reasons=["F1"], plate="苏B22222"),
        tx_event(f"{zone}x/cp1", 1, "t3", plate="沪A33333"),
    ])  # fmt: skip
    h = await token(app_client, "viewer")

    async def ids(**params: object) -> list[str]:
        r = await app_client.get("/api/transactions", params=params, headers=h)
        assert r.status_code == 200
        return [t["transaction_id"] for t in r.json()]

    assert await ids() == ["t3", "t2", "t1"]  # newest first
    assert await ids(zone=zone) == ["t2", "t1"]
    assert await ids(plate="A11") == ["t1"]
    assert await ids(**{"pass": "P1"}) == ["t1"]
    assert await ids(container="TGHU1234567") == ["t1"]
    assert await ids(verdict="REFUSE") == ["t2"]
    assert await ids(limit=1) == ["t3"]
    assert await ids(since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z") == []
    tx = (await app_client.get("/api/transactions", params={"plate": "苏B"}, headers=h)).json()[0]
    assert {"zone", "checkpoint", "lane", "plate", "decision", "verdict", "reasons", "decided_at"} <= set(tx)
    assert tx["decision"] == "REFUSE" and tx["reasons"] == ["F1"]
    detail = (await app_client.get("/api/transactions/t1", headers=h)).json()
    assert [e["type"] for e in detail["events"]] == ["transaction"]


async def test_agent_signature_reads_only_its_own_zone_records(
    app_client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    store.import_records(zone, RecordKind.VEHICLE, [{"vehicleNo": "沪A1"}], "t")
    path = f"/api/records/{zone}"
    good = agent_http_auth(f"{zone}/cp1", KEY, "GET", path)
    r = await app_client.get(path, params={"after": 0}, headers={"Authorization": good})
    assert r.status_code == 200 and r.json()["snapshot"] is True and r.json()["head_seq"] == 1
    wrong_key = agent_http_auth(f"{zone}/cp1", b"x" * 32, "GET", path)
    assert (await app_client.get(path, headers={"Authorization": wrong_key})).status_code == 401
    other = agent_http_auth(f"{zone}/cp1", KEY, "GET", "/api/records/elsewhere")
    assert (
        await app_client.get("/api/records/elsewhere", headers={"Authorization": other})
    ).status_code == 401
    not_records = agent_http_auth(f"{zone}/cp1", KEY, "GET", "/api/transactions")
    assert (
        await app_client.get("/api/transactions", headers={"Authorization": not_records})
    ).status_code == 401


async def test_import_api_reports_row_errors_and_imports_nothing(
    app_client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    h = await token(app_client, "supervisor")
    content = '[{"etpsNo": "E1", "creditGrade": "AA"}, {"etpsNo": "E2", "creditGrade": "dishonest"}, {"etpsNm": "x"}]'
    r = await app_client.post("/api/records/import", json={"zone": zone, "content": content}, headers=h)
    assert r.status_code == 422
    errs = r.json()["errors"]
    assert [(e["row"], e["field"]) for e in errs] == [(1, "creditGrade"), (3, "etpsNo"), (3, "creditGrade")]
    assert "advanced_certified" in errs[0]["expected"]
    assert store.records_page(zone, 0).deltas == []


async def test_inspection_override_needs_a_second_officer(
    app_client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    store.ingest([tx_event(f"{zone}/cp1", 1, "t-i2", verdict="HOLD_INSPECTION", reasons=["I2"])])
    op = await token(app_client, "operator")
    body = {"agent_id": f"{zone}/cp1", "lane": "L1", "action": "manual_release", "transaction_id": "t-i2"}
    r = await app_client.post("/api/commands", json=body, headers=op)
    assert r.status_code == 409 and "second officer" in r.json()["detail"]
    same = {**body, "second_username": "operator", "second_password": "operator-password"}
    assert (await app_client.post("/api/commands", json=same, headers=op)).status_code == 403
    viewer = {**body, "second_username": "viewer", "second_password": "viewer-password"}
    assert (await app_client.post("/api/commands", json=viewer, headers=op)).status_code == 403
    wrong = {**body, "second_username": "supervisor", "second_password": "guess"}
    assert (await app_client.post("/api/commands", json=wrong, headers=op)).status_code == 403
    good = {**body, "second_username": "supervisor", "second_password": "supervisor-password"}
    r = await app_client.post("/api/commands", json=good, headers=op)
    assert r.status_code == 503 and "broker" in r.json()["detail"]  # passed the check; this app has no broker


async def test_prometheus_metrics_need_a_token(
    app_client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    store.ingest([tx_event(f"{zone}/cp1", 1, "t1")])
    assert (await app_client.get("/metrics")).status_code == 401
    body = (await app_client.get("/metrics", headers=await token(app_client, "viewer"))).text
    assert 'efence_hub_rows{table="events"} 1.0' in body
    assert "efence_hub_store_ok 1.0" in body


async def test_map_serves_the_four_zones_geometry_from_the_firmware_configs(
    app_client: httpx.AsyncClient,
) -> None:
    r = await app_client.get("/api/map", headers=await token(app_client, "viewer"))
    assert r.status_code == 200
    body = r.json()
    assert body["issues"] == []
    zones = {z["id"]: z for z in body["zones"]}
    assert set(zones) == {"waigaoqiao-ftz", "waigaoqiao-park", "yangshan-port", "pudong-airport"}
    for z in zones.values():
        assert len(z["segments"]) == 8
        ring = [p for s in z["segments"] for p in s["path"]]
        assert all(len(s["path"]) >= 2 for s in z["segments"])
        assert ring[0] == ring[-1]  # the segments close the perimeter
        lats, lons = [p[0] for p in ring], [p[1] for p in ring]
        assert min(lats) > 30.5 and max(lats) < 31.5 and min(lons) > 121.4 and max(lons) < 122.2  # Shanghai
        for c in z["checkpoints"]:  # every gate is on (within ~150 m of) its zone's fence
            lat, lon = c["location"]
            assert min(abs(lat - a) + abs(lon - b) for a, b in _densify(ring)) < 0.0015, c["agent_id"]
            assert c["lanes"]


def _densify(ring: list[list[float]], step: int = 40) -> list[tuple[float, float]]:
    out = []
    for (a1, b1), (a2, b2) in zip(ring, ring[1:], strict=False):
        out += [(a1 + (a2 - a1) * i / step, b1 + (b2 - b1) * i / step) for i in range(step)]
    return out
