"""The swarm_agent role's inputs: the services it derives from a host's groups, and the refusals.

Runs the role (tag swarm_agent_preflight: the argument spec's validation and preflight.yml only)
on the controller against localhost, then writes agent.json as configure.yml renders it and loads
it with the agent's own loader. Nothing is installed or contacted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiswarm.agent.config import Config

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "lab-token-0123456789abcdef"
PLAYBOOK = """\
- hosts: all
  connection: local
  gather_facts: true
  gather_subset: [min]
  tasks:
    - ansible.builtin.include_role:
        name: aiswarm.swarm.swarm_agent
        public: true
      tags: [swarm_agent_preflight]
    - name: Write agent.json as configure.yml renders it
      ansible.builtin.copy:
        content: "{{ _swarm_agent_config | to_nice_json }}"
        dest: "{{ config_out }}"
        mode: '0600'
      tags: [swarm_agent_preflight]
"""


def preflight(tmp_path: Path, groups: tuple[str, ...] = ("gateway", "inference", "workers"), **extra: Any):
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "".join(f"[{group}]\nlocalhost\n" for group in groups)
        + "[swarm:children]\n" + "\n".join(groups) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    variables = {
        "swarm_agent_token": TOKEN,
        "swarm_private_address": "172.30.57.11",
        "ansible_python_interpreter": sys.executable,
        "config_out": str(tmp_path / "agent.json"),
        **extra,
    }
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(binary), "-i", str(inventory), str(playbook), "--tags", "swarm_agent_preflight",
         "-e", json.dumps(variables)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_a_host_in_every_group_watches_every_roles_service_with_their_ports(tmp_path: Path) -> None:
    proc = preflight(tmp_path, vllm_port=8001)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout
    config = Config.load(tmp_path / "agent.json")
    assert config.token == TOKEN and config.port == 9110
    assert config.listen_addresses == ("172.30.57.11", "127.0.0.1")
    assert (config.failure_threshold, config.restart_max_per_hour, config.restart_backoff_s) == (3, 3, 30.0)
    assert (config.gpu_temperature_limit_c, config.gpu_resume_temperature_c) == (83.0, 75.0)
    services = {s.name: s for s in config.services}
    assert list(services) == ["litellm", "postgresql", "redis", "vllm", "llamacpp"]
    assert services["litellm"].health_url == "http://172.30.57.11:4000/health/liveliness"
    assert (services["postgresql"].unit, services["postgresql"].health_url) == (
        "postgresql@15-main.service",
        None,
    )
    assert services["redis"].unit == "redis-server.service"
    assert services["vllm"].health_url == "http://172.30.57.11:8001/health"  # the host's own vllm_port
    assert services["vllm"].engine_api_base == "http://172.30.57.11:8001"
    assert services["llamacpp"].engine_api_base == "http://172.30.57.11:8081"
    assert [s.name for s in config.services if s.drainable] == ["vllm", "llamacpp"]
    assert all(s.restart for s in config.services)


def test_an_inference_host_watches_vllm_and_the_extra_services(tmp_path: Path) -> None:
    extra = [{"name": "node-exporter", "unit": "prometheus-node-exporter.service", "restart": False}]
    proc = preflight(tmp_path, groups=("inference",), swarm_agent_extra_services=extra, swarm_agent_port=9200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = Config.load(tmp_path / "agent.json")
    assert [(s.name, s.restart) for s in config.services] == [("vllm", True), ("node-exporter", False)]
    assert config.port == 9200


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"swarm_agent_gpu_resume_temperature_c": 83},
            "swarm_agent_gpu_resume_temperature_c: expected below swarm_agent_gpu_temperature_limit_c",
        ),
        (
            {"swarm_agent_services": [{"name": "vllm"}]},
            "missing required arguments: unit found in swarm_agent_services",
        ),
        (
            {"swarm_agent_services": [{"name": "vllm", "unit": "vllm.service", "colour": "red"}]},
            "swarm_agent_services.colour. Supported parameters include: engine_api_base, gpus",
        ),
        (
            {"swarm_agent_failure_threshold": "three"},
            "argument 'swarm_agent_failure_threshold' is of type str and we were unable to convert to int",
        ),
        ({"swarm_agent_token": "short"}, "swarm_agent_token: expected a secret of 16+ characters"),
        (
            {"swarm_agent_listen_addresses": ["0.0.0.0"]},
            "swarm_agent_listen_addresses: expected IP addresses",
        ),
        (
            {"swarm_agent_extra_services": [{"name": "redis", "unit": "redis-server.service"}]},
            "each name must be unique (it names the service in metrics and in the drain API); "
            "repeated: redis",
        ),
        (
            {
                "swarm_agent_extra_services": [
                    {"name": "x", "unit": "x.service", "engine_api_base": "http://h/v1"}
                ]
            },
            "swarm_agent_extra_services[0] (x): expected {name, unit",
        ),
    ],
    ids=[
        "resume-above-limit",
        "no-unit",
        "unknown-key",
        "text-threshold",
        "short-token",
        "every-interface",
        "duplicate-name",
        "engine-base-with-path",
    ],
)
def test_bad_input_is_refused_naming_the_variable(tmp_path: Path, extra: dict, expected: str) -> None:
    proc = preflight(tmp_path, **extra)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout
    assert TOKEN not in proc.stdout
    assert not (tmp_path / "agent.json").exists()
