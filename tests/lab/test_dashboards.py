"""Every panel query of the collection's Grafana dashboards (roles/grafana/files/dashboards)
against the lab's Prometheus: after a short load through the gateway, each query must be valid
and return at least one series. A query may come back empty only when the lab cannot have its
data, decided from the query's series and the lab's own state, never from a panel's title:

- GPU series (aiswarm_agent_gpu_*) while the swarm agents count no GPU (sum of aiswarm_agent_gpus 0);
- host temperature sensors while no node exporter sees a hwmon or thermal-zone temperature;
- series that exist only after an event that has not happened: ALERTS while Prometheus has no
  alert firing, LiteLLM's fallback counters, the agent's actions counter.

Such panels are reported as skipped, with the reason. Prometheus: AISWARM_PROMETHEUS_URL
(default http://127.0.0.1:9090, oracle's port published on the lab host's loopback).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

_HELPERS = Path(__file__).resolve().parents[1] / "unit" / "grafana" / "dashboards.py"
_spec = importlib.util.spec_from_file_location("aiswarm_dashboard_helpers", _HELPERS)
assert _spec is not None and _spec.loader is not None
dash = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dash)

PROMETHEUS = os.environ.get("AISWARM_PROMETHEUS_URL", "http://127.0.0.1:9090").rstrip("/")
GATEWAY = "http://127.0.0.1:4000/v1"
LOCAL_GROUP = "swarm-chat"
VIRTUAL_MODEL = "swarm-auto"
# Paid groups of the premium and specialized tiers, served in the lab by the OpenRouter stand-in:
# their calls are what the spend guard counts (aiswarm_spend_*).
PAID_GROUPS = ("hermes-3-405b", "mistral-large")
GPU_PREFIX = "aiswarm_agent_gpu_"
SENSOR_SERIES = frozenset({"aiswarm_agent_host_temperature_celsius"})
# Series that appear only after an event, with the event and the lab state that must hold for
# their absence to mean "no such event yet" rather than "nothing scraped".
EVENT_SERIES = {
    "ALERTS": "no alert is firing",
    "litellm_deployment_successful_fallbacks_total": "no request has failed over since the gateway started",
    "litellm_deployment_failed_fallbacks_total": "no request has failed over since the gateway started",
    "aiswarm_agent_actions_total": "the swarm agent has taken no action since it started",
}
FALLBACK_SERIES = frozenset(
    {"litellm_deployment_successful_fallbacks_total", "litellm_deployment_failed_fallbacks_total"}
)
SCRAPES_AFTER_LOAD = 2
SCRAPE_WAIT_S = 120
TARGETS = [
    pytest.param(name, panel, target, id=f"{name}:{panel['id']}:{target['refId']}")
    for name, board in dash.load_all().items()
    for panel, target in dash.targets(board)
]


def query(expr: str) -> dict[str, Any]:
    """Prometheus's answer to an instant query (status success or error), whatever its HTTP status."""
    resp = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=30)
    return resp.json()


def scalar(expr: str) -> float | None:
    """The value of a query that returns at most one series; None when it returns none."""
    answer = query(expr)
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _scrape_time(text: str) -> float:
    """Prometheus's RFC 3339 lastScrape, with nanoseconds, as Unix time."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def wait_for_scrapes(since: float) -> None:
    """Until every active target was scraped SCRAPES_AFTER_LOAD times after `since`: then every
    series the load created has two samples, so rate() and increase() have something to compare."""
    seen: dict[str, set[float]] = {}
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:
        active = httpx.get(f"{PROMETHEUS}/api/v1/targets", params={"state": "active"}, timeout=30).json()
        for target in active["data"]["activeTargets"]:
            key = f"{target['scrapePool']} {target['scrapeUrl']} {sorted(target['labels'].items())}"
            seen.setdefault(key, set())
            if target.get("lastScrape") and _scrape_time(target["lastScrape"]) > since:
                seen[key].add(_scrape_time(target["lastScrape"]))
        behind = sorted(key for key, times in seen.items() if len(times) < SCRAPES_AFTER_LOAD)
        if seen and not behind:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"not scraped {SCRAPES_AFTER_LOAD} times within {SCRAPE_WAIT_S} s after the load: {behind}"
            )
        time.sleep(1)


def chat(key: str, model: str, prompt: str, stream: bool) -> tuple[int, str]:
    body = {
        "model": model,
        "stream": stream,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": prompt}],
    }
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.stream("POST", f"{GATEWAY}/chat/completions", json=body, headers=headers, timeout=120) as resp:
        return resp.status_code, resp.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def load(secret) -> list[str]:
    """A short load the panels can show: streamed and plain chats of the local group (first-token
    times), a swarm-auto request (the cost router's decisions) and paid cloud calls (spend). A paid
    call may be refused only by the spend guard, with its budget named (then the budget is spent)."""
    key = f"sk-{secret('litellm_master_key')}"
    calls = [(LOCAL_GROUP, True)] * 4 + [(LOCAL_GROUP, False), (VIRTUAL_MODEL, False)]
    calls += [(group, True) for group in PAID_GROUPS for _attempt in range(2)]
    answers = []
    for n, (model, stream) in enumerate(calls):
        status, text = chat(key, model, f"Say hello, dashboard check {n}.", stream)
        served = status == 200 and '"error"' not in text
        refused_by_budget = model in PAID_GROUPS and status == 429 and "budget" in text
        assert served or refused_by_budget, f"{model}: HTTP {status}: {text[:300]}"
        answers.append(f"{model} ({'stream' if stream else 'plain'}): HTTP {status}")
    wait_for_scrapes(time.time())
    return answers


@pytest.fixture(scope="module")
def lab_state(load) -> dict[str, Any]:
    """What the lab has, from Prometheus: GPUs (None when no agent reports), temperature sensors,
    firing alerts, agents and gateways scraped."""
    alerts = httpx.get(f"{PROMETHEUS}/api/v1/alerts", timeout=30).json()["data"]["alerts"]
    return {
        "gpus": scalar("sum(aiswarm_agent_gpus)"),
        "sensors": scalar('count({__name__=~"node_hwmon_temp_celsius|node_thermal_zone_temp"})') or 0,
        "firing": [alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"],
        "agents": scalar("count(aiswarm_agent_up)") or 0,
        "gateways": scalar('count(up{job="litellm"} == 1)') or 0,
    }


def why_empty(names: set[str], state: dict[str, Any]) -> str | None:
    """Why the lab cannot have these series, or None when it should."""
    listed = ", ".join(sorted(names))
    if not names:
        return None
    if all(name.startswith(GPU_PREFIX) for name in names) and state["gpus"] == 0:
        return f"no GPU in the lab (sum of aiswarm_agent_gpus is 0): {listed} has no series"
    if names <= SENSOR_SERIES and state["sensors"] == 0 and state["agents"] > 0:
        return (
            f"no temperature sensor in the lab (no hwmon or thermal zone temperature): {listed} has no series"
        )
    if not names <= set(EVENT_SERIES):
        return None
    unexplained = (
        ("ALERTS" in names and state["firing"])
        or (names & FALLBACK_SERIES and not state["gateways"])
        or ("aiswarm_agent_actions_total" in names and not state["agents"])
    )
    if unexplained:
        return None
    return "no event yet: " + "; ".join(f"{name}: {EVENT_SERIES[name]}" for name in sorted(names))


def values_for(name: str) -> dict[str, str]:
    """Grafana's variables as the dashboard's default view fills them: every host, its time range."""
    board = dash.load(name)
    return {"__rate_interval": "1m", "__interval": "15s", "__range": dash.time_range(board), "host": ".*"}


def test_the_host_variable_lists_every_inventory_host(load, hostvars):
    resp = httpx.get(f"{PROMETHEUS}/api/v1/label/host/values", params={"match[]": "up"}, timeout=30).json()
    assert resp["status"] == "success", resp
    assert set(resp["data"]) == set(hostvars), (
        f"label_values(up, host) = {resp['data']}, inventory: {sorted(hostvars)}"
    )


@pytest.mark.parametrize(("name", "panel", "target"), TARGETS)
def test_every_panel_query_is_valid_and_has_data(load, lab_state, name, panel, target):
    expr = dash.substitute(target["expr"], values_for(name))
    where = f"{name} / {panel['title']} [{target['refId']}]"
    answer = query(expr)
    assert answer["status"] == "success", f"{where}: invalid query: {answer.get('error')}\n  {expr}"
    if answer["data"]["result"]:
        return
    reason = why_empty(dash.series(expr), lab_state)
    if reason:
        pytest.skip(f"{where}: {reason}")
    pytest.fail(f"{where}: no series\n  {expr}\n  load: {'; '.join(load)}")
