"""The hub's HTTP API tests, run unchanged on the PostgreSQL store (queries, filters, users, records)."""

from __future__ import annotations

import inspect

from tests.hub import test_api as api_suite
from tests.hub.test_api import app_client  # noqa: F401 - the suite's fixture, on our `store`

for _name, _fn in inspect.getmembers(api_suite, inspect.isfunction):
    if _name.startswith("test_"):
        globals()[f"{_name}__pg"] = _fn


def test_the_api_suite_is_really_running_here() -> None:
    assert len([n for n in globals() if n.endswith("__pg")]) >= 6
