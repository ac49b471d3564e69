# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the monitoring filters: scrape targets and configuration from the inventory, and
Alertmanager's configuration from the receivers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.aiswarm.swarm.plugins.filter.monitoring import (
    FilterModule,
    alertmanager_config,
    prometheus_duration_seconds,
    prometheus_scrape_configs,
    scrape_targets,
)

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text(encoding="utf-8"))
JOBS = DEFAULTS["prometheus_scrape_jobs"]
CREDENTIALS = {"litellm": "sk-master-key", "engines": "engine-key"}
GROUPS = {
    "swarm": ["oracle", "starlord", "thanos", "starlord2"],
    "gateway": ["oracle"],
    "inference": ["starlord", "starlord2"],
    "workers": ["thanos"],
}
HOSTVARS = {
    "oracle": {"swarm_private_address": "10.0.0.10"},
    "starlord": {"swarm_private_address": "10.0.0.11"},
    "starlord2": {"swarm_private_address": "10.0.0.13", "vllm_port": 8100},
    "thanos": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.12"}}},
}
SETTINGS = {"group_by": ["alertname", "host"], "group_wait": "30s", "group_interval": "5m",
            "repeat_interval": "4h", "default_receiver": "", "routes": [], "inhibit_rules": [],
            "smtp": {}}  # fmt: skip


def test_every_host_of_every_group_is_a_target_with_its_own_port() -> None:
    targets = scrape_targets(GROUPS, HOSTVARS, JOBS, CREDENTIALS)
    by_job: dict[str, list[str]] = {}
    for target in targets:
        by_job.setdefault(target["job"], []).append(target["endpoint"])
    assert by_job["node"] == ["10.0.0.10:9100", "10.0.0.11:9100", "10.0.0.13:9100", "10.0.0.12:9100"]
    assert by_job["vllm"] == ["10.0.0.11:8000", "10.0.0.13:8100"]  # a host's vllm_port wins
    assert by_job["llamacpp"] == ["10.0.0.12:8081"]  # the facts' address without a private one
    assert set(by_job) == {t["name"] for t in JOBS}
    litellm = next(t for t in targets if t["job"] == "litellm")
    assert (
        litellm["credentials"] == "litellm"
        and litellm["health_url"] == "http://10.0.0.10:4000/health/liveliness"
    )


def test_the_scrape_configuration_labels_hosts_and_probes_every_health_url() -> None:
    configs = prometheus_scrape_configs(
        scrape_targets(GROUPS, HOSTVARS, JOBS, CREDENTIALS), "/etc/creds", "127.0.0.1:9115"
    )
    jobs = {c["job_name"]: c for c in configs}
    assert jobs["litellm"]["metrics_path"] == "/metrics/"
    assert jobs["litellm"]["authorization"] == {"credentials_file": "/etc/creds/litellm"}
    assert "authorization" not in jobs["vllm"]
    assert jobs["vllm"]["static_configs"][1] == {
        "targets": ["10.0.0.13:8100"], "labels": {"host": "starlord2", "instance": "starlord2:8100"}
    }  # fmt: skip
    probes = {c["targets"][0]: c["labels"] for c in jobs["blackbox"]["static_configs"]}
    assert probes["http://10.0.0.13:8100/health"] == {"service": "vllm", "host": "starlord2"}
    assert "http://10.0.0.10:9100/health" not in probes  # the node exporter has no health path
    assert jobs["blackbox"]["relabel_configs"][-1] == {
        "target_label": "__address__",
        "replacement": "127.0.0.1:9115",
    }
    dumped = yaml.safe_dump(configs)
    assert "sk-master-key" not in dumped and "engine-key" not in dumped  # tokens stay in their files
    assert "blackbox" not in {c["job_name"] for c in prometheus_scrape_configs(
        scrape_targets(GROUPS, HOSTVARS, JOBS, CREDENTIALS), "/etc/creds", None)}  # fmt: skip


def test_an_empty_or_missing_group_adds_no_target() -> None:
    targets = scrape_targets({"swarm": ["oracle"], "gateway": ["oracle"]}, HOSTVARS, JOBS, CREDENTIALS)
    assert not {"vllm", "llamacpp"} & {t["job"] for t in targets}


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"name": "node", "group": "swarm", "port": 99999}, "prometheus_scrape_jobs[0].port (node)"),
        ({"name": "no de", "group": "swarm", "port": 9100}, "prometheus_scrape_jobs[0].name"),
        ({"name": "node", "group": "", "port": 9100}, "prometheus_scrape_jobs[0].group (node)"),
        ({"name": "node", "group": "swarm", "port": 9100, "metrics_path": "metrics"}, "metrics_path (node)"),
        ({"name": "node", "group": "swarm", "port": 9100, "credentials": "vault"}, "'vault' is not a key"),
        ({"name": "node", "group": "swarm", "port": 9100, "scheme": "ftp"}, "scheme (node)"),
        ({"name": "node", "group": "swarm", "port": 9100, "interval": "5s"}, "unknown keys ['interval']"),
        ({"name": "node", "group": "swarm", "port": True}, "port (node)"),
    ],
)
def test_a_bad_job_is_refused_naming_the_field(job: dict, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as info:
        scrape_targets(GROUPS, HOSTVARS, [job], CREDENTIALS)
    assert message in str(info.value)


def test_repeated_job_names_and_a_bad_host_port_are_refused() -> None:
    job = {"name": "node", "group": "swarm", "port": 9100}
    with pytest.raises(AnsibleFilterError, match="repeated: \\['node'\\]"):
        scrape_targets(GROUPS, HOSTVARS, [job, job], CREDENTIALS)
    hostvars = {**HOSTVARS, "starlord2": {"vllm_port": "eighty"}}
    with pytest.raises(AnsibleFilterError, match="vllm_port of host starlord2"):
        scrape_targets(GROUPS, hostvars, JOBS, CREDENTIALS)


def test_receivers_become_alertmanager_configuration() -> None:
    receivers = [
        {"name": "lab", "type": "webhook", "url": "http://127.0.0.1:18102/alerts"},
        {"name": "ops", "type": "email", "to": "ops@example.org", "auth_password": "pw"},
    ]
    smtp = {"smarthost": "mail.example.org:587", "from": "swarm@example.org"}
    config = alertmanager_config(receivers, {**SETTINGS, "smtp": smtp})
    assert config["global"] == {"smtp_smarthost": "mail.example.org:587", "smtp_from": "swarm@example.org"}
    assert config["receivers"][0] == {"name": "lab", "webhook_configs": [
        {"url": "http://127.0.0.1:18102/alerts", "send_resolved": True}]}  # fmt: skip
    # Two receivers, no routes: every receiver gets every alert, the root notifies nobody.
    assert config["route"]["receiver"] == "none"
    assert [r["receiver"] for r in config["route"]["routes"]] == ["lab", "ops"]
    assert all(r["continue"] for r in config["route"]["routes"])
    single = alertmanager_config(receivers[:1], SETTINGS)
    assert single["route"]["receiver"] == "lab" and "routes" not in single["route"]
    assert alertmanager_config([], SETTINGS)["receivers"] == [{"name": "none"}]


@pytest.mark.parametrize(
    ("receivers", "settings", "message"),
    [
        (
            [{"name": "x", "type": "pager"}],
            {},
            "alertmanager_receivers[0].type (x): unknown receiver type 'pager'",
        ),
        ([{"name": "x", "type": "webhook"}], {}, "needs ['url']"),
        ([{"name": "x", "type": "webhook", "url": "ftp://h"}], {}, "alertmanager_receivers[0].url (x)"),
        ([{"name": "x", "type": "webhook", "url": "http://h", "to": "a@b"}], {}, "unknown keys ['to']"),
        ([{"name": "x", "type": "email", "to": "a@b"}], {}, "needs 'from'"),
        ([{"name": "x", "type": "email", "to": "nobody", "from": "a@b", "smarthost": "h:25"}], {}, "to (x)"),
        ([{"name": "x", "type": "webhook", "url": "http://h"}] * 2, {}, "repeated: ['x']"),
        ([], {"group_wait": "soon"}, "alertmanager_group_wait"),
        ([], {"default_receiver": "ops"}, "alertmanager_default_receiver"),
        ([], {"routes": [{"receiver": "none", "matchers": []}]}, "alertmanager_routes[0].matchers"),
    ],
)
def test_bad_receivers_and_settings_are_refused_naming_the_field(receivers, settings, message) -> None:
    with pytest.raises(AnsibleFilterError) as info:
        alertmanager_config(receivers, {**SETTINGS, **settings})
    assert message in str(info.value)


def test_durations() -> None:
    assert prometheus_duration_seconds("1h30m") == 5400
    assert prometheus_duration_seconds("500ms") == 0.5
    with pytest.raises(AnsibleFilterError, match="Prometheus duration"):
        prometheus_duration_seconds("15 s")


def test_the_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {
        "prometheus_scrape_targets", "prometheus_scrape_configs", "alertmanager_config",
        "prometheus_duration_seconds",
    }  # fmt: skip
