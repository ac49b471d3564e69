"""playbooks/validate.yml stops bad input before any change, naming the variable.

These run the real playbook against inventories whose hosts are never contacted: every check
in validate.yml runs on the controller, so a failure here means nothing was changed anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "playbooks" / "validate.yml"


def run_validate(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", str(inventory), str(PLAYBOOK), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_lab_inventory_passes():
    proc = run_validate(ROOT / "inventories" / "lab" / "hosts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_port_that_is_not_a_number_is_named():
    proc = run_validate(ROOT / "inventories" / "lab" / "hosts.yml", "-e", "redis_port=six-three-seven-nine")
    assert proc.returncode != 0
    assert "redis_port" in proc.stdout


def test_missing_vault_secrets_in_a_real_inventory_are_named():
    proc = run_validate(ROOT / "inventories" / "miami" / "hosts.yml")
    assert proc.returncode != 0
    assert "vault_redis_password" in proc.stdout


def test_short_secret_is_refused(tmp_path):
    proc = run_validate(ROOT / "inventories" / "lab" / "hosts.yml", "-e", "redis_password=short")
    assert proc.returncode != 0
    assert "redis_password: missing or shorter than 12 characters" in proc.stdout
    assert "short" not in proc.stdout.replace("shorter", "")


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        (
            "all:\n  children:\n    swarm:\n      children:\n        gatewy:\n          hosts:\n"
            "            oracle: {swarm_private_address: 10.0.0.1}\n",
            "the group 'gateway' has no host",
        ),
        (
            "all:\n  children:\n    swarm:\n      children:\n        gateway:\n          hosts:\n"
            "            oracle: {swarm_private_address: 10.0.0.1}\n        gatewy:\n          hosts:\n"
            "            thanos: {swarm_private_address: 10.0.0.2}\n",
            "unknown or misspelt group",
        ),
        (
            "all:\n  children:\n    swarm:\n      children:\n        gateway:\n          hosts:\n"
            "            oracle: {swarm_private_address: oracle.example}\n",
            "swarm_private_address of oracle",
        ),
    ],
    ids=["no-gateway", "unknown-group", "address-not-ip"],
)
def test_inventory_shape_errors_are_named(tmp_path, inventory, expected):
    path = tmp_path / "hosts.yml"
    path.write_text(inventory)
    secrets = ["-e", "redis_password=0123456789abcdef", "-e", "litellm_database_password=0123456789abcdef",
               "-e", "openwebui_database_password=0123456789abcdef"]  # fmt: skip
    proc = run_validate(path, *secrets)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"name": "grok", "tier": "cheap", "provider": "openrouter", "model": "openrouter/x-ai/grok"},
            "value of tier must be one of: local, premium, free, specialized, got: cheap",
        ),
        (
            {"name": "gemini-flash", "tier": "free", "provider": "gemini", "model": "gemini/x", "rmp": 10},
            "litellm_model_catalog.rmp. Supported parameters include: engines",
        ),
        (
            {"name": "swarm-chat", "tier": "local", "engines": ["ollama"]},
            "engines must be one or more of: vllm, llamacpp",
        ),
    ],
    ids=["unknown-tier", "misspelt-key", "unknown-engine"],
)
def test_a_bad_catalog_entry_is_named(entry, expected):
    catalog = [{"name": "swarm-chat", "tier": "local", "engines": ["llamacpp"]}, entry]
    proc = run_validate(
        ROOT / "inventories" / "lab" / "hosts.yml", "-e", json.dumps({"litellm_model_catalog": catalog})
    )
    assert proc.returncode != 0
    assert "litellm_model_catalog" in proc.stdout, proc.stdout
    assert expected in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"alertmanager_receivers": [{"name": "oncall", "type": "pager", "url": "http://x"}]},
            "alertmanager_receivers[0].type (oncall): unknown receiver type 'pager'",
        ),
        (
            {"alertmanager_receivers": [{"name": "ops", "type": "email", "to": "ops@example.org"}]},
            "an email receiver needs 'from'",
        ),
        (
            {"prometheus_scrape_jobs": [{"name": "node", "group": "swarm", "port": 99999}]},
            "prometheus_scrape_jobs[0].port",
        ),
        ({"vllm_port": "eight-thousand"}, "vllm_port"),
        ({"prometheus_alert_gpu_temperature_celsius": "hot"}, "prometheus_alert_gpu_temperature_celsius"),
        ({"exporters_node_port": "nine"}, "exporters_node_port"),
    ],
    ids=["receiver-type", "email-without-from", "job-port", "host-port", "threshold", "exporter-port"],
)
def test_bad_monitoring_input_is_named_before_any_change(extra, expected):
    proc = run_validate(ROOT / "inventories" / "lab" / "hosts.yml", "-e", json.dumps(extra))
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout
