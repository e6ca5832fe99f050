"""Load and validate firmware-config YAML, with errors a field engineer can act on.

Every error names the file, the line, the key path (`checkpoints[0].lanes[1].devices[2].serial.baudrate`)
and what was expected, because the person reading it is standing at a gate with a laptop.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from firmware_configs.schema import Zone

ZONES_DIR = Path(__file__).parent / "zones"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one file."""

    file: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """Raised by `load_zone` when a file does not validate; carries every issue found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _format_loc(loc: Iterable[int | str], data: object = None) -> str:
    """`checkpoints[gate-1].lanes[in-1].devices[eplate].serial.baudrate`: list items by their id where they have one."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            item = data[part] if isinstance(data, list) and part < len(data) else None
            ident = item.get("id") if isinstance(item, dict) else None
            out += f"[{ident}]" if isinstance(ident, str) and ident else f"[{part}]"
            data = item
        else:
            out += ("." if out else "") + str(part)
            data = data.get(part) if isinstance(data, dict) else None
    return out


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Walk the composed YAML node tree along a pydantic error location to find its line (1-based)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == part:
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
            if nxt is None:
                break  # a discriminator tag or a missing key: the parent's line is the best we have
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _expected(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key (not part of the schema; check spelling and indentation)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "union_tag_invalid":
        return msg.replace("Input tag", "unknown type").replace(
            "does not match any of the expected tags", "; expected one of"
        )
    if "input" in err and err["type"] not in ("model_type",):
        return f"{msg} (got {err['input']!r})"
    return msg


def validate_text(text: str, file: str = "<string>") -> tuple[Zone | None, list[ConfigIssue]]:
    """Parse and validate one zone document; returns the zone or the issues, never raises on bad input."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        return None, [ConfigIssue(file, "", line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    if not isinstance(data, dict):
        return None, [
            ConfigIssue(file, "", 1, "expected a mapping with the zone's keys (id, name, checkpoints, fence)")
        ]
    try:
        return Zone.model_validate(data), []
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _DISCRIMINATOR_TAGS))
            issues.append(ConfigIssue(file, _format_loc(loc, data), _line_of(node, loc), _expected(err)))
        return None, issues


_DISCRIMINATOR_TAGS = {
    "io_board",
    "weighbridge",
    "rfid_reader",
    "plate_camera",
    "container_camera",
    "led_board",
    "tcp",
    "rtu",
}


def config_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to the YAML files below them (recursively, sorted); keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]))
        else:
            out.append(p)
    return out


def check_files(paths: Iterable[str | Path]) -> tuple[list[Zone], list[ConfigIssue]]:
    """Validate many files; also checks that zone ids are unique across them."""
    zones: list[Zone] = []
    issues: list[ConfigIssue] = []
    seen: dict[str, str] = {}
    for path in config_files(paths):
        if not path.exists():
            issues.append(ConfigIssue(str(path), "", None, "no such file or directory"))
            continue
        zone, found = validate_text(path.read_text(encoding="utf-8"), str(path))
        issues.extend(found)
        if zone is not None:
            if zone.id in seen:
                issues.append(
                    ConfigIssue(str(path), "id", None, f"zone id {zone.id!r} is also used by {seen[zone.id]}")
                )
            seen[zone.id] = str(path)
            zones.append(zone)
    return zones, issues


def load_zone(path: str | Path) -> Zone:
    """Load one zone file or raise `ConfigError` listing every issue."""
    zones, issues = check_files([path])
    if issues:
        raise ConfigError(issues)
    return zones[0]


def load_zones(paths: Iterable[str | Path] = (ZONES_DIR,)) -> list[Zone]:
    """Load every zone file under the given paths (default: the shipped four zones)."""
    zones, issues = check_files(paths)
    if issues:
        raise ConfigError(issues)
    return zones
