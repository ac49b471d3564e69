"""The lab's Prometheus and Alertmanager, checked from outside the nodes.

Every host and service of the inventory must be a target that is up (the scrape configuration is
generated from the inventory, so a host added to a group is scraped with no other edit), the
alert rules must be loaded and healthy, and an alert must travel from Alertmanager to the lab's
receiver (aiswarm_loadtest.alertsink on the lab host).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid

import pytest

PROMETHEUS = "http://127.0.0.1:9090"


def get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def query(expr: str) -> list[dict]:
    return get(f"{PROMETHEUS}/api/v1/query?query={urllib.parse.quote(expr)}")["data"]["result"]


def expected_targets(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(job, host) for every job of the role's defaults whose group has hosts."""
    import yaml

    from .conftest import ROOT

    jobs = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text())["prometheus_scrape_jobs"]
    return {(job["name"], host) for job in jobs for host in groups.get(job["group"], [])}


def wait_for(check, timeout_s: float = 120, every_s: float = 5):
    """Poll `check` (which returns a list of problems) until it returns none or time runs out.

    The tests before these stop and restart engines (test_gateway's failover): Prometheus sees a
    restarted engine at its next scrape and clears an alert at the next evaluation (15 s each), so
    a healthy lab may need that long to look healthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = check()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(every_s)


def test_every_host_and_service_of_the_inventory_is_scraped_and_up(groups):
    want = expected_targets(groups)

    def problems() -> list[str]:
        targets = get(f"{PROMETHEUS}/api/v1/targets?state=active")["data"]["activeTargets"]
        seen = {
            (t["labels"]["job"], t["labels"].get("host")): t
            for t in targets
            if t["labels"]["job"] != "blackbox"
        }
        found = [f"missing from Prometheus: {job} on {host}" for job, host in sorted(want - set(seen))]
        found += [
            f"down: {key}: {seen[key]['lastError']}"
            for key in sorted(want & set(seen))
            if seen[key]["health"] != "up"
        ]
        probes = query('probe_success{job="blackbox"}')
        found += [f"health probe failing: {p['metric']['instance']}" for p in probes if p["value"][1] != "1"]
        return found + ([] if probes else ["no health probe results"])

    left = wait_for(problems)
    assert not left, "\n".join(left)


def test_the_exporters_reach_postgresql_and_redis():
    assert [r["value"][1] for r in query("pg_up")] == ["1"]
    assert [r["value"][1] for r in query("redis_up")] == ["1"]


def test_the_alert_rules_are_loaded_and_evaluate_without_errors():
    groups = get(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    for name in ("InferenceEngineDown", "InferenceEngineHung", "TargetDown", "GatewayErrorRatioHigh",
                 "CostOverrun", "ErrorBudgetBurnFast", "SwarmAgentRestartBudgetExhausted"):  # fmt: skip
        assert name in names
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule.get("health") == "err"}
    assert not broken, f"rules failing to evaluate: {broken}"


def test_nothing_pages_on_the_healthy_lab():
    def firing() -> list[str]:
        return [str(r["metric"]) for r in query('ALERTS{alertstate="firing", severity="page"}')]

    left = wait_for(firing, timeout_s=90)
    assert not left, f"page alerts still firing on a healthy lab after 90 s: {left}"


def test_an_alert_travels_from_alertmanager_to_the_lab_receiver(hostvars):
    lab = hostvars["oracle"]
    alertmanager = f"http://{lab['swarm_private_address']}:9093"
    sink = f"http://{lab['lab_host_address']}:{lab['lab_alert_sink']['port']}"
    name = f"LabReceiverTest{uuid.uuid4().hex[:8]}"
    body = json.dumps([{"labels": {"alertname": name, "severity": "info", "host": "lab-test"}}]).encode()
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if get(f"{sink}/alerts?alertname={name}")["alerts"]:
            break
        time.sleep(1)
    else:
        pytest.fail(f"{name} posted to Alertmanager never reached the receiver at {sink}")
