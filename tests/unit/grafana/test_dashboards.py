"""The four dashboards of roles/grafana/files/dashboards: structure, stable uids, the datasource,
template variables, and that every series and label their PromQL names exists (known_metrics.yml),
with promtool's syntax check of every expression. tests/lab/test_dashboards.py runs them against
the lab's Prometheus."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import dashboards as dash

# A dashboard's uid is its address (links, bookmarks, alert annotations): it never changes.
UIDS = {
    "system_overview": "aiswarm-system-overview",
    "gpu_performance": "aiswarm-gpu-performance",
    "cost_tracking": "aiswarm-cost-tracking",
    "model_usage": "aiswarm-model-usage",
}
DATASOURCE = {"type": "prometheus", "uid": "aiswarm-prometheus"}
CORE_PANELS = {"timeseries", "stat", "gauge", "bargauge"}
UNITS = {"percentunit", "s", "celsius", "watt", "bytes", "reqps", "currencyUSD", "short", "suffix: tok/s"}
SCRAPE_LABELS = {"job", "host", "instance"}
KNOWN = yaml.safe_load((Path(__file__).with_name("known_metrics.yml")).read_text(encoding="utf-8"))["metrics"]
BOARDS = dash.load_all()
TARGETS = [
    pytest.param(name, panel, target, id=f"{name}:{panel['id']}:{target['refId']}")
    for name, board in BOARDS.items()
    for panel, target in dash.targets(board)
]


def test_the_four_dashboards_and_nothing_else_are_shipped():
    assert sorted(p.stem for p in dash.DASHBOARD_DIR.glob("*")) == sorted(dash.DASHBOARDS)


@pytest.mark.parametrize("name", dash.DASHBOARDS)
def test_dashboard_identity_is_stable_and_provisionable(name):
    board = BOARDS[name]
    assert board["uid"] == UIDS[name]
    assert board["id"] is None, "a provisioned dashboard has no database id"
    assert 36 <= board["schemaVersion"] <= 41
    assert board["title"].startswith("AI Swarm / ") and board["description"]
    assert "aiswarm" in board["tags"]
    assert board["editable"] is False
    assert dash.time_range(board)
    assert not {"__inputs", "__requires"} & set(board), (
        "an exported dashboard with inputs cannot be provisioned"
    )


def test_titles_are_unique_across_dashboards():
    titles = [board["title"] for board in BOARDS.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", dash.DASHBOARDS)
def test_panels_have_unique_ids_titles_and_a_place_on_the_grid(name):
    panels = BOARDS[name]["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids), f"duplicate panel ids: {ids}"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        assert panel["title"].strip(), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
    data_titles = [panel["title"] for panel in dash.data_panels(BOARDS[name])]
    assert len(set(data_titles)) == len(data_titles)


@pytest.mark.parametrize("name", dash.DASHBOARDS)
def test_rows_only_group_and_every_other_panel_queries_the_provisioned_datasource(name):
    for panel in BOARDS[name]["panels"]:
        if panel["type"] == "row":
            assert "targets" not in panel and panel["panels"] == [], panel["title"]
            continue
        assert panel["type"] in CORE_PANELS, f"{panel['title']}: {panel['type']} is not a core panel we use"
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel.get("description"), f"{panel['title']} has no description"
        assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), f"{panel['title']}: targets {refs}"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"{panel['title']} {target['refId']} has no expression"
            assert target["legendFormat"].strip(), f"{panel['title']} {target['refId']} has no legend"


@pytest.mark.parametrize("name", dash.DASHBOARDS)
def test_template_variables_are_defined_used_and_read_from_prometheus(name):
    board = BOARDS[name]
    defined = {var["name"]: var for var in board["templating"]["list"]}
    used = set().union(*(dash.variables(target["expr"]) for panel, target in dash.targets(board)))
    assert used <= set(defined) | dash.BUILTINS, f"undefined variables: {used - set(defined) - dash.BUILTINS}"
    assert set(defined) <= used, f"variables no panel uses: {set(defined) - used}"
    for var in defined.values():
        assert var["datasource"] == DATASOURCE
        assert var["query"] == var["definition"] == f"label_values(up, {var['name']})"
        assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"


def test_the_per_host_dashboards_filter_by_host():
    for name in ("system_overview", "gpu_performance"):
        assert [var["name"] for var in BOARDS[name]["templating"]["list"]] == ["host"]


@pytest.mark.parametrize(("name", "panel", "target"), TARGETS)
def test_every_series_and_label_a_query_names_exists(name, panel, target):
    expr = target["expr"]
    names = dash.series(expr)
    assert names, f"{panel['title']}: no series found in {expr}"
    unknown = names - set(KNOWN)
    assert not unknown, f"{panel['title']}: unknown series {unknown}"
    carried = SCRAPE_LABELS | dash.added_labels(expr) | set().union(*(set(KNOWN[n]) for n in names))
    for series_name, labels in dash.selector_labels(expr):
        wrong = labels - SCRAPE_LABELS - set(KNOWN[series_name])
        assert not wrong, f"{panel['title']}: {series_name} has no label {wrong}"
    grouping = dash.grouping_labels(expr)
    assert grouping <= carried, f"{panel['title']}: grouping by labels no series has: {grouping - carried}"
    legend = dash.legend_labels(target["legendFormat"])
    assert legend <= grouping, (
        f"{panel['title']}: the legend names {legend - grouping}, which the query drops"
    )


def _promtool() -> str | None:
    beside = Path(sys.executable).parent / "promtool"
    return str(beside) if beside.is_file() else shutil.which("promtool")


@pytest.mark.skipif(
    _promtool() is None, reason="promtool is not installed (lab/fetch-prom-tools.sh puts it into the venv)"
)
def test_promtool_parses_every_expression(tmp_path):
    rules = []
    for name, board in BOARDS.items():
        values = {
            "__rate_interval": "1m",
            "__interval": "15s",
            "__range": dash.time_range(board),
            "host": ".*",
        }
        for panel, target in dash.targets(board):
            rules.append({"record": f"dashboard:{name}:{panel['id']}:{target['refId']}",
                          "expr": dash.substitute(target["expr"], values)})  # fmt: skip
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (tier) (rate(aiswarm_spend_usd_total{tier!=""}[5m])) * 3600', {"aiswarm_spend_usd_total"}),
        ("min by (a) (x) or on (a) (count by (a) (y_count) * 0 + 1)", {"x", "y_count"}),
        (
            'histogram_quantile(0.95, sum by (le) (rate(vllm:ttft_bucket{host=~".*"}[1m])))',
            {"vllm:ttft_bucket"},
        ),
        ('label_replace(up, "dst", "$1", "src", "(.+)") / 1e3', {"up"}),
    ],
)
def test_series_are_told_apart_from_functions_labels_and_numbers(expr, expected):
    assert dash.series(expr) == expected


def test_variables_are_found_and_replaced_but_not_regex_groups():
    expr = (
        'increase(x{host=~"$host"}[$__range]) / on (m) '
        'label_replace(y[${__rate_interval}], "m", "$1", "n", "(.+)")'
    )
    assert dash.variables(expr) == {"host", "__range", "__rate_interval"}
    assert dash.substitute(expr, {"host": ".*", "__range": "6h", "__rate_interval": "1m"}) == (
        'increase(x{host=~".*"}[6h]) / on (m) label_replace(y[1m], "m", "$1", "n", "(.+)")'
    )
