"""The agent's HTTP receiver for devices that push: plate cameras and container cameras.

One small ASGI app (served by uvicorn on the agent's `device_http_port`) routes each configured
`listen_path` to the driver of that camera. It answers fast and "store first, then answer": the driver
parses the push and hands the observation to the lane (`emit`) *before* the reply is sent, so a camera
that gets its 200 never loses a sighting; a camera that gets no answer re-posts, and the driver drops
the repeat (PROTOCOLS.md §6.1, §6.2).

Usage in the agent (one receiver for every lane of the checkpoint)::

    receiver = DeviceReceiver()
    receiver.mount_drivers(all_drivers_of_all_lanes)   # mounts every driver with a push `listen_path`
    port = await receiver.start("0.0.0.0", agent.device_http_port)
    ...
    await receiver.stop()

or `receiver.app` in any ASGI server / `httpx.ASGITransport`. A path is served exactly and also as a
prefix, because Dahua ITSAPI cameras append fixed paths (`<listen_path>/NotificationInfo/TollgateInfo`,
`.../KeepAlive`). Two devices on one path are a configuration error raised at mount time. Unknown
paths get 404, bodies over `max_body_bytes` 413, other methods 405 — each counted in `counters` and
logged; a driver bug gives a 500, never a dead receiver. `GET /` lists the mounted paths (commissioning:
"can the camera reach the agent?").
"""

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("efence.device_receiver")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PushReply:
    """What the receiver answers a device."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any) -> "PushReply":
        return cls(status, json.dumps(payload, ensure_ascii=False).encode())


@runtime_checkable
class PushEndpoint(Protocol):
    """A driver that accepts pushes. `listen_path` None means it does not (e.g. protocol `vision`)."""

    @property
    def listen_path(self) -> str | None: ...

    def handle_push(self, path: str, content_type: str, body: bytes) -> PushReply:
        """Parse, emit, and say what to answer. Must not raise for any body."""
        ...


class DeviceReceiver:
    """Routes pushes to camera drivers by path; see the module docstring."""

    def __init__(self, *, max_body_bytes: int = 8 * 1024 * 1024):
        self.max_body_bytes = max_body_bytes
        self.routes: dict[str, PushEndpoint] = {}
        self.counters: Counter[str] = Counter()
        self._server: Any = None
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ routes
    def mount(self, endpoint: PushEndpoint, path: str | None = None) -> None:
        path = (path or endpoint.listen_path or "").rstrip("/") or "/"
        if not path.startswith("/") or path == "/":
            raise ValueError(f"cannot mount {_name(endpoint)} on {path!r}: need a path below '/'")
        if path in self.routes and self.routes[path] is not endpoint:
            raise ValueError(
                f"two devices on one path {path!r}: {_name(self.routes[path])} and {_name(endpoint)}"
            )
        self.routes[path] = endpoint

    def mount_drivers(self, drivers: Iterable[object]) -> int:
        """Mount every driver that takes pushes (has a `listen_path`); returns how many were mounted."""
        n = 0
        for driver in drivers:
            if isinstance(driver, PushEndpoint) and driver.listen_path:
                self.mount(driver)
                n += 1
        return n

    def route(self, path: str) -> PushEndpoint | None:
        """Exact path, else the longest mounted path that is a prefix of it."""
        path = path.rstrip("/") or "/"
        probe = path
        while probe:
            if probe in self.routes:
                return self.routes[probe]
            probe = probe.rpartition("/")[0]
        return None

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                if kind == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        reply = await self._handle(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", reply.content_type.encode()),
                    (b"content-length", str(len(reply.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    @property
    def app(self) -> "DeviceReceiver":
        return self

    async def _handle(self, scope: Scope, receive: Receive) -> PushReply:
        path, method = scope["path"], scope["method"]
        self.counters["requests"] += 1
        if method == "GET" and path in ("", "/"):
            return PushReply.json(200, {"paths": sorted(self.routes)})
        endpoint = self.route(path)
        if endpoint is None:
            self.counters["unrouted"] += 1
            log.warning(
                "device receiver: %s %s from %s: no device on this path", method, path, _client(scope)
            )
            return PushReply.json(404, {"error": f"no device is configured on {path}"})
        if method not in ("POST", "PUT"):
            self.counters["bad_method"] += 1
            return PushReply.json(405, {"error": f"{method} not accepted; cameras POST here"})
        body = await self._read_body(receive)
        if body is None:
            self.counters["too_large"] += 1
            log.warning("device %s: push over %d bytes refused", _name(endpoint), self.max_body_bytes)
            return PushReply.json(413, {"error": f"body over {self.max_body_bytes} bytes"})
        content_type = ""
        for key, value in scope.get("headers", ()):
            if key == b"content-type":
                content_type = value.decode("latin-1")
        try:
            reply = endpoint.handle_push(path, content_type, body)
        except Exception:  # noqa: BLE001 — a driver bug must not take the receiver down
            self.counters["errors"] += 1
            log.exception("device %s: push handler failed", _name(endpoint))
            return PushReply.json(500, {"error": "internal error"})
        self.counters[f"status_{reply.status}"] += 1
        return reply

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    # ------------------------------------------------------------------ serving
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve with uvicorn in the background; returns the bound port (port 0 picks a free one)."""
        import uvicorn

        config = uvicorn.Config(
            self, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="device-receiver")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
                raise RuntimeError("device receiver stopped during start-up")
            await asyncio.sleep(0.01)
        return self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None


def _name(endpoint: object) -> str:
    config = getattr(endpoint, "config", None)
    lane = getattr(endpoint, "lane", "")
    device = getattr(config, "id", type(endpoint).__name__)
    return f"{lane}/{device}" if lane else str(device)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
