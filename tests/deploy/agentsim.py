"""Agents that keep the protocol's promise for the scale-out test: publish seq 1..N (QoS 1), answer
ResendRequests, and re-send whatever is still unacknowledged after a while, until the hub acks all."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiomqtt

from efence.contract import EventEnvelope, HubAck, ResendRequest, Topics, decode


class SimAgent:
    def __init__(self, zone: str, checkpoint: str, port: int, password: str | None, events: int) -> None:
        self.zone, self.checkpoint = zone, checkpoint
        self.agent_id = f"{zone}/{checkpoint}"
        self.port, self.password, self.n = port, password, events
        self.events = {
            seq: EventEnvelope.new(agent_id=self.agent_id, seq=seq, type="telemetry", payload={"seq": seq})
            for seq in range(1, events + 1)
        }
        self.acked = 0
        self.published = 0
        self.resent = 0
        self.done = asyncio.Event()

    async def run(self, rate_per_s: float, deadline_s: float, resend_after_s: float = 3.0) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=f"agent-{self.checkpoint}-{uuid.uuid4().hex[:6]}",
            username=self.agent_id if self.password else None,
            password=self.password,
            max_queued_outgoing_messages=0,
        ) as c:
            await c.subscribe(Topics.ack(self.zone, self.checkpoint), qos=1)
            await c.subscribe(Topics.resend(self.zone, self.checkpoint), qos=1)
            rx = asyncio.create_task(self._receive(c))
            try:
                async with asyncio.timeout(deadline_s):
                    t0 = time.monotonic()
                    for seq in range(1, self.n + 1):
                        await self._send(c, seq)
                        self.published += 1
                        ahead = seq / rate_per_s - (time.monotonic() - t0)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                    while self.acked < self.n:  # the outbox re-sends what is not acknowledged
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(resend_after_s):
                                await self.done.wait()
                        for seq in range(self.acked + 1, self.n + 1):
                            await self._send(c, seq)
                            self.resent += 1
            finally:
                rx.cancel()

    async def _send(self, c: aiomqtt.Client, seq: int) -> None:
        await c.publish(Topics.events(self.zone, self.checkpoint), self.events[seq].to_bytes(), qos=1)

    async def _receive(self, c: aiomqtt.Client) -> None:
        async for m in c.messages:
            if str(m.topic).endswith("/ack"):
                self.acked = max(self.acked, decode(HubAck, bytes(m.payload)).acked_seq)
                if self.acked >= self.n:
                    self.done.set()
            else:
                req = decode(ResendRequest, bytes(m.payload))
                for seq in range(req.from_seq, min(req.to_seq, self.n) + 1):
                    await self._send(c, seq)
                    self.resent += 1
