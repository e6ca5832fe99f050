"""Fixtures of the hub tests (helpers live in `hubkit`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from central_monitor.store import SqliteStore


@pytest.fixture
def zone() -> str:
    """A topic-safe zone name no other test uses, so tests sharing the broker never cross."""
    return f"hz{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "hub.db")
    yield s
    s.close()
