"""Failure tests of the edge agent's delivery guarantees (issue 5 §7, DESIGN.md "Delivery guarantees").

Real parts only: a private Mosquitto the test stops and starts, the hub (`HubRunner`, SQLite file),
lane simulators with traffic, and the checkpoint's agent as a separate `efence edge` process that the
test kills with SIGKILL. `tests/edge/site.py` wires them. The default run keeps to a few kills and
outages of ~12 s; `-m slow` runs the long variants (10 kills, one-minute outages).

    .venv/bin/python -m pytest tests/edge/test_failures.py -q            # default, ~2-3 min
    .venv/bin/python -m pytest tests/edge/test_failures.py -q -m slow    # soak variants
"""

import asyncio
import contextlib
import random
import re
import time
from datetime import UTC, datetime, timedelta

import aiomqtt
import httpx
import pytest

from efence.contract import (
    CommandResult,
    OperatorCommand,
    SignedCommand,
    Topics,
    decode,
    sign_command,
)
from tests.edge.site import CheckpointSite

# time the agent may take to notice a loss (broker: TCP close; hub: its retained offline status) and to
# hand a vehicle being gathered a fresh, offline record view (lane clock, 0.5 s)
NOTICE_S = 2.0
BACKLOG = 600  # events left in a 1000-event outbox by the last kill of the kill tests


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["observed_at"]).timestamp()


# ---------------------------------------------------------------------------------------------- kill -9
async def _kill_repeatedly(tmp_path, kills: int, last_down_s: float = 0.0) -> dict:
    rng = random.Random(5)
    async with CheckpointSite(tmp_path, outbox_capacity=1000) as site:
        site.start_traffic()
        await site.wait_for(lambda: site.hub_counts()["transaction"] >= 2, 60, "first decisions at the hub")
        seen_before_kill, in_flight = [], 0
        for _ in range(kills):
            # kill at a random moment of steady traffic, preferably with events committed but not yet
            # acknowledged by the hub (the outbox is polled every 20 ms for up to 8 s to catch one)
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            with contextlib.suppress(AssertionError):
                await site.wait_for(lambda: site.outbox()[1] > 0, 8, "unacknowledged events", poll_s=0.02)
            last, depth = site.outbox()
            in_flight += depth > 0
            site.kill_agent()
            seen_before_kill.append(last)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            if len(seen_before_kill) == kills:
                await asyncio.sleep(last_down_s)  # the last one stays dead a while (hub gap handling)
                # and leaves a backlog beyond the alarm ratio (50 % of 1000): the restarted agent must
                # raise the outbox alarm, then deliver it all
                site.prefill_outbox(BACKLOG)
            await site.start_agent()
        await site.wait_for(
            lambda: site.outbox()[0] > seen_before_kill[-1] + 5, 60, "traffic after the last restart"
        )
        # the Prometheus endpoint of the restarted agent serves its outbox and uplink gauges
        async with httpx.AsyncClient() as client:
            body = ""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "efence_uplink_connected 1.0" not in body:
                body = (await client.get(f"http://127.0.0.1:{site.metrics_port}/metrics", timeout=5)).text
                await asyncio.sleep(0.5)
        assert "efence_outbox_depth" in body and "efence_record_version" in body
        assert "efence_uplink_connected 1.0" in body
        await site.drain()
        summary = site.assert_delivered_exactly_once()
        assert site.kills == kills
        assert summary["decisions"] >= 3
        alarms = [e["payload"] for e in site.hub_events() if e["type"] == "alarm"]
        assert any(a.get("alarm") == "outbox_filling" for a in alarms), "no outbox alarm reached the hub"
        assert re.search(
            r"outbox nearing its bounds .* \d+ events waiting \(\d+% of 1000\)", site.agent_log.read_text()
        ), "outbox alarm not logged"
        summary["kills_with_unacked_events"] = in_flight
        return summary


async def test_kill_9_during_traffic_loses_and_duplicates_nothing(tmp_path):
    summary = await _kill_repeatedly(tmp_path, kills=3)
    print(f"kill -9 x3: {summary}")


@pytest.mark.slow
async def test_kill_9_ten_times_loses_and_duplicates_nothing(tmp_path):
    # the last kill keeps the agent down 30 s: longer than the hub's resend attempts for a gap
    summary = await _kill_repeatedly(tmp_path, kills=10, last_down_s=30.0)
    print(f"kill -9 x10: {summary}")


# ---------------------------------------------------------------------------------------------- outages
async def _outage(site: CheckpointSite, stop, start, min_s: float, what: str) -> tuple[float, float]:
    """Keep `what` down at least `min_s` and until two lanes decided without it (bounded)."""
    down_at = time.time()
    await stop()

    def offline_decisions() -> list[dict]:
        return [
            e
            for e in site.outbox_events("transaction")
            if e["payload"]["offline"] and _stamp(e) > down_at + NOTICE_S
        ]

    await asyncio.sleep(min_s)
    await site.wait_for(lambda: len(offline_decisions()) >= 2, 60, f"decisions while the {what} is down")
    up_at = time.time()
    await start()
    return down_at, up_at


async def _broker_then_hub_outage(tmp_path, outage_s: float) -> dict:
    async with CheckpointSite(tmp_path) as site:
        site.start_traffic()
        await site.wait_for(lambda: site.hub_counts()["transaction"] >= 2, 60, "first decisions")

        b_down, b_up = await _outage(site, site.stop_broker, site.start_broker, outage_s, "broker")
        await site.wait_for(
            lambda: site.hub_contiguous() >= site.outbox()[0] - 2, 60, "the backlog after the broker outage"
        )
        h_down, h_up = await _outage(site, site.stop_hub, site.start_hub, outage_s, "hub")
        # after recovery the lanes decide online again
        await site.wait_for(
            lambda: any(
                not e["payload"]["offline"] and _stamp(e) > h_up + 3
                for e in site.hub_events()
                if e["type"] == "transaction"
            ),
            90,
            "an online decision after recovery",
        )
        await site.drain()
        summary = site.assert_delivered_exactly_once()  # seq 1..N exactly once, in seq = time order

        decisions = [e for e in site.hub_events() if e["type"] == "transaction"]
        for down, up, what in ((b_down, b_up, "broker"), (h_down, h_up, "hub")):
            during = [e for e in decisions if down + NOTICE_S < _stamp(e) < up]
            assert len(during) >= 2, f"the lanes kept deciding while the {what} was down"
            assert all(e["payload"]["offline"] for e in during), (
                f"decisions without the {what} marked offline"
            )
            # a needed record missing offline → HOLD_MANUAL (R2), never a release
            missing = [e for e in during if "R2" in e["payload"]["reasons"]]
            assert all(e["payload"]["verdict"] == "HOLD_MANUAL" for e in missing)
            if what == "broker":  # the hub imported these trucks' passes; the edge could not hear of them
                assert missing, "no vehicle without local records during the broker outage"
        summary["offline_decisions"] = sum(1 for e in decisions if e["payload"]["offline"])
        summary["broker_down_s"] = round(b_up - b_down, 1)
        summary["hub_down_s"] = round(h_up - h_down, 1)
        return summary


async def test_broker_and_hub_outages_gates_decide_offline_and_everything_arrives_in_order(tmp_path):
    summary = await _broker_then_hub_outage(tmp_path, outage_s=12.0)
    print(f"outages: {summary}")


@pytest.mark.slow
async def test_one_minute_broker_and_hub_outages(tmp_path):
    summary = await _broker_then_hub_outage(tmp_path, outage_s=60.0)
    print(f"one-minute outages: {summary}")
    assert summary["broker_down_s"] >= 60 and summary["hub_down_s"] >= 60


# ---------------------------------------------------------------------------------------------- stale records, commands
class _Operator:
    """Publishes signed commands on the agent's command topic and collects its CommandResults."""

    def __init__(self, site: CheckpointSite):
        self.site = site
        self.results: dict[str, CommandResult] = {}

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            result = decode(CommandResult, message.payload)
            self.results[result.command_id] = result

    def command(self, lane: str, *, key: bytes | None = None, age_s: float = 0.0, **fields) -> SignedCommand:
        now = datetime.now(UTC) - timedelta(seconds=age_s)
        cmd = OperatorCommand(
            agent_id=self.site.agent_id,
            lane=lane,
            issued_at=now,
            expires_at=now + timedelta(seconds=60),
            **fields,
        )
        return sign_command(cmd, key or self.site.key)

    async def send(self, client: aiomqtt.Client, signed: SignedCommand) -> CommandResult:
        topic = Topics.commands(self.site.zone.id, self.site.cp.id)
        self.results.pop(signed.command.command_id, None)
        await client.publish(topic, signed.to_bytes(), qos=1)
        await self.site.wait_for(lambda: signed.command.command_id in self.results, 20, "a command result")
        return self.results[signed.command.command_id]


async def test_stale_records_hold_for_an_officer_and_only_authentic_fresh_commands_act(tmp_path):
    async with CheckpointSite(tmp_path, max_record_age_s=4.0, patience_s=120.0) as site:
        lane = site.rigs[0]
        # records for the next truck reach the edge while the hub is up …
        await site.wait_for(
            lambda: site.hub_rows("SELECT 1 FROM agents WHERE online=1") != [], 20, "agent online"
        )
        trip = site.generator.trip(lane.lane)
        trip.vehicle.patience_s = 120.0
        await site.hub.import_records(site.zone.id, trip.records)
        pass_no = next(key for kind, key, _ in trip.records if kind == "gate_pass")
        await asyncio.sleep(1.0)
        # … then the hub goes away and stays away longer than max_record_age_s
        await site.stop_hub()
        await asyncio.sleep(5.0)
        lane.scene.arrive(trip.vehicle)

        def held() -> list[dict]:
            return [e for e in site.outbox_events("transaction") if e["payload"]["pass_no"] == pass_no]

        await site.wait_for(lambda: bool(held()), 40, "the stale-record decision")
        decision = held()[0]["payload"]
        assert decision["offline"] is True
        assert decision["verdict"] == "HOLD_MANUAL" and "R1" in decision["reasons"], decision
        assert lane.scene.phase == "waiting" and lane.scene.barrier.arm_down, "no automatic release"

        op = _Operator(site)
        host, port = "127.0.0.1", site.broker_port
        async with aiomqtt.Client(host, port, identifier="efence-test-operator") as client:
            await client.subscribe(Topics.command_results(site.zone.id, site.cp.id), qos=1)
            listener = asyncio.create_task(op.listen(client))
            try:
                release = dict(
                    action="manual_release",
                    operator_id="officer-7",
                    reason_code="R1",
                    reason_text="documents checked at the kiosk",
                )
                forged = await op.send(client, op.command(lane.lane.id, key=b"x" * 32, **release))
                expired = await op.send(client, op.command(lane.lane.id, age_s=120, **release))
                assert (forged.accepted, forged.code) == (False, "forged")
                assert (expired.accepted, expired.code) == (False, "expired")
                await asyncio.sleep(1.0)
                assert lane.scene.barrier.arm_down, "a refused command moved the barrier"

                valid = op.command(lane.lane.id, **release)
                done = await op.send(client, valid)
                assert done.accepted and done.status == "done", done
                await site.wait_for(
                    lambda: lane.scene.phase in ("crossing", "leaving", "empty"), 20, "the release"
                )
                replayed = await op.send(client, valid)
                assert (replayed.accepted, replayed.code) == (False, "replayed")

                # the nonce survives a kill -9: a captured release cannot be replayed after a restart
                site.kill_agent()
                await site.start_agent()
                replayed_after_restart = await op.send(client, valid)
                assert (replayed_after_restart.accepted, replayed_after_restart.code) == (False, "replayed")
            finally:
                listener.cancel()

        log = site.agent_log.read_text()
        for code in ("forged", "expired", "replayed"):
            assert f"refused: {code}" in log, f"refusal {code} not logged"

        # everything, refusals included, reaches the hub as command_audit once it is back
        await site.start_hub()
        await site.drain()
        site.assert_delivered_exactly_once()
        audits = [
            e["payload"]
            for e in site.hub_events()
            if e["type"] == "command_audit" and "result" in e["payload"]
        ]
        codes = sorted(a["result"]["code"] or "done" for a in audits)
        assert codes == ["done", "expired", "forged", "replayed", "replayed"], codes


# ---------------------------------------------------------------------------------------------- outbox bounds
AGE_BOUND_H = 0.002  # 7.2 s: the production default is 72 h; the alarm rings at half of it


async def test_broker_down_small_outbox_sheds_telemetry_only_and_every_decision_arrives(tmp_path):
    async with CheckpointSite(tmp_path, outbox_capacity=1000, outbox_max_age_h=AGE_BOUND_H) as site:
        site.start_traffic()
        await site.wait_for(lambda: site.hub_counts()["transaction"] >= 1, 60, "first decisions at the hub")
        await site.stop_broker()
        down_at = time.time()
        # a telemetry producer keeps writing while the link is down: 1200 readings into a 1000-event outbox,
        # 100 every 0.5 s (the agent checks its bounds every 2 s, so the alarm can ring before the bound)
        appended = refused = 0
        for _ in range(12):
            a, r = await asyncio.to_thread(site.inject_telemetry, 100)
            appended, refused = appended + a, refused + r
            await asyncio.sleep(0.5)
        assert refused > 0 and appended + refused == 1200
        # the age bound passes while the lanes go on deciding offline
        await asyncio.sleep(max(0.0, AGE_BOUND_H * 3600 - 4))
        await site.wait_for(
            lambda: sum(1 for e in site.outbox_events("transaction") if e["payload"]["offline"]) >= 1,
            40,
            "an offline decision while the broker is down",
        )
        await site.wait_for(
            lambda: any(e["payload"].get("shed") for e in site.outbox_events("telemetry")),
            10,
            "the age bound to shed telemetry",
        )
        decided_offline = {
            e["payload"]["transaction_id"]
            for e in site.outbox_events("transaction")
            if e["payload"]["offline"] and _stamp(e) > down_at
        }
        await site.start_broker()
        await site.drain()
        site.assert_delivered_exactly_once()  # tombstones keep the seq: no gap, nothing twice

        events = site.hub_events()
        at_hub = {e["payload"]["transaction_id"] for e in events if e["type"] == "transaction"}
        assert decided_offline and decided_offline <= at_hub, "a decision made offline never reached the hub"
        telemetry = [e for e in events if e["type"] == "telemetry"]
        shed = [e for e in telemetry if e["payload"].get("shed")]
        assert len(telemetry) == appended and shed, (len(telemetry), appended, len(shed))
        assert all("age bound" in e["payload"]["reason"] for e in shed)

        alarms = [e["payload"] for e in events if e["type"] == "alarm"]
        filling = [a for a in alarms if a.get("alarm") == "outbox_filling"]
        assert filling and filling[0]["shed_capacity"] == 0 and filling[0]["shed_age"] == 0, (
            "the alarm did not ring before anything was shed"
        )
        kinds = {k for (k,) in site.hub_rows("SELECT kind FROM alarms WHERE agent_id=?", (site.agent_id,))}
        assert "outbox_filling" in kinds, kinds
        # back under half the alarm ratio once drained: the alarm clears
        await site.wait_for(
            lambda: any(e["payload"].get("alarm") == "outbox_recovered" for e in site.hub_events()),
            15,
            "the outbox alarm to clear",
        )
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"http://127.0.0.1:{site.metrics_port}/metrics", timeout=5)).text
        samples = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^efence_outbox_shed_total\{reason="(\w+)"\} (\S+)$', body, re.M)
        }
        assert samples == {"capacity": refused, "age": len(shed)}, samples
        assert f"efence_outbox_max_age_seconds {AGE_BOUND_H * 3600}" in body
        print(
            f"shedding: {appended} telemetry kept, {refused} refused, {len(shed)} aged out, {len(at_hub)} decisions"
        )


# ---------------------------------------------------------------------------------------------- hub kill -9
async def test_hub_kill_9_during_traffic_loses_and_duplicates_nothing(tmp_path):
    async with CheckpointSite(tmp_path, hub_process=True) as site:
        site.start_traffic()
        await site.wait_for(lambda: site.hub_counts()["transaction"] >= 2, 60, "first decisions at the hub")
        await site.wait_for(lambda: site.outbox()[1] > 0, 10, "events in flight", poll_s=0.02)
        site.kill_hub()
        killed_at = time.time()
        await site.wait_for(
            lambda: any(
                e["payload"]["offline"] and _stamp(e) > killed_at + NOTICE_S
                for e in site.outbox_events("transaction")
            ),
            40,
            "a decision while the hub is dead",
        )
        in_flight = site.outbox()[1]
        await site.start_hub()
        await site.drain()  # the restarted hub takes the broker's queued copies and the agent's re-sends
        summary = site.assert_delivered_exactly_once()
        offline = [e for e in site.hub_events() if e["type"] == "transaction" and e["payload"]["offline"]]
        assert offline, "no decision made while the hub was dead reached it"
        assert site.hub_kills == 1 and in_flight > 0
        online = site.hub_rows("SELECT online FROM agents WHERE agent_id=?", (site.agent_id,))
        assert online == [(1,)], "the restarted hub does not see the agent online"
        print(f"hub kill -9: {summary}, {len(offline)} decided offline, {in_flight} waiting at restart")


async def test_a_clean_stop_says_offline_at_once(tmp_path):
    """SIGINT (systemd stop, an upgrade): the broker sends the last will only when a link breaks, so the
    agent publishes its offline status itself — the wall must not show a stopped gate online until the
    hub's silence timeout."""
    import signal

    from efence.commands.edge import _fetch_status

    async with CheckpointSite(tmp_path) as site:
        await site.wait_for(
            lambda: site.hub_rows("SELECT online FROM agents WHERE agent_id=?", (site.agent_id,)) == [(1,)],
            20,
            "the hub to see the agent online",
        )
        site.agent.send_signal(signal.SIGINT)
        await asyncio.to_thread(site.agent.wait, 15)
        found = await _fetch_status(site.broker_url, site.agent_id, 1.0)
        assert found and found[0].online is False, "the retained status still says online"
        assert found[0].offline_reason == "stopped"
        await site.wait_for(
            lambda: site.hub_rows("SELECT online FROM agents WHERE agent_id=?", (site.agent_id,)) == [(0,)],
            5,
            "the hub to see the agent offline",
        )
        assert "offline status published" in site.agent_log_tail()
        ((severity, message),) = site.hub_rows(
            "SELECT severity, message FROM alarms WHERE kind='agent_offline' AND agent_id=?", (site.agent_id,)
        )
        assert severity == "warning" and "was stopped" in message  # planned, not a lost link
