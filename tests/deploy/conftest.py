"""A real Mosquitto started with the configuration `efence mqtt config` generates (TLS + users + ACL)."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from central_monitor.store import HubStore, SqliteStore
from central_monitor.store_pg import PgStore
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
from efence import mosquitto
from efence.contract import AgentStatus
from efence.ports import free_port

__all__ = ["free_port"]  # the deploy tests import it from here

AGENTS = [("z1", "gate-1"), ("z1", "gate-2"), ("z2", "gate-1")]


@dataclass
class SiteBroker:
    plain_port: int  # loopback plain listener (same users + ACL)
    tls_port: int
    ca: Path
    other_ca: Path  # a CA the broker's certificate is NOT signed by
    secrets: Path
    conf: Path

    def password(self, user: str) -> str:
        return mosquitto.secret_path(self.secrets, user).read_text().strip()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = mosquitto.make_ca(d)
    crt, key = mosquitto.make_cert(
        d, "broker", ca=ca, common_name="localhost", dns=["localhost"], ips=["127.0.0.1"]
    )
    other = mosquitto.make_ca(d / "other", name="not the site CA")
    client_crt, client_key = mosquitto.make_cert(d, "client", ca=ca, common_name="efence-hub", client=True)
    return {
        "ca": ca[0],
        "ca_key": ca[1],
        "crt": crt,
        "key": key,
        "other_ca": other[0],
        "client_crt": client_crt,
        "client_key": client_key,
    }


@pytest.fixture(scope="session")
def site_broker(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[SiteBroker]:
    d = tmp_path_factory.mktemp("broker")
    plain, tls = free_port(), free_port()
    gen = mosquitto.write_broker_config(
        d / "etc",
        agents=AGENTS,
        secrets_dir=d / "secrets",
        tls=mosquitto.TlsFiles(pki["ca"], pki["crt"], pki["key"]),
        port=tls,
        bind="127.0.0.1",
        insecure_loopback_port=plain,
        persistence_dir=d / "data",
        log_dest="stderr",
        run_as_user=getpass.getuser(),
    )
    with mosquitto.run_mosquitto(gen.conf, [plain, tls]):
        yield SiteBroker(plain, tls, pki["ca"], pki["other_ca"], d / "secrets", gen.conf)


# ------------------------------------------------------------------ PostgreSQL (CI starts it; no skip)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test run, dropped afterwards. Fails (never skips) without PostgreSQL."""
    import uuid

    import psycopg

    name = f"efence_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A fresh schema in the run's database: `postgresql://…?options=-csearch_path%3D<schema>`."""
    import uuid

    import psycopg

    schema = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def make_pg_database() -> Iterator:
    """Factory of whole fresh databases (for pg_dump / pg_restore), all dropped afterwards."""
    import uuid

    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"efence_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    yield make
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def uplink_z1_gate1(tmp_path: Path, url: str) -> Uplink:
    """The real agent uplink of checkpoint z1/gate-1 (the site broker's ACL user) on `url`."""

    async def ignore(*_a: object) -> None:
        return None

    return Uplink(
        zone="z1",
        checkpoint="gate-1",
        broker_url=url,
        outbox=Outbox(tmp_path / "outbox.db", "z1/gate-1"),
        status=lambda online: AgentStatus(
            agent_id="z1/gate-1", zone="z1", checkpoint="gate-1", online=online
        ),
        on_command=ignore,
        on_record_delta=ignore,
    )


@pytest.fixture
def zone() -> str:
    """A topic-safe zone name no other test uses."""
    return f"hz{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    """The hub store a deploy test runs on: PostgreSQL (a fresh database), or the store named by an
    indirect parametrisation — `@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)`."""
    kind = getattr(request, "param", "postgresql")
    s: HubStore = (
        SqliteStore(tmp_path / "hub.db") if kind == "sqlite" else PgStore(request.getfixturevalue("pg_url"))
    )
    try:
        yield s
    finally:
        s.close()
