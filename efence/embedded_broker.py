"""The in-process MQTT broker (amqtt) the demo starts when no `--broker` is given.

Deployments use Mosquitto or an MQTT cluster; this exists so `make demo` needs nothing installed.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker

from efence.ports import free_port

__all__ = ["embedded_broker", "free_port"]

for noisy in ("amqtt", "transitions"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


@asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run an amqtt broker for the duration of the block; yields its `mqtt://host:port` URL."""
    port = port or free_port(host)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 500}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
    )
    await broker.start()
    try:
        yield f"mqtt://{host}:{port}"
    finally:
        await broker.shutdown()
