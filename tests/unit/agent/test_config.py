"""The agent's settings file: what the role writes loads; each bad value is refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aiswarm.agent.config import Config, ConfigError, ServiceSpec

from .conftest import TOKEN, VLLM


def base(**extra: Any) -> dict[str, Any]:
    return {"token": TOKEN, "services": [VLLM], **extra}


def test_a_full_file_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(base(listen_addresses=["172.30.57.11", "127.0.0.1"], port=9110)))
    config = Config.load(path)
    assert config.listen_addresses == ("172.30.57.11", "127.0.0.1")
    assert (config.check_interval_s, config.failure_threshold, config.restart_max_per_hour) == (5.0, 3, 3)
    assert (config.gpu_temperature_limit_c, config.gpu_resume_temperature_c) == (83.0, 75.0)
    assert config.services == (
        ServiceSpec("vllm", "vllm.service", "http://10.0.0.11:8000/health", True, "http://10.0.0.11:8000"),
    )
    assert config.service("vllm").drainable and config.service("nope") is None
    assert TOKEN not in repr(config)


def test_a_services_own_grace_and_gpus_win_over_the_default() -> None:
    config = Config.from_mapping(
        base(start_grace_s=90, services=[{**VLLM, "gpus": [0, 1], "start_grace_s": 900}])
    )
    assert (config.services[0].gpus, config.services[0].start_grace_s) == ((0, 1), 900.0)
    assert Config.from_mapping(base(start_grace_s=90)).services[0].start_grace_s == 90.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "agent: unknown settings ['colour']"),
        ({"token": "short"}, "agent.token: expected a secret of 16+ characters"),
        ({"token": "with a space 0123456789"}, "agent.token: expected a secret"),
        ({"listen_addresses": []}, "agent.listen_addresses: expected a non-empty list"),
        ({"listen_addresses": ["0.0.0.0"]}, "agent.listen_addresses: expected a concrete address"),
        ({"listen_addresses": ["oracle"]}, "agent.listen_addresses: expected an IP address, got 'oracle'"),
        ({"port": 70000}, "agent.port: expected a TCP port"),
        ({"failure_threshold": "three"}, "agent.failure_threshold: expected a whole number, got 'three'"),
        ({"failure_threshold": 2.5}, "agent.failure_threshold: expected a whole number, got 2.5"),
        ({"failure_threshold": 0}, "agent.failure_threshold: expected at least 1, got 0"),
        ({"restart_max_per_hour": True}, "agent.restart_max_per_hour: expected a whole number, got True"),
        ({"check_interval_s": 0}, "agent.check_interval_s: expected at least 0.01"),
        (
            {"gpu_resume_temperature_c": 83},
            "agent.gpu_resume_temperature_c: expected below gpu_temperature_limit_c (83.0), got 83.0",
        ),
        ({"services": {"vllm": VLLM}}, "agent.services: expected a list of services"),
        ({"services": [VLLM, VLLM]}, "agent.services: names must be unique, repeated: ['vllm']"),
        ({"services": [{"name": "vllm"}]}, "agent.services[0].unit: expected a systemd unit name"),
        ({"services": [{**VLLM, "colour": "red"}]}, "agent.services[0]: unknown keys ['colour']"),
        ({"services": [{**VLLM, "name": "../x"}]}, "agent.services[0].name: expected letters"),
        (
            {"services": [{**VLLM, "unit": "a b.service"}]},
            "agent.services[0].unit: expected a systemd unit name",
        ),
        ({"services": [{**VLLM, "restart": "yes"}]}, "agent.services[0].restart: expected true or false"),
        (
            {"services": [{**VLLM, "health_url": "ftp://x/"}]},
            "agent.services[0].health_url: expected an http(s) URL",
        ),
        (
            {"services": [{**VLLM, "engine_api_base": "http://10.0.0.11:8000/v1"}]},
            "agent.services[0].engine_api_base: expected http(s)://host:port",
        ),
        (
            {"services": [{**VLLM, "engine_api_base": "http://10.0.0.11"}]},
            "engine_api_base: expected http(s)://host:port",
        ),
        ({"services": [{**VLLM, "gpus": [0, -1]}]}, "agent.services[0].gpus: expected a list of GPU indices"),
        ({"state_dir": "relative"}, "agent.state_dir: expected an absolute path"),
    ],
)
def test_a_bad_value_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Config.from_mapping(base(**change))
    assert message in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_a_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=f"{path}: not valid JSON"):
        Config.load(path)
