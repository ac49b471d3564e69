"""Scenario schema: every shipped scenario validates, and broken ones say what is wrong and where."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from aiswarm_loadtest.chaos.scenario import (
    DEFAULT_SERVICES,
    ScenarioError,
    Target,
    load_scenario,
    load_scenarios,
    parse_scenario,
)

SCENARIOS = Path(__file__).resolve().parents[3] / "loadtests" / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))

GOOD = {
    "name": "kill_primary",
    "description": "kill it",
    "steady_state": {
        "max_error_rate": 0.01,
        "max_ttft_p95_ms": 500,
        "window_s": 10,
        "probe": {"path": "/v1/models"},
    },
    "load": {"users": 4, "spawn_rate": 2},
    "fault": {
        "kind": "kill_service",
        "target": {"group": "inference", "service": "${inference_engine}"},
        "duration_s": 20,
    },
    "expect": {"failover_within_s": 10, "max_failed_requests": 5, "recover_within_s": 60},
    "timeline": {"warmup_s": 5, "fault_at_s": 10, "observe_after_restore_s": 30},
}


def test_the_catalog_ships_one_scenario_per_fault() -> None:
    names = {p.stem for p in SHIPPED}
    assert names == {
        "kill_primary_engine",
        "stop_primary_engine",
        "freeze_primary_engine",
        "partition_inference_node",
        "latency_inference_node",
        "loss_inference_node",
        "stop_inference_node",
        "stop_redis",
        "stop_postgresql",
        "restart_gateway",
        "noisy_neighbour",
        "agent_restarts_fallback_engine",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_validates(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.rollback
    assert scenario.timeline.total_s(scenario.fault.duration_s) > scenario.timeline.fault_at_s


def test_a_good_scenario_parses_into_typed_fields() -> None:
    scenario = parse_scenario(GOOD, "scenarios/kill_primary.yaml")
    assert scenario.fault.kind == "kill_service"
    assert scenario.fault.target.service == "vllm"
    assert scenario.fault.target.group == "inference"
    assert scenario.fault.params.signal == "KILL"
    assert scenario.rollback == "start_service"
    assert scenario.steady_state.probe.path == "/v1/models"
    assert scenario.timeline.total_s(20) == 60


def test_loss_takes_a_method_and_refuses_an_unknown_one() -> None:
    doc = _with("fault", {"kind": "net_loss", "target": {"group": "inference"}, "duration_s": 20})
    doc["fault"]["params"] = {"loss_pct": 10, "method": "iptables"}
    assert parse_scenario(doc, "s.yaml").fault.params.method == "iptables"
    doc["fault"]["params"]["method"] = "udp"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(doc, "s.yaml")
    assert "s.yaml: fault.params.method: expected one of netem, iptables, got 'udp'" in caught.value.errors


def _with(path: str, value: object) -> dict:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()

BROKEN = [
    (
        "fault.kind",
        "kil",
        "scenarios/kill_primary.yaml: fault.kind: expected one of stop_service, kill_service, "
        "freeze_service, restart_service, net_latency, net_loss, partition_node, stop_node, "
        "standin_state, stop_redis, stop_postgresql, restart_gateway, got 'kil'",
    ),
    ("name", "Kill Primary", "name: expected a lower-case name (a-z, 0-9, _ -), got 'Kill Primary'"),
    ("description", _DELETE, "description: required field missing (expected a non-empty string)"),
    (
        "steady_state.max_error_rate",
        1.5,
        "steady_state.max_error_rate: expected a number >= 0 and <= 1, got 1.5",
    ),
    ("steady_state.window_s", 0, "steady_state.window_s: expected a number > 0, got 0"),
    ("steady_state.probe", {"path": "v1/models"}, "steady_state.probe.path: expected a path starting with /"),
    ("load.users", 0, "load.users: expected an integer >= 1, got 0"),
    ("load.users", True, "load.users: expected an integer >= 1, got True"),
    (
        "load.colour",
        "red",
        "load.colour: unknown field (known: users, spawn_rate, user_class, tags, noisy_clients, model)",
    ),
    ("fault.duration_s", -1, "fault.duration_s: expected a number > 0, got -1"),
    ("fault.target", {"group": "inference"}, "fault.target.service: required field missing"),
    (
        "fault.target",
        {"group": "inference", "host": "n1", "service": "vllm"},
        "fault.target: expected exactly one of host or group",
    ),
    ("fault.target", {"group": "inference", "service": "${nope}"}, "got '${nope}'"),
    (
        "fault.target",
        {"group": "inference", "service": "vllm; rm -rf /"},
        "fault.target.service: expected a systemd",
    ),
    (
        "fault.target",
        {"group": "inference", "service": "vllm", "pick": "some"},
        "fault.target.pick: expected one of first, all",
    ),
    (
        "fault.params",
        {"signal": "HUP"},
        "fault.params.signal: expected one of KILL, TERM, ABRT, SEGV, INT, QUIT, got 'HUP'",
    ),
    (
        "rollback",
        "clear_netem",
        "rollback: expected auto or one of start_service, none for kill_service, got 'clear_netem'",
    ),
    ("expect.failover_within_s", "10s", "expect.failover_within_s: expected a number >= 0, got '10s'"),
    ("expect.data_loss", False, "expect.data_loss: needs a data_check section to be measured"),
    (
        "data_check",
        {"target": {"group": "gateway"}, "argv": ["get"], "seed": "put"},
        "data_check.seed: expected a non-empty list of strings, got 'put'",
    ),
    ("expect.max_failed_requests", 1.5, "expect.max_failed_requests: expected an integer >= 0, got 1.5"),
    ("timeline.warmup_s", 50, "timeline.warmup_s: expected a value <= timeline.fault_at_s (10), got 50"),
    ("timeline.observe_after_restore_s", _DELETE, "timeline.observe_after_restore_s: required field missing"),
    ("timeline", _DELETE, "timeline: required field missing (expected a mapping)"),
    ("extra", 1, "extra: unknown field"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), BROKEN, ids=[f"{p}={v!r}"[:40] for p, v, _message in BROKEN]
)
def test_a_broken_scenario_names_the_field_and_the_expectation(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(_with(path, value), "scenarios/kill_primary.yaml")
    assert any(message in error for error in caught.value.errors), caught.value.errors
    assert all(error.startswith("scenarios/kill_primary.yaml: ") for error in caught.value.errors)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            {"kind": "net_latency", "target": {"group": "inference"}, "duration_s": 5},
            "fault.params.latency_ms: required field missing (expected an integer > 0 and <= 60000)",
        ),
        (
            {
                "kind": "net_loss",
                "target": {"group": "inference"},
                "duration_s": 5,
                "params": {"loss_pct": 0},
            },
            "fault.params.loss_pct: expected a number > 0 and <= 100, got 0",
        ),
        (
            {
                "kind": "net_loss",
                "target": {"group": "x"},
                "duration_s": 5,
                "params": {"loss_pct": 5, "interface": "e 0"},
            },
            "fault.params.interface: expected a network interface name, got 'e 0'",
        ),
        (
            {"kind": "partition_node", "target": {"group": "inference", "service": "vllm"}, "duration_s": 5},
            "fault.target.service: expected no service for partition_node"
            " (it acts on the whole node), got 'vllm'",
        ),
        (
            {
                "kind": "stop_service",
                "target": {"group": "g", "service": "x"},
                "duration_s": 5,
                "params": {"a": 1},
            },
            "fault.params.a: unknown field (known: none here)",
        ),
    ],
)
def test_fault_params_are_checked_per_kind(fault: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({**GOOD, "fault": fault}, "s.yaml")
    assert f"s.yaml: {message}" in caught.value.errors


def test_all_errors_are_reported_at_once() -> None:
    doc = _with("fault.kind", "kil")
    doc["load"]["users"] = 0
    doc["timeline"]["warmup_s"] = 99
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(doc, "s.yaml")
    assert len(caught.value.errors) == 3
    assert str(caught.value).count("\n") == 2


def test_a_frozen_service_cannot_skip_its_rollback() -> None:
    doc = _with("fault.kind", "freeze_service")
    doc["rollback"] = "none"
    with pytest.raises(ScenarioError, match="rollback: expected auto or one of continue_service"):
        parse_scenario(doc, "s.yaml")


@pytest.mark.parametrize(
    ("kind", "base", "service"),
    [
        ("stop_redis", "stop_service", "redis-server"),
        ("stop_postgresql", "stop_service", "postgresql"),
        ("restart_gateway", "restart_service", "litellm"),
    ],
)
def test_named_conveniences_expand_to_base_kinds(kind: str, base: str, service: str) -> None:
    scenario = parse_scenario({**GOOD, "fault": {"kind": kind, "duration_s": 5}}, "s.yaml")
    assert (scenario.fault.kind, scenario.fault.requested_kind) == (base, kind)
    assert scenario.fault.target == Target(group="gateway", service=service)


def test_an_explicit_host_replaces_the_default_group_of_a_convenience() -> None:
    scenario = parse_scenario(
        {**GOOD, "fault": {"kind": "stop_redis", "target": {"host": "cache1"}, "duration_s": 5}}, "s"
    )
    assert (scenario.fault.target.host, scenario.fault.target.group) == ("cache1", None)


def test_the_services_map_decides_unit_names() -> None:
    services = {**DEFAULT_SERVICES, "inference_engine": "vllm-gpu0"}
    assert parse_scenario(GOOD, "s.yaml", services).fault.target.service == "vllm-gpu0"


def test_files_are_read_and_errors_of_several_files_are_merged(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    assert load_scenarios([good])[0].name == "kill_primary"
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([good, bad, missing])
    assert len(caught.value.errors) == 2
    assert caught.value.errors[0].startswith(f"{bad}: not valid YAML")
    assert caught.value.errors[1].startswith(f"{missing}: cannot read the file")


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ScenarioError, match=r"^s.yaml: expected a mapping, got \['a'\]$"):
        parse_scenario(["a"], "s.yaml")


def test_noisy_clients_are_load_and_their_gate_needs_them() -> None:
    doc = copy.deepcopy(GOOD)
    doc["load"]["noisy_clients"] = 2
    doc["expect"]["max_noisy_unexpected"] = 0
    scenario = parse_scenario(doc, "s.yaml")
    assert (scenario.load.noisy_clients, scenario.expect.max_noisy_unexpected) == (2, 0)
    assert parse_scenario(GOOD, "s.yaml").load.noisy_clients == 0
    doc["load"]["noisy_clients"] = 0
    with pytest.raises(ScenarioError, match=r"expect\.max_noisy_unexpected: needs load\.noisy_clients >= 1"):
        parse_scenario(doc, "s.yaml")
    doc["load"]["noisy_clients"] = 50
    with pytest.raises(ScenarioError, match=r"load\.noisy_clients"):
        parse_scenario(doc, "s.yaml")
