# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the litellm_config filter (gateway config generated from catalog and inventory)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.aiswarm.swarm.plugins.filter.gateway import (
    FilterModule,
    env_var_for_engine_key,
    env_var_for_key,
    gateway_endpoints,
    litellm_config,
)

SECRETS = ["sk-or-v1-SECRET-openrouter", "AIza-SECRET-gemini-1", "AIza-SECRET-gemini-2"]

CATALOG = [
    {"name": "swarm-chat", "tier": "local", "engines": ["vllm", "llamacpp"]},
    {
        "name": "dark-champion",
        "tier": "premium",
        "provider": "openrouter",
        "model": "openrouter/dark-champion",
        "input_cost_per_token": 2e-7,
        "output_cost_per_token": 6e-7,
    },
    {
        "name": "gemini-flash",
        "tier": "free",
        "provider": "gemini",
        "model": "gemini/gemini-2.5-flash",
        "rpm": 10,
    },
    {"name": "cydonia", "tier": "specialized", "provider": "openrouter", "model": "openrouter/cydonia-22b"},
]


def vllm(host: str, ip: str) -> dict[str, str]:
    return {"host": host, "api_base": f"http://{ip}:8000/v1", "model": "swarm-chat"}


def llamacpp(host: str, ip: str) -> dict[str, str]:
    return {"host": host, "api_base": f"http://{ip}:8080/v1", "model": "swarm-chat"}


def settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "providers": {
            "openrouter": {"api_keys": [SECRETS[0]]},
            "gemini": {"api_keys": [SECRETS[1]]},
        },
        "master_key_env": "LITELLM_MASTER_KEY",
        "database_url_env": "DATABASE_URL",
        "redis": {"host": "172.30.57.10", "port": 6379, "password_env": "REDIS_PASSWORD"},
        "callbacks": ["prometheus"],
        "timeout": 300,
        "stream_timeout": 30,
        "local_stream_timeout": 12,
        "num_retries": 1,
        "allowed_fails": 2,
        "cooldown_time": 20,
    }
    base.update(overrides)
    return base


def deployments(config: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [m for m in config["model_list"] if m["model_name"] == group]


def test_one_inference_and_one_worker() -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")], "llamacpp": [llamacpp("thanos", "172.30.57.12")]}
    out = litellm_config(CATALOG, eps, settings())
    config = out["config"]
    assert list(config) == ["model_list", "router_settings", "litellm_settings", "general_settings"]
    (primary,) = deployments(config, "swarm-chat")
    assert primary["litellm_params"]["model"] == "hosted_vllm/swarm-chat"
    assert primary["litellm_params"]["api_base"] == "http://172.30.57.11:8000/v1"
    assert primary["litellm_params"]["stream_timeout"] == 12
    (fallback,) = deployments(config, "swarm-chat-fallback")
    assert fallback["litellm_params"]["stream_timeout"] == 12
    assert all(m["litellm_params"]["stream_timeout"] == 30 for m in deployments(config, "gemini-flash"))
    assert fallback["litellm_params"]["model"] == "openai/swarm-chat"
    assert fallback["litellm_params"]["api_base"] == "http://172.30.57.12:8080/v1"
    router = config["router_settings"]
    assert router["fallbacks"] == [{"swarm-chat": ["swarm-chat-fallback", "gemini-flash", "dark-champion"]}]
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert (router["num_retries"], router["timeout"], router["allowed_fails"], router["cooldown_time"]) == (
        1,
        300,
        2,
        20,
    )
    litellm = config["litellm_settings"]
    assert litellm["cache"] is True
    assert litellm["cache_params"] == {
        "type": "redis",
        "host": "172.30.57.10",
        "port": 6379,
        "supported_call_types": ["embedding", "aembedding", "rerank", "arerank"],
        "password": "os.environ/REDIS_PASSWORD",
    }
    assert litellm["callbacks"] == ["prometheus"]
    assert litellm["drop_params"] is True
    assert litellm["request_timeout"] == 300
    assert config["general_settings"] == {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        "database_url": "os.environ/DATABASE_URL",
        "background_health_checks": True,
        "health_check_interval": 300,
    }
    assert out["warnings"] == []


def test_local_groups_with_a_fallback_do_not_retry_their_engines() -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")], "llamacpp": [llamacpp("thanos", "172.30.57.12")]}
    router = litellm_config(CATALOG, eps, settings())["config"]["router_settings"]
    # The local groups with something after them in the chain (the primary, and its fallback
    # group before the cloud tiers) do not retry; the cloud groups keep the router-wide num_retries.
    assert router["fallbacks"][0]["swarm-chat"][0] == "swarm-chat-fallback"
    # So does a one-key cloud group anywhere in the chain, the last one too (gemini-flash and
    # dark-champion): its retry would ask the same key again after a back-off.
    assert router["fallbacks"][0]["swarm-chat"][1:] == ["gemini-flash", "dark-champion"]
    assert router["model_group_retry_policy"] == {
        "swarm-chat": {"DefaultRetries": 0}, "swarm-chat-fallback": {"DefaultRetries": 0},
        "gemini-flash": {"DefaultRetries": 0}, "dark-champion": {"DefaultRetries": 0},
    }  # fmt: skip
    # With two keys its retries stay: each one may draw the other key.
    two_keys = settings(
        providers={"openrouter": {"api_keys": [SECRETS[0]]}, "gemini": {"api_keys": SECRETS[1:3]}}
    )
    policy = litellm_config(CATALOG, eps, two_keys)["config"]["router_settings"]["model_group_retry_policy"]
    assert "gemini-flash" not in policy
    # A hung engine times out; the explicit policy is what makes LiteLLM count those and cool down.
    assert router["allowed_fails_policy"] == {"TimeoutErrorAllowedFails": 2}
    router = litellm_config(CATALOG, eps, settings(local_num_retries=2))["config"]["router_settings"]
    assert router["model_group_retry_policy"] == {
        "swarm-chat": {"DefaultRetries": 2}, "swarm-chat-fallback": {"DefaultRetries": 2},
        "gemini-flash": {"DefaultRetries": 0}, "dark-champion": {"DefaultRetries": 0},
    }  # fmt: skip


def test_a_local_group_with_nowhere_to_go_keeps_its_retries() -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")]}
    conf = settings(providers={}, fallback_tiers=[])
    router = litellm_config(CATALOG, eps, conf)["config"]["router_settings"]
    assert "model_group_retry_policy" not in router
    assert router["num_retries"] == 1


def test_two_inference_hosts_give_two_deployments() -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2"), vllm("gamora", "10.0.0.3")], "llamacpp": []}
    config = litellm_config(CATALOG, eps, settings())["config"]
    group = deployments(config, "swarm-chat")
    assert [d["litellm_params"]["api_base"] for d in group] == [
        "http://10.0.0.2:8000/v1",
        "http://10.0.0.3:8000/v1",
    ]
    assert len({d["model_info"]["id"] for d in config["model_list"]}) == len(config["model_list"])
    assert deployments(config, "swarm-chat-fallback") == []
    assert config["router_settings"]["fallbacks"] == [{"swarm-chat": ["gemini-flash", "dark-champion"]}]


def test_same_host_twice_gets_distinct_ids() -> None:
    eps = {
        "vllm": [
            vllm("starlord", "10.0.0.2"),
            {**vllm("starlord", "10.0.0.2"), "api_base": "http://10.0.0.2:8001/v1"},
        ]
    }
    ids = [d["model_info"]["id"] for d in litellm_config(CATALOG, eps, settings())["config"]["model_list"]]
    assert ids[:2] == ["swarm-chat.vllm.starlord", "swarm-chat.vllm.starlord.2"]


def test_no_inference_host_llamacpp_serves_the_main_group() -> None:
    eps = {"llamacpp": [llamacpp("thanos", "10.0.0.4")]}
    config = litellm_config(CATALOG, eps, settings())["config"]
    (main,) = deployments(config, "swarm-chat")
    assert main["litellm_params"]["model"] == "openai/swarm-chat"
    assert deployments(config, "swarm-chat-fallback") == []
    assert config["router_settings"]["fallbacks"] == [{"swarm-chat": ["gemini-flash", "dark-champion"]}]


def test_no_cloud_keys_drops_cloud_tiers_with_warnings() -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2")], "llamacpp": [llamacpp("thanos", "10.0.0.4")]}
    providers = {"openrouter": {"api_keys": []}, "gemini": {"api_keys": ["", None]}}
    out = litellm_config(CATALOG, eps, settings(providers=providers))
    assert {m["model_name"] for m in out["config"]["model_list"]} == {"swarm-chat", "swarm-chat-fallback"}
    assert out["config"]["router_settings"]["fallbacks"] == [{"swarm-chat": ["swarm-chat-fallback"]}]
    assert out["env"] == {}
    assert len(out["warnings"]) == 3
    assert all("dropped: no API key for provider" in w for w in out["warnings"])
    assert any("'gemini-flash' (tier free)" in w for w in out["warnings"])


def test_no_providers_and_no_endpoints() -> None:
    out = litellm_config(CATALOG, {}, {"master_key_env": "LITELLM_MASTER_KEY"})
    assert out["config"]["model_list"] == []
    assert out["config"]["router_settings"]["fallbacks"] == []
    assert "has no vllm or llamacpp endpoint" in out["warnings"][0]
    assert "cache" not in out["config"]["litellm_settings"]
    assert "redis_host" not in out["config"]["router_settings"]
    assert "database_url" not in out["config"]["general_settings"]


def test_two_gemini_keys_give_two_deployments_of_one_group() -> None:
    providers = {"gemini": {"api_keys": [SECRETS[1], SECRETS[2]]}}
    out = litellm_config(CATALOG, {}, settings(providers=providers))
    group = deployments(out["config"], "gemini-flash")
    assert [d["litellm_params"]["api_key"] for d in group] == [
        "os.environ/AISWARM_GEMINI_API_KEY_0",
        "os.environ/AISWARM_GEMINI_API_KEY_1",
    ]
    assert all(d["litellm_params"]["rpm"] == 10 for d in group)
    assert out["env"] == {
        "AISWARM_GEMINI_API_KEY_0": {"provider": "gemini", "index": 0},
        "AISWARM_GEMINI_API_KEY_1": {"provider": "gemini", "index": 1},
    }


def test_empty_key_keeps_the_index_of_the_others() -> None:
    out = litellm_config(CATALOG, {}, settings(providers={"gemini": {"api_keys": ["", SECRETS[2]]}}))
    assert out["env"] == {"AISWARM_GEMINI_API_KEY_1": {"provider": "gemini", "index": 1}}


def test_shared_provider_keys_are_listed_once_in_env() -> None:
    out = litellm_config(CATALOG, {}, settings())
    assert out["env"]["AISWARM_OPENROUTER_API_KEY_0"] == {"provider": "openrouter", "index": 0}
    assert len(deployments(out["config"], "cydonia")) == 1
    (premium,) = deployments(out["config"], "dark-champion")
    assert premium["model_info"]["input_cost_per_token"] == 2e-7
    assert premium["model_info"]["output_cost_per_token"] == 6e-7


def test_groups_carry_tier_and_prices_for_the_spend_guard() -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2")], "llamacpp": [llamacpp("thanos", "10.0.0.4")]}
    providers = {"openrouter": {"api_keys": [SECRETS[0]]}}  # no gemini key: its group is dropped
    out = litellm_config(CATALOG, eps, settings(providers=providers))
    assert out["groups"] == {
        "swarm-chat": {"tier": "local", "models": ["hosted_vllm/swarm-chat"]},
        "swarm-chat-fallback": {"tier": "local", "models": ["openai/swarm-chat"]},
        "dark-champion": {
            "tier": "premium", "input_cost_per_token": 2e-7, "output_cost_per_token": 6e-7,
            "models": ["openrouter/dark-champion"],
        },
        "cydonia": {"tier": "specialized", "models": ["openrouter/cydonia-22b"]},
    }  # fmt: skip


def test_a_provider_api_base_points_every_deployment_of_it_at_the_stand_in() -> None:
    base = "http://172.30.57.1:18100/v1beta"
    providers = {
        "openrouter": {"api_keys": [SECRETS[0]]},
        "gemini": {"api_keys": SECRETS[1:], "api_base": base},
    }
    config = litellm_config(CATALOG, {}, settings(providers=providers))["config"]
    assert [d["litellm_params"].get("api_base") for d in deployments(config, "gemini-flash")] == [base, base]
    assert "api_base" not in deployments(config, "dark-champion")[0]["litellm_params"]


def test_local_deployments_are_marked_for_the_engine_guard() -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2")], "llamacpp": [llamacpp("thanos", "10.0.0.4")]}
    config = litellm_config(CATALOG, eps, settings())["config"]
    marks = {d["model_name"]: d["model_info"].get("aiswarm_engine") for d in config["model_list"]}
    assert marks["swarm-chat"] == "vllm" and marks["swarm-chat-fallback"] == "llamacpp"
    assert marks["dark-champion"] is None  # a cloud tier is not the guard's to probe


def test_no_secret_value_appears_in_the_output() -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2")], "llamacpp": [llamacpp("thanos", "10.0.0.4")]}
    providers = {"openrouter": {"api_keys": [SECRETS[0]]}, "gemini": {"api_keys": SECRETS[1:]}}
    out = litellm_config(CATALOG, eps, settings(providers=providers))
    dumped = json.dumps(out) + yaml.safe_dump(out, sort_keys=False)
    assert len(out["env"]) == 3
    for secret in SECRETS:
        assert secret not in dumped


@pytest.mark.parametrize(
    ("fallback_tiers", "expected"),
    [
        (["premium", "free"], ["dark-champion", "gemini-flash"]),
        (["free", "premium", "specialized"], ["gemini-flash", "dark-champion", "cydonia"]),
        ([], None),
    ],
)
def test_fallback_tier_order(fallback_tiers: list[str], expected: list[str] | None) -> None:
    eps = {"vllm": [vllm("starlord", "10.0.0.2")]}
    fallbacks = litellm_config(CATALOG, eps, settings(fallback_tiers=fallback_tiers))["config"][
        "router_settings"
    ]["fallbacks"]
    assert fallbacks == ([{"swarm-chat": expected}] if expected else [])


def test_endpoint_group_key_and_unmatched_endpoint_warning() -> None:
    catalog = [*CATALOG, {"name": "swarm-code", "tier": "local", "engines": ["vllm"]}]
    eps = {
        "vllm": [
            {**vllm("starlord", "10.0.0.2"), "model": "Qwen/Qwen2.5-Coder-7B", "group": "swarm-code"},
            {**vllm("starlord", "10.0.0.2"), "model": "mystery"},
        ],
        "llamacpp": [{**llamacpp("thanos", "10.0.0.4"), "group": "swarm-code"}],
    }
    out = litellm_config(catalog, eps, settings())
    (code,) = deployments(out["config"], "swarm-code")
    assert code["litellm_params"]["model"] == "hosted_vllm/Qwen/Qwen2.5-Coder-7B"
    assert any("endpoints.vllm[1] (host starlord) serves 'mystery'" in w for w in out["warnings"])
    assert any("endpoints.llamacpp[0] (host thanos) serves 'swarm-code'" in w for w in out["warnings"])


def test_local_api_keys_are_env_references() -> None:
    eps = {
        "vllm": [{**vllm("starlord", "10.0.0.2"), "api_key_env": "VLLM_API_KEY"}],
        "llamacpp": [llamacpp("t", "h")],
    }
    out = litellm_config(CATALOG, eps, settings(local_api_key_env="LOCAL_ENGINE_KEY"))
    keys = [m["litellm_params"]["api_key"] for m in out["config"]["model_list"][:2]]
    assert keys == ["os.environ/VLLM_API_KEY", "os.environ/LOCAL_ENGINE_KEY"]


def test_inputs_are_not_mutated() -> None:
    catalog, eps, conf = copy.deepcopy(CATALOG), {"vllm": [vllm("s", "10.0.0.2")]}, settings()
    before = copy.deepcopy((catalog, eps, conf))
    litellm_config(catalog, eps, conf)
    assert (catalog, eps, conf) == before


@pytest.mark.parametrize(
    ("catalog", "endpoints", "conf", "error"),
    [
        (
            [{"name": "grok", "tier": "cheap", "provider": "openrouter", "model": "x"}],
            {},
            settings(),
            "catalog[0] (grok): tier 'cheap' is not one of the allowed tiers "
            "['local', 'premium', 'free', 'specialized']",
        ),
        (
            [{"name": "x", "tier": "local", "engines": ["ollama"]}],
            {},
            settings(),
            "engines must be a non-empty list",
        ),
        ([{"name": "x", "tier": "free", "model": "gemini/x"}], {}, settings(), "tier free needs 'provider'"),
        ([{"tier": "free"}], {}, settings(), "catalog[0] must be a dict with a non-empty 'name'"),
        ([CATALOG[0], CATALOG[0]], {}, settings(), "duplicate name"),
        ([{**CATALOG[1], "rpm": "10"}], {}, settings(), "rpm must be a positive integer"),
        ({"name": "x"}, {}, settings(), "catalog must be a list"),
        (CATALOG, {"tgi": []}, settings(), "endpoints.tgi: unknown engine"),
        (
            CATALOG,
            {"vllm": [{"host": "s", "model": "m"}]},
            settings(),
            "endpoints.vllm[0]: 'api_base' is required",
        ),
        (
            CATALOG,
            {"vllm": [{**vllm("s", "x"), "api_base": "10.0.0.2:8000"}]},
            settings(),
            "must start with http",
        ),
        (CATALOG, {}, settings(master_key_env=None), "settings.master_key_env is required"),
        (CATALOG, {}, settings(redis_url="redis://x"), "unknown settings ['redis_url']"),
        (CATALOG, {}, settings(num_retries=-1), "settings.num_retries must be an integer >= 0"),
        (CATALOG, {}, settings(local_stream_timeout="1s"), "settings.local_stream_timeout must be an int"),
        (CATALOG, {}, settings(redis={"host": "r", "port": 70000}), "settings.redis.port must be a TCP port"),
        (CATALOG, {}, settings(fallback_tiers=["local"]), "settings.fallback_tiers must be a list of"),
        (CATALOG, {}, settings(providers={"gemini": {"api_keys": "AIza-one"}}), "not a single string"),
    ],
)
def test_bad_input_names_the_field(catalog: Any, endpoints: Any, conf: dict[str, Any], error: str) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        litellm_config(catalog, endpoints, conf)
    assert error in str(err.value)


@pytest.mark.parametrize("field", ["master_key_env", "database_url_env"])
def test_secret_passed_instead_of_env_name_is_refused_without_echo(field: str) -> None:
    secret = "sk-1234-THIS-IS-THE-MASTER-KEY"
    with pytest.raises(AnsibleFilterError) as err:
        litellm_config(CATALOG, {}, settings(**{field: secret}))
    assert f"settings.{field} must be the NAME of an environment variable" in str(err.value)
    assert secret not in str(err.value)


@pytest.mark.parametrize(
    ("provider", "index", "expected"),
    [("gemini", 0, "AISWARM_GEMINI_API_KEY_0"), ("open-router.ai", 2, "AISWARM_OPEN_ROUTER_AI_API_KEY_2")],
)
def test_env_var_for_key(provider: str, index: int, expected: str) -> None:
    assert env_var_for_key(provider, index) == expected


def test_one_rule_names_provider_and_engine_keys() -> None:
    # The names the role wrote before the rule moved here from vars/main.yml.
    assert (
        env_var_for_engine_key("llamacpp", "aiswarm-lab-worker1")
        == "AISWARM_LLAMACPP_AISWARM_LAB_WORKER1_API_KEY"
    )
    assert env_var_for_engine_key("vllm", "gpu.1") == "AISWARM_VLLM_GPU_1_API_KEY"


ENGINE_DEFAULTS = {
    "vllm": {"port": 8000, "model": "swarm-chat"},
    "llamacpp": {"port": 8081, "model": "swarm-fallback"},
}
FACTS = {"ansible_facts": {"default_ipv4": {"address": "192.0.2.7"}}}


@pytest.mark.parametrize(
    ("hosts", "hostvars", "expected"),
    [
        pytest.param(
            {"vllm": ["gpu1"], "llamacpp": []},
            {"gpu1": {"swarm_private_address": "10.0.0.2", **FACTS}},
            {
                "vllm": [
                    {
                        "host": "gpu1",
                        "api_base": "http://10.0.0.2:8000/v1",
                        "model": "swarm-chat",
                        "group": "g",
                    }
                ]
            },
            id="private address wins over facts",
        ),
        pytest.param(
            {"vllm": ["gpu1"], "llamacpp": []},
            {"gpu1": FACTS},
            {
                "vllm": [
                    {
                        "host": "gpu1",
                        "api_base": "http://192.0.2.7:8000/v1",
                        "model": "swarm-chat",
                        "group": "g",
                    }
                ]
            },
            id="no swarm_private_address: default IPv4 from facts",
        ),
        pytest.param(
            {"llamacpp": ["w1"]},
            {"w1": {}},
            {
                "llamacpp": [
                    {"host": "w1", "api_base": "http://w1:8081/v1", "model": "swarm-fallback", "group": "g"}
                ]
            },
            id="no address and no facts: the host name",
        ),
        pytest.param(
            {"llamacpp": ["w1"]},
            {
                "w1": {
                    "swarm_private_address": "10.0.0.3",
                    "llamacpp_port": 9090,
                    "llamacpp_served_model_name": "tiny",
                }
            },
            {
                "llamacpp": [
                    {"host": "w1", "api_base": "http://10.0.0.3:9090/v1", "model": "tiny", "group": "g"}
                ]
            },
            id="own port and served name",
        ),
        pytest.param(
            {"llamacpp": ["aiswarm-lab-worker1"]},
            {"aiswarm-lab-worker1": {"swarm_private_address": "10.0.0.4", "llamacpp_api_key": "SECRET-KEY"}},
            {
                "llamacpp": [
                    {
                        "host": "aiswarm-lab-worker1",
                        "api_base": "http://10.0.0.4:8081/v1",
                        "model": "swarm-fallback",
                        "group": "g",
                        "api_key_env": "AISWARM_LLAMACPP_AISWARM_LAB_WORKER1_API_KEY",
                    }
                ]
            },
            id="host name with dashes and a key",
        ),
        pytest.param(
            {"vllm": [], "llamacpp": []},
            {},
            {},
            id="an engine with no hosts",
        ),
        pytest.param(
            {"llamacpp": ["w1"]},
            {"w1": {"llamacpp_api_key": ""}},
            {
                "llamacpp": [
                    {"host": "w1", "api_base": "http://w1:8081/v1", "model": "swarm-fallback", "group": "g"}
                ]
            },
            id="empty key: no key variable",
        ),
    ],
)
def test_gateway_endpoints(
    hosts: dict[str, list[str]], hostvars: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = gateway_endpoints(hosts, hostvars, ENGINE_DEFAULTS, "g")
    assert out == {"vllm": [], "llamacpp": [], **expected}
    assert "SECRET-KEY" not in json.dumps(out)


def test_gateway_endpoints_refuses_an_unknown_engine() -> None:
    with pytest.raises(AnsibleFilterError, match=r"gateway_endpoints: unknown engines \['tgi'\]"):
        gateway_endpoints({"tgi": ["h"]}, {"h": {}}, ENGINE_DEFAULTS, "g")


def test_engine_keys_follow_provider_keys_in_env() -> None:
    hostvars = {
        "gpu-1": {"swarm_private_address": "10.0.0.2", "vllm_api_key": "k1"},
        "w1": {"swarm_private_address": "10.0.0.3", "llamacpp_api_key": "k2"},
        "w2": {"swarm_private_address": "10.0.0.4"},
    }
    eps = gateway_endpoints(
        {"vllm": ["gpu-1"], "llamacpp": ["w1", "w2"]}, hostvars, ENGINE_DEFAULTS, "swarm-chat"
    )
    out = litellm_config(CATALOG, eps, settings())
    assert list(out["env"].items())[-2:] == [
        ("AISWARM_VLLM_GPU_1_API_KEY", {"engine": "vllm", "host": "gpu-1"}),
        ("AISWARM_LLAMACPP_W1_API_KEY", {"engine": "llamacpp", "host": "w1"}),
    ]
    assert next(iter(out["env"])) == "AISWARM_OPENROUTER_API_KEY_0"
    params = [
        m["litellm_params"] for m in out["config"]["model_list"] if m["model_name"].startswith("swarm-chat")
    ]
    assert [p["api_key"] for p in params] == [
        "os.environ/AISWARM_VLLM_GPU_1_API_KEY",
        "os.environ/AISWARM_LLAMACPP_W1_API_KEY",
        "none",
    ]


def test_filter_module_exposes_the_filters() -> None:
    filters = FilterModule().filters()
    assert filters["litellm_config"] is litellm_config
    assert filters["gateway_endpoints"] is gateway_endpoints


def test_gateway_endpoints_carry_each_hosts_context_window() -> None:
    defaults = {
        "vllm": {**ENGINE_DEFAULTS["vllm"], "context": 131072},
        "llamacpp": {**ENGINE_DEFAULTS["llamacpp"], "context": 2048},
    }
    hostvars = {"gpu1": {"vllm_max_context": 4096}, "gpu2": {}, "w1": {"llamacpp_n_ctx": 8192}}
    out = gateway_endpoints({"vllm": ["gpu1", "gpu2"], "llamacpp": ["w1"]}, hostvars, defaults, "g")
    assert [ep["context"] for ep in out["vllm"]] == [4096, 131072]
    assert [ep["context"] for ep in out["llamacpp"]] == [8192]


def test_context_windows_are_the_smallest_of_each_group() -> None:
    eps = {
        "vllm": [{**vllm("s1", "10.0.0.1"), "context": 131072}, {**vllm("s2", "10.0.0.2"), "context": 32768}],
        "llamacpp": [{**llamacpp("w1", "10.0.0.3"), "context": 2048}],
    }
    catalog = [CATALOG[0], {**CATALOG[2], "context_window": 1048576}, CATALOG[1]]
    out = litellm_config(catalog, eps, settings())
    # A group with no known window (dark-champion) is left out: the gateway cannot bound it.
    assert out["context_windows"] == {
        "swarm-chat": 32768,
        "swarm-chat-fallback": 2048,
        "gemini-flash": 1048576,
    }


def test_client_errors_and_context_overflows_are_not_failover() -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")], "llamacpp": [llamacpp("thanos", "172.30.57.12")]}
    router = litellm_config(CATALOG, eps, settings())["config"]["router_settings"]
    assert router["fallback_on_unsupported_params"] is False
    # One empty chain per group: LiteLLM reads an empty list as "unset" and would use the fallbacks.
    assert router["context_window_fallbacks"] == [
        {"swarm-chat": []},
        {"swarm-chat-fallback": []},
        {"dark-champion": []},
        {"gemini-flash": []},
        {"cydonia": []},
    ]
    conf = settings(context_window_fallbacks={"swarm-chat-fallback": ["swarm-chat"]})
    router = litellm_config(CATALOG, eps, conf)["config"]["router_settings"]
    assert {"swarm-chat-fallback": ["swarm-chat"]} in router["context_window_fallbacks"]


@pytest.mark.parametrize(
    ("catalog", "endpoints", "conf", "error"),
    [
        (
            [{**CATALOG[1], "context_window": "128k"}],
            {},
            settings(),
            "catalog[0] (dark-champion): context_window must be a positive integer, got '128k'",
        ),
        (
            CATALOG,
            {"vllm": [{**vllm("s", "10.0.0.1"), "context": 0}]},
            settings(),
            "endpoints.vllm[0]: context must be a whole number of tokens > 0, got 0",
        ),
        (
            CATALOG,
            {},
            settings(context_window_fallbacks={"swarm-chat": "big-model"}),
            "settings.context_window_fallbacks must be a dict of model group -> list",
        ),
    ],
)
def test_bad_context_input_names_the_field(
    catalog: Any, endpoints: Any, conf: dict[str, Any], error: str
) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        litellm_config(catalog, endpoints, conf)
    assert error in str(err.value)


def test_the_response_cache_stores_the_call_types_asked_for() -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")]}
    redis = {"host": "127.0.0.1", "port": 6379}
    chat = litellm_config(CATALOG, eps, settings(redis={**redis, "cache_call_types": ["acompletion"]}))
    assert chat["config"]["litellm_settings"]["cache_params"]["supported_call_types"] == ["acompletion"]
    # No call type cached: Redis still carries the router's state, LiteLLM's cache is off.
    none = litellm_config(CATALOG, eps, settings(redis={**redis, "cache_call_types": []}))["config"]
    assert none["litellm_settings"]["cache"] is False
    assert none["router_settings"]["redis_host"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        ("acompletion", "must be a list of LiteLLM call types, got 'acompletion'"),
        (["acompletion", "chat"], r"unknown call type\(s\) \['chat'\]"),
    ],
)
def test_unknown_cache_call_types_are_refused(kinds: Any, message: str) -> None:
    eps = {"vllm": [vllm("starlord", "172.30.57.11")]}
    with pytest.raises(AnsibleFilterError, match=message):
        litellm_config(CATALOG, eps, settings(redis={"host": "127.0.0.1", "cache_call_types": kinds}))
