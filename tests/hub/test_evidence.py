"""Evidence images on the hub: who may upload, what is accepted, how they are linked and served."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from central_monitor.api import create_app
from central_monitor.auth import Role
from central_monitor.evidence import MAX_IMAGE_BYTES
from central_monitor.store import SqliteStore
from efence.contract import agent_http_auth
from simulators.cameras import make_jpeg

from .hubkit import tx_event

KEY = b"e" * 32
OTHER_KEY = b"o" * 32


def png_1x1() -> bytes:
    """A valid 1×1 PNG, built by hand so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
async def client(store: SqliteStore, zone: str) -> AsyncIterator[httpx.AsyncClient]:
    for role in Role:
        store.create_user(role.label, f"{role.label}-password", role)
    keys = {f"{zone}/cp1": KEY, f"{zone}/cp2": OTHER_KEY}
    app = create_app(store, key_for=keys.get)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        yield c


async def bearer(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/api/login", json={"username": role, "password": f"{role}-password"})
    client.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def upload(
    client: httpx.AsyncClient,
    agent_id: str,
    key: bytes,
    tid: str,
    body: bytes,
    *,
    name: str = "cam1-plate.jpg",
    ctype: str = "image/jpeg",
    sha: str | None = None,
) -> httpx.Response:
    path = f"/api/evidence/{tid}/{sha or hashlib.sha256(body).hexdigest()}/{name}"
    auth = agent_http_auth(agent_id, key, "POST", path)
    return await client.post(path, content=body, headers={"Authorization": auth, "Content-Type": ctype})


async def test_agent_uploads_viewer_sees_it_on_the_transaction_and_reads_the_bytes(
    client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    agent = f"{zone}/cp1"
    tid = f"{agent}/L1-20261128T083000-000001"
    store.ingest([tx_event(agent, 1, tid, plate="沪A12345")])
    jpeg, png = make_jpeg("A12345"), png_1x1()
    first = await upload(client, agent, KEY, tid, jpeg)
    assert first.status_code == 201 and first.json()["created"] is True
    again = await upload(client, agent, KEY, tid, jpeg)  # an edge that crashed before noting the upload
    assert (
        again.status_code == 200 and again.json()["id"] == first.json()["id"] and not again.json()["created"]
    )
    assert (
        await upload(client, agent, KEY, tid, png, name="cam2-picture.png", ctype="image/png")
    ).status_code == 201
    audit_before = len(store.list_audit())

    h = await bearer(client, "viewer")
    tx = (await client.get(f"/api/transactions/{tid}", headers=h)).json()
    assert [(e["name"], e["content_type"], e["size"]) for e in tx["evidence"]] == [
        ("cam1-plate.jpg", "image/jpeg", len(jpeg)),
        ("cam2-picture.png", "image/png", len(png)),
    ]
    img = await client.get(tx["evidence"][0]["url"], headers=h)
    assert img.status_code == 200 and img.content == jpeg and img.headers["content-type"] == "image/jpeg"
    assert img.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(tx["evidence"][1]["url"], headers=h)).content == png
    assert (await client.get(tx["evidence"][0]["url"])).status_code == 401  # no token, no picture
    assert (await client.get("/api/evidence/999", headers=h)).status_code == 404
    assert len(store.list_audit()) == audit_before  # reads are not audited


async def test_only_the_transactions_own_agent_may_upload(
    client: httpx.AsyncClient, store: SqliteStore, zone: str
) -> None:
    tid = f"{zone}/cp1/L1-20261128T083000-000002"
    jpeg = make_jpeg("X")
    # another checkpoint, even with its own valid key, cannot attach pictures to cp1's transactions
    assert (await upload(client, f"{zone}/cp2", OTHER_KEY, tid, jpeg)).status_code == 401
    # a forged signature
    assert (await upload(client, f"{zone}/cp1", OTHER_KEY, tid, jpeg)).status_code == 401
    # users, even an admin, do not upload evidence
    path = f"/api/evidence/{tid}/{hashlib.sha256(jpeg).hexdigest()}/cam1-plate.jpg"
    h = await bearer(client, "admin")
    r = await client.post(path, content=jpeg, headers={**h, "Content-Type": "image/jpeg"})
    assert r.status_code == 403
    # the agent's signature covers the path: it does not open any other route
    get_auth = agent_http_auth(f"{zone}/cp1", KEY, "GET", "/api/evidence/1")
    assert (await client.get("/api/evidence/1", headers={"Authorization": get_auth})).status_code == 401
    assert store.list_evidence(tid) == []


@pytest.mark.parametrize(
    ("body", "ctype", "sha", "status"),
    [
        (b"<html><script>alert(1)</script></html>", "image/jpeg", None, 415),  # not a JPEG inside
        (make_jpeg("Y"), "text/html", None, 415),  # not an accepted type
        (make_jpeg("Y"), "image/png", None, 415),  # declared PNG, is a JPEG
        (make_jpeg("Y"), "image/jpeg", "0" * 64, 422),  # body does not match the signed hash
        (b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES, "image/jpeg", None, 413),  # too big
    ],
)
async def test_what_is_refused(
    client: httpx.AsyncClient,
    store: SqliteStore,
    zone: str,
    body: bytes,
    ctype: str,
    sha: str | None,
    status: int,
) -> None:
    tid = f"{zone}/cp1/L1-20261128T083000-000003"
    r = await upload(client, f"{zone}/cp1", KEY, tid, body, ctype=ctype, sha=sha)
    assert r.status_code == status, r.text
    assert store.list_evidence(tid) == []
    bad_name = await upload(client, f"{zone}/cp1", KEY, tid, make_jpeg("Z"), name="a b<i>.jpg")
    assert bad_name.status_code == 422
