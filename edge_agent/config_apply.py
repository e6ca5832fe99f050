"""Config push at the agent (contract rule C7): verify the hub's signed offer, hand it to `ConfigSlot`
(stage, validate, apply), report, restart into it, confirm it once back with the hub, roll back if not.

How the agent restarts: after its TaskGroup has stopped everything cleanly (outbox and record cache
closed, sockets released), `run_agent` re-executes the same command line (`os.execv`). Not an exit
code for a supervisor to act on: exec behaves the same under systemd (same main PID, no start-rate
limit, independent of `Restart=`), in a container and from a shell, and nothing of the old config
survives it. A new config that crashes the agent is still caught: systemd's `Restart=always` starts it
again and `ConfigSlot.on_start` rolls back after three starts without a confirmation.

When a pushed config counts as good ("confirmed"): the uplink is connected to the broker, the hub's
retained status says it is online, AND the hub acknowledged an event sent by this run (every run
appends its draw-epoch event first) — proof that events flow both ways. Not before the deadline the
hub gave (`confirm_within_s`) → `active.yaml` goes back to the previous config and the agent
restarts into it, then reports `rolled_back`.

What the agent runs: `<data_dir>/config/active.yaml`. The `--config` file seeds it at the first start;
a `--config` file edited by hand later (its hash changed) wins over anything pushed, because the
person at the box decided. Command-line overrides (`--broker`, `--hub`, `--data-dir`) win over both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from efence.config_push import ConfigSlot, Result, sha256
from efence.contract import (
    CommandRejected,
    ConfigReport,
    ConfigState,
    ContractError,
    EventType,
    SignedConfigOffer,
    Topics,
    config_version,
    decode,
    verify_config_offer,
)
from firmware_configs.loader import validate_text
from firmware_configs.schema import Checkpoint, Zone

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

log = logging.getLogger("efence.agent.config")

# ConfigSlot outcome (as kept in its state) → the state the agent reports
REPORTED: dict[str, ConfigState] = {
    "": "installed",
    "nothing_pending": "installed",
    "applied": "staged",
    "confirmed": "applied",
    "unchanged": "unchanged",
    "invalid": "rejected",
    "rejected": "rejected",
    "rolled_back": "rolled_back",
}


class ConfigRestart(Exception):
    """Raised inside the agent's TaskGroup: stop everything, then run again on `active.yaml`."""


def open_slot(
    seed_file: Path, zone: Zone, checkpoint: Checkpoint, data_dir: Path | None = None
) -> tuple[Zone, Checkpoint, ConfigApplier]:
    """At agent start: the config to run (from the slot), and the applier that handles pushes.

    `zone`/`checkpoint` are the validated `--config` file's; the slot lives under the data directory
    they (or `--data-dir`) name, so a pushed config cannot move it.
    """
    slot = ConfigSlot(Path(data_dir or checkpoint.agent.data_dir) / "config", zone.id, checkpoint.id)
    seed = seed_file.read_text(encoding="utf-8")
    started = slot.on_start()  # counts a trial start, or rolls an overdue / crash-looping push back
    if started.outcome == "rolled_back":
        log.error("agent %s/%s: %s", zone.id, checkpoint.id, started.detail)
    st = slot.state
    if not st.running_sha256 or st.seed_sha256 != sha256(seed):
        if st.running_sha256:
            log.warning(
                "agent %s/%s: %s changed since it was installed; running it instead of config %s",
                zone.id,
                checkpoint.id,
                seed_file,
                slot.running_version()[:12],
            )
        slot.install_initial(seed, config_version(seed))
    active, issues = validate_text(slot.active.read_text(encoding="utf-8"), file=str(slot.active))
    if active is None:  # cannot happen unless the file was damaged: it was validated before the switch
        log.error("agent: %s does not validate (%s); running %s", slot.active, issues[:3], seed_file)
        slot.install_initial(seed, config_version(seed))
        active = zone
    running = sha256(slot.active.read_bytes())
    return active, active.checkpoint(checkpoint.id), ConfigApplier(slot, running_sha256=running)


def run_agent(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(agent.run())`; when a config push asks for it, exec the same command line again."""

    async def until_restart() -> None:
        why = ""
        try:
            await main  # its TaskGroup has stopped every task and closed the outbox and cache on return
        except* ConfigRestart as group:
            why = str(group.exceptions[0])
        if why:
            # exec from inside the loop: asyncio.run's exit would first wait for every executor thread
            # (a DNS lookup of an unreachable device can take seconds), and exec ends those anyway
            log.warning("agent restarting on its config: %s", why)
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, sys.orig_argv)

    asyncio.run(until_restart())


class ConfigApplier:
    """The agent's end of config push: offers in, reports out, confirm or roll back in between."""

    def __init__(self, slot: ConfigSlot, *, running_sha256: str, poll_s: float = 0.5) -> None:
        self.slot = slot
        self.running_sha256 = running_sha256  # what this process loaded: only that can be confirmed
        self.poll_s = poll_s
        self.agent: EdgeAgent | None = None
        self._restart_why = ""
        # offers arrive on the uplink's task, confirm/rollback run on ours: the slot's read-modify-write
        # of state.json must not interleave (a lost rollback would leave a bad config marked good)
        self._lock = asyncio.Lock()

    def bind(self, agent: EdgeAgent) -> dict[str, Callable[[bytes], Awaitable[None]]]:
        """Attach to the agent; returns the uplink's extra topic handlers (the config offer topic)."""
        self.agent = agent
        return {Topics.config(agent.zone.id, agent.checkpoint.id): self.on_offer}

    # ------------------------------------------------------------------ what the agent reports
    def status_fields(self) -> dict[str, Any]:
        """The `AgentStatus` fields: the version running now and whether it is still on trial."""
        st = self.slot.state
        return {"config_version": self.slot.running_version(), "config_on_trial": st.pending is not None}

    def report(self) -> ConfigReport:
        """The slot's state as a report (what the hub keeps retained for this agent)."""
        assert self.agent is not None
        st = self.slot.state
        state = REPORTED.get(st.last_outcome, "installed")
        return ConfigReport(
            agent_id=self.agent.agent_id,
            state=state,
            offer_id=st.last_ref,
            version=st.last_version or self.slot.running_version(),
            running_version=self.slot.running_version(),
            on_trial=st.pending is not None,
            code={"invalid": "invalid", "rejected": "not_applicable"}.get(st.last_outcome, ""),
            detail=st.last_detail,
            errors=st.last_errors,
        )

    async def _publish(self, report: ConfigReport, *, retain: bool = True) -> bool:
        assert self.agent is not None
        client = self.agent.uplink._client
        if client is None or not self.agent.uplink.connected:
            return False  # the slot keeps the state; it is reported on the next connect
        try:
            await client.publish(
                Topics.config_report(self.agent.zone.id, self.agent.checkpoint.id),
                report.to_bytes(),
                qos=1,
                retain=retain,
            )
            return True
        except Exception as exc:  # noqa: BLE001 — re-sent from the slot state on the next connect
            log.warning("agent %s: config report not published now (%s)", self.agent.agent_id, exc)
            return False

    async def _record(self, res: Result) -> None:
        """Log, keep in the outbox (durable trail at the hub), publish the report and the status."""
        assert self.agent is not None
        agent = self.agent
        report = self.report()
        level = logging.ERROR if res.outcome in ("rolled_back", "invalid") else logging.INFO
        log.log(level, "agent %s: config %s: %s", agent.agent_id, report.state, res.detail)
        await agent.outbox.append(EventType.CONFIG, report.model_dump(mode="json"))
        agent.uplink.nudge()
        await self._publish(report)
        if agent.uplink.connected:
            try:
                await agent.uplink.publish_status()
            except Exception as exc:  # noqa: BLE001 — the heartbeat sends it again
                log.debug("status not published now: %s", exc)

    # ------------------------------------------------------------------ offers
    async def on_offer(self, payload: bytes) -> None:
        """One message on the config topic. Never raises: a bad offer is refused and reported."""
        assert self.agent is not None
        agent = self.agent
        try:
            signed = decode(SignedConfigOffer, payload)
        except ContractError as exc:
            await self._refused("", "", "malformed", exc.reason)
            return
        try:
            offer = verify_config_offer(
                signed, agent.command_key, agent_id=agent.agent_id, now=datetime.now(UTC), nonces=agent.nonces
            )
        except CommandRejected as exc:
            await self._refused(signed.offer.offer_id, signed.offer.version, exc.code, str(exc))
            return
        await agent.outbox.remember_nonce(offer.nonce, offer.expires_at.timestamp())  # before acting
        log.info(
            "agent %s: config %s offered by %s (offer %s)",
            agent.agent_id,
            offer.version[:12],
            offer.issued_by,
            offer.offer_id,
        )
        try:
            async with self._lock:
                res = await asyncio.to_thread(
                    self.slot.offer,
                    offer.yaml_text,
                    offer.version,
                    confirm_within_s=offer.confirm_within_s,
                    ref=offer.offer_id,
                )
        except Exception as exc:  # noqa: BLE001 — e.g. disk full: refuse, keep running the old config
            log.exception("agent %s: config %s could not be staged", agent.agent_id, offer.version[:12])
            await self._refused(offer.offer_id, offer.version, "error", f"could not stage: {exc}")
            return
        await self._record(res)
        if res.restart:
            self._restart_why = res.detail

    async def _refused(self, offer_id: str, version: str, code: str, detail: str) -> None:
        """An offer that failed verification: logged, kept in the outbox, answered (not retained, so
        the retained report keeps saying what the agent runs)."""
        assert self.agent is not None
        agent = self.agent
        log.warning("agent %s: config offer %s refused: %s", agent.agent_id, offer_id or "?", detail)
        report = ConfigReport(
            agent_id=agent.agent_id,
            state="refused",
            offer_id=offer_id,
            version=version,
            running_version=self.slot.running_version(),
            on_trial=self.slot.state.pending is not None,
            code=code,
            detail=detail[:500],
        )
        await agent.outbox.append(EventType.CONFIG, report.model_dump(mode="json"))
        agent.uplink.nudge()
        await self._publish(report, retain=False)

    # ------------------------------------------------------------------ confirm or roll back
    async def run(self) -> None:
        """Until cancelled: re-report on every reconnect, confirm a config on trial, or roll it back."""
        assert self.agent is not None
        agent = self.agent
        baseline = (await agent.outbox.stats()).acked_seq  # acks above this were earned by this run
        was_online = False
        while True:
            if self._restart_why:
                agent.uplink.restarting = True  # back within seconds: the wall need not see it offline
                raise ConfigRestart(self._restart_why)
            online = agent.uplink.online
            if online and not was_online:
                await self._publish(self.report())
            was_online = online
            pending = self.slot.state.pending
            # a config staged by this very run is confirmed by the next run, the one that runs it
            if pending is not None and pending.sha256 == self.running_sha256:
                if online and (await agent.outbox.stats()).acked_seq > baseline:
                    async with self._lock:
                        res = await asyncio.to_thread(self.slot.confirm)
                    await self._record(res)
                else:
                    async with self._lock:
                        res = await asyncio.to_thread(self.slot.check_deadline)
                    if res.outcome == "rolled_back":
                        await self._record(res)  # in the outbox; reported after the restart
                        raise ConfigRestart(res.detail)
            await asyncio.sleep(self.poll_s)
