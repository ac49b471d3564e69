"""The agent's HTTP API on a real loopback server, and the CLI that talks to it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiswarm.agent.__main__ import main
from aiswarm.agent.api import AgentAPI

from .conftest import TOKEN, VLLM, Rig, readings

METRIC_NAMES = [
    "aiswarm_agent_up",
    "aiswarm_agent_gpus",
    "aiswarm_agent_gpu_temperature_celsius",
    "aiswarm_agent_gpu_power_watts",
    "aiswarm_agent_gpu_utilization_ratio",
    "aiswarm_agent_gpu_memory_used_bytes",
    "aiswarm_agent_gpu_memory_total_bytes",
    "aiswarm_agent_gpu_throttled",
    "aiswarm_agent_host_temperature_celsius",
    "aiswarm_agent_service_up",
    "aiswarm_agent_service_consecutive_failures",
    "aiswarm_agent_actions_total",
    "aiswarm_agent_restart_budget_exhausted",
    "aiswarm_agent_draining",
]


def call(url: str, method: str = "GET", body: Any = None, token: str | None = TOKEN) -> tuple[int, Any, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw, status, head = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, head = exc.read(), exc.code, dict(exc.headers)
    text = raw.decode()
    return status, (json.loads(text) if head.get("Content-Type") == "application/json" else text), head


@pytest.fixture
def served(rig) -> Iterator[tuple[Rig, str]]:
    r = rig(
        [
            VLLM,
            {"name": "redis", "unit": "redis-server.service"},
            {"name": "dummy", "unit": "aiswarm-dummy.service"},
        ],
        gpus="two_gpus_one_hot",
    )
    api = AgentAPI(r.agent)
    api.start(("127.0.0.1",), 0)
    yield r, f"http://127.0.0.1:{api.ports[0]}"
    api.close()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_carry_every_name_with_the_readings(served) -> None:
    r, url = served
    r.gpus.report = readings("two_gpus_one_hot")[2]["report"]  # GPU 1 at 88 °C
    r.systemd.kill("aiswarm-dummy.service")
    for t in (0, 5, 10, 15):  # restarted at t=10, seen up at t=15
        r.at(t)
    status, text, head = call(f"{url}/metrics", token=None)
    assert status == 200 and head["Content-Type"].startswith("text/plain; version=")
    for name in METRIC_NAMES:
        assert f"\n# TYPE {name} " in text
    got = samples(text)
    gpu1 = (("gpu", "1"), ("name", "NVIDIA GeForce RTX 4090"))
    gpu0 = (("gpu", "0"), ("name", "NVIDIA GeForce RTX 3080"))
    assert got[("aiswarm_agent_up", ())] == 1
    assert got[("aiswarm_agent_gpus", ())] == 2
    assert got[("aiswarm_agent_gpu_temperature_celsius", gpu1)] == 88
    assert got[("aiswarm_agent_gpu_power_watts", gpu1)] == 420.0
    assert ("aiswarm_agent_gpu_power_watts", gpu0) not in got  # the board cannot say: left out, not 0
    assert got[("aiswarm_agent_gpu_utilization_ratio", gpu1)] == 0.99
    assert got[("aiswarm_agent_gpu_memory_total_bytes", gpu0)] == 10240 * 1024 * 1024
    assert got[("aiswarm_agent_gpu_memory_used_bytes", gpu0)] == 8800 * 1024 * 1024
    assert got[("aiswarm_agent_gpu_throttled", (*gpu1, ("reason", "hw_thermal_slowdown")))] == 1
    assert got[("aiswarm_agent_gpu_throttled", (*gpu1, ("reason", "sw_power_cap")))] == 0
    assert got[("aiswarm_agent_gpu_throttled", (*gpu0, ("reason", "hw_thermal_slowdown")))] == 0
    assert got[("aiswarm_agent_host_temperature_celsius", (("sensor", "thermal_zone0/x86_pkg_temp"),))] == 48
    assert got[("aiswarm_agent_service_up", (("service", "vllm"),))] == 1
    assert got[("aiswarm_agent_service_up", (("service", "dummy"),))] == 1
    assert got[("aiswarm_agent_service_consecutive_failures", (("service", "redis"),))] == 0
    assert got[("aiswarm_agent_draining", (("service", "vllm"),))] == 1  # on every GPU: GPU 1 is hot
    assert got[("aiswarm_agent_draining", (("service", "redis"),))] == 0
    assert got[("aiswarm_agent_restart_budget_exhausted", (("service", "dummy"),))] == 0
    actions = (
        "aiswarm_agent_actions_total",
        (("action", "restart"), ("reason", "crashed"), ("service", "dummy")),
    )
    assert got[actions] == 1
    drains = (
        "aiswarm_agent_actions_total",
        (("action", "drain"), ("reason", "gpu_temperature"), ("service", "vllm")),
    )
    assert got[drains] == 1


def test_metrics_without_a_gpu_say_zero_gpus_and_the_budget(rig) -> None:
    r = rig([{"name": "dummy", "unit": "aiswarm-dummy.service"}], restart_max_per_hour=1, restart_backoff_s=0)
    api = AgentAPI(r.agent)
    api.start(("127.0.0.1",), 0)
    try:
        for t in range(0, 60, 5):
            r.systemd.kill("aiswarm-dummy.service")  # crashes after every restart
            r.at(t)
        got = samples(call(f"http://127.0.0.1:{api.ports[0]}/metrics", token=None)[1])
    finally:
        api.close()
    assert got[("aiswarm_agent_gpus", ())] == 0
    assert not [key for key in got if key[0].startswith("aiswarm_agent_gpu_")]
    assert got[("aiswarm_agent_restart_budget_exhausted", (("service", "dummy"),))] == 1
    assert got[("aiswarm_agent_service_consecutive_failures", (("service", "dummy"),))] > 3


def test_health_answers_json(served) -> None:
    r, url = served
    assert call(f"{url}/health", token=None)[:2] == (503, {"status": "starting"})
    r.at(0)
    status, body, head = call(f"{url}/health", token=None)
    assert status == 200 and head["Content-Type"] == "application/json"
    assert body["status"] == "ok" and body["gpus"] == 2 and body["services"]["vllm"] == "healthy"


def test_drain_by_hand_needs_the_token_and_shows_in_the_list(served) -> None:
    r, url = served
    r.gpus.report = readings("two_gpus_one_hot")[0]["report"]  # nothing hot
    r.at(0)
    assert call(f"{url}/v1/drain", token=None)[:2] == (200, {"draining": []})
    status, body, head = call(f"{url}/v1/drain", "POST", {"service": "vllm", "reason": "x"}, token=None)
    assert (status, head["WWW-Authenticate"]) == (401, 'Bearer realm="swarm-agent"')
    assert "swarm_agent_token" in body["error"]
    assert call(f"{url}/v1/drain", "POST", {"service": "vllm"}, token="wrong-token-0123456789")[0] == 401
    assert call(f"{url}/v1/drain/vllm", "DELETE", token=None)[0] == 401
    assert r.agent.draining() == []  # nothing refused changed anything

    status, body, head = call(f"{url}/v1/drain", "POST", {"service": "vllm", "reason": "driver update"})
    assert status == 200
    assert body == {"service": "vllm", "api_base": "http://10.0.0.11:8000", "reason": "manual: driver update",
                    "since": r.clock() + 1.7e9}  # fmt: skip
    assert call(f"{url}/v1/drain", token=None)[1] == {"draining": [body]}
    assert (
        samples(call(f"{url}/metrics", token=None)[1])[("aiswarm_agent_draining", (("service", "vllm"),))]
        == 1
    )

    assert call(f"{url}/v1/drain", "POST", {"service": "nope"})[0] == 404
    assert call(f"{url}/v1/drain", "POST", {"service": "redis"})[0] == 400
    assert call(f"{url}/v1/drain", "POST", {"reason": "no service"})[0] == 400
    assert call(f"{url}/v1/drain", "POST", b"{not json")[0] == 400
    assert call(f"{url}/v1/drain", "POST", b"x" * 20000)[0] == 413
    assert call(f"{url}/v1/drains", "POST", {"service": "vllm"})[0] == 404
    assert call(f"{url}/v1/drain/nope", "DELETE")[0] == 404

    status, body, head = call(f"{url}/v1/drain/vllm", "DELETE")
    assert (status, body) == (
        200,
        {"service": "vllm", "api_base": "http://10.0.0.11:8000", "draining": False},
    )
    assert call(f"{url}/v1/drain", token=None)[1] == {"draining": []}
    assert call(f"{url}/nowhere", token=None)[0] == 404


def test_the_cli_drains_lists_and_undrains(served, tmp_path: Path, capsys) -> None:
    r, url = served
    r.gpus.report = readings("two_gpus_one_hot")[0]["report"]
    r.at(0)
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"token": TOKEN, "services": [VLLM], "port": int(url.rsplit(":", 1)[1])}))
    assert main(["--config", str(config), "drain", "vllm", "--reason", "maintenance"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "manual: maintenance"
    assert main(["--config", str(config), "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["health"]["status"] == "ok"
    assert [d["service"] for d in status["draining"]] == ["vllm"]
    assert main(["--config", str(config), "undrain", "vllm"]) == 0
    assert json.loads(capsys.readouterr().out)["draining"] is False
    assert main(["--config", str(config), "drain", "nope"]) == 1
    assert "nope" in json.loads(capsys.readouterr().out)["error"]
    assert main(["--config", str(config), "check"]) == 0
    config.write_text(json.dumps({"token": "short", "services": []}))
    assert main(["--config", str(config), "check"]) == 2
    assert "token: expected a secret" in capsys.readouterr().err
