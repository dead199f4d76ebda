"""Checks of the generated Grafana dashboards (deploy/monitoring/grafana/dashboards/), shared by the
monitoring and compose tests: load them, list their PromQL, and find structural faults."""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import combinations
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.deploy.conftest import REPO

DASHBOARDS = REPO / "deploy" / "monitoring" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
# Grafana's built-in interval variables, and a value of their kind for promtool.
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*\w+\)$")


def load_dashboards() -> dict[str, dict[str, Any]]:
    """uid -> dashboard, from every JSON file of the dashboards folder."""
    boards = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))]
    return {board["uid"]: board for board in boards}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in board.get("panels", []) if panel.get("type") != "row"]


def _variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = board.get("templating", {}).get("list", [])
    return variables


def _raw_expressions(board: dict[str, Any]) -> list[str]:
    found = [target["expr"] for panel in _panels(board) for target in panel.get("targets", [])]
    for variable in _variables(board):
        if variable.get("type") == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"{board['uid']} variable {variable['name']}: not label_values(selector, label)"
            found.append(match.group(1))
    return found


def _substituted(expr: str) -> str:
    """Grafana's variables replaced by a value of their kind (a matcher's variable by `.+`)."""
    return _VARIABLE.sub(lambda match: BUILTINS.get(match.group(1), ".+"), expr)


def dashboard_expressions(boards: dict[str, dict[str, Any]]) -> list[str]:
    """Every PromQL expression of every dashboard (panels and variables), as Prometheus can evaluate it."""
    return [_substituted(expr) for board in boards.values() for expr in _raw_expressions(board)]


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL as Prometheus can evaluate it) for every query of every panel."""
    return [(p["title"], _substituted(target["expr"])) for p in _panels(board) for target in p.get("targets", [])]


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    across = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
    return across and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def dashboard_problems(board: dict[str, Any]) -> list[str]:
    """Faults Grafana would load silently or show wrongly; an empty list for a sound dashboard."""
    problems = []
    for key in ("uid", "title", "schemaVersion"):
        if not board.get(key):
            problems.append(f"no {key}")
    variables = {v["name"]: v for v in _variables(board)}
    source = variables.get("datasource", {})
    if source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append("no datasource variable of type prometheus")
    for name, variable in variables.items():
        if variable.get("type") == "query" and variable.get("datasource") != DATASOURCE:
            problems.append(f"variable {name}: datasource {variable.get('datasource')} is not ${{datasource}}")
    ids = Counter(panel.get("id") for panel in board.get("panels", []))
    problems += [f"panel id {ident} used twice" for ident, count in ids.items() if count > 1]
    if None in ids:
        problems.append("a panel has no id")
    placed = []
    for panel in board.get("panels", []):
        title = panel.get("title")
        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int) for k in "hwxy"):
            problems.append(f"panel {title!r}: no gridPos with integer h, w, x, y")
            continue
        if grid["x"] < 0 or grid["x"] + grid["w"] > GRID_WIDTH or grid["h"] < 1:
            problems.append(f"panel {title!r}: gridPos {grid} leaves the {GRID_WIDTH}-column grid")
        placed.append((title, grid))
    problems += [f"panel {a!r} overlaps {b!r}" for (a, ga), (b, gb) in combinations(placed, 2) if _overlap(ga, gb)]
    for panel in _panels(board):
        title = panel.get("title")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"panel {title!r}: datasource {panel.get('datasource')} is not ${{datasource}}")
        if not panel.get("targets"):
            problems.append(f"panel {title!r}: no query")
        for target in panel.get("targets", []):
            if target.get("datasource") != DATASOURCE:
                problems.append(f"panel {title!r} target {target.get('refId')}: datasource is not ${{datasource}}")
            for name in _VARIABLE.findall(target.get("expr", "")):
                if name not in variables and name not in BUILTINS:
                    problems.append(f"panel {title!r} target {target.get('refId')}: unknown variable ${name}")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not defaults.get("unit") and not defaults.get("mappings"):
            problems.append(f"panel {title!r}: no unit (nor value mappings)")
    # The SDK's typed model must read back every field: one it drops is unknown to Grafana's schema.
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    if again != board:
        problems.append("grafana-foundation-sdk does not read the dashboard back unchanged")
    return problems
