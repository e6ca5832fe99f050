"""Fence sensors end to end: simulated fence controllers (a Modbus IO module with beam contacts, a fibre
controller speaking the line protocol) read by a real edge agent, alarms through the durable outbox over
a private Mosquitto to a real hub. Plus property tests of the debounce and of the line parser.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.fence_signals import ContactTracker, FenceLineError, encode_fence_line, parse_fence_line
from efence.embedded_broker import free_port
from simulators.fence import FenceIoSimulator, FibreControllerSimulator
from tests.vision.edge_harness import AGENT, ZONE, VisionSite

LOCAL = "127.0.0.1"


def _beam(sensor_id: str, port: int, di: int, **kw) -> dict:
    return {
        "id": sensor_id,
        "type": "ir_beam",
        "endpoint": f"modbus://{LOCAL}:{port}/1/{di}",
        "checkpoint": "gate",
        "debounce_ms": 300,
        "poll_interval_ms": 50,
        "stale_after_s": 1.5,
        **kw,
    }


def _fibre(sensor_id: str, port: int, **kw) -> dict:
    return {
        "id": sensor_id,
        "type": "vibration_fibre",
        "endpoint": f"socket://{LOCAL}:{port}",
        "checkpoint": "gate",
        "locate_resolution_m": 5,
        "stale_after_s": 1.5,
        **kw,
    }


def _offline(site: VisionSite, device_id: str) -> list[dict]:
    return [a for a in site.alarms("device_offline") if a["device_id"] == device_id]


def _sensor_events(site: VisionSite, sensor_id: str) -> list[dict]:
    return [e for e in site.events("perimeter") if e.get("sensor") == sensor_id]


async def test_beam_break_alarms_on_its_segment_chatter_does_not_tamper_alarms(tmp_path, mosquitto_url):
    io = FenceIoSimulator(unit=1)
    port = await io.start(LOCAL, 0)
    dead_camera = f"http://{LOCAL}:{free_port()}/snapshot.jpg"  # the linked camera does not answer
    fence = [
        {
            "id": "s-01",
            "name": "North 1",
            "length_m": 100,
            "sensors": [_beam("beam-1", port, 0, tamper_input=1)],
            "cameras": [
                {"id": "cam-1", "stream_url": dead_camera, "checkpoint": "gate", "source": "snapshot"}
            ],
        },
        {"id": "s-02", "name": "North 2", "length_m": 100, "sensors": [_beam("beam-2", port, 2)]},
        # read by another checkpoint's agent: this one must leave it alone
        {
            "id": "s-03",
            "name": "North 3",
            "length_m": 100,
            "sensors": [{**_beam("beam-3", port, 4), "checkpoint": None}],
        },
    ]
    try:
        async with VisionSite(tmp_path, mosquitto_url, fence=fence) as site:
            watch = site.agent.fence_sensors
            assert set(watch.states) == {"beam-1", "beam-2"}
            await site.wait_for(
                lambda: all(s.health.observed == "up" for s in watch.states.values()), 15, "sensors up"
            )
            # chatter on beam-2: pulses of 60 ms, well under the 300 ms debounce → nothing at all
            await io.chatter(2, pulse_s=0.06, gap_s=0.1, count=8)
            # beam-1 broken for 1.5 s → intrusion on s-01, then cleared
            io.break_beam(0, hold_s=1.5)
            alarms = await site.wait_for(
                lambda: site.alarms("perimeter_intrusion"), 20, "a perimeter-intrusion alarm at the hub"
            )
            assert [a["subject"] for a in alarms] == [f"{ZONE}/s-01"]
            details = alarms[0]["details"]
            assert details["sensor"] == "beam-1" and details["segment"] == "s-01"
            assert details["sensor_type"] == "ir_beam" and details["position_m"] is None
            assert details["incident_id"].startswith(f"{AGENT}/perimeter-")
            assert details["camera_id"] == "cam-1" and details["snapshot"] is None  # camera dead, alarm out
            cleared = await site.wait_for(
                lambda: [e for e in _sensor_events(site, "beam-1") if e["kind"] == "cleared"],
                20,
                "the beam's restore at the hub",
            )
            assert cleared[0]["cleared"] == "intrusion"
            assert cleared[0]["incident_id"] == details["incident_id"]

            # tamper contact of beam-1 opens → a tamper alarm on s-01
            io.set_contact(1, closed=False)
            tamper = await site.wait_for(lambda: site.alarms("perimeter_tamper"), 20, "a tamper alarm")
            assert [a["subject"] for a in tamper] == [f"{ZONE}/s-01"]
            assert tamper[0]["details"]["sensor"] == "beam-1"

            await asyncio.sleep(0.5)
            assert _sensor_events(site, "beam-2") == []  # the chatter never became an event
            assert watch.states["beam-2"].health.counters["intrusions"] == 0
            assert [e["kind"] for e in _sensor_events(site, "beam-1")] == ["intrusion", "cleared", "tamper"]
            assert io.requests > 20 and site.agent_alive()
    finally:
        await io.stop()


async def test_io_module_silent_or_killed_is_device_offline_and_back_is_up(tmp_path, mosquitto_url):
    io = FenceIoSimulator(unit=1)
    port = await io.start(LOCAL, 0)
    fence = [{"id": "s-01", "name": "North 1", "length_m": 100, "sensors": [_beam("beam-1", port, 0)]}]
    try:
        async with VisionSite(tmp_path, mosquitto_url, fence=fence) as site:
            state = site.agent.fence_sensors.states["beam-1"]
            await site.wait_for(lambda: state.health.observed == "up", 15, "beam-1 up")
            listed = await site.wait_for(  # in the agent's status: the hub lists the sensor from the start
                lambda: site.rows("SELECT observed FROM devices WHERE device_id='beam-1' AND observed='up'"),
                15,
                "beam-1 listed up among the hub's devices",
            )
            assert listed
            io.silent = True  # first it hangs: every request times out
            await site.wait_for(lambda: _offline(site, "beam-1"), 20, "device_offline for a silent module")
            io.silent = False
            await site.wait_for(lambda: state.health.observed == "up", 20, "beam-1 answering again")
            await site.wait_for(
                lambda: site.rows("SELECT 1 FROM alarms WHERE device_id='beam-1' AND cleared_at IS NOT NULL"),
                20,
                "the first device_offline cleared",
            )
            await io.stop()  # then the module is gone: refused connections from now on
            await site.wait_for(lambda: state.health.observed == "down", 20, "beam-1 down again")
            offline = await site.wait_for(
                lambda: [
                    a
                    for a in _offline(site, "beam-1")
                    if sum(x["count"] for x in _offline(site, "beam-1")) == 2
                ],
                20,
                "a second device_offline occurrence for the beam",
            )
            assert offline[0]["subject"] == f"{AGENT}/beam-1"
            assert offline[0]["details"]["segment"] == "s-01"
            assert offline[0]["details"]["endpoint"] == f"modbus://{LOCAL}:{port}/1/0"
            await asyncio.sleep(2.0)  # still down: one report per outage, not one per failed reconnect
            assert sum(a["count"] for a in _offline(site, "beam-1")) == 2
            assert site.alarms("perimeter_intrusion") == []  # a dead module is not an intrusion
            await io.start(LOCAL, port)
            await site.wait_for(lambda: state.health.observed == "up", 20, "beam-1 back up")
            cleared = await site.wait_for(
                lambda: site.rows(
                    "SELECT cleared_at FROM alarms WHERE kind='device_offline' AND device_id='beam-1' "
                    "AND cleared_at IS NOT NULL AND count = 2"
                ),
                20,
                "the device_offline alarm cleared at the hub",
            )
            assert cleared and site.agent_alive()
    finally:
        await io.stop()


async def test_fibre_intrusion_carries_position_and_snapshot_malformed_lines_counted(
    tmp_path, mosquitto_url, caplog
):
    import cv2
    import numpy as np

    from simulators.cameras import FrameHttpServer

    ok, jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
    assert ok
    camera = FrameHttpServer(lambda: jpeg.tobytes(), fps=2.0)
    camera.start()
    fibre = FibreControllerSimulator(heartbeat_s=0.3)
    port = await fibre.start(LOCAL, 0)
    fence = [
        {
            "id": "n-01",
            "name": "North 1",
            "length_m": 960,
            "sensors": [_fibre("fibre-n-01", port, controller_zone="7")],
            "cameras": [
                {
                    "id": "cam-n-01",
                    "stream_url": camera.url(),
                    "checkpoint": "gate",
                    "source": "snapshot",
                    "analysis_fps": 1.0,
                }
            ],
        },
        {"id": "n-02", "name": "North 2", "length_m": 870, "sensors": [_fibre("fibre-n-02", port)]},
    ]
    caplog.set_level(logging.WARNING, logger="efence.fence")
    try:
        async with VisionSite(tmp_path, mosquitto_url, fence=fence) as site:
            watch = site.agent.fence_sensors
            assert len(watch.controllers) == 1  # both sensors on one controller connection
            await fibre.wait_connected()
            # garbage first: not JSON, a wrong kind, a position that is not a number, a bare list
            for raw in (
                b"ZONE7,ALARM,412\n",
                encode_fence_line("explode", "7"),
                b'{"zone": "7", "kind": "intrusion", "position_m": "far"}\n',
                b"[1, 2]\n",
                b"\xff\xfe\n",
            ):
                await fibre.send_raw(raw)
            await fibre.intrusion("7", position_m=412.5, level=80)  # controller zone 7 = fibre-n-01
            await fibre.intrusion("7", position_m=414.0, level=82)  # same climber: merged
            alarms = await site.wait_for(
                lambda: site.alarms("perimeter_intrusion"), 20, "a located intrusion at the hub"
            )
            assert [a["subject"] for a in alarms] == [f"{ZONE}/n-01"]
            details = alarms[0]["details"]
            assert details["position_m"] == 412.5 and details["sensor"] == "fibre-n-01"
            assert details["level"] == 80 and details["locate_resolution_m"] == 5
            assert details["camera_id"] == "cam-n-01" and details["snapshot"]
            incident = details["incident_id"]
            names = await site.wait_for(
                lambda: site.evidence(incident), 20, "the camera's snapshot at the hub"
            )
            assert names == ["cam-n-01-snapshot.jpg"]

            assert watch.counters["malformed_lines"] == 5
            messages = "\n".join(r.getMessage() for r in caplog.records)
            assert "not JSON" in messages and "expected one of intrusion" in messages
            assert "position_m 'far': expected a number" in messages
            # a tamper on the other sensor, then the all-clear on both
            await fibre.tamper("fibre-n-02")
            await fibre.clear("7")
            await site.wait_for(lambda: site.alarms("perimeter_tamper"), 20, "the fibre tamper alarm")
            assert [a["subject"] for a in site.alarms("perimeter_tamper")] == [f"{ZONE}/n-02"]
            await site.wait_for(
                lambda: [e for e in _sensor_events(site, "fibre-n-01") if e["kind"] == "cleared"],
                20,
                "the fibre's all-clear",
            )
            assert len(_sensor_events(site, "fibre-n-01")) == 2  # one intrusion (merged), one clear
            assert watch.states["fibre-n-01"].health.counters["intrusion_lines_merged"] == 1

            # the controller goes quiet (no line, no heartbeat): both sensors down, the agent carries on
            fibre.quiet = True
            await site.wait_for(lambda: _offline(site, "fibre-n-01"), 20, "fibre-n-01 offline")
            await site.wait_for(lambda: _offline(site, "fibre-n-02"), 20, "fibre-n-02 offline")
            fibre.quiet = False
            await site.wait_for(
                lambda: watch.states["fibre-n-01"].health.observed == "up", 20, "fibre back up"
            )
            assert site.agent_alive()
    finally:
        await fibre.stop()
        camera.stop()


# --------------------------------------------------------------------------- config
def _zone_with(sensor: dict) -> dict:
    from firmware_configs.loader import load_zones

    data = load_zones()[0].model_dump(mode="json")
    data["fence"]["segments"][0]["sensors"] = [sensor]
    return data


@pytest.mark.parametrize(
    ("sensor", "message"),
    [
        (_beam("b", 502, 0, checkpoint="nowhere"), "checkpoint 'nowhere' is not a checkpoint of this zone"),
        ({**_beam("b", 502, 0), "endpoint": "modbus://io:502/1"}, "expected modbus://host:port/unit/input"),
        ({**_beam("b", 502, 0), "endpoint": "socket://io"}, "expected socket://host:port"),
        ({**_beam("b", 502, 0), "endpoint": "fence/n-01/alarm"}, "is an MQTT topic, which no edge agent"),
        (_fibre("f", 5100, tamper_input=1), "tamper_input needs a modbus:// endpoint"),
        (_beam("b", 502, 0, tamper_input=0), "tamper_input 0 is its alarm input"),
        ({**_beam("b", 502, 0), "debounce": 300}, "Extra inputs are not permitted"),
    ],
)
def test_bad_sensor_config_is_refused_naming_the_field(sensor, message):
    from pydantic import ValidationError

    from firmware_configs.schema import Zone

    data = _zone_with(sensor)
    if sensor.get("checkpoint") not in (None, "nowhere"):
        sensor["checkpoint"] = data["checkpoints"][0]["id"]
    with pytest.raises(ValidationError, match=re.escape(message)):
        Zone.model_validate(data)


def test_shipped_sensors_parse_and_no_agent_reads_them_unless_told():
    from firmware_configs.loader import load_zones

    for zone in load_zones():
        sensors = [s for seg in zone.fence.segments for s in seg.sensors]
        assert sensors and all(s.where.kind in {"modbus", "socket"} for s in sensors)
        assert all(zone.fence_sensors_of(cp.id) == [] for cp in zone.checkpoints)


# --------------------------------------------------------------------------- properties
HOLD = 0.3
samples = st.lists(
    st.tuples(st.floats(min_value=0.001, max_value=0.5), st.booleans()), min_size=1, max_size=60
)


def _run(tracker: ContactTracker, steps: list[tuple[float, bool]]):
    t, out, timeline = 0.0, [], []
    for dt, bit in steps:
        t += dt
        timeline.append((t, bit))
        edge = tracker.update(bit, t)
        if edge:
            out.append((t, edge))
    return out, timeline


@given(samples, st.booleans())
@settings(max_examples=300, deadline=None)
def test_edges_alternate_and_each_follows_a_reading_held_for_the_debounce(steps, nc):
    tracker = ContactTracker(HOLD, normally_closed=nc)
    edges, timeline = _run(tracker, steps)
    kinds = [e for _, e in edges]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))  # raise, clear, raise, …
    assert not kinds or kinds[0] == "raised"
    for t, edge in edges:
        alarm = edge == "raised"
        # every sample in the last HOLD seconds up to the edge read the new state
        held = [bit for ts, bit in timeline if t - HOLD <= ts <= t]
        assert all(tracker.alarm_reading(bit) == alarm for bit in held)
        # and the reading started at least HOLD before the edge (it was not a shorter pulse)
        earlier = [ts for ts, bit in timeline if ts <= t and tracker.alarm_reading(bit) != alarm]
        start = next(ts for ts, bit in timeline if ts > max(earlier, default=-1.0))
        assert t - start >= HOLD - 1e-9


@given(st.lists(st.floats(min_value=0.001, max_value=HOLD * 0.95), min_size=1, max_size=30), st.booleans())
@settings(max_examples=200, deadline=None)
def test_chatter_shorter_than_the_debounce_never_raises(pulses, nc):
    """Open pulses each shorter than the debounce, with secure readings between: no event at all."""
    tracker = ContactTracker(HOLD, normally_closed=nc)
    t = 0.0
    secure, alarm = (True, False) if nc else (False, True)
    for width in pulses:
        assert tracker.update(secure, t) is None
        t += 0.01
        for i in range(4):  # sampled inside the pulse
            assert tracker.update(alarm, t + width * i / 4) is None
        t += width + 0.01
    assert not tracker.active


@given(st.floats(min_value=HOLD + 0.1, max_value=5.0), st.booleans())  # + two sample periods
@settings(max_examples=100, deadline=None)
def test_a_held_alarm_is_raised_once_and_cleared_once(duration, nc):
    tracker = ContactTracker(HOLD, normally_closed=nc)
    secure, alarm = (True, False) if nc else (False, True)
    events = []
    t = 0.0
    for bit, length in ((secure, 1.0), (alarm, duration), (secure, 1.0)):
        end = t + length
        while t <= end:
            if edge := tracker.update(bit, t):
                events.append(edge)
            t += 0.05
    assert events == ["raised", "cleared"]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_parse_or_fail_with_a_line_error(raw):
    try:
        line = parse_fence_line(raw)
    except FenceLineError as exc:
        assert str(exc)
    else:
        assert line.kind in {"intrusion", "tamper", "clear", "heartbeat"}


@given(
    st.sampled_from(["intrusion", "tamper", "clear"]),
    st.text(min_size=1, max_size=64),
    st.none() | st.floats(min_value=0, max_value=1e5),
    st.none() | st.floats(min_value=0, max_value=100),
)
def test_encoded_lines_round_trip(kind, zone, position, level):
    line = parse_fence_line(encode_fence_line(kind, zone, position_m=position, level=level).rstrip(b"\n"))
    assert (line.kind, line.zone, line.position_m, line.level) == (kind, zone, position, level)


async def test_an_alarm_caught_by_the_stop_is_still_recorded(tmp_path):
    """The agent stops while a beam alarm waits for its linked camera's snapshot (a camera that accepts
    and never answers): the alarm still goes into the outbox, without the picture, and the stop is quick."""
    import time

    from edge_agent.fence_sensors import FenceSensorWatch
    from edge_agent.outbox import Outbox
    from edge_agent.perimeter_watch import PerimeterWatch
    from firmware_configs.schema import FenceCamera, FenceSegment

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # a camera that takes the request and never answers

    camera_server = await asyncio.start_server(hang, LOCAL, 0)
    cam_port = camera_server.sockets[0].getsockname()[1]
    io = FenceIoSimulator(unit=1)
    port = await io.start(LOCAL, 0)
    segment = FenceSegment.model_validate(
        {"id": "s-01", "name": "North 1", "length_m": 100, "sensors": [_beam("beam-1", port, 0)]}
    )
    camera = FenceCamera.model_validate(
        {"id": "cam-1", "stream_url": f"http://{LOCAL}:{cam_port}/snapshot.jpg", "source": "snapshot"}
    )
    outbox = Outbox(tmp_path / "outbox.sqlite", AGENT)
    try:
        cams = {"s-01": PerimeterWatch(AGENT, segment, camera, outbox, tmp_path / "evidence")}
        watch = FenceSensorWatch(
            AGENT, [(segment, segment.sensors[0])], outbox, tmp_path / "evidence", cameras=cams
        )
        task = asyncio.create_task(watch.run())
        state = watch.states["beam-1"]
        async with asyncio.timeout(15):
            while state.health.observed != "up":
                await asyncio.sleep(0.05)
        io.set_contact(0, closed=False)  # the beam breaks and stays broken
        async with asyncio.timeout(5):
            while "intrusion" not in state.open:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # now waiting for the snapshot that never comes
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2.5
        rows = await outbox.due(100, resend_after_s=0)
        bodies = [body.decode() for _, body in rows]
        assert any('"kind":"intrusion"' in b and '"sensor":"beam-1"' in b for b in bodies), bodies
    finally:
        outbox.close()
        await io.stop()
        camera_server.close()
