"""Weighbridge driver: the pure stability/watchdog logic, then the driver against the simulator through a
real pseudo-terminal and real TCP sockets, with faults, silence, and a simulator killed and restarted."""

import asyncio
import random
import time

import pytest

from edge_agent.codecs import toledo, yaohua
from edge_agent.drivers.registry import create_driver
from edge_agent.drivers.weighbridge import Sample, WeighbridgeDriver, WeighbridgeLogic
from edge_agent.observations import WeightReading
from firmware_configs.devices import WeighbridgeConfig
from simulators.faults import Faults
from simulators.weighbridge import WeighbridgeSimulator


def config(port: str = "/dev/null", protocol: str = "toledo", **kw) -> WeighbridgeConfig:
    fields = dict(
        id="wb",
        type="weighbridge",
        serial={"port": port, "baudrate": 9600, "framing": kw.pop("framing", "8N1")},
        protocol=protocol,
        stable_window_s=0.5,
        stable_tolerance_kg=20,
        signal_lost_s=1.0,
        reconnect_max_s=0.5,
        poll_interval_ms=100,
    )
    fields.update(kw)
    return WeighbridgeConfig(**fields)


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def fast_sim(
    cfg: WeighbridgeConfig, faults: Faults | None = None, **kw
) -> tuple[WeighbridgeSimulator, set[float]]:
    """A standalone simulator with a short truck cycle, and the set of true gross weights it drives on."""
    sim = WeighbridgeSimulator(cfg, faults=faults, **kw)
    sim.use_fast_truck_stream(gap_s=0.2)
    grosses: set[float] = {0.0}
    sim.scene.on_arrival.append(lambda vehicle, _t: grosses.add(vehicle.gross_kg))
    return sim, grosses


# ----------------------------------------------------------------------------- pure logic
def test_stable_needs_a_covered_window_within_tolerance():
    logic = WeighbridgeLogic(config())
    readings = [logic.on_sample(Sample(30_000 + (i % 2) * 10, motion=False), i * 0.1) for i in range(8)]
    assert [r.stable for r in readings] == [False] * 5 + [True] * 3  # stable once 0.5 s is covered
    assert not logic.on_sample(Sample(30_050, motion=False), 0.8).stable  # spread 50 > 20 kg
    assert not logic.on_sample(Sample(30_000, motion=True), 0.9).stable  # the indicator's motion flag vetoes
    assert not logic.on_sample(Sample(30_000, motion=False), 1.0).stable  # ...and restarts the window


def test_empty_threshold_capacity_and_out_of_range():
    logic = WeighbridgeLogic(config(capacity_kg=60_000, empty_threshold_kg=200))
    assert logic.on_sample(Sample(150, motion=False), 0).empty
    assert not logic.on_sample(Sample(250, motion=False), 0.1).empty
    over = logic.on_sample(Sample(61_000, motion=False), 0.2)
    assert over.gross_kg is None and not over.stable and not over.signal_lost
    oor = logic.on_sample(Sample(30_000, motion=False, out_of_range=True), 0.3)
    assert oor.gross_kg is None and not oor.stable


def test_net_frames_report_gross_and_tare():
    logic = WeighbridgeLogic(config())
    [frame] = toledo.ToledoDecoder().feed(
        bytes.fromhex("02 2A 31 20 30 30 38 30 30 30 30 30 34 33 34 30 0D 23")
    )
    from edge_agent.drivers.weighbridge import sample_of

    reading = logic.on_sample(sample_of(frame), 0)
    assert (reading.gross_kg, reading.tare_kg, reading.net) == (12340.0, 4340.0, True)


def test_signal_lost_watchdog_logic():
    logic = WeighbridgeLogic(config(signal_lost_s=1.0))
    assert logic.on_tick(0.0) is None  # first tick starts the clock
    logic.on_sample(Sample(20_000, motion=False), 0.5)
    assert logic.on_tick(1.4) is None
    lost = logic.on_tick(1.6)
    assert lost == WeightReading("wb", None, False, False, 1.6, signal_lost=True)
    assert logic.on_tick(3.0) is None  # reported once per loss
    back = logic.on_sample(Sample(20_000, motion=False), 3.1)
    assert not back.signal_lost and not back.stable  # the window starts afresh after a loss


def test_registry_creates_the_weighbridge_driver():
    assert isinstance(create_driver(config(), lambda obs: None), WeighbridgeDriver)


# ----------------------------------------------------------------------------- against the simulator
async def _drive(sim: WeighbridgeSimulator, url: str, cfg: WeighbridgeConfig):
    out: list[WeightReading] = []
    driver = WeighbridgeDriver(
        cfg.model_copy(update={"serial": cfg.serial.model_copy(update={"port": url})}), out.append
    )
    return driver, out, asyncio.create_task(driver.run())


async def test_every_protocol_over_tcp_reports_the_true_stable_weight():
    protocols = ["toledo", "yaohua", "yaohua-reversed", "yaohua-command", "sma"]
    runs = []
    for protocol in protocols:
        cfg = config(protocol=protocol)
        sim, grosses = fast_sim(cfg)
        port = await sim.serve_tcp("127.0.0.1", 0)
        driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
        runs.append((protocol, sim, grosses, driver, out, task))
    try:
        for _protocol, _sim, grosses, _driver, out, _task in runs:
            await until(lambda out=out, g=grosses: any(r.stable and r.gross_kg in g - {0.0} for r in out), 15)
    finally:
        for *_, task in runs:
            task.cancel()
        for _, sim, *_ in runs:
            await sim.close()
    for protocol, sim, grosses, driver, out, _task in runs:
        stable = [r.gross_kg for r in out if r.stable]
        assert stable and set(stable) <= grosses, protocol  # a stable weight is always a true one
        assert driver.health.counters["frames_bad"] == 0, protocol
        assert any(r.motion for r in out) == (protocol in ("toledo", "sma")), protocol
        assert sim.frames_sent > 0


async def test_toledo_7e1_with_leading_blanks_through_a_real_pty():
    cfg = config(framing="7E1")
    sim, grosses = fast_sim(cfg, leading_spaces=True)
    path = sim.serve_pty()
    assert path.startswith("/dev/pts/")
    driver, out, task = await _drive(sim, path, cfg)
    try:
        await until(lambda: any(r.stable and r.gross_kg in grosses - {0.0} for r in out), 15)
    finally:
        task.cancel()
        await sim.close()
    assert {r.gross_kg for r in out if r.stable} <= grosses
    assert driver.health.counters["frames_bad"] <= 1  # at most the partial frame the pty held on open


async def test_yaohua_through_a_real_pty():
    cfg = config(protocol="yaohua")
    sim, grosses = fast_sim(cfg)
    driver, out, task = await _drive(sim, sim.serve_pty(), cfg)
    try:
        await until(lambda: any(r.stable and r.gross_kg in grosses - {0.0} for r in out), 15)
    finally:
        task.cancel()
        await sim.close()


async def test_corrupted_frames_are_counted_and_never_make_a_false_stable_weight():
    cfg = config(failures_before_down=50)
    faults = Faults(noise=0.05, bitflip=0.003, bad_checksum=0.05, seed=7)
    sim, grosses = fast_sim(cfg, faults, rate_hz=50)
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: driver.health.counters["frames_bad"] >= 5, 10)
        await until(lambda: any(r.stable and r.gross_kg in grosses - {0.0} for r in out), 15)
    finally:
        task.cancel()
        await sim.close()
    assert faults.stats["bad_checksum"] > 0 and faults.stats["noise"] > 0
    assert {r.gross_kg for r in out if r.stable} <= grosses
    assert driver.health.observed == "up"


async def test_never_settling_weight_is_never_stable():
    cfg = config()
    sim, _ = fast_sim(cfg, Faults(never_settle=True))
    sim.truck_stream.gap_s = 0.1
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: any(r.gross_kg and r.gross_kg > 10_000 for r in out), 10)
        await asyncio.sleep(2.0)  # well past settling time and the 0.5 s window
    finally:
        task.cancel()
        await sim.close()
    assert not any(r.stable and r.gross_kg and r.gross_kg > 1000 for r in out)


@pytest.mark.parametrize("protocol", ["toledo", "sma"])  # streamed, and polled (requests go unanswered)
async def test_signal_lost_when_the_indicator_goes_quiet_and_back_when_it_talks_again(protocol):
    cfg = config(protocol=protocol, signal_lost_s=0.6)
    sim, _ = fast_sim(cfg, Faults(silence_after_s=0.8, silence_for_s=1.5))
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: any(r.signal_lost for r in out), 5)
        lost = next(r for r in out if r.signal_lost)
        assert lost.gross_kg is None and not lost.stable
        assert driver.health.last_error.startswith("signal lost")
        assert driver.connected  # the port stayed open all along
        await until(lambda: out[-1].gross_kg is not None and not out[-1].signal_lost, 5)
    finally:
        task.cancel()
        await sim.close()
    assert driver.health.counters["reconnects"] == 0


async def test_garbage_only_line_is_signal_lost_not_a_weight():
    async def noise(reader, writer):
        rng = random.Random(1)
        while not writer.is_closing():
            writer.write(bytes(rng.randrange(256) for _ in range(64)))
            await asyncio.sleep(0.02)

    server = await asyncio.start_server(noise, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out: list[WeightReading] = []
    driver = WeighbridgeDriver(config(f"socket://127.0.0.1:{port}", signal_lost_s=0.5), out.append)
    task = asyncio.create_task(driver.run())
    try:
        await until(lambda: any(r.signal_lost for r in out), 5)
    finally:
        task.cancel()
        server.close()
    assert not any(r.stable for r in out)
    assert driver.health.counters["frames_bad"] > 0
    assert driver.health.observed == "down"


async def test_reconnects_after_the_simulator_is_killed_and_restarted():
    cfg = config()
    sim, _ = fast_sim(cfg)
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: driver.health.counters["frames_ok"] > 3)
        await sim.close()  # the indicator (or its serial server) dies
        await until(lambda: any(r.signal_lost for r in out), 5)
        await until(lambda: driver.health.counters["reconnects"] >= 2, 5)  # refused connects are retried
        ok_before = driver.health.counters["frames_ok"]
        sim2, _ = fast_sim(cfg)
        await sim2.serve_tcp("127.0.0.1", port)
        try:
            await until(lambda: driver.health.counters["frames_ok"] > ok_before + 3, 10)
            assert driver.health.observed == "up" and driver.connected
            assert out[-1].gross_kg is not None
        finally:
            await sim2.close()
    finally:
        task.cancel()
        await sim.close()


async def test_driver_survives_its_pty_vanishing():
    """A pty vanishes with its simulator: the driver sees the line fail and keeps retrying, never crashes."""
    cfg = config()
    sim, _ = fast_sim(cfg)
    path = sim.serve_pty()
    driver, out, task = await _drive(sim, path, cfg)
    try:
        await until(lambda: driver.health.counters["frames_ok"] > 3)
        await sim.close()
        await until(lambda: any(r.signal_lost for r in out), 5)
        await until(lambda: driver.health.counters["reconnects"] >= 1, 5)
        assert not task.done()
    finally:
        task.cancel()


def test_bad_frames_are_logged_with_the_device_id_but_rate_limited(caplog: pytest.LogCaptureFixture):
    driver = WeighbridgeDriver(config(failures_before_down=100), lambda obs: None)
    decoder = toledo.ToledoDecoder()
    good = toledo.encode(toledo.ToledoFrame(displayed=12340))
    spoiled = good[:-1] + bytes((good[-1] ^ 1,))
    with caplog.at_level("WARNING"):
        driver.feed(spoiled * 200, 1.0, decoder)
    assert driver.health.counters["frames_bad"] == 200
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 5
    assert all("device wb" in line and "bad checksum" in line for line in lines)


async def test_serial_server_dropping_the_connection_is_survived():
    cfg = config()
    sim, grosses = fast_sim(cfg, Faults(disconnect_every_s=0.7))
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: driver.health.counters["reconnects"] >= 2, 8)
        ok = driver.health.counters["frames_ok"]
        await until(lambda: driver.health.counters["frames_ok"] > ok + 3, 5)
    finally:
        task.cancel()
        await sim.close()
    assert sim.sessions >= 3
    assert any(r.signal_lost for r in out)  # every drop withdraws the weight
    assert {r.gross_kg for r in out if r.stable} <= grosses


async def test_drifting_zero_shows_in_the_empty_bridge_weight():
    cfg = config(empty_threshold_kg=200)
    sim, _ = fast_sim(cfg, Faults(drift_kg_per_h=360_000))  # 100 kg/s: a grossly drifting zero
    sim.truck_stream.gap_s = 60  # keep the bridge empty
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: any(r.gross_kg and r.gross_kg > 250 for r in out), 8)
    finally:
        task.cancel()
        await sim.close()
    empties = [r for r in out if r.gross_kg is not None]
    assert (
        empties[0].empty and not empties[-1].empty
    )  # past the threshold the bridge no longer counts as empty


def test_command_mode_ignores_answers_from_another_indicator_address():
    out: list[WeightReading] = []
    driver = WeighbridgeDriver(config(protocol="yaohua-command", address=2), out.append)
    decoder = yaohua.YaohuaResponseDecoder()
    driver.feed(yaohua.encode_response(yaohua.YaohuaResponse(1, "B", 9990.0)), 1.0, decoder)
    assert out == []
    driver.feed(yaohua.encode_response(yaohua.YaohuaResponse(2, "B", 12340.0)), 1.1, decoder)
    assert [r.gross_kg for r in out] == [12340.0]


async def test_driver_stops_promptly_when_cancelled_under_a_full_rate_stream():
    """asyncio.wait_for on Python 3.11 can swallow a cancellation that races with a completed read;
    a driver that ignored its cancel would keep an agent from shutting down."""
    cfg = config(serial={"port": "x", "baudrate": 115200})
    sim = WeighbridgeSimulator(cfg, rate_hz=640)
    port = await sim.serve_tcp("127.0.0.1", 0)
    try:
        for _ in range(8):
            driver, _out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
            await until(lambda driver=driver: driver.health.counters["frames_ok"] > 30, 5)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            assert task in done and task.cancelled()
    finally:
        await sim.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["toledo", "yaohua", "yaohua-reversed", "sma"])
async def test_soak_under_heavy_faults_never_reports_a_false_stable_weight(protocol):
    """30 s of trucks through a very bad line (select with `-m slow`)."""
    cfg = config(protocol=protocol, failures_before_down=100)
    faults = Faults(noise=0.1, bitflip=0.002, bad_checksum=0.1, seed=11)
    sim, grosses = fast_sim(cfg, faults, rate_hz=50)
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await asyncio.sleep(30)
    finally:
        task.cancel()
        await sim.close()
    stable = {r.gross_kg for r in out if r.stable}
    assert stable - {0.0}
    # unchecked formats (and a rare double flip under XOR) can shift a reading within the tolerance,
    # never further: anything further breaks the window's spread
    assert all(any(abs(g - t) <= cfg.stable_tolerance_kg for t in grosses) for g in stable)


# ----------------------------------------------------------------------------- re-gather (Retrigger)
@pytest.mark.parametrize(
    ("protocol", "pty"), [("yaohua-command", True), ("sma", False)]
)  # Yaohua command mode `B` through a real pty, SMA `W` over a real socket
async def test_regather_asks_a_polled_indicator_at_once_and_restarts_the_window(protocol, pty):
    cfg = config(protocol=protocol, poll_interval_ms=5000, signal_lost_s=20.0)  # next poll is 5 s away
    sim, _ = fast_sim(cfg)
    url = sim.serve_pty() if pty else f"socket://127.0.0.1:{await sim.serve_tcp('127.0.0.1', 0)}"
    driver, out, task = await _drive(sim, url, cfg)
    try:
        await until(lambda: sim.frames_sent == 1 and len(out) == 1, 5)  # the poll at connect
        asked_at = time.monotonic()
        assert await driver.regather() is None
        await until(lambda: sim.frames_sent == 2 and len(out) == 2, 2)  # answered long before the poll
        assert time.monotonic() - asked_at < 2.0
        assert not out[-1].stable  # a fresh window: one reading is not yet a stable weight
    finally:
        task.cancel()
        await sim.close()


async def test_regather_on_a_streaming_indicator_says_it_reports_on_its_own():
    cfg = config(protocol="toledo")
    sim, _ = fast_sim(cfg)
    port = await sim.serve_tcp("127.0.0.1", 0)
    driver, out, task = await _drive(sim, f"socket://127.0.0.1:{port}", cfg)
    try:
        await until(lambda: len(out) >= 3, 5)
        reason = await driver.regather()
        n = len(out)
        await until(lambda: len(out) > n, 2)  # the next frame is reported at once, heartbeat or not
    finally:
        task.cancel()
        await sim.close()
    assert reason is not None and "stream on their own" in reason
