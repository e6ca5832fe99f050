"""`efence demo` as a user runs it: a subprocess on the embedded amqtt broker, stopped with Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from efence.embedded_broker import free_port


def test_efence_demo_runs_on_embedded_broker_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "EFENCE_ADMIN_PASSWORD": "cli-demo-pw", "COLUMNS": "200"}
    env.pop("EFENCE_COMMAND_KEY", None)
    efence = Path(sys.executable).parent / "efence"
    proc = subprocess.Popen(
        [
            str(efence),
            "demo",
            "--port",
            str(port),
            "--zone",
            "yangshan-port",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        token, rows = None, []
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"{base}/api/health", timeout=2).json()
                if health["ok"] and token is None:
                    login = httpx.post(
                        f"{base}/api/login", json={"username": "admin", "password": "cli-demo-pw"}
                    )
                    token = login.json()["token"]
                if token:
                    rows = httpx.get(
                        f"{base}/api/transactions", headers={"Authorization": f"Bearer {token}"}
                    ).json()
                    if rows:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert health["broker"]["connected"] is True and health["store"]["ok"] is True
        assert rows and {r["zone"] for r in rows} == {"yangshan-port"}
    finally:
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
        stopped_in = time.monotonic() - started
    output = proc.stdout.read()
    assert proc.returncode == 0, output[-2000:]
    assert stopped_in < 5.0, f"Ctrl-C took {stopped_in:.1f} s"
    assert re.search(r"password\s+cli-demo-pw", output), "the start-up banner names the admin password"
    assert "demo stopped" in output
