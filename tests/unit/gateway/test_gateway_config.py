"""The config.yaml validator of the litellm role: every os.environ/NAME has a line in the env file."""

from __future__ import annotations

import pytest

from aiswarm.gateway_config import check, env_names, env_refs, main

CONFIG = """
model_list:
  - model_name: swarm-chat
    litellm_params: {model: openai/swarm-fallback, api_key: os.environ/AISWARM_LLAMACPP_W1_API_KEY}
  - model_name: gemini-flash
    litellm_params: {model: gemini/x, api_key: os.environ/AISWARM_GEMINI_API_KEY_0}
router_settings: {redis_password: os.environ/REDIS_PASSWORD}
general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
"""
ENV = """# Ansible managed
LITELLM_MASTER_KEY=sk-secret-value-1234
REDIS_PASSWORD=redis-secret
AISWARM_GEMINI_API_KEY_0=AIza-secret
AISWARM_LLAMACPP_W1_API_KEY=key=with=equals
"""


def test_a_config_whose_references_are_all_set_passes() -> None:
    assert check(CONFIG, ENV) == []


def test_a_missing_variable_is_named_without_any_value() -> None:
    env = ENV.replace("REDIS_PASSWORD=redis-secret\n", "")
    problems = check(CONFIG, env)
    assert problems == [
        "config.yaml refers to os.environ/REDIS_PASSWORD, which the environment file does not set"
    ]
    assert not any("secret" in p for p in problems)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("model_list: []\n", "expected a mapping with a non-empty model_list"),
        ("- just a list\n", "expected a mapping with a non-empty model_list"),
        ("model_list: [\n", "not valid YAML"),
    ],
)
def test_a_config_without_models_is_refused(config: str, error: str) -> None:
    assert error in check(config, ENV)[0]


def test_refs_and_names() -> None:
    assert list(env_refs({"a": ["os.environ/X", {"b": "os.environ/Y"}], "c": "not os.environ/Z"})) == [
        "X",
        "Y",
    ]
    assert env_names("# c\n\n; c\nA=1\n B = 2\nnot a line\n") == {"A", "B"}


def test_main_exit_codes(tmp_path, capsys) -> None:
    config, env = tmp_path / "config.yaml", tmp_path / "litellm.env"
    config.write_text(CONFIG)
    env.write_text(ENV)
    assert main([str(config), str(env)]) == 0
    env.write_text("LITELLM_MASTER_KEY=x\n")
    assert main([str(config), str(env)]) == 1
    assert "os.environ/AISWARM_GEMINI_API_KEY_0" in capsys.readouterr().err
    assert main([str(config)]) == 2
