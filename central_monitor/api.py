"""The hub's HTTP API and dashboard (FastAPI; OpenAPI at /api/openapi.json, docs at /api/docs).

Authentication is enforced by one ASGI middleware for every path, so a new route cannot be left open
by mistake: only `/api/health`, `/api/login`, the login page and static assets pass without a
token. Tokens come from `POST /api/login` and are accepted as `Authorization: Bearer` or as the
`efence_token` cookie the login sets for the dashboard. Roles (viewer < operator < supervisor <
admin) are checked per route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from efence.contract import (
    AGENT_AUTH_SCHEME,
    MAX_CONFIG_BYTES,
    CommandAction,
    OperatorCommand,
    RecordKind,
    RecordPage,
    Topics,
    sign_command,
    verify_agent_http_auth,
)
from firmware_configs.loader import ZONES_DIR, validate_text

from .alarms import CATALOGUE
from .auth import Role
from .evidence import MAX_IMAGE_BYTES, NAME_RE, SHA256_RE, EvidenceFiles, EvidenceRejected, check_image
from .geo import site_map
from .ingest import Ingest, NoSigningKey, sign_config
from .keys import KeyLookup, key_lookup
from .live import LiveBus
from .metrics import exposition
from .records import ImportRejected, field_table, infer_kind, parse_file
from .store import AuthUser, HubStore
from .store.evidence import evidence_public

log = logging.getLogger("efence.hub.api")

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "efence_token"
PUBLIC_PATHS = {"/api/health", "/api/login", "/login.html", "/favicon.ico"}
PUBLIC_PREFIXES = ("/static/",)
AGENT_PREFIX = "agent:"  # username of an edge agent authenticated by its checkpoint key


# --------------------------------------------------------------------------- request bodies
class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class AckBody(BaseModel):
    note: str = Field("", max_length=500, description="What was done about it.")


class ImportBody(BaseModel):
    zone: str = Field(min_length=1, max_length=40)
    kind: RecordKind | None = Field(None, description="Inferred from the field names when omitted.")
    content: str | None = Field(None, description="CSV (header row of field names) or JSON text.")
    records: list[dict[str, Any]] | None = Field(
        None, description="Rows as JSON objects (instead of content)."
    )
    filename: str = ""


class CommandBody(BaseModel):
    agent_id: str = Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$")
    lane: str = Field(min_length=1)
    action: CommandAction
    reason_code: str = ""
    reason_text: str = ""
    transaction_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    second_username: str | None = Field(None, description="Second officer, required to override I1/I2 holds.")
    second_password: str | None = None
    ttl_s: float = Field(60.0, gt=0, le=600)


Slug = Annotated[str, PathParam(pattern=r"^[a-z0-9-]+$", max_length=64)]  # a zone or checkpoint id


class ConfigPushBody(BaseModel):
    yaml_text: str = Field(
        min_length=1, max_length=MAX_CONFIG_BYTES, description="The whole zone firmware YAML, as in its file."
    )
    filename: str = Field("pushed config", max_length=200, description="Named in validation errors.")
    confirm_within_s: float = Field(
        120.0, ge=5, le=3600, description="The agent rolls back unless back with the hub within this."
    )
    ttl_s: float = Field(300.0, gt=0, le=900, description="The offer expires (unused) after this.")


class UserBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: str = "viewer"


# --------------------------------------------------------------------------- auth middleware
class AuthMiddleware:
    """Resolves the token on every request; refuses anything but the public paths without one."""

    def __init__(
        self,
        app: Any,
        store: HubStore,
        key_for: KeyLookup | None = None,
        cache: dict[str, tuple[AuthUser | None, float]] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.key_for = key_for
        self._cache = cache if cache is not None else {}

    async def _user(self, token: str) -> AuthUser | None:
        hit = self._cache.get(token)
        now = time.monotonic()
        if hit and hit[1] > now:
            return hit[0]
        user = await self.store.acall(self.store.user_for_token, token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (user, now + 5.0)  # a role change takes effect within 5 s; logout at once
        return user

    def _agent(self, cred: str, scope: dict[str, Any]) -> AuthUser | None:
        """An edge agent signing with its checkpoint key may read its own zone's records and upload
        evidence images of its own transactions (ids start with its agent id), nothing else."""
        method = scope.get("method", "")
        agent_id = verify_agent_http_auth(cred, self.key_for, method, scope["path"])
        if agent_id is None:
            return None
        zone = agent_id.split("/", 1)[0]
        if method == "GET" and scope["path"] == f"/api/records/{zone}":
            return AuthUser(f"{AGENT_PREFIX}{agent_id}", Role.VIEWER)
        if method == "POST" and scope["path"].startswith(f"/api/evidence/{agent_id}/"):
            return AuthUser(f"{AGENT_PREFIX}{agent_id}", Role.VIEWER)
        return None

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[..., Awaitable[Any]],
        send: Callable[..., Awaitable[Any]],
    ) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        path: str = scope["path"]
        token = cookie_token = None
        agent_cred = None
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1").strip()
            elif name == b"authorization" and value.startswith(AGENT_AUTH_SCHEME.encode()):
                agent_cred = value.decode("latin-1")
            elif name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == COOKIE and v:
                        cookie_token = v
        if token is None and agent_cred is None:
            token = cookie_token  # an explicit Authorization header always beats a stray cookie
        user = await self._user(token) if token else None
        if user is None and agent_cred and self.key_for is not None:
            user = self._agent(agent_cred, scope)
        scope.setdefault("state", {})["user"] = user
        scope["state"]["token"] = token
        if scope["type"] == "websocket" and user is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        if user is None and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            if path == "/" or path.endswith(".html"):
                resp: Response = RedirectResponse("/login.html", status_code=303)
            else:
                resp = JSONResponse(
                    {
                        "detail": "authentication required: Authorization: Bearer <token from POST /api/login>"
                        " (edge agents: efence.contract.agent_http_auth)"
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def current_user(request: Request) -> AuthUser:
    user = getattr(request.state, "user", None)
    if user is None:
        raise HTTPException(401, "authentication required")
    return user


def require(role: Role) -> Callable[[Request], AuthUser]:
    def dep(request: Request) -> AuthUser:
        user = current_user(request)
        if user.role < role:
            raise HTTPException(403, f"needs role {role.label} or higher; you are {user.role.label}")
        return user

    return dep


Viewer = Annotated[AuthUser, Depends(require(Role.VIEWER))]
Operator = Annotated[AuthUser, Depends(require(Role.OPERATOR))]
Supervisor = Annotated[AuthUser, Depends(require(Role.SUPERVISOR))]
Admin = Annotated[AuthUser, Depends(require(Role.ADMIN))]


# --------------------------------------------------------------------------- the app
def create_app(
    store: HubStore,
    *,
    ingest: Ingest | None = None,
    live: LiveBus | None = None,
    key_for: KeyLookup | None = None,
    token_ttl_s: float = 12 * 3600,
    agent_silence_s: float = 120.0,
    static_dir: Path = STATIC_DIR,
    evidence_dir: Path | None = None,
    zones_dir: Path = ZONES_DIR,
) -> FastAPI:
    """The API over `store`. Without `ingest` (tests, read-only replicas) commands answer 503.

    Evidence images are kept in `evidence_dir`, by default `<db name>-evidence/` next to a SQLite
    store's file; a store without a local file (PostgreSQL) needs it given, else uploads answer 503.
    """
    live = live or (ingest.live if ingest else LiveBus())
    key_for = key_for or key_lookup()
    if ingest is not None and ingest.key_for is None:
        ingest.key_for = key_for  # a config push re-delivered by ingest is signed with the same keys
    app = FastAPI(
        title="efence hub",
        version="1",
        description="Central monitoring hub of the four Shanghai FTZ zones: transactions, alarms, lanes, "
        "devices, KPIs, customs records and operator commands.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    token_cache: dict[str, tuple[AuthUser | None, float]] = {}
    app.add_middleware(AuthMiddleware, store=store, key_for=key_for, cache=token_cache)
    app.state.store = store
    app.state.ingest = ingest
    app.state.live = live
    s = store
    if evidence_dir is None and isinstance(getattr(store, "path", None), Path):
        evidence_dir = store.path.parent / f"{store.path.stem}-evidence"  # type: ignore[attr-defined]
    files = EvidenceFiles(evidence_dir) if evidence_dir is not None else None

    async def call(fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        return await s.acall(fn, *a, **kw)

    # ----------------------------------------------------------------- public
    @app.get("/api/health", tags=["public"])
    async def health() -> dict[str, Any]:
        """Broker and store state; no authentication, for load balancers and the demo."""
        try:
            st = await call(s.health)
        except Exception as exc:  # the store being broken is exactly what health must report
            st = {"ok": False, "error": str(exc)}
        broker = {
            "connected": bool(ingest and ingest.connected.is_set()),
            "configured": ingest is not None,
            "instance_id": ingest.instance_id if ingest else None,
            "last_error": ingest.last_error if ingest else None,
        }
        return {
            "ok": bool(st.get("ok")) and (ingest is None or broker["connected"]),
            "broker": broker,
            "store": st,
            "ingest": ingest.metrics.as_dict() if ingest else {},
        }

    @app.post("/api/login", tags=["public"])
    async def login(body: LoginBody) -> JSONResponse:
        """Exchange username and password for a bearer token (also set as an HttpOnly cookie)."""
        user = await asyncio.to_thread(s.authenticate, body.username, body.password)
        if user is None:
            await asyncio.sleep(0.2)  # slows guessing a little; scrypt does the rest
            raise HTTPException(401, "wrong username or password")
        token = await call(s.issue_token, user.username, token_ttl_s)
        resp = JSONResponse({"token": token, "username": user.username, "role": user.role.label})
        resp.set_cookie(COOKIE, token, max_age=int(token_ttl_s), httponly=True, samesite="strict")
        return resp

    @app.post("/api/logout", tags=["session"])
    async def logout(request: Request, user: Viewer) -> JSONResponse:
        token = request.state.token
        if token:
            await call(s.revoke_token, token)
            token_cache.pop(token, None)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/api/me", tags=["session"])
    async def me(user: Viewer) -> dict[str, str]:
        return {"username": user.username, "role": user.role.label}

    # ----------------------------------------------------------------- monitoring
    @app.get("/api/transactions", tags=["monitoring"])
    async def transactions(
        user: Viewer,
        zone: str | None = None,
        checkpoint: str | None = None,
        plate: str | None = None,
        pass_: Annotated[str | None, Query(alias="pass")] = None,
        container: str | None = None,
        verdict: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> list[dict[str, Any]]:
        """Transactions newest first; `plate` matches part of a plate or a whole e-plate."""
        return await call(
            s.list_transactions,
            zone=zone,
            checkpoint=checkpoint,
            plate=plate,
            pass_no=pass_,
            container=container,
            verdict=verdict,
            since=since,
            until=until,
            limit=limit,
        )

    @app.get("/api/transactions/{transaction_id:path}", tags=["monitoring"])
    async def transaction(transaction_id: str, user: Viewer) -> dict[str, Any]:
        """One transaction with every event it produced (the evidence trail)."""
        tx = await call(s.get_transaction, transaction_id)
        if not tx:
            raise HTTPException(404, "no such transaction")
        tx["evidence"] = [evidence_public(e) for e in await call(s.list_evidence, transaction_id)]
        return tx

    # ----------------------------------------------------------------- evidence images
    _image_body = {"schema": {"type": "string", "format": "binary"}}

    @app.post(
        "/api/evidence/{transaction_id:path}/{sha256}/{name}",
        tags=["evidence"],
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"image/jpeg": _image_body, "image/png": _image_body},
            }
        },
    )
    async def upload_evidence(
        transaction_id: str, sha256: str, name: str, request: Request, user: Viewer
    ) -> JSONResponse:
        """An edge agent uploads one camera image of one of its transactions (raw body, image/jpeg or
        image/png, ≤ 2 MiB). Idempotent: the same image again answers 200 with the same id."""
        agent_id = user.username.removeprefix(AGENT_PREFIX)
        if not user.username.startswith(AGENT_PREFIX) or not transaction_id.startswith(agent_id + "/"):
            raise HTTPException(403, "only the edge agent of the transaction uploads its evidence")
        if files is None:
            raise HTTPException(503, "this hub has no evidence directory configured")
        if not SHA256_RE.match(sha256) or not NAME_RE.match(name) or len(transaction_id) > 200:
            raise HTTPException(
                422, "path must be /api/evidence/{transaction_id}/{lowercase hex sha256}/{name}"
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"image larger than {MAX_IMAGE_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():  # bounded even when the length header lies or is absent
            body += chunk
            if len(body) > MAX_IMAGE_BYTES:
                raise HTTPException(413, f"image larger than {MAX_IMAGE_BYTES} bytes")
        try:
            ctype = check_image(request.headers.get("content-type", ""), bytes(body), sha256)
        except EvidenceRejected as exc:
            raise HTTPException(exc.status, exc.reason) from None
        await asyncio.to_thread(files.put, sha256, ctype, bytes(body))  # file first: a row never dangles
        row, created = await call(s.add_evidence, transaction_id, agent_id, name, sha256, ctype, len(body))
        public = evidence_public(row)
        if created:
            # a fence snapshot is uploaded after its alarm was pushed (the uploader runs on its own):
            # name the incident/transaction so a wall showing that alarm adds the picture without reloading
            live.publish({"type": "evidence", "data": public})
        return JSONResponse(public | {"created": created}, status_code=201 if created else 200)

    @app.get("/api/evidence/{image_id}", tags=["evidence"], response_class=FileResponse)
    async def evidence_image(image_id: int, user: Viewer) -> FileResponse:
        """The bytes of one evidence image (reads are not audited)."""
        row = await call(s.get_evidence, image_id)
        path = files.path(row["sha256"], row["content_type"]) if row and files else None
        if path is None or not path.is_file():
            raise HTTPException(404, "no such image")
        return FileResponse(
            path,
            media_type=row["content_type"],  # type: ignore[index]
            headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/api/agents", tags=["monitoring"])
    async def agents(user: Viewer) -> list[dict[str, Any]]:
        rows = await call(s.list_agents, agent_silence_s)
        configs = await call(s.config_states)
        for r in rows:  # config push: the last push and the agent's report (None: never reported)
            r["config"] = configs.get(r["agent_id"])
        return rows

    @app.get("/api/lanes", tags=["monitoring"])
    async def lanes(user: Viewer) -> list[dict[str, Any]]:
        rows = await call(s.list_lanes)
        configs = await call(s.config_states)
        for r in rows:
            c = configs.get(r["agent_id"]) or {}
            r["config_version"], r["config_push"] = c.get("running_version"), c.get("push")
        return rows

    @app.get("/api/devices", tags=["monitoring"])
    async def devices(user: Viewer) -> list[dict[str, Any]]:
        return await call(s.list_devices)

    @app.get("/api/alarms", tags=["alarms"])
    async def alarms(
        user: Viewer, ringing: bool | None = None, limit: Annotated[int, Query(ge=1, le=2000)] = 200
    ) -> list[dict[str, Any]]:
        """Alarms, ringing first, then by severity. `ringing=true` for the unacknowledged queue.

        Each has `evidence`: the pictures linked to it (a perimeter alarm's fence snapshot by
        `details.incident_id`, a gate exception's lane images by `details.transaction_id`), as on
        `GET /api/transactions/{id}`; [] while none has arrived. A picture arriving later is pushed
        on `/api/stream` as an `evidence` event naming its `transaction_id` (the incident id).
        """
        return await call(s.list_alarms, ringing, limit)

    @app.get("/api/alarms/kinds", tags=["alarms"])
    async def alarm_kinds(user: Viewer) -> list[dict[str, str]]:
        return [
            {"kind": k.kind, "severity": k.severity, "zh": k.zh, "en": k.en, "action": k.action}
            for k in CATALOGUE.values()
        ]

    @app.post("/api/alarms/{alarm_id}/ack", tags=["alarms"])
    async def ack(alarm_id: int, body: AckBody, user: Operator) -> dict[str, Any]:
        """Acknowledge: the alarm stops ringing; who, when and the note go to the audit log."""
        alarm = await call(s.ack_alarm, alarm_id, user.username, body.note)
        if alarm is None:
            raise HTTPException(404, "no such alarm")
        live.publish({"type": "alarm", "data": alarm})
        return alarm

    @app.get("/api/kpis", tags=["monitoring"])
    async def kpis(user: Viewer, hours: Annotated[float, Query(gt=0, le=24 * 31)] = 1.0) -> dict[str, Any]:
        return await call(s.kpis, hours)

    @app.get("/api/transfers", tags=["monitoring"])
    async def transfers(user: Viewer) -> list[dict[str, Any]]:
        return await call(s.list_transfers)

    @app.get("/api/map", tags=["monitoring"])
    async def wall_map(user: Viewer) -> dict[str, Any]:
        """Fence segments (lat/lon paths), checkpoints and lanes of each zone, from the firmware configs."""
        return await asyncio.to_thread(site_map, zones_dir)

    @app.get("/api/metrics", tags=["monitoring"])
    async def metrics(user: Viewer) -> dict[str, Any]:
        return {"ingest": ingest.metrics.as_dict() if ingest else {}, "live_subscribers": live.subscribers}

    @app.get("/metrics", tags=["monitoring"])
    async def prometheus(user: Viewer) -> Response:
        """Prometheus text format (scrape with `authorization: {credentials: <token>}`)."""
        body = await call(exposition, s, ingest)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/stream", tags=["monitoring"])
    async def stream(request: Request, user: Viewer) -> StreamingResponse:
        """Server-Sent Events: `transaction`, `alarm`, `lane`, `agent`, `device`, `command`, `config`,
        `evidence` (a new picture: an evidence row with `url`, keyed by `transaction_id`), `resync`."""

        async def gen() -> Any:
            async with live.subscribe() as q:
                yield "retry: 2000\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        async with asyncio.timeout(15.0):  # not wait_for: it can swallow a cancellation
                            item = await q.get()
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {item['type']}\ndata: {json.dumps(item.get('data', {}), ensure_ascii=False, default=str)}\n\n"

        return StreamingResponse(
            gen(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # ----------------------------------------------------------------- records
    @app.get("/api/records", tags=["records"])
    async def record_counts(user: Viewer) -> list[dict[str, Any]]:
        return await call(s.record_counts)

    @app.get("/api/records/formats", tags=["records"])
    async def record_formats(user: Viewer) -> dict[str, Any]:
        """Import field names per record kind (customs names; `(design)` marks our own)."""
        return field_table()

    @app.get("/api/records/{zone}", tags=["records"], response_model=RecordPage)
    async def records(
        zone: str,
        user: Viewer,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
    ) -> RecordPage:
        """Deltas after `after` (in seq order), or a snapshot when `after` is 0, ahead of the hub or too old."""
        return await call(s.records_page, zone, after, limit)

    @app.post("/api/records/import", tags=["records"])
    async def import_records(body: ImportBody, user: Supervisor) -> JSONResponse:
        """Import CSV/JSON rows; 422 with every (row, field, expected) problem and nothing imported."""
        try:
            if body.records is not None:
                rows, declared = body.records, None
            elif body.content is not None:
                rows, declared = parse_file(body.content, body.filename)
            else:
                raise ImportRejected([])
            kind = body.kind or declared or infer_kind(rows)
            if kind is None:
                return JSONResponse({"detail": "cannot tell the record kind; give `kind`", "errors": []}, 422)
            res = await call(s.import_records, body.zone, kind, rows, user.username)
        except ImportRejected as exc:
            return JSONResponse(
                {"detail": str(exc), "errors": [e.as_dict() for e in exc.errors]}, status_code=422
            )
        if ingest:
            for delta in res.deltas:
                await ingest.publish_delta(delta)
        return JSONResponse(
            {
                "zone": res.zone,
                "kind": res.kind,
                "count": res.count,
                "head_seq": res.head_seq,
                "published": bool(ingest),
            }
        )

    # ----------------------------------------------------------------- commands
    @app.post("/api/commands", tags=["commands"])
    async def command(body: CommandBody, user: Operator) -> dict[str, Any]:
        """Sign with the checkpoint key and publish to the agent; the agent's result arrives later."""
        if (
            body.action in (CommandAction.LOCK_LANE, CommandAction.UNLOCK_LANE)
            and user.role < Role.SUPERVISOR
        ):
            raise HTTPException(403, "locking a lane needs role supervisor")
        second: str | None = None
        if body.action is CommandAction.MANUAL_RELEASE and body.transaction_id:
            tx = await call(s.get_transaction, body.transaction_id)
            if tx and {"I1", "I2"} & set(tx["reasons"]):
                if not body.second_username or not body.second_password:
                    raise HTTPException(409, "overriding an I1/I2 inspection hold needs a second officer")
                other = await asyncio.to_thread(s.authenticate, body.second_username, body.second_password)
                if other is None or other.username == user.username or other.role < Role.OPERATOR:
                    raise HTTPException(
                        403, "second officer not accepted (wrong password, same person, or viewer)"
                    )
                second = other.username
        elif body.second_username and body.second_password:
            other = await asyncio.to_thread(s.authenticate, body.second_username, body.second_password)
            second = other.username if other and other.username != user.username else None
        key = key_for(body.agent_id)
        if key is None:
            raise HTTPException(503, f"no signing key for {body.agent_id} (keys directory or env)")
        if ingest is None or not ingest.connected.is_set():
            raise HTTPException(503, "not connected to the broker; command not sent")
        params = dict(body.params)
        if body.transaction_id:
            params.setdefault("transaction_id", body.transaction_id)
        cmd = OperatorCommand.create(
            ttl_s=body.ttl_s,
            agent_id=body.agent_id,
            lane=body.lane,
            action=body.action,
            operator_id=user.username,
            second_operator_id=second,
            reason_code=body.reason_code,
            reason_text=body.reason_text,
            params=params,
        )
        signed = sign_command(cmd, key, key_id=body.agent_id)
        await call(s.record_command, signed, user.username)
        zone, checkpoint = body.agent_id.split("/")
        sent = await ingest.publish(Topics.commands(zone, checkpoint), signed.to_bytes(), qos=1, queue=False)
        await call(s.set_command_status, cmd.command_id, "sent" if sent else "not_sent")
        if not sent:
            raise HTTPException(
                503, "publish to the broker failed; the command was not sent (recorded as not_sent)"
            )
        row = {
            "command_id": cmd.command_id,
            "status": "sent",
            "agent_id": body.agent_id,
            "lane": body.lane,
            "action": body.action.value,
            "second_operator_id": second,
        }
        live.publish({"type": "command", "data": row})
        return row

    # ----------------------------------------------------------------- config push (issue 8, rule C7)
    @app.post("/api/agents/{zone}/{checkpoint}/config", tags=["config"])
    async def push_config(zone: Slug, checkpoint: Slug, body: ConfigPushBody, user: Admin) -> dict[str, Any]:
        """Validate a zone config, sign it with the checkpoint key and publish it to the agent.

        422 lists every problem (file:line, key path, what was expected) and nothing is sent. The agent
        answers with a config report: `GET` this path, or `config` on `/api/agents`.
        """
        agent_id = f"{zone}/{checkpoint}"
        parsed, issues = await asyncio.to_thread(validate_text, body.yaml_text, body.filename)
        errors = [{"file": i.file, "line": i.line, "path": i.path, "message": i.message} for i in issues]
        if parsed is not None and parsed.id != zone:
            errors.append(
                {
                    "file": body.filename,
                    "line": None,
                    "path": "id",
                    "message": f"zone is {parsed.id!r}, not {zone!r}",
                }
            )
        elif parsed is not None and checkpoint not in {c.id for c in parsed.checkpoints}:
            errors.append(
                {
                    "file": body.filename,
                    "line": None,
                    "path": "checkpoints",
                    "message": f"no checkpoint {checkpoint!r} in zone {zone!r}",
                }
            )
        if errors:
            raise HTTPException(
                422, {"message": f"config not pushed: {len(errors)} problem(s)", "errors": errors}
            )
        try:
            signed = sign_config(
                key_for,
                agent_id,
                body.yaml_text,
                issued_by=user.username,
                confirm_within_s=body.confirm_within_s,
                ttl_s=body.ttl_s,
            )
        except NoSigningKey as exc:
            raise HTTPException(503, str(exc)) from None
        if ingest is None or not ingest.connected.is_set():
            raise HTTPException(503, "not connected to the broker; config not sent")
        await call(s.record_config_offer, signed.offer, user.username, body.filename)
        # an agent offline now gets it when it comes back: ingest re-delivers an unanswered push
        sent = await ingest.deliver_config(signed)
        if not sent:
            raise HTTPException(
                503, "publish to the broker failed; the config was not sent (recorded as not_sent)"
            )
        row = (await call(s.config_states)).get(agent_id, {})
        live.publish({"type": "config", "data": row})
        return row

    @app.get("/api/agents/{zone}/{checkpoint}/config", tags=["config"])
    async def config_state(zone: Slug, checkpoint: Slug, user: Viewer) -> dict[str, Any]:
        """The last push to this agent and its latest config report."""
        row = (await call(s.config_states)).get(f"{zone}/{checkpoint}")
        if row is None:
            raise HTTPException(404, f"no config push or report for {zone}/{checkpoint}")
        return row

    @app.get("/api/commands", tags=["commands"])
    async def commands(
        user: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return await call(s.list_commands, limit)

    # ----------------------------------------------------------------- administration
    @app.get("/api/audit", tags=["admin"])
    async def audit(
        user: Supervisor, limit: Annotated[int, Query(ge=1, le=5000)] = 200
    ) -> list[dict[str, Any]]:
        return await call(s.list_audit, limit)

    @app.get("/api/audit/verify", tags=["admin"])
    async def audit_verify(user: Supervisor) -> dict[str, Any]:
        problems = await call(s.verify_audit)
        return {"ok": not problems, "problems": problems}

    @app.get("/api/users", tags=["admin"])
    async def users(user: Admin) -> list[dict[str, Any]]:
        return await call(s.list_users)

    @app.post("/api/users", tags=["admin"])
    async def add_user(body: UserBody, user: Admin) -> dict[str, str]:
        try:
            role = Role.parse(body.role)
            await call(s.create_user, body.username, body.password, role, user.username)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"username": body.username, "role": role.label}

    # ----------------------------------------------------------------- dashboard
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/login.html", include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(static_dir / "login.html", headers={"Cache-Control": "no-store"})

    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
    return app
