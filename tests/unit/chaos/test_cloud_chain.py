"""Chaos pieces for the cloud chain: stand-in state faults, faults together (`also`), the load's model."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aiswarm_loadtest.chaos.faults import DockerExecutor, node_commands
from aiswarm_loadtest.chaos.runner import LoadSpec, LocustLauncher
from aiswarm_loadtest.chaos.scenario import ScenarioError, load_scenarios, parse_scenario
from aiswarm_loadtest.refbackend import BackendConfig, serve_in_thread

from .fakes import ScriptedRunner
from .test_runner import DOC, make_runner
from .test_scenario import GOOD

CLOUD = sorted((Path(__file__).resolve().parents[3] / "loadtests" / "scenarios" / "cloud").glob("*.yaml"))
STANDIN = {
    "kind": "standin_state",
    "target": {"group": "gateway"},
    "duration_s": 30,
    "params": {"admin_url": "http://172.30.57.1:18100", "state": {"keys": {"0": {"quota": 0}}}},
}


def test_the_cloud_chain_scenarios_validate_and_stay_out_of_the_default_catalog() -> None:
    scenarios = load_scenarios(CLOUD)
    assert {s.name for s in scenarios} == {
        "local_engines_down",
        "gemini_first_key_quota",
        "gemini_keys_exhausted",
    }
    engines_down = next(s for s in scenarios if s.name == "local_engines_down")
    assert [f.target.group for f in (engines_down.fault, *engines_down.also)] == ["inference", "workers"]
    assert engines_down.load.model == "swarm-chat"


def test_a_standin_fault_posts_its_state_and_restores_by_reset() -> None:
    scenario = parse_scenario({**GOOD, "fault": STANDIN}, "s.yaml")
    params = scenario.fault.params
    assert json.loads(params.state) == {"keys": {"0": {"quota": 0}}} and json.loads(params.restore) == {
        "reset": True
    }
    assert scenario.rollback == "restore_standin"
    (inject,), (undo,) = node_commands(scenario.fault, scenario.rollback)
    assert inject.argv[0:2] == ("python3", "-c") and inject.argv[3:] == (params.admin_url, params.state)
    assert undo.argv[3:] == (params.admin_url, params.restore)
    executor = DockerExecutor(runner=ScriptedRunner())
    plan = executor.plan(scenario.fault, "oracle", scenario.rollback)
    assert plan.fault_id == "standin_state:172.30.57.1:18100@oracle"
    assert plan.inject[0].argv[:3] == ("docker", "exec", "aiswarm-lab-oracle")  # inside the lab's allow-list


def test_the_standin_post_script_changes_a_real_stand_in_and_fails_loudly_on_refusal() -> None:
    scenario = parse_scenario({**GOOD, "fault": STANDIN}, "s.yaml")
    (inject,), (undo,) = node_commands(scenario.fault, scenario.rollback)
    config = BackendConfig(keys=("k0", "k1"), ttft_ms=1, itl_ms=0, tokens=1)
    with serve_in_thread(config) as url:
        ran = subprocess.run([sys.executable, "-c", inject.argv[2], url, inject.argv[4]], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert httpx.get(f"{url}/_admin/state").json()["keys"][0]["quota"] == 0
        subprocess.run([sys.executable, "-c", undo.argv[2], url, undo.argv[4]], check=True, timeout=30)
        assert httpx.get(f"{url}/_admin/state").json()["keys"][0]["quota"] is None
        refused = subprocess.run([sys.executable, "-c", inject.argv[2], url, '{"keys": {"7": {}}}'],
                                 capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert (
        refused.returncode == 1 and "stand-in refused: 400" in refused.stderr and "keys.7" in refused.stderr
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"admin_url": "172.30.57.1:18100", "state": {"outage": True}},
            "fault.params.admin_url: expected the stand-in's",
        ),
        ({"admin_url": "http://172.30.57.1:18100"}, "fault.params.state: required field missing"),
        (
            {"admin_url": "http://172.30.57.1:18100", "state": {}},
            "fault.params.state: expected a non-empty mapping",
        ),
    ],
)
def test_bad_standin_params_name_the_field(params: dict, error: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario({**GOOD, "fault": {**STANDIN, "params": params}}, "s.yaml")
    assert any(error in e for e in err.value.errors), err.value.errors


def test_also_faults_are_checked_with_their_own_path() -> None:
    doc = {**GOOD, "also": [{"kind": "stop_service", "target": {"group": "workers"}}]}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc, "s.yaml")
    assert any("also[0].target.service: required field missing" in e for e in err.value.errors), (
        err.value.errors
    )
    with pytest.raises(ScenarioError, match=r"also: expected a non-empty list"):
        parse_scenario({**GOOD, "also": {}}, "s.yaml")


def test_also_faults_are_injected_with_the_main_fault_and_rolled_back_with_it(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["also"] = [{"kind": "stop_service", "target": {"group": "gateway", "service": "llamacpp"}}]
    runner, executor, _launcher, _clock, _probes = make_runner(tmp_path, doc)
    runner.run()
    assert executor.ran == [
        "inject kill_service@n1", "inject stop_service@g1",
        "rollback kill_service@n1", "rollback stop_service@g1",
    ]  # fmt: skip
    assert runner.scenario.also[0].duration_s == runner.scenario.fault.duration_s


def test_the_scenarios_model_wins_over_the_runners_locust_args(tmp_path: Path) -> None:
    spec = LoadSpec("http://127.0.0.1:4000", 4, 2.0, 60, tmp_path, model="gemini-flash")
    argv = LocustLauncher(locust=("locust",), extra_args=("--model=swarm-chat",)).argv(spec)
    assert argv[-3:] == ["--model=swarm-chat", "--model", "gemini-flash"]
    assert parse_scenario(
        {**GOOD, "load": {"users": 1, "spawn_rate": 1, "model": "gemini-flash"}}, "s"
    ).load.model
    with pytest.raises(ScenarioError, match=r"load\.model: expected a model group name"):
        parse_scenario({**GOOD, "load": {"users": 1, "spawn_rate": 1, "model": "bad model"}}, "s.yaml")
