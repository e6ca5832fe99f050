// efence monitoring wall. Plain JS, no build step: loads the lists once, then follows the hub's
// Server-Sent Events (/api/stream) and refreshes everything on (re)connect or when told to resync.
"use strict";

const ZONES = {
  "waigaoqiao-ftz": { zh: "外高桥保税区", en: "Waigaoqiao FTZ",
    fence: "M40,60 L190,30 L350,50 L380,150 L330,230 L150,240 L50,200 Z" },
  "waigaoqiao-park": { zh: "外高桥保税物流园区", en: "Waigaoqiao Logistics Park",
    fence: "M60,50 L340,45 L360,210 L70,225 Z" },
  "yangshan-port": { zh: "洋山保税港区", en: "Yangshan Port Area",
    fence: "M30,140 L110,50 L260,40 L380,90 L360,200 L200,235 L70,220 Z" },
  "pudong-airport": { zh: "浦东机场综合保税区", en: "Pudong Airport CBZ",
    fence: "M50,70 L220,40 L370,80 L350,200 L230,235 L60,210 Z" },
};
const GENERIC_FENCE = "M50,50 L350,50 L350,220 L50,220 Z";
const VERDICT = {
  RELEASE: { zh: "放行", en: "Release", color: "#2ecc71" },
  HOLD_MANUAL: { zh: "人工处理", en: "Manual", color: "#f5b700" },
  HOLD_INSPECTION: { zh: "查验", en: "Inspect", color: "#ff8c1a" },
  REFUSE: { zh: "禁止放行", en: "Refuse", color: "#ff4d4f" },
};
const ZONE_COLORS = ["#3ba7ff", "#2ecc71", "#f5b700", "#c77dff", "#ff8c1a", "#17c3b2"];
const ROLE_RANK = { viewer: 1, operator: 2, supervisor: 3, admin: 4 };
const TZ = "Asia/Shanghai";

const state = {
  me: null, lanes: new Map(), agents: new Map(), alarms: new Map(), tx: new Map(), txOrder: [],
  devices: [], kpis: null, sound: true, live: false, searching: false, geo: new Map(),
};

const $ = (id) => document.getElementById(id);
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function hhmmss(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString("zh-CN", { hour12: false, timeZone: TZ });
}
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} 秒前`;
  if (s < 3600) return `${Math.round(s / 60)} 分前`;
  return `${Math.round(s / 3600)} 时前`;
}
function zoneName(z) { return ZONES[z] ? ZONES[z].zh : z; }
function plateHtml(plate) {
  if (!plate) return `<span class="plate none">无车牌 no plate</span>`;
  return `<span class="plate">${esc(plate)}</span>`;
}
function badge(verdict, short = false) {
  const v = VERDICT[verdict];
  if (!v) return `<span class="muted">–</span>`;
  return `<span class="badge ${esc(verdict)}" title="${esc(v.zh)} ${esc(v.en)}">${v.zh}${short ? "" : ` ${v.en}`}</span>`;
}

async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts,
    headers: { "Content-Type": "application/json", ...(opts.headers || {}) } });
  if (r.status === 401) { location.href = "/login.html"; throw new Error("unauthenticated"); }
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r.json();
}
function can(role) { return state.me && ROLE_RANK[state.me.role] >= ROLE_RANK[role]; }

// ------------------------------------------------------------------ loading
// Live items of the last 30 s. A full reload started before an item was pushed would otherwise
// clobber it with older data, so every reload re-applies what arrived since it started.
const liveLog = [];
function remember(type, data) {
  const now = Date.now();
  liveLog.push({ at: now, type, data });
  while (liveLog.length && liveLog[0].at < now - 30000) liveLog.shift();
}
function replaySince(t0) {
  for (const item of liveLog) if (item.at >= t0) applyLive(item.type, item.data, false);
}

async function loadAll() {
  const t0 = Date.now();
  const [lanes, agents, alarms, txs, devices] = await Promise.all([
    api("/api/lanes"), api("/api/agents"), api("/api/alarms?limit=150"),
    state.searching ? Promise.resolve(null) : api("/api/transactions?limit=60"), api("/api/devices"),
  ]);
  state.lanes = new Map(lanes.map((l) => [`${l.agent_id}/${l.lane}`, l]));
  state.agents = new Map(agents.map((a) => [a.agent_id, a]));
  state.alarms = new Map(alarms.map((a) => [a.id, a]));
  if (txs) { state.tx = new Map(txs.map((t) => [t.transaction_id, t])); state.txOrder = txs.map((t) => t.transaction_id); }
  state.devices = devices;
  replaySince(t0);
  renderAll();
  loadKpis();
}
async function loadKpis() {
  try { state.kpis = await api("/api/kpis?hours=1"); renderKpis(); renderCharts(); renderMap(); } catch (e) { console.warn(e); }
}
let kpiTimer = null;
function kpisSoon() { clearTimeout(kpiTimer); kpiTimer = setTimeout(loadKpis, 2000); }
let listsTimer = null;
function listsSoon() {
  clearTimeout(listsTimer);
  listsTimer = setTimeout(async () => {
    const t0 = Date.now();
    const [lanes, agents, devices] = await Promise.all([api("/api/lanes"), api("/api/agents"), api("/api/devices")]);
    state.lanes = new Map(lanes.map((l) => [`${l.agent_id}/${l.lane}`, l]));
    state.agents = new Map(agents.map((a) => [a.agent_id, a]));
    state.devices = devices;
    replaySince(t0);
    renderLanes(); renderMap(); renderDevices(); renderKpis(); renderConfigs();
  }, 400);
}

// ------------------------------------------------------------------ rendering
function renderAll() { renderMap(); renderLanes(); renderAlarms(); renderFeed(); renderDevices(); renderKpis(); renderCharts(); renderConfigs(); }

function zonesShown() {
  const ids = Object.keys(ZONES);
  for (const z of state.geo.keys()) if (!ids.includes(z)) ids.push(z);
  for (const l of state.lanes.values()) if (!ids.includes(l.zone)) ids.push(l.zone);
  for (const a of state.agents.values()) if (!ids.includes(a.zone)) ids.push(a.zone);
  return ids;
}

// The wall map: each zone's fence drawn from the lat/lon paths of the firmware configs (/api/map),
// projected here (no tile server: the monitoring room may be offline). A segment is red while a
// perimeter intrusion on it rings, orange for a tamper, grey when no checkpoint of the zone is online
// (nobody reads its sensors). Zones without geometry fall back to a schematic outline.
const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_W = 400, MAP_H = 260, MAP_PAD = { top: 40, right: 22, bottom: 18, left: 22 };
function svgEl(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}
function svgTitle(el, text) { svgEl("title", {}, el).textContent = text; }
function projector(points) {
  // equirectangular around the zone's mean latitude: metres-true enough for a few kilometres
  const lat0 = points.reduce((s, p) => s + p[0], 0) / points.length;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const xs = points.map((p) => p[1] * k), ys = points.map((p) => -p[0]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const w = MAP_W - MAP_PAD.left - MAP_PAD.right, h = MAP_H - MAP_PAD.top - MAP_PAD.bottom;
  const scale = Math.min(w / Math.max(x1 - x0, 1e-9), h / Math.max(y1 - y0, 1e-9));
  const ox = MAP_PAD.left + (w - (x1 - x0) * scale) / 2, oy = MAP_PAD.top + (h - (y1 - y0) * scale) / 2;
  return (p) => ({ x: ox + (p[1] * k - x0) * scale, y: oy + (-p[0] - y0) * scale });
}
function segmentHits(zone, seg, ringing) {
  return ringing.filter((a) => a.zone === zone && a.kind.startsWith("perimeter") &&
    ((a.subject || "").endsWith(`/${seg.id}`) || (a.details && (a.details.segment === seg.id || a.details.segment_id === seg.id))));
}
function segmentAlarm(zone, seg, ringing) {
  const hits = segmentHits(zone, seg, ringing);
  if (hits.some((a) => a.kind === "perimeter_intrusion")) return "intrusion";
  return hits.length ? "tamper" : null;
}

// ------------------------------------------------------------------ linked camera (DOMAIN.md §5)
// A perimeter alarm "pops up the linked camera": the edge uploads the fence camera's snapshot as
// evidence keyed by the alarm's incident id; GET /api/alarms and the `alarm` push carry it as
// `evidence`, and a snapshot arriving later comes as an `evidence` push (applyLive). Gate exceptions
// show their lane images the same way (keyed by transaction id).
function evidenceKey(a) {
  const d = a.details || {};
  return d.incident_id || d.transaction_id || null;
}
function snapshotPending(a) { return a.ringing && !(a.evidence || []).length && Boolean(a.details && a.details.snapshot); }
function cameraLabel(a) {
  const cam = a.details && a.details.camera_id;
  return a.kind.startsWith("perimeter") ? `联动摄像机 Linked camera${cam ? ` ${cam}` : ""}` : "抓拍 Camera images";
}
function alarmSnaps(a) {
  const imgs = a.evidence || [];
  if (imgs.length) {
    // the fence snapshot large (it is what the room acts on); a gate exception's lane images small
    return `<div class="alarm-snaps${a.kind.startsWith("perimeter") ? "" : " small"}">${imgs.slice(0, 3).map((e) => `<button type="button" class="thumb" data-img="${esc(e.url)}" title="${esc(e.name)}">
      <img src="${esc(e.url)}" alt="${esc(e.name)}"></button>`).join("")}<span class="snap-label">${esc(cameraLabel(a))}</span></div>`;
  }
  return snapshotPending(a) ? `<div class="alarm-snaps pending"><span class="snap-label">${esc(cameraLabel(a))} · 抓拍上传中 snapshot on its way…</span></div>` : "";
}
// The picture at the red segment: one popup per zone, for its newest ringing perimeter alarm that has
// (or awaits) a snapshot, drawn beside the segment towards the zone's middle and tied to it by a line.
const POP_W = 210, POP_H = 150;
function drawCameraPopup(svg, a, mid, centre) {
  const imgs = a.evidence || [];
  const left = centre.x < mid.x;
  const x = Math.min(Math.max(left ? mid.x - 14 - POP_W : mid.x + 14, 2), MAP_W - POP_W - 2);
  const y = Math.min(Math.max(mid.y - POP_H / 2, MAP_PAD.top), MAP_H - POP_H - 2);  // below the zone title
  const ex = Math.min(Math.max(mid.x, x), x + POP_W), ey = Math.min(Math.max(mid.y, y), y + POP_H);
  svgEl("line", { x1: mid.x, y1: mid.y, x2: ex, y2: ey, class: "cam-pop-line" }, svg);
  const fo = svgEl("foreignObject", { x, y, width: POP_W, height: POP_H, class: "cam-pop",
    "data-alarm": a.id, "data-segment": (a.details && a.details.segment) || "" }, svg);
  const box = document.createElement("div");
  box.className = "cam-pop-box";
  const e = imgs[0];
  box.innerHTML = (e ? `<button type="button" class="thumb" data-img="${esc(e.url)}" title="${esc(e.name)}"><img src="${esc(e.url)}" alt="${esc(e.name)}"></button>`
    : `<div class="cam-pop-wait">抓拍上传中<br>snapshot on its way…</div>`) +
    `<div class="cam-pop-cap" title="${esc(cameraLabel(a))} · ${hhmmss(a.raised_at)}">联动 Linked ${esc((a.details && a.details.camera_id) || "")}</div>`;
  fo.appendChild(box);
}
function drawCheckpoint(svg, p, agentId, cpName, lanes, inward) {
  const a = state.agents.get(agentId);
  const cls = !a ? "unknown" : a.online ? (a.stale ? "unknown" : "online") : "offline";
  const g = svgEl("g", { class: "cp", "data-agent": agentId }, svg);
  const node = svgEl("circle", { cx: p.x, cy: p.y, r: 9, class: `cp-node ${cls}` }, g);
  svgTitle(node, `${(a && a.name) || cpName || agentId} · ${cls}`);
  // lanes: a row of squares pointing into the zone, coloured by their last verdict
  const len = Math.hypot(inward.x, inward.y) || 1;
  const ux = inward.x / len, uy = inward.y / len;
  lanes.forEach((l, j) => {
    const cx = p.x + ux * (20 + j * 16), cy = p.y + uy * (20 + j * 16);
    const r = svgEl("rect", { x: cx - 7, y: cy - 7, width: 14, height: 14, rx: 3, class: "lane-node",
      "data-lane": `${l.agent_id}/${l.lane}`,
      fill: l.agent_online === false ? "#5b6776" : (VERDICT[l.last_verdict] || { color: "#2a3a4d" }).color }, g);
    svgTitle(r, `${l.name || l.lane} ${l.last_plate || ""} ${l.last_verdict || ""}`);
  });
  // the name outside the fence (above or below the node), kept inside the tile however long it is
  const label = svgEl("text", { "text-anchor": "middle", class: "cp-label" }, g);
  label.textContent = (a && a.name) || cpName || agentId.split("/")[1];
  const half = (label.getComputedTextLength ? label.getComputedTextLength() : 60) / 2;
  const above = uy > 0 || (Math.abs(uy) < 0.3 && p.y > MAP_PAD.top + 20);
  label.setAttribute("x", Math.min(Math.max(p.x, half + 4), MAP_W - half - 4));
  label.setAttribute("y", Math.min(Math.max(above ? p.y - 14 : p.y + 24, 14), MAP_H - 4));
}
function renderGeoZone(svg, zone, geo, checkpoints, lanes, ringing, anyOnline) {
  const pts = geo.segments.flatMap((s) => s.path);
  for (const c of geo.checkpoints) if (c.location) pts.push(c.location);
  const proj = projector(pts);
  const ring = geo.segments.flatMap((s) => s.path.map(proj));
  const cx = ring.reduce((s, p) => s + p.x, 0) / ring.length, cy = ring.reduce((s, p) => s + p.y, 0) / ring.length;
  svgEl("path", { d: "M" + ring.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" L") + " Z", class: "fence-area" }, svg);
  const labels = [];
  let popup = null;
  for (const seg of geo.segments) {
    const alarm = segmentAlarm(zone, seg, ringing);
    const st = alarm || (anyOnline ? "ok" : "blind");
    const line = svgEl("polyline", { points: seg.path.map(proj).map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" "),
      class: `seg ${st}`, "data-segment": seg.id, "data-state": st }, svg);
    svgTitle(line, `${seg.name} (${seg.id}) · ${Math.round(seg.length_m)} m · ${{ ok: "正常 normal", blind: "无监测 no checkpoint online", intrusion: "入侵 INTRUSION", tamper: "破坏 TAMPER" }[st]}`);
    if (alarm) {
      const mid = proj(seg.path[Math.floor(seg.path.length / 2)]);
      labels.push([mid, `${seg.id} ${alarm === "intrusion" ? "入侵" : "破坏"}`]);
      for (const a of segmentHits(zone, seg, ringing)) {
        if (((a.evidence || []).length || snapshotPending(a)) && (!popup || a.id > popup[0].id)) popup = [a, mid];
      }
    }
  }
  const known = new Set();
  for (const c of geo.checkpoints) {
    known.add(c.agent_id);
    if (!c.location) continue;
    const p = proj(c.location);
    drawCheckpoint(svg, p, c.agent_id, c.name, lanes.filter((l) => l.agent_id === c.agent_id), { x: cx - p.x, y: cy - p.y });
  }
  // checkpoints reporting in but not in the config: spread along the fence so they are still seen
  const extra = checkpoints.filter((id) => !known.has(id));
  extra.forEach((id, i) => {
    const p = ring[Math.floor((ring.length * (i + 0.5)) / extra.length)];
    drawCheckpoint(svg, p, id, null, lanes.filter((l) => l.agent_id === id), { x: cx - p.x, y: cy - p.y });
  });
  if (popup) drawCameraPopup(svg, popup[0], popup[1], { x: cx, y: cy });
  for (const [p, text] of labels) {  // on top of everything: the one thing the room must not miss
    svgEl("text", { x: p.x, y: p.y - 10, "text-anchor": "middle", class: "seg-label" }, svg).textContent = text;
  }
}
function renderSchematicZone(svg, z, checkpoints, lanes) {
  const path = svgEl("path", { d: z.fence || GENERIC_FENCE, class: "fence" }, svg);
  const total = path.getTotalLength();
  checkpoints.forEach((agentId, i) => {
    const p = path.getPointAtLength((total * (i + 0.5)) / Math.max(1, checkpoints.length));
    drawCheckpoint(svg, p, agentId, null, lanes.filter((l) => l.agent_id === agentId), { x: 200 - p.x, y: 130 - p.y });
  });
}

function renderMap() {
  const host = $("zone-map");
  const ringing = [...state.alarms.values()].filter((a) => a.ringing);
  const perZone = (state.kpis && state.kpis.vehicles_per_hour_by_zone) || {};
  host.innerHTML = "";
  for (const zone of zonesShown()) {
    const geo = state.geo.get(zone);
    const z = ZONES[zone] || (geo ? { zh: geo.name_zh, en: geo.name } : { zh: zone, en: "", fence: GENERIC_FENCE });
    const agents = [...state.agents.values()].filter((a) => a.zone === zone);
    const lanes = [...state.lanes.values()].filter((l) => l.zone === zone);
    const checkpoints = [...new Set([...agents.map((a) => a.agent_id), ...lanes.map((l) => l.agent_id)])].sort();
    const zoneAlarms = ringing.filter((a) => a.zone === zone);
    const fenceAlarm = zoneAlarms.some((a) => a.kind.startsWith("perimeter") || a.severity === "critical");
    const div = document.createElement("div");
    div.className = "zone" + (fenceAlarm ? " alarm" : "");
    div.dataset.zone = zone;
    const svg = svgEl("svg", { viewBox: `0 0 ${MAP_W} ${MAP_H}`, preserveAspectRatio: "xMidYMid meet" });
    div.appendChild(svg);
    host.appendChild(div);
    const online = agents.filter((a) => a.online).length;
    if (geo && geo.segments.some((s) => s.path.length >= 2)) {
      renderGeoZone(svg, zone, geo, checkpoints, lanes, ringing, online > 0);
    } else {
      renderSchematicZone(svg, z, checkpoints, lanes);
    }
    const shown = geo ? new Set([...geo.checkpoints.map((c) => c.agent_id), ...checkpoints]).size : checkpoints.length;
    const title = document.createElement("div");
    title.className = "zone-title";
    title.innerHTML = `${esc(z.zh)}<span class="en">${esc(z.en)}</span>`;
    div.appendChild(title);
    const stats = document.createElement("div");
    stats.className = "zone-stats";
    stats.innerHTML = `<b>${esc(perZone[zone] ?? 0)}</b> 辆/时<br>${online}/${shown} 卡口在线` +
      (zoneAlarms.length ? `<br><span style="color:var(--critical)">${zoneAlarms.length} 报警</span>` : "");
    div.appendChild(stats);
  }
}
async function loadMap() {
  try {
    const m = await api("/api/map");
    state.geo = new Map(m.zones.map((z) => [z.id, z]));
    if (m.issues.length) console.warn("zone configs not drawn:", m.issues);
    renderMap();
  } catch (e) { console.warn("map geometry unavailable; schematic outlines", e); }
}

function laneCard(l) {
  const key = `${l.agent_id}/${l.lane}`;
  const held = l.last_verdict && l.last_verdict !== "RELEASE" && !l.last_closed_at;
  const a = state.agents.get(l.agent_id);
  const dir = l.direction === "E" ? "出 E" : "进 I";
  const actions = held && can("operator") ? `<div class="lane-actions">
      <button class="ok" data-act="manual_release" data-lane="${esc(key)}" title="Manual release">放行 Release</button>
      <button class="warnbtn" data-act="escalate" data-lane="${esc(key)}" title="Divert to inspection">查验 Divert</button>
      <button class="ghost" data-act="regather" data-lane="${esc(key)}" title="Re-gather reads">重采</button></div>` : "";
  return `<div class="lane v-${esc(l.last_verdict || "none")}${l.agent_online === false ? " offline" : ""}" data-lane="${esc(key)}">
    <div class="lane-head"><span title="${esc((a && a.name) || l.checkpoint)} · ${esc(l.name || l.lane)}"><b>${esc((a && a.name) || l.checkpoint)}</b> · ${esc(l.name || l.lane)}</span><span>${dir} · ${l.line === "first" ? "一线" : "二线"}</span></div>
    <div class="lane-main"><span class="light ${esc(l.light || "")}" title="light ${esc(l.light)}"></span>${l.last_transaction_id ? `${plateHtml(l.last_plate)} ${badge(l.last_verdict, true)}` : `<span class="muted">空闲 idle · ${esc(l.state || "")}</span>`}</div>
    <div class="lane-foot"><span class="reasons">${esc((l.last_reasons || []).join(" "))}</span>
      ${can("supervisor") ? `<button class="ghost mini" data-act="${l.locked ? "unlock_lane" : "lock_lane"}" data-lane="${esc(key)}">${l.locked ? "解锁 Unlock" : "锁道 Lock"}</button>` : ""}
      <span class="barrier">${l.locked ? "<b class=\"locked\">锁定 locked</b> " : ""}道闸 ${esc(l.barrier || "?")} · ${esc(ago(l.last_decided_at))}</span></div>
    ${actions}</div>`;
}

function renderLanes() {
  const lanes = [...state.lanes.values()].sort((a, b) =>
    (zonesShown().indexOf(a.zone) - zonesShown().indexOf(b.zone)) || a.agent_id.localeCompare(b.agent_id) || a.lane.localeCompare(b.lane));
  $("lanes").innerHTML = lanes.length ? lanes.map(laneCard).join("") : `<p class="muted">等待卡口上线 · waiting for checkpoints…</p>`;
}

function renderAlarms() {
  const list = [...state.alarms.values()].sort((a, b) =>
    (b.ringing - a.ringing) || (sevRank(b.severity) - sevRank(a.severity)) || (b.id - a.id)).slice(0, 120);
  const ringing = list.filter((a) => a.ringing).length;
  const count = $("alarm-count");
  count.textContent = ringing;
  count.className = "count" + (ringing ? "" : " zero");
  $("alarms").innerHTML = list.map((a) => `<li class="alarm-item ${esc(a.severity)} ${a.ringing ? "ringing" : "acked"}" data-alarm="${a.id}">
      <div class="alarm-top"><span class="alarm-kind">${esc(a.label_zh)} <span class="en">${esc(a.label_en)}</span></span>
        <span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></div>
      <div class="alarm-where">${esc(zoneName(a.zone))} ${esc(a.checkpoint || "")} ${esc(a.lane || "")} · ${hhmmss(a.raised_at)}${a.count > 1 ? ` · ×${a.count}` : ""}${a.cleared_at ? " · 已恢复 cleared" : ""}</div>
      <div class="alarm-msg">${esc(a.message)}</div>
      ${alarmSnaps(a)}
      ${a.ringing ? `<div class="alarm-action">${esc(a.action)}</div>` : `<div class="acked-by">已确认 acked: ${esc(a.acked_by)} ${hhmmss(a.acked_at)} ${esc(a.ack_note || "")}</div>`}
      ${a.ringing && can("operator") ? `<div><button class="ack-btn" data-ack="${a.id}">确认 Acknowledge</button></div>` : ""}
    </li>`).join("") || `<li class="muted">无报警 · no alarms</li>`;
  recheckSnapshots();
}
// Belt and braces for the `evidence` push (lost when the screen reconnects, or when another hub
// instance took the upload): an alarm still awaiting its snapshot re-fetches the ringing list once.
const SNAPSHOT_RECHECK_MS = 20000;
const snapshotRechecked = new Set();
function recheckSnapshots() {
  const waiting = [...state.alarms.values()].filter((a) => snapshotPending(a) && !snapshotRechecked.has(a.id));
  if (!waiting.length) return;
  for (const a of waiting) snapshotRechecked.add(a.id);
  setTimeout(async () => {
    try {
      for (const a of await api("/api/alarms?ringing=true&limit=150")) mergeEvidence(a.id, a.evidence);
      renderAlarms(); renderMap();
    } catch (e) { console.warn(e); }
  }, SNAPSHOT_RECHECK_MS);
}
function mergeEvidence(alarmId, items) {
  const a = state.alarms.get(alarmId);
  if (!a || !items || !items.length) return false;
  const have = new Map((a.evidence || []).map((e) => [e.id, e]));
  const before = have.size;
  for (const e of items) have.set(e.id, e);
  a.evidence = [...have.values()].sort((x, y) => x.id - y.id);
  return have.size !== before;
}
function sevRank(s) { return s === "critical" ? 2 : s === "warning" ? 1 : 0; }

function txRow(t, isNew) {
  return `<tr data-tx="${esc(t.transaction_id)}" class="${isNew ? "new" : ""}">
    <td>${hhmmss(t.decided_at || t.closed_at)}</td>
    <td>${esc(zoneName(t.zone))} ${esc(t.checkpoint)} · ${esc(t.lane || "")}</td>
    <td>${t.plate ? `<span class="plate">${esc(t.plate)}</span>` : "–"}${t.evidence_count ? ` <span class="tag" title="${t.evidence_count} evidence images">图 ${t.evidence_count}</span>` : ""}</td>
    <td>${esc(t.pass_no || "–")}</td>
    <td>${badge(t.verdict)}${t.manual ? ` <span class="tag" title="manual decision">人工</span>` : ""}${t.offline ? ` <span class="tag" title="decided offline">离线</span>` : ""}</td>
    <td>${esc((t.reasons || []).join(" "))}${t.closed_at ? "" : ` <span class="inlane" title="vehicle still in the lane">在道</span>`}</td></tr>`;
}
function renderFeed(newId) {
  $("feed").innerHTML = state.txOrder.slice(0, 80).map((id) => txRow(state.tx.get(id), id === newId)).join("");
}

function renderKpis() {
  const k = state.kpis;
  if (k) {
    $("kpi-vph").textContent = k.vehicles_per_hour ?? "–";
    $("kpi-auto").textContent = k.auto_release_ratio == null ? "–" : `${Math.round(k.auto_release_ratio * 100)}%`;
    $("kpi-gate").textContent = k.median_gate_time_s == null ? "–" : `${k.median_gate_time_s.toFixed(1)} s`;
  }
  const agents = [...state.agents.values()];
  $("kpi-agents").textContent = `${agents.filter((a) => a.online).length}/${agents.length}`;
  const devs = state.devices.filter((d) => d.enabled);
  $("kpi-devices").textContent = `${devs.filter((d) => d.effective === "up").length}/${devs.length}`;
}

function renderCharts() {
  const k = state.kpis;
  const svg = $("chart-hourly");
  if (!k) return;
  const series = k.hourly_by_zone.counts;
  const zones = Object.keys(series);
  const max = Math.max(1, ...zones.flatMap((z) => series[z]));
  let out = "";
  for (let i = 0; i <= 4; i++) out += `<line x1="0" x2="420" y1="${10 + i * 25}" y2="${10 + i * 25}" stroke="#1c2938" stroke-width="1"/>`;
  zones.forEach((z, zi) => {
    const pts = series[z].map((v, i) => `${(i * 420) / 11},${110 - (v / max) * 100}`).join(" ");
    out += `<polyline points="${pts}" fill="none" stroke="${ZONE_COLORS[zi % ZONE_COLORS.length]}" stroke-width="2.5"/>`;
  });
  svg.innerHTML = out;
  $("chart-legend").innerHTML = zones.map((z, zi) =>
    `<span><i style="background:${ZONE_COLORS[zi % ZONE_COLORS.length]}"></i>${esc(zoneName(z))}</span>`).join("") +
    `<span class="muted">峰值 max ${max}/h</span>`;
  const reasons = Object.entries(k.inspections_by_reason || {});
  const rmax = Math.max(1, ...reasons.map(([, n]) => n));
  const NAMES = { I1: "布控 risk", I2: "随机 random", I3: "重量 weight", I4: "关锁 seal", I5: "升级 escalated" };
  $("chart-reasons").innerHTML = reasons.length ? reasons.map(([code, n]) =>
    `<div class="bar"><span class="code" title="${esc(NAMES[code] || code)}">${esc(code)}</span><span><span class="fill" style="width:${(n / rmax) * 100}%"></span></span><span>${n}</span></div>`).join("")
    : `<span class="muted">本小时无查验 · no inspections this hour</span>`;
}

// fence cameras and sensors are the agents' devices outside the lanes (lane "perimeter" at the hub)
const FENCE = "perimeter";
const devicePlace = (d) => (d.lane === FENCE ? "周界 fence" : d.lane || "");

function renderDevices() {
  const byZone = new Map();
  const fence = { up: 0, total: 0 };
  for (const d of state.devices) {
    const z = byZone.get(d.zone) || { up: 0, total: 0 };
    z.total += 1; if (d.effective === "up") z.up += 1;
    byZone.set(d.zone, z);
    if (d.lane === FENCE) { fence.total += 1; if (d.effective === "up") fence.up += 1; }
  }
  const tile = (name, c, cls = "") =>
    `<div class="dev-zone${cls}"><span>${esc(name)}</span><b style="color:${c.up === c.total ? "var(--release)" : "var(--manual)"}">${c.up}/${c.total}</b></div>`;
  const down = state.devices.filter((d) => d.effective === "down");
  $("devices").innerHTML = [...byZone.entries()].map(([z, c]) => tile(zoneName(z), c)).join("") +
    (fence.total ? tile("其中周界 of which fence", fence, " dev-fence") : "") +
    down.slice(0, 8).map((d) => `<div class="dev-down">离线 down: ${esc(d.checkpoint)} ${esc(devicePlace(d))} ${esc(d.device_id)} ${esc(d.last_error || "")}</div>`).join("") ||
    `<span class="muted">尚无设备 · no devices yet</span>`;
}

// ------------------------------------------------------------------ live
function connectLive() {
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", () => { setLive(true); loadAll().catch(console.warn); });
  for (const type of ["transaction", "alarm", "evidence"]) {
    es.addEventListener(type, (ev) => {
      const data = JSON.parse(ev.data);
      remember(type, data);
      applyLive(type, data, true);
    });
  }
  for (const kind of ["lane", "agent", "device", "config"]) es.addEventListener(kind, listsSoon);
  es.addEventListener("command", (ev) => toastCommand(JSON.parse(ev.data)));
  es.addEventListener("resync", () => loadAll().catch(console.warn));
  es.onerror = () => setLive(false);
}
// Apply one pushed item; never let an older version replace a newer one (pushes and reloads race).
function applyLive(type, data, render) {
  if (type === "transaction") {
    const t = data;
    const old = state.tx.get(t.transaction_id);
    const isNew = !old;
    if (!state.searching && (!old || (old.updated_at || "") <= (t.updated_at || ""))) {
      state.tx.set(t.transaction_id, t);
      if (isNew) state.txOrder.unshift(t.transaction_id);
      if (state.txOrder.length > 200) state.tx.delete(state.txOrder.pop());
      if (render) renderFeed(isNew ? t.transaction_id : null);
    }
    const key = `${t.agent_id}/${t.lane}`;
    const lane = state.lanes.get(key);
    if (lane) {
      const current = lane.last_transaction_id === t.transaction_id || (lane.last_decided_at || "") <= (t.decided_at || "");
      if (current && t.decided_at) {
        Object.assign(lane, { last_transaction_id: t.transaction_id, last_plate: t.plate ?? lane.last_plate,
          last_verdict: t.verdict, last_reasons: t.reasons, last_decided_at: t.decided_at, last_closed_at: t.closed_at });
        if (render) {
          renderLanes();
          const card = document.querySelector(`.lane[data-lane="${CSS.escape(key)}"]`);
          if (card) card.classList.add("flash");
        }
      }
    } else if (render) listsSoon();
    if (render) kpisSoon();
  } else if (type === "alarm") {
    const old = state.alarms.get(data.id);
    if (!old || !old.acked_at || data.acked_at) {  // an ack is never undone
      state.alarms.set(data.id, data);
      if (old) mergeEvidence(data.id, old.evidence);  // nor is a picture already shown
    }
    if (render) { renderAlarms(); renderMap(); }
  } else if (type === "evidence") {
    // a new picture (a fence snapshot uploads after its alarm rang): add it to the alarms it belongs to
    let changed = false;
    for (const a of state.alarms.values()) if (evidenceKey(a) === data.transaction_id) changed = mergeEvidence(a.id, [data]) || changed;
    if (changed && render) { renderAlarms(); renderMap(); }
  }
}

const STATUS = { sent: "已发送 sent", done: "已执行 done", refused: "被拒绝 refused", failed: "失败 failed" };
function toastCommand(c) {
  const box = document.createElement("div");
  box.className = `toast ${c.status}`;
  box.textContent = `${CMD_TITLE[c.action] || c.action} · ${c.agent_id} ${c.lane || ""} · ${STATUS[c.status] || c.status}` +
    (c.code || c.detail ? ` · ${c.code || ""} ${c.detail || ""}` : "");
  $("toasts").appendChild(box);
  setTimeout(() => box.remove(), c.status === "sent" ? 5000 : 12000);
  if (c.status !== "sent") listsSoon();
}

function setLive(on) {
  state.live = on;
  $("live-dot").className = "dot" + (on ? "" : " off");
  $("live-text").textContent = on ? "实时 Live" : "重连中 Reconnecting";
}

// ------------------------------------------------------------------ actions
let ackId = null;
document.addEventListener("click", async (ev) => {
  const ackBtn = ev.target.closest("[data-ack]");
  if (ackBtn) {
    ackId = Number(ackBtn.dataset.ack);
    const a = state.alarms.get(ackId);
    $("ack-text").textContent = `${a.label_zh} ${a.label_en} — ${a.message}`;
    $("ack-note").value = "";
    $("ack-dialog").showModal();
    return;
  }
  const thumb = ev.target.closest("button[data-img]");
  if (thumb) { openImage(thumb.dataset.img, thumb.title); return; }
  const act = ev.target.closest("[data-act]");
  if (act) { openCommand(act.dataset.act, act.dataset.lane); return; }
  const row = ev.target.closest("tr[data-tx]");
  if (row) showTx(row.dataset.tx);
});
$("ack-confirm").addEventListener("click", async (ev) => {
  ev.preventDefault();
  try {
    const a = await api(`/api/alarms/${ackId}/ack`, { method: "POST", body: JSON.stringify({ note: $("ack-note").value }) });
    remember("alarm", a);
    state.alarms.set(a.id, a);
    renderAlarms(); renderMap();
    $("ack-dialog").close();
  } catch (e) { alert(e.message); }
});

let pendingCmd = null;
const CMD_TITLE = {
  manual_release: "人工放行 Manual release", escalate: "转查验 Divert to inspection", regather: "重新采集 Re-gather",
  lock_lane: "锁定车道 Lock lane", unlock_lane: "解锁车道 Unlock lane",
};
function openCommand(action, laneKey) {
  const l = state.lanes.get(laneKey);
  if (!l) return;
  pendingCmd = { action, lane: l };
  $("cmd-title").textContent = CMD_TITLE[action] || action;
  $("cmd-text").textContent = `${zoneName(l.zone)} ${l.checkpoint} ${l.name || l.lane} · ${l.last_plate || ""} · ${(l.last_reasons || []).join(" ")}`;
  $("cmd-reason").value = "";
  $("cmd-error").hidden = true;
  const needsSecond = action === "manual_release" && (l.last_reasons || []).some((r) => r === "I1" || r === "I2");
  $("cmd-second").hidden = !needsSecond;
  $("cmd-dialog").showModal();
}
$("cmd-confirm").addEventListener("click", async (ev) => {
  ev.preventDefault();
  const { action, lane } = pendingCmd;
  const body = { agent_id: lane.agent_id, lane: lane.lane, action, reason_code: $("cmd-code").value,
    reason_text: $("cmd-reason").value, transaction_id: lane.last_transaction_id };
  if (!$("cmd-second").hidden) { body.second_username = $("cmd-second-user").value; body.second_password = $("cmd-second-pass").value; }
  try {
    await api("/api/commands", { method: "POST", body: JSON.stringify(body) });
    $("cmd-dialog").close();
  } catch (e) { $("cmd-error").textContent = e.message; $("cmd-error").hidden = false; }
});

async function showTx(id) {
  const t = await api(`/api/transactions/${encodeURIComponent(id)}`);
  const rows = [
    ["车牌 Plate", t.plate], ["电子车牌 E-plate", t.e_plate], ["核放单 Pass", t.pass_no],
    ["箱号 Containers", (t.containers || []).join(", ")], ["地磅 Gross kg", t.gross_kg], ["重量差 Weight diff kg", t.wt_error],
    ["结果 Verdict", t.verdict], ["原因 Reasons", (t.reasons || []).join(" ")], ["人工 Manual", t.manual ? `是 ${t.operator_id || ""}` : "否"],
    ["离线决策 Offline", t.offline ? "是 yes" : "否 no"], ["数据版本 Record version", t.record_version],
    ["开始 Started", t.started_at], ["决策 Decided", t.decided_at], ["离开 Closed", `${t.closed_at || "–"} ${t.outcome || ""}`],
    ["显示屏 LED", `${t.led_zh || ""} ${t.led_en || ""}`],
  ];
  const imgs = t.evidence || [];
  $("tx-body").innerHTML = `<dl class="kv">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v ?? "–")}</dd>`).join("")}</dl>
    <h4>抓拍 Images (${imgs.length})</h4>
    <div class="evidence">${imgs.length ? imgs.map((e) => `<figure><button type="button" class="thumb" data-img="${esc(e.url)}" title="${esc(e.name)}">
      <img src="${esc(e.url)}" alt="${esc(e.name)}" loading="lazy"></button><figcaption>${esc(e.name)}</figcaption></figure>`).join("")
      : `<p class="muted">无图片 No images</p>`}</div>
    <h4>证据 Evidence (${t.events.length} events)</h4>
    <div class="events">${t.events.map((e) => esc(`#${e.seq} ${e.type} ${e.observed_at}\n${JSON.stringify(e.payload, null, 1)}`)).join("\n\n")}</div>`;
  $("tx-dialog").showModal();
}

// the image viewer: a thumbnail in the transaction dialog, an alarm card or the map's camera popup
function openImage(url, title) {
  $("img-full").src = url;
  $("img-full").alt = title;
  $("img-caption").textContent = title;
  $("img-dialog").showModal();
}

$("search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("search-q").value.trim();
  state.searching = Boolean(q);
  let txs;
  if (!q) txs = await api("/api/transactions?limit=60");
  else {
    const param = /^[A-Z]{4}\d{6,7}$/i.test(q) ? "container" : q.length >= 18 && /^[A-Z0-9]+$/i.test(q) ? "pass" : "plate";
    txs = await api(`/api/transactions?limit=200&${param}=${encodeURIComponent(q)}`);
  }
  state.tx = new Map(txs.map((t) => [t.transaction_id, t]));
  state.txOrder = txs.map((t) => t.transaction_id);
  renderFeed();
});

$("logout").addEventListener("click", async () => {
  try { await api("/api/logout", { method: "POST" }); } finally { location.href = "/login.html"; }
});
$("sound-toggle").addEventListener("click", () => {
  state.sound = !state.sound;
  $("sound-toggle").textContent = state.sound ? "声音 开 Sound on" : "声音 关 Sound off";
});

// Ringing: a short two-tone beep every 3 s while a critical alarm is unacknowledged.
let audio = null;
function beep() {
  if (!state.sound) return;
  const critical = [...state.alarms.values()].some((a) => a.ringing && a.severity === "critical");
  if (!critical) return;
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") return;
    for (const [i, f] of [[0, 880], [1, 660]]) {
      const o = audio.createOscillator(); const g = audio.createGain();
      o.frequency.value = f; g.gain.value = 0.06;
      o.connect(g); g.connect(audio.destination);
      o.start(audio.currentTime + i * 0.18); o.stop(audio.currentTime + i * 0.18 + 0.15);
    }
  } catch (e) { /* no audio device */ }
}
document.addEventListener("click", () => { if (audio && audio.state === "suspended") audio.resume(); });

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false, timeZone: TZ });
}

async function main() {
  state.me = await api("/api/me");
  $("user-name").textContent = `${state.me.username} (${state.me.role})`;
  tick();
  setInterval(tick, 1000);
  setInterval(beep, 3000);
  setInterval(loadKpis, 15000);
  setInterval(() => loadAll().catch(console.warn), 60000);
  setInterval(renderLanes, 10000);
  await loadAll();
  loadMap();
  connectLive();
}
main().catch((e) => console.error(e));

// ------------------------------------------------------------------ config versions (config push)
// Each checkpoint's running config (first 8 hex of the zone file's SHA-256) and its last push.
const PUSH_LABEL = { pending: "推送中 pending", applied: "已应用 applied", unchanged: "未变 unchanged",
  rejected: "被拒绝 rejected", refused: "拒收 refused", rolled_back: "已回滚 rolled back", installed: "本地 local",
  not_sent: "未发送 not sent" };
function renderConfigs() {
  const host = $("configs");
  if (!host) return;
  const agents = [...state.agents.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id));
  host.innerHTML = agents.map((a) => {
    const c = a.config || {};
    const version = (a.config_version || c.running_version || "").slice(0, 8) || "–";
    const push = c.push || "";
    const title = [c.detail, ...(c.errors || [])].filter(Boolean).join("\n");
    return `<div class="config-row" data-agent="${esc(a.agent_id)}" title="${esc(title)}">
      <span>${esc(a.name || a.agent_id)}</span><code class="config-version">${esc(version)}</code>
      <span class="config-push ${esc(push)}">${esc(PUSH_LABEL[push] || push)}</span></div>`;
  }).join("") || `<p class="muted">–</p>`;
}
