"""The hub's store: events, transactions, agents, devices, alarms, records and their log, users, audit.

`HubStore` is the interface the rest of the hub uses; `SqliteStore` implements it on SQLite (WAL,
synchronous=FULL: an acknowledged event survives a power cut). `open_store("sqlite:///path")`
selects the implementation by URL (`postgresql://…` → `store_pg.PgStore`, the same rules).

Every method is synchronous and guarded by one lock; async callers go through `acall`, which runs
the method on the store's own single thread, so disk work never blocks the event loop.

One module per concern, each a mixin over `base.StoreBase`: `events` (ingest, seq tracking, status),
`alarms`, `queries` (monitoring reads), `records` (imports and the replication log), `users` (users,
tokens, audit log, commands), `evidence`, `retention`, `config_push`; `sqlite` puts them together.
"""

from .base import (
    ALL_ZONES,
    CROSSED_STATUSES,
    DEFAULT_TRANSFER_MIN,
    FTZ_ZONES,
    GENESIS,
    PERIMETER,
    SCHEMA,
    ZONE_WIDE_KINDS,
    AuthUser,
    HubStore,
    ImportResult,
    IngestResult,
    StatusResult,
    StoreBase,
    new_instance_id,
)
from .retention import PRUNE_RULES, SHORT_EVENT_TYPES, PruneBatch, PruneRule
from .sqlite import SqliteStore, open_store

__all__ = [
    "ALL_ZONES",
    "CROSSED_STATUSES",
    "DEFAULT_TRANSFER_MIN",
    "FTZ_ZONES",
    "GENESIS",
    "PERIMETER",
    "PRUNE_RULES",
    "SCHEMA",
    "SHORT_EVENT_TYPES",
    "ZONE_WIDE_KINDS",
    "AuthUser",
    "HubStore",
    "ImportResult",
    "IngestResult",
    "PruneBatch",
    "PruneRule",
    "SqliteStore",
    "StatusResult",
    "StoreBase",
    "new_instance_id",
    "open_store",
]
