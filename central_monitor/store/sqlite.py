"""`SqliteStore`: the concern mixins on one SQLite connection, and `open_store` selecting a store by URL."""

from __future__ import annotations

from .alarms import AlarmsMixin
from .base import HubStore
from .config_push import ConfigPushMixin
from .events import EventsMixin
from .evidence import EvidenceMixin
from .queries import QueriesMixin
from .records import RecordsMixin
from .retention import RetentionMixin
from .users import UsersMixin


class SqliteStore(
    EventsMixin,
    AlarmsMixin,
    QueriesMixin,
    RecordsMixin,
    EvidenceMixin,
    UsersMixin,
    RetentionMixin,
    ConfigPushMixin,
):
    """SQLite implementation of `HubStore` (one connection, one dedicated thread for async callers).

    Each concern lives in its own module (events.py, alarms.py, …) as a mixin over `StoreBase`; they
    call each other through `self` (an event's alarm goes through `_ring`, a crossing through
    `_put_record`), all inside the one write transaction the caller opened.
    """


def open_store(url: str) -> HubStore:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or a bare path; other schemes are not built yet."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from ..store_pg import PgStore  # psycopg 3: the `postgres` extra

        return PgStore(url)
    if "://" in url:
        raise ValueError(f"unsupported store URL {url!r}: only sqlite:///PATH is implemented")
    return SqliteStore(url)
