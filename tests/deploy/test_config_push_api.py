"""`POST /api/agents/{zone}/{checkpoint}/config` before anything is sent: admins only, every validation
problem listed (file:line, key path), nothing sent without a key or a broker; and the CLI refuses an
invalid file on the laptop already."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from central_monitor.api import create_app
from central_monitor.auth import Role
from central_monitor.store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
ZONE_TEXT = (REPO / "firmware_configs" / "zones" / "yangshan-port.yaml").read_text()
PATH = "/api/agents/yangshan-port/port-gate/config"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(tmp_path / "hub.db")
    for role in Role:
        store.create_user(role.label, f"{role.label}-password", role)
    app = create_app(store, key_for=lambda aid: b"k" * 32 if aid == "yangshan-port/port-gate" else None)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
            yield c
    finally:
        store.close()


async def login(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/api/login", json={"username": role, "password": f"{role}-password"})
    client.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_only_admins_push(client: httpx.AsyncClient) -> None:
    for role in ("viewer", "operator", "supervisor"):
        r = await client.post(PATH, json={"yaml_text": ZONE_TEXT}, headers=await login(client, role))
        assert r.status_code == 403, (role, r.text)
    # an admin's valid push goes as far as the broker: none here, so 503 and nothing recorded as sent
    r = await client.post(PATH, json={"yaml_text": ZONE_TEXT}, headers=await login(client, "admin"))
    assert r.status_code == 503 and "broker" in r.text
    r = await client.post(
        "/api/agents/yangshan-port/no-key-gate/config",
        json={"yaml_text": ZONE_TEXT},
        headers=await login(client, "admin"),
    )
    assert r.status_code == 422  # the zone has no such checkpoint: refused before looking for a key


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        (ZONE_TEXT.replace("site_category: '34'", "site_category: '99'"), "site_category", 8),
        (ZONE_TEXT.replace("id: yangshan-port", "id: pudong-airport", 1), "id", None),
        ("id: [unclosed\n", "", 2),  # the parser notices at the end of the stream
    ],
    ids=["schema", "other-zone", "yaml"],
)
async def test_invalid_config_is_refused_with_every_problem_named(
    client: httpx.AsyncClient, text: str, path: str, line: int | None
) -> None:
    r = await client.post(
        PATH, json={"yaml_text": text, "filename": "zone.yaml"}, headers=await login(client, "admin")
    )
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]["errors"]
    assert any(e["path"] == path and e["line"] == line and e["file"] == "zone.yaml" for e in errors), errors
    audit = (await client.get("/api/audit", headers=await login(client, "admin"))).json()
    assert not [a for a in audit if a["action"] == "config.push"]  # nothing was pushed, nothing audited


def test_cli_refuses_an_invalid_file_before_contacting_the_hub(tmp_path: Path) -> None:
    bad = tmp_path / "zone.yaml"
    bad.write_text(ZONE_TEXT.replace("site_category: '34'", "site_category: '99'"))
    res = subprocess.run(
        [sys.executable, "-c", "from efence.cli import main; main()", "hub", "push-config"]
        + ["yangshan-port/port-gate", str(bad), "--hub", "http://127.0.0.1:9", "--password-file", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert res.returncode == 1
    assert f"{bad}:8: site_category:" in res.stderr and "nothing pushed" in res.stderr, res.stderr
