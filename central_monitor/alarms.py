"""Alarm catalogue and the pure rules that turn events into alarm candidates (DOMAIN.md §5).

The rules only say *what* should ring; the store decides whether it is new, a duplicate of one
still ringing (counted, not repeated) or inside the re-arm cooldown after an acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from efence.contract import EventEnvelope

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class AlarmKind:
    """One row of the alarm table in docs/HUB.md: what it means and what the room should do."""

    kind: str
    severity: Severity
    zh: str
    en: str
    action: str


CATALOGUE: dict[str, AlarmKind] = {
    k.kind: k
    for k in [
        AlarmKind(
            "perimeter_intrusion",
            "critical",
            "周界入侵",
            "Perimeter intrusion",
            "Look at the linked camera, send the patrol to the fence segment.",
        ),
        AlarmKind(
            "perimeter_tamper",
            "critical",
            "围网破坏",
            "Fence sensor tamper",
            "Send the patrol and maintenance; the segment is blind until repaired.",
        ),
        AlarmKind(
            "agent_offline",
            "critical",
            "卡口离线",
            "Checkpoint offline",
            "The gate decides from its local records; call the site, check network and power.",
        ),
        AlarmKind(
            "device_offline",
            "warning",
            "设备离线",
            "Device offline",
            "Lane may hold vehicles for manual checks; send a field engineer.",
        ),
        AlarmKind(
            "gate_exception",
            "warning",
            "卡口异常",
            "Gate exception",
            "A vehicle is held or refused; the lane officer re-gathers, releases or diverts.",
        ),
        AlarmKind(
            "manual_barrier_lift",
            "warning",
            "手动抬杆",
            "Manual barrier lift",
            "The barrier opened without a gate decision; check the video and the officer's record.",
        ),
        AlarmKind(
            "tailgating",
            "critical",
            "跟车通过",
            "Tailgating",
            "Two vehicles passed on one opening; stop the second vehicle, check the video.",
        ),
        AlarmKind(
            "forced_passage",
            "critical",
            "强行闯卡",
            "Forced passage",
            "A vehicle forced the barrier; alert the patrol, keep the video.",
        ),
        AlarmKind(
            "barrier_fault",
            "critical",
            "道闸故障",
            "Barrier fault",
            "Lock the lane and send maintenance.",
        ),
        AlarmKind(
            "seal_opened",
            "critical",
            "关锁异常",
            "Electronic seal opened",
            "Divert the vehicle to inspection; the seal was opened, missing or not the expected id.",
        ),
        AlarmKind(
            "transfer_overdue",
            "warning",
            "流转超时",
            "Transfer overdue",
            "A vehicle left one zone for another and has not arrived; call the carrier.",
        ),
        AlarmKind(
            "empty_vehicle_with_cargo",
            "warning",
            "空车载货",
            "Empty-vehicle pass with cargo",
            "The weighbridge shows cargo on an empty-vehicle pass; divert to inspection.",
        ),
        AlarmKind(
            "blacklisted_vehicle",
            "critical",
            "黑名单车辆",
            "Blacklisted vehicle",
            "Keep the barrier down and call the duty officer.",
        ),
        AlarmKind(
            "repeated_failures",
            "warning",
            "核放单多次失败",
            "Repeated failures on one pass",
            "The same pass failed several times; check the pass data with the enterprise.",
        ),
        AlarmKind(
            "hold_unattended",
            "warning",
            "滞留未处理",
            "Held vehicle unattended",
            "A held vehicle has waited too long; send an officer to the lane or act from the lane card.",
        ),
        AlarmKind(
            "vehicle_stuck",
            "warning",
            "车辆滞留",
            "Vehicle stuck in lane",
            "A vehicle stays on the loops without finishing; check the lane video.",
        ),
        AlarmKind(
            "loop_stale",
            "warning",
            "地感无响应",
            "Loop detector silent",
            "A loop stopped reporting; the lane fails closed. Send a field engineer.",
        ),
        AlarmKind(
            "manual_release_rejected",
            "warning",
            "人工放行被拒",
            "Manual release refused",
            "The lane refused a manual release (wrong state or missing second officer); check and retry.",
        ),
        AlarmKind(
            "risk_alert",
            "warning",
            "布控预警",
            "Risk instruction hit",
            "A risk instruction (alert) matched this vehicle; inform the risk unit.",
        ),
        AlarmKind(
            "agent_seq_reset",
            "warning",
            "事件编号重置",
            "Checkpoint restarted its event numbering",
            "Expected after replacing the edge box or wiping its store; otherwise check the agent.",
        ),
        AlarmKind(
            "event_gap",
            "warning",
            "事件缺失",
            "Events missing",
            "The hub could not recover some events of a checkpoint; check the agent's outbox.",
        ),
        AlarmKind(
            "outbox_backlog",
            "warning",
            "上传积压",
            "Upload backlog",
            "A checkpoint cannot deliver its events; check its link to the hub.",
        ),
        AlarmKind(
            "outbox_filling",
            "critical",
            "上传队列将满",
            "Outbox nearing its bounds",
            "Restore the checkpoint's link now: at a bound it sheds telemetry (never decisions or alarms).",
        ),
    ]
}


def describe(kind: str) -> AlarmKind:
    """Catalogue entry; alarm kinds the edge invents later still get a sensible default."""
    return CATALOGUE.get(kind) or AlarmKind(kind, "warning", kind, kind.replace("_", " ").capitalize(), "")


# Edge alarm names (gate_controller journal) that map onto a catalogue kind.
EDGE_ALIASES: dict[str, str] = {
    "barrier_forced": "forced_passage",
    "forced": "forced_passage",
    "intrusion": "perimeter_intrusion",
    "tamper": "perimeter_tamper",
    "blacklisted": "blacklisted_vehicle",
    "seal": "seal_opened",
}

DEVICE_SCOPED = frozenset({"device_offline"})
"""Kinds suppressed while the whole agent is offline (its devices cannot be judged then)."""

PERIMETER = "perimeter"
"""The `lane` under which the hub files an agent's fence devices (cameras and sensors)."""


def device_subject(agent_id: str, lane: str | None, device_id: str) -> str:
    """The alarm subject of a device. Device ids are unique within a lane only (every lane has its `io`),
    so a lane device is named with its lane; a fence device (no lane) by agent and id."""
    return f"{agent_id}/{lane}/{device_id}" if lane and lane != PERIMETER else f"{agent_id}/{device_id}"


CLEARED_BY: dict[str, str] = {"outbox_recovered": "outbox_filling"}
"""Edge alarm names that end another alarm's condition (cleared, still ringing until acknowledged)
rather than ring one of their own."""

AGENT_SCOPED = frozenset({"outbox_filling"})
"""Edge alarms about the agent as a whole: one alarm per agent, whatever event reported it."""


def clears_from_event(env: EventEnvelope) -> list[str]:
    """Dedupe keys of the alarms an edge event says are over (`outbox_recovered` → `outbox_filling`)."""
    if env.type != "alarm":
        return []
    raw = str(env.payload.get("alarm") or env.payload.get("kind") or "")
    ended = CLEARED_BY.get(raw)
    return [f"{ended}|{env.agent_id}"] if ended else []


CONDITION_KINDS = frozenset({"device_offline"})
"""Kinds that describe a lasting condition, cleared when it ends: every report while it lasts (each status
heartbeat, the edge's own event) is the same occurrence; only a new outage after a clear counts again."""


@dataclass
class AlarmSpec:
    """A candidate alarm. `subject` plus `kind` is the duplicate-suppression key.

    `occurrence` names the real-world happening the candidate reports (a transaction or correlation
    id; by default the event id): the edge's own `gate_exception` event and the hub's rule for the
    same decision are two reports of one occurrence and count once, while another occurrence on the
    same still-ringing alarm still raises its count.
    """

    kind: str
    subject: str
    message: str
    severity: Severity | None = None
    zone: str | None = None
    checkpoint: str | None = None
    lane: str | None = None
    agent_id: str | None = None
    device_id: str | None = None
    event_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    occurrence: str | None = None

    @property
    def dedupe_key(self) -> str:
        return f"{self.kind}|{self.subject}"

    @property
    def occurrence_key(self) -> str | None:
        """What makes two candidates one occurrence (None: every candidate counts, e.g. status alarms)."""
        return self.occurrence or self.event_id

    def resolved_severity(self) -> Severity:
        return self.severity or describe(self.kind).severity


def _scoped(env: EventEnvelope, **kw: Any) -> AlarmSpec:
    return AlarmSpec(
        zone=env.zone,
        checkpoint=env.checkpoint,
        lane=env.lane,
        agent_id=env.agent_id,
        event_id=env.id,
        **kw,
    )


def from_event(env: EventEnvelope) -> list[AlarmSpec]:
    """Alarms that an event raises on its own (record-dependent rules live in the store)."""
    p = env.payload
    out: list[AlarmSpec] = []
    if env.type == "alarm":
        raw = str(p.get("alarm") or p.get("kind") or "gate_exception")
        kind = EDGE_ALIASES.get(raw, raw)
        if raw in CLEARED_BY:
            return out  # it ends another alarm (clears_from_event); nothing of its own rings
        tid = p.get("transaction_id") or env.correlation_id
        if kind in AGENT_SCOPED:
            subject = env.agent_id
        elif p.get("device_id") and not tid:  # the same subject the device's status alarms use
            subject = device_subject(env.agent_id, env.lane, str(p["device_id"]))
        else:
            subject = f"{env.agent_id}/{tid or p.get('segment') or env.id}"
        sev = p.get("severity")
        out.append(
            _scoped(
                env,
                kind=kind,
                subject=subject,
                message=str(p.get("detail") or p.get("message") or describe(kind).en),
                severity=sev if sev in SEVERITY_RANK else None,
                device_id=p.get("device_id"),
                details={k: v for k, v in p.items() if k not in {"detail", "message"}},
                occurrence=f"tx/{tid}" if tid else None,
            )
        )
    elif env.type == "perimeter":
        what = str(p.get("kind") or p.get("event") or "intrusion")
        if what in {"intrusion", "tamper", "perimeter_intrusion", "perimeter_tamper"}:
            kind = "perimeter_tamper" if "tamper" in what else "perimeter_intrusion"
            segment = str(p.get("segment") or p.get("segment_id") or p.get("sensor") or "fence")
            out.append(
                _scoped(
                    env,
                    kind=kind,
                    subject=f"{env.zone}/{segment}",
                    message=str(p.get("detail") or f"{describe(kind).en} at {segment}"),
                    details=p,
                )
            )
    elif env.type == "barrier":
        cause = str(p.get("cause") or p.get("source") or "")
        if p.get("manual") or cause in {"manual", "manual_lift", "unexpected", "uncommanded"}:
            out.append(
                _scoped(
                    env,
                    kind="manual_barrier_lift",
                    subject=f"{env.agent_id}/{env.lane}/{env.id}",
                    message=f"Barrier of lane {env.lane} opened without a gate decision",
                    details=p,
                )
            )
        if p.get("fault"):
            out.append(
                _scoped(
                    env,
                    kind="barrier_fault",
                    subject=f"{env.agent_id}/{env.lane}",
                    message=str(p.get("fault")),
                    details=p,
                )
            )
    elif env.type == "transaction":
        verdict = p.get("verdict")
        tid = str(p.get("transaction_id") or env.correlation_id or env.id)
        if verdict in {"REFUSE", "HOLD_MANUAL", "HOLD_INSPECTION"}:
            reasons = [str(r.get("code") if isinstance(r, dict) else r) for r in p.get("reasons") or []]
            out.append(
                _scoped(
                    env,
                    kind="gate_exception",
                    subject=f"{env.agent_id}/{tid}",
                    message=f"{verdict} {' '.join(reasons)} plate {p.get('plate') or '?'}",
                    # a refusal is a warning; a hold is routine lane work the lane card already shows
                    severity="warning" if verdict == "REFUSE" else "info",
                    details={"transaction_id": tid, "verdict": verdict, "reasons": reasons},
                    occurrence=f"tx/{tid}",
                )
            )
            if "I4" in reasons:
                out.append(
                    _scoped(
                        env,
                        kind="seal_opened",
                        subject=f"{env.agent_id}/{tid}",
                        message=f"Seal problem on {p.get('plate') or 'vehicle'} (I4)",
                        details={"transaction_id": tid},
                        occurrence=f"tx/{tid}",
                    )
                )
    return out
