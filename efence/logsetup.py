"""Logging a field engineer can read: time, level, which part of the system, and a plain sentence."""

import logging
import os

from rich.logging import RichHandler


def setup_logging(level: str | None = None, *, rich: bool = True) -> None:
    level = (level or os.environ.get("EFENCE_LOG_LEVEL") or "INFO").upper()
    handler: logging.Handler
    if rich:
        handler = RichHandler(show_path=False, rich_tracebacks=True, markup=False, log_time_format="%H:%M:%S")
        fmt = "%(name)s  %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)-7s %(name)s  %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqtt", "transitions", "pymodbus", "httpx", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
