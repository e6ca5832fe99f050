"""`efence sim`: run the simulators as a field engineer would — as a subprocess — and talk to them through
the printed pty path or TCP port with the same codecs the drivers use."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import serial
from typer.testing import CliRunner

from edge_agent.codecs import led_text, toledo, yaohua
from edge_agent.codecs.common import FrameError
from efence.commands.sim import app

EFENCE = str(Path(sys.executable).parent / "efence")
ZONE = Path(__file__).resolve().parents[2] / "firmware_configs" / "zones" / "yangshan-port.yaml"


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [EFENCE, "sim", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 15.0) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no line matching {pattern!r} in output:\n{''.join(seen)}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def test_weighbridge_on_a_pty_streams_toledo_frames():
    proc = spawn("device", "weighbridge", "--protocol", "toledo", "--pty", "--fast")
    try:
        path = wait_line(proc, r"(/dev/pts/\d+)").group(1)
        decoder = toledo.ToledoDecoder()
        frames: list = []
        with serial.Serial(path, 9600, timeout=0.2) as port:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and not any(
                f.motion and f.weight > 0 for f in frames if not isinstance(f, FrameError)
            ):
                frames += decoder.feed(port.read(256))
    finally:
        assert stop(proc) == 0  # Ctrl-C is a clean stop
    good = [f for f in frames if isinstance(f, toledo.ToledoFrame)]
    assert len(good) >= 5
    assert len(frames) - len(good) <= 1  # at most the partial frame the pty held on open
    assert any(f.motion and f.weight > 0 for f in good)  # the truck drives on


def test_yaohua_command_mode_over_tcp_answers_requests():
    proc = spawn("device", "weighbridge", "--protocol", "yaohua-command", "--tcp", "0", "--address", "3")
    try:
        port = int(wait_line(proc, r"socket://127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(yaohua.encode_request(3, "A") + yaohua.encode_request(3, "B"))
            decoder, answers = yaohua.YaohuaResponseDecoder(), []
            while len(answers) < 2:
                answers += decoder.feed(sock.recv(64))
    finally:
        stop(proc)
    assert answers[0] == yaohua.YaohuaResponse(3, "A")
    assert answers[1].command == "B" and answers[1].weight is not None


def test_led_board_prints_what_it_is_shown():
    proc = spawn("device", "led", "--tcp", "0")
    try:
        port = int(wait_line(proc, r"socket://127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(led_text.encode(led_text.LedText(1, "沪A12345 请通行", "G")))
            assert sock.recv(1) == b"\x06"
        wait_line(proc, "沪A12345 请通行")
    finally:
        stop(proc)


def test_lane_serves_every_device_of_the_lane():
    proc = spawn("lane", str(ZONE), "port-gate/in-1", "--fast", "--open-barrier")
    try:
        table = ""
        deadline = time.monotonic() + 15
        while "Ctrl-C to stop" not in table and time.monotonic() < deadline:
            table += proc.stdout.readline()
        port = int(
            re.search(
                r"weighbridge\s*│\s*weighbridge\s*│\s*toledo\s*│\s*socket://127\.0\.0\.1:(\d+)", table
            ).group(1)
        )
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            decoder, frames = toledo.ToledoDecoder(), []
            while len([f for f in frames if isinstance(f, toledo.ToledoFrame)]) < 3:
                frames += decoder.feed(sock.recv(256))
    finally:
        stop(proc)
    for device in ("eplate", "driver-card", "eseal", "led"):
        assert re.search(rf"{device}\s*│.*socket://127\.0\.0\.1:\d+", table), device
    for device in (
        "io",
        "plate-cam",
        "box-front",
        "box-back",
    ):  # simulated by the other modules, or listed as not
        assert re.search(rf"│ {device}\s*│", table), device


def test_help_lists_protocols_and_fault_flags():
    runner = CliRunner()
    result = runner.invoke(app, ["device", "weighbridge", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in (
        "--pty",
        "--tcp",
        "--noise",
        "--bitflip",
        "--bad-checksum",
        "--never-settle",
        "--drift",
        "--silence-after",
        "yaohua-reversed",
    ):
        assert flag in result.output, flag
    result = runner.invoke(app, ["lane", "no-such-zone", "x/y"])
    assert result.exit_code != 0


def test_unknown_lane_names_the_known_lanes():
    result = CliRunner().invoke(app, ["lane", str(ZONE), "port-gate/nope"], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert "port-gate/in-1" in result.output
