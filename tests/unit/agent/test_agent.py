"""The agent's rounds against fakes (clock, systemd, health URLs) and recorded NVML runs."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from ansible_collections.aiswarm.swarm.plugins.module_utils import _nvml

from aiswarm.agent.agent import Agent, NotDrainable, UnknownService
from aiswarm.agent.decide import Condition

from .conftest import FIXTURES, VLLM, readings


def actions_of(found: list) -> list[tuple[str, str, str]]:
    return [(a.service, a.action, a.reason) for a in found]


def flat(rounds) -> list[tuple[str, str, str]]:
    return [action for found in rounds for action in found]


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "aiswarm.agent"]
    return [line for line in lines if line["event"] == event]


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_the_recorded_runs_have_the_readers_shape(name: str) -> None:
    """The fixtures are reports of _nvml.read_gpus(); they must not drift from the reader."""
    keys = {f.name for f in fields(_nvml.GpuInfo)}
    for reading in readings(name):
        report = reading["report"]
        assert set(report) == {"gpus", "count", "driver_version", "cuda_version", "reason"}
        assert report["count"] == len(report["gpus"])
        assert all(set(gpu) == keys for gpu in report["gpus"])


def test_an_overheating_run_drains_the_engine_once_and_restores_it_after_the_hold(rig, caplog) -> None:
    caplog.set_level("INFO", logger="aiswarm.agent")
    r = rig(gpus="overheat_run", gpu_resume_hold_s=60)
    timeline = {}
    for reading in readings("overheat_run"):
        r.gpus.report = reading["report"]
        found = actions_of(r.at(reading["t"]))
        if found:
            timeline[reading["t"]] = found
        if reading["t"] == 55:  # the 76 °C bump while cooling: still drained
            [entry] = r.agent.draining()
            assert entry["service"] == "vllm" and entry["api_base"] == "http://10.0.0.11:8000"
            assert "84 °C, above the limit 83 °C" in entry["reason"]
            assert entry["since"] == 1000.0 + 25 + 1.7e9
    # 84 °C at t=25 drains; below 75 °C without a break from t=60 restores at t=120; 78-82 °C later
    # is below the limit: nothing. No other action in between.
    assert timeline == {25: [("vllm", "drain", "gpu_temperature")], 120: [("vllm", "undrain", "gpu_cooled")]}
    assert r.agent.draining() == []
    assert [line["action"] for line in logged(caplog, "action")] == ["drain", "undrain"]
    assert [line["gpu"] for line in logged(caplog, "gpu_hot")] == [0]


def test_a_hot_gpu_drains_only_the_engines_on_it(rig) -> None:
    on_gpu0 = {**VLLM, "name": "vllm-a", "engine_api_base": "http://10.0.0.11:8000", "gpus": [0]}
    on_gpu1 = {
        **VLLM,
        "name": "vllm-b",
        "unit": "vllm-b.service",
        "engine_api_base": "http://10.0.0.11:8001",
        "gpus": [1],
    }
    everywhere = {"name": "llamacpp", "unit": "llamacpp.service", "engine_api_base": "http://10.0.0.11:8081"}
    r = rig([on_gpu0, on_gpu1, everywhere], gpus="two_gpus_one_hot", gpu_resume_hold_s=5)
    drained = []
    for reading in readings("two_gpus_one_hot"):
        r.gpus.report = reading["report"]
        drained += [(reading["t"], action) for action in actions_of(r.at(reading["t"]))]
    assert drained == [
        (10, ("vllm-b", "drain", "gpu_temperature")),
        (10, ("llamacpp", "drain", "gpu_temperature")),
        (30, ("vllm-b", "undrain", "gpu_cooled")),
        (30, ("llamacpp", "undrain", "gpu_cooled")),
    ]


def test_without_a_gpu_the_reason_is_logged_once_and_the_services_are_still_watched(rig, caplog) -> None:
    caplog.set_level("INFO", logger="aiswarm.agent")
    r = rig(gpus="no_gpu")
    r.systemd.kill("redis-server.service")
    found = [actions_of(r.at(t)) for t in (0, 5, 10)]
    [line] = logged(caplog, "gpu_unavailable")
    assert "no NVIDIA driver" in line["reason"] and line["gpus"] == 0
    assert found[2] == [("redis", "restart", "crashed")]
    assert r.agent.snapshot.gpu_report["gpus"] == []
    assert r.agent.health()[1]["gpus"] == 0


def test_n_failed_checks_restart_with_backoff_up_to_the_cap_then_the_budget_is_exhausted(rig, caplog) -> None:
    caplog.set_level("INFO", logger="aiswarm.agent")
    litellm = {"name": "litellm", "unit": "litellm.service", "health_url": "http://10.0.0.10:4000/health/liveliness",
               "start_grace_s": 0}  # fmt: skip
    r = rig([litellm], failure_threshold=3, restart_max_per_hour=3, restart_backoff_s=30)
    r.health.down[litellm["health_url"]] = "HTTP 503"
    timeline = {}
    for t in range(0, 300, 5):
        found = actions_of(r.at(t))
        if found:
            timeline[t] = found
    assert timeline == {
        10: [("litellm", "restart", "unhealthy")],
        40: [("litellm", "restart", "unhealthy")],
        100: [("litellm", "restart", "unhealthy")],
        115: [("litellm", "budget_exhausted", "unhealthy")],
    }
    assert r.systemd.restarts() == ["litellm.service"] * 3
    assert ["restart", "--no-block", "--", "litellm.service"] in r.systemd.calls
    view = r.agent.snapshot.services["litellm"]
    assert (view.condition, view.exhausted, view.up) == (Condition.UNHEALTHY, True, False)
    [exhausted] = logged(caplog, "action")[3:]
    assert exhausted["action"] == "budget_exhausted" and "HTTP 503" in exhausted["detail"]
    assert "no restart before" in exhausted["detail"]
    # An hour after the first restart the window has room again: one more restart, not before.
    assert actions_of(r.at(3605)) == []
    assert actions_of(r.at(3610)) == [("litellm", "restart", "unhealthy")]
    assert not r.agent.snapshot.services["litellm"].exhausted
    # The URL answers again: back to healthy, failures and back-off cleared.
    del r.health.down[litellm["health_url"]]
    r.at(3615)
    view = r.agent.snapshot.services["litellm"]
    assert (view.up, view.failures) == (True, 0)


def test_a_killed_unit_is_brought_back_and_a_stopped_one_left_alone(rig) -> None:
    dummy = {"name": "dummy", "unit": "aiswarm-dummy.service"}
    idle = {"name": "idle", "unit": "aiswarm-idle.service"}
    r = rig([dummy, idle])
    r.systemd.kill("aiswarm-dummy.service")  # systemctl kill -s KILL; Restart=no: failed, result signal
    r.systemd.stop("aiswarm-idle.service")  # systemctl stop: inactive, result success
    found = [actions_of(r.at(t)) for t in range(0, 60, 5)]
    assert found[2] == [("dummy", "restart", "crashed")]
    assert flat(found) == [("dummy", "restart", "crashed")]
    # A failed unit is reset first (its start rate limit would refuse the restart), then restarted.
    restart_calls = [c for c in r.systemd.calls if c[0] != "show"]
    assert restart_calls == [
        ["reset-failed", "--", "aiswarm-dummy.service"],
        ["restart", "--no-block", "--", "aiswarm-dummy.service"],
    ]
    assert r.systemd.units["aiswarm-dummy.service"].active_state == "active"
    views = r.agent.snapshot.services
    assert (views["dummy"].up, views["idle"].up, views["idle"].condition) == (True, False, Condition.STOPPED)
    assert views["idle"].failures == 0


def test_a_service_with_restart_false_is_only_watched(rig) -> None:
    r = rig([{"name": "postgresql", "unit": "postgresql@15-main.service", "restart": False}])
    r.systemd.kill("postgresql@15-main.service")
    assert [actions_of(r.at(t)) for t in range(0, 30, 5)] == [[]] * 6
    assert r.agent.snapshot.services["postgresql"].failures == 6
    assert r.systemd.restarts() == []


def test_an_engine_still_loading_is_not_restarted_within_its_start_grace(rig) -> None:
    r = rig([{**VLLM, "start_grace_s": 120}])
    r.systemd.units["vllm.service"].active_enter_s = r.clock()  # just started
    r.health.down[VLLM["health_url"]] = "HTTP 503"
    assert flat(actions_of(r.at(t)) for t in range(0, 120, 5)) == []
    assert r.agent.snapshot.services["vllm"].condition is Condition.STARTING
    # The grace is over and it never answered: three more failed checks restart it.
    assert [actions_of(r.at(t)) for t in (120, 125, 130)] == [[], [], [("vllm", "restart", "unhealthy")]]


def test_an_engine_that_answered_once_gets_no_grace(rig) -> None:
    r = rig([{**VLLM, "start_grace_s": 600}])
    r.systemd.units["vllm.service"].active_enter_s = r.clock()
    r.at(0)  # it answers
    r.health.down[VLLM["health_url"]] = "no answer: timed out"
    assert [actions_of(r.at(t)) for t in (5, 10, 15)] == [[], [], [("vllm", "restart", "unhealthy")]]


def test_a_unit_systemd_does_not_know_is_reported_once_and_never_restarted(rig, caplog) -> None:
    caplog.set_level("INFO", logger="aiswarm.agent")
    r = rig([{"name": "ghost", "unit": "ghost.service"}])
    del r.systemd.units["ghost.service"]
    assert flat(actions_of(r.at(t)) for t in range(0, 30, 5)) == []
    [line] = logged(caplog, "unit_missing")
    assert (line["unit"], line["load_state"]) == ("ghost.service", "not-found")
    assert r.systemd.restarts() == []


def test_a_failed_systemctl_is_no_verdict(rig, caplog) -> None:
    caplog.set_level("INFO", logger="aiswarm.agent")
    r = rig([{"name": "dummy", "unit": "aiswarm-dummy.service"}])
    r.systemd.kill("aiswarm-dummy.service")
    r.systemd.fail_show = True
    assert flat(actions_of(r.at(t)) for t in range(0, 30, 5)) == []
    [line] = logged(caplog, "systemctl_error")
    assert "Failed to connect to bus" in line["error"]
    assert r.agent.health()[1]["services"] == {"dummy": "unknown"}
    r.systemd.fail_show = False
    assert [actions_of(r.at(t)) for t in (30, 35, 40)] == [[], [], [("dummy", "restart", "crashed")]]


def test_an_operators_drain_survives_an_agent_restart_and_a_hot_gpu_outlasts_its_undrain(rig) -> None:
    r = rig(gpus="overheat_run")
    entry = r.agent.drain("vllm", "maintenance\n of the PSU")
    assert entry == {
        "service": "vllm", "api_base": "http://10.0.0.11:8000", "reason": "manual: maintenance of the PSU",
        "since": r.clock() + 1.7e9,
    }  # fmt: skip
    with pytest.raises(UnknownService):
        r.agent.drain("nope", "x")
    with pytest.raises(NotDrainable):
        r.agent.drain("litellm", "x")
    again = Agent(r.agent.config, clock=r.clock, systemctl=r.systemd, read_gpus=r.gpus, check_http=r.health)
    assert again.draining() == [entry]
    # The GPU overheats while drained by hand: lifting the manual drain leaves the thermal one.
    r.gpus.report = readings("overheat_run")[6]["report"]  # 86 °C
    assert actions_of(r.at(0)) == []  # already draining: no second drain action
    left = r.agent.undrain("vllm")
    assert left["draining"] is True and "86 °C" in left["reason"] and "manual" not in left["reason"]
    # Still draining: no undrain action (the log says the operator's reason was lifted).
    assert dict(r.agent.actions) == {("vllm", "drain", "manual"): 1}
    assert Agent(r.agent.config, clock=r.clock).draining() == []  # no manual drain saved any more


def test_health_is_503_before_the_first_round_and_when_the_loop_stalls(rig) -> None:
    r = rig()
    assert r.agent.health() == (503, {"status": "starting"})
    r.at(0)
    status, body = r.agent.health()
    assert status == 200 and body["status"] == "ok"
    assert body["services"] == {"vllm": "healthy", "litellm": "healthy", "redis": "healthy"}
    r.clock.now += 3 * 5 + 2 + 10 + 1
    assert r.agent.health()[0] == 503
