"""The wall map's geometry: fence segments, checkpoints and lanes of each zone, from the firmware configs.

The same YAML files the edges run from (`firmware_configs/zones/*.yaml`) hold the fence `path`s and
checkpoint `location`s (lat/lon), so the map shows what the sensors report against — an intrusion
on segment `n-02` lights up the stretch of fence the edge config calls `n-02`. Read once and again
only when a file changes; a file that does not validate is left out and named in `issues`, the
other zones still draw. No tiles: the dashboard projects the points itself (works offline).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from firmware_configs.loader import ZONES_DIR, check_files, config_files

_cache: dict[Path, tuple[tuple[tuple[str, float], ...], dict[str, Any]]] = {}
_lock = threading.Lock()


def _zone_dict(zone: Any) -> dict[str, Any]:
    return {
        "id": zone.id,
        "name": zone.name,
        "name_zh": zone.name_zh,
        "segments": [
            {"id": s.id, "name": s.name, "length_m": s.length_m, "path": [list(p) for p in s.path]}
            for s in zone.fence.segments
        ],
        "checkpoints": [
            {
                "id": c.id,
                "agent_id": f"{zone.id}/{c.id}",
                "name": c.name,
                "location": list(c.location) if c.location else None,
                "lanes": [
                    {"id": lane.id, "name": lane.name, "direction": lane.direction, "line": lane.line}
                    for lane in c.lanes
                ],
            }
            for c in zone.checkpoints
        ],
    }


def site_map(zones_dir: Path = ZONES_DIR) -> dict[str, Any]:
    """`{"zones": [...], "issues": [...]}` for the dashboard; cached until a file's mtime changes."""
    files = config_files([zones_dir]) if zones_dir.exists() else []
    stamp = tuple((str(f), f.stat().st_mtime) for f in files)
    with _lock:
        hit = _cache.get(zones_dir)
        if hit and hit[0] == stamp:
            return hit[1]
    zones, issues = check_files(files) if files else ([], [])
    data = {"zones": [_zone_dict(z) for z in zones], "issues": [str(i) for i in issues]}
    with _lock:
        _cache[zones_dir] = (stamp, data)
    return data
