"""Reading the role's Grafana dashboards and the PromQL of their panels, for the unit tests and the
lab test (tests/lab/test_dashboards.py loads this file by its path).

The PromQL helpers are deliberately small: the dashboards' expressions are checked for syntax by
promtool and against the live Prometheus; here they are only taken apart far enough to name the
series, labels and template variables they use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
DASHBOARDS = ("system_overview", "gpu_performance", "cost_tracking", "model_usage")
# Grafana's own variables that the panels may use besides their dashboard's template variables.
BUILTINS = frozenset({"__rate_interval", "__interval", "__range"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
# label_replace(v, "dst", "replacement", "src", "regex"): the tail names the label it adds.
_LABEL_REPLACE = re.compile(
    r'"([A-Za-z_][A-Za-z0-9_]*)",\s*"[^"]*",\s*"[A-Za-z_][A-Za-z0-9_]*",\s*"[^"]*"\s*\)'
)
_VARIABLE = re.compile(r"\$\{(\w+)[^}]*\}|\$(\w+)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
)


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / f"{name}.json").read_text(encoding="utf-8"))


def load_all() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in DASHBOARDS}


def data_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The panels that query something: every panel but the rows that only group them."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in data_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def time_range(dashboard: Mapping[str, Any]) -> str:
    """The dashboard's default time range as a PromQL duration (now-6h -> 6h): Grafana's $__range."""
    match = re.fullmatch(r"now-(\d+[smhdw])", dashboard["time"]["from"])
    if not match or dashboard["time"]["to"] != "now":
        raise ValueError(f"{dashboard['uid']}: time range {dashboard['time']} is not now-<duration> to now")
    return match.group(1)


def variables(expr: str) -> set[str]:
    """Template variables an expression uses ($name, ${name}); label_replace's $1 is not one."""
    names = {a or b for a, b in _VARIABLE.findall(expr)}
    return {name for name in names if not name.isdigit()}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace the variables named in `values`; others stay as they are."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(value, expr)


def series(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _RANGE.sub(" ", _MATCHERS.sub(" ", _GROUPING.sub(" ", text)))
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent of a number such as 1e3
            continue
        if text[match.end() :].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(series, label names its matchers use) for each selector with matchers."""
    text = _STRING.sub('""', expr)
    return [(name, set(_MATCHER_LABEL.findall(body))) for name, body in _SELECTOR.findall(text)]


def grouping_labels(expr: str) -> set[str]:
    """Labels of the by, without, on and ignoring clauses."""
    text = _STRING.sub('""', expr)
    return {label.strip() for group in _GROUPING.findall(text) for label in group.split(",") if label.strip()}


def added_labels(expr: str) -> set[str]:
    """Labels label_replace adds."""
    return set(_LABEL_REPLACE.findall(expr))


def legend_labels(legend: str) -> set[str]:
    return set(_LEGEND_LABEL.findall(legend))
