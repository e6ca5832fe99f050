"""Mosquitto configuration the project ships, and a helper that runs a private broker (tests, bench).

The broker's defaults (`max_queued_messages 1000`, `max_inflight_messages 20`) silently dropped 93 % of
a fast QoS 1 stream to a slow subscriber on these machines (DESIGN.md): a config that carries an agent's
events must lift both limits, and this one does.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NO_DROP_SETTINGS = """\
# never silently drop an agent's messages (Mosquitto's defaults do, under load)
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
"""


def local_config(port: int, *, persistence_dir: Path | None = None) -> str:
    """A loopback-only, anonymous broker config for the demo and tests (deployments add TLS, users, ACL)."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", NO_DROP_SETTINGS]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    else:
        lines.append("persistence false")
    return "\n".join(lines) + "\n"


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout_s} s")


@contextmanager
def private_mosquitto(port: int | None = None, *, persistence: bool = False) -> Iterator[str]:
    """Run `mosquitto` with `local_config` on a free port; yields `mqtt://127.0.0.1:PORT`."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="efence-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(local_config(port, persistence_dir=Path(tmp) if persistence else None))
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(port, 10)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
