"""One hub ingest worker in its own process (for the scale-out test and bench): PostgreSQL or SQLite
store, MQTT 5 shared subscription. `python -m tests.deploy.hub_worker STORE_URL PORT CLIENT_ID [USER]`;
the password comes from EFENCE_MQTT_PASSWORD. Prints `ready` once subscribed; runs until killed."""

from __future__ import annotations

import asyncio
import os
import sys

from central_monitor.ingest import Ingest, IngestConfig
from central_monitor.store import open_store


async def main(store_url: str, port: int, client_id: str, user: str | None) -> None:
    store = open_store(store_url)
    ingest = Ingest(
        store,
        IngestConfig(
            host="127.0.0.1",
            port=port,
            client_id=client_id,
            username=user,
            password=os.environ.get("EFENCE_MQTT_PASSWORD") or None,
            shared_group="efence-hub",
            gap_grace_s=0.5,
            resend_interval_s=1.0,
        ),
    )
    task = asyncio.create_task(ingest.run())
    async with asyncio.timeout(20):
        await ingest.connected.wait()
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    url, port, cid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    asyncio.run(main(url, port, cid, sys.argv[4] if len(sys.argv) > 4 else None))
