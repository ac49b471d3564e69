# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the gateway's request limits (aiswarm.gateway.limits): what is refused, with which status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from aiswarm.gateway import limits as mod
from aiswarm.gateway.limits import Limits, Refusal, RequestLimits, body_size, check

LIMITS = Limits(
    max_body_bytes=64 * 1024,
    max_messages=8,
    max_n=4,
    max_chars_per_token=8,
    context_windows={"swarm-chat": 4096, "swarm-chat-fallback": 2048},
)


def chat(content: Any = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "swarm-chat", "messages": [{"role": "user", "content": content}], **extra}


def refusal(data: dict[str, Any], call_type: str = "acompletion", size: int | None = None) -> Refusal:
    with pytest.raises(Refusal) as err:
        check(data, call_type, LIMITS, size)
    return err.value


def test_a_normal_request_passes_and_reports_its_lower_bound() -> None:
    assert check(chat("x" * 80, max_tokens=64), "acompletion", LIMITS) == 10
    parts = [{"type": "text", "text": "abcdefgh"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    assert check(chat(parts), "acompletion", LIMITS) == 1
    assert check({"model": "swarm-chat", "prompt": "y" * 16}, "atext_completion", LIMITS) == 2


def test_assistant_tool_call_messages_with_null_content_pass() -> None:
    data = {
        "model": "swarm-chat",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        ],
    }
    check(data, "acompletion", LIMITS)


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({"model": "swarm-chat", "messages": "hello"}, "messages", "must be a non-empty list"),
        ({"model": "swarm-chat", "messages": []}, "messages", "got an empty list"),
        ({"model": "swarm-chat"}, "messages", "got NoneType"),
        ({"model": "swarm-chat", "messages": ["hello"]}, "messages[0]", "must be an object with 'role'"),
        (
            {"model": "swarm-chat", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "robot",
        ),
        (chat(42), "messages[0].content", "must be a string, a list of content parts or null, got int"),
        (chat(["x"]), "messages[0].content[0]", "must be a content part with a 'type'"),
        (chat([{"type": "text", "text": 5}]), "messages[0].content[0].text", "must be a string"),
        (
            {"model": "swarm-chat", "messages": [{"role": "user", "content": "x"}] * 9},
            "messages",
            "at most 8",
        ),
        (chat(n=1000), "n", "from 1 to 4, got 1000"),
        (chat(n=0), "n", "from 1 to 4, got 0"),
        (chat(n="2"), "n", "got '2'"),
        (chat(max_tokens=-5), "max_tokens", "must be a whole number >= 1, got -5"),
        (chat(max_tokens=0), "max_tokens", "got 0"),
        (chat(max_tokens=1.5), "max_tokens", "got 1.5"),
        (chat(max_tokens=True), "max_tokens", "got True"),
        (chat(max_completion_tokens=-1), "max_completion_tokens", "got -1"),
        (
            chat(max_tokens=1_000_000_000),
            "max_tokens",
            "max_tokens is 1000000000, but model group 'swarm-chat' has a context window of 4096 tokens "
            "and the prompt takes at least 1 of them: at most 4095 tokens are left",
        ),
        (
            chat("z" * 40_000),
            "messages",
            "the prompt has 40000 characters, at least 5000 tokens, and model group 'swarm-chat' has a "
            "context window of 4096 tokens",
        ),
    ],
)
def test_bad_chat_requests_get_a_400_naming_the_field(data: dict[str, Any], param: str, words: str) -> None:
    err = refusal(data)
    assert (err.status, err.param) == (400, param)
    assert words in err.message


def test_the_window_is_the_target_groups() -> None:
    # 20,000 characters: at least 2,500 tokens, which fit 4096 but not the fallback group's 2048.
    check(chat("z" * 20_000), "acompletion", LIMITS)
    err = refusal({**chat("z" * 20_000), "model": "swarm-chat-fallback"})
    assert err.reason == "context_exceeded"
    assert "2048" in err.message


def test_a_group_without_a_known_window_gets_the_other_checks() -> None:
    check({**chat("z" * 50_000), "model": "gemini-flash"}, "acompletion", LIMITS)
    assert refusal({**chat(max_tokens=-5), "model": "gemini-flash"}).param == "max_tokens"


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (None, "got NoneType"),
        ("", "got str"),
        ([], "got list"),
        ([1, "a"], "got list"),
        ({"a": 1}, "got dict"),
    ],
)
def test_bad_text_prompts_get_a_400(prompt: Any, words: str) -> None:
    err = refusal({"model": "swarm-chat", "prompt": prompt}, "atext_completion")
    assert (err.status, err.param) == (400, "prompt")
    assert words in err.message


def test_token_id_prompts_are_left_to_the_engine() -> None:
    assert check({"model": "swarm-chat", "prompt": [1, 2, 3]}, "atext_completion", LIMITS) == 0


def test_a_body_over_the_limit_is_a_413_from_its_content_length() -> None:
    headers = {"Content-Length": str(3 * 1024 * 1024), "content-type": "application/json"}
    data = {**chat(), "proxy_server_request": {"headers": headers}}
    assert body_size(data) == 3 * 1024 * 1024
    err = refusal(data)
    assert (err.status, err.reason, err.param) == (413, "body_too_large", None)
    assert err.message == "request body is 3145728 bytes; this gateway accepts at most 65536 bytes"


def test_a_body_without_content_length_is_measured() -> None:
    err = refusal(chat("q" * 70_000))
    assert err.status == 413


def test_the_size_check_comes_before_the_shape_check() -> None:
    assert refusal({"model": "swarm-chat", "messages": "x" * 70_000}).status == 413


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"max_n": 0}, "limits.max_n: expected a whole number > 0, got 0"),
        ({"max_body_bytes": "4M"}, "limits.max_body_bytes: expected a whole number > 0, got '4M'"),
        ({"max_chars_per_token": -1}, "limits.max_chars_per_token: expected a number > 0"),
        ({"context_windows": {"g": 1.5}}, "limits.context_windows.g: expected a whole number > 0"),
        ({"context_windows": ["g"]}, "limits.context_windows: expected {model group: tokens}"),
        ({"max_prompt": 1}, "limits: unknown settings ['max_prompt']"),
        (["x"], "limits: expected a mapping of settings, got list"),
    ],
)
def test_bad_settings_name_the_key(data: Any, error: str) -> None:
    with pytest.raises(ValueError) as err:
        Limits.from_mapping(data)
    assert error in str(err.value)


def test_settings_from_the_role_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text(
        json.dumps({"max_body_bytes": 1024, "max_chars_per_token": 6.0, "context_windows": {"g": 2048}})
    )
    limits = Limits.from_env({"AISWARM_LIMITS": str(path)})
    assert (limits.max_body_bytes, limits.max_chars_per_token, dict(limits.context_windows)) == (
        1024,
        6.0,
        {"g": 2048},
    )
    assert Limits.from_env({"AISWARM_LIMITS": str(tmp_path / "missing.json")}) == Limits()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the request limits"):
        Limits.from_env({"AISWARM_LIMITS": str(path)})


def test_the_hook_refuses_and_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = RequestLimits(LIMITS)
    data = chat()
    assert asyncio.run(hook.async_pre_call_hook(None, None, data, "acompletion")) is data
    # Embeddings and other call types are not this hook's business.
    odd = {"model": "swarm-chat", "input": "x"}
    assert asyncio.run(hook.async_pre_call_hook(None, None, odd, "aembedding")) is odd
    monkeypatch.setattr(mod, "_client_error", lambda refusal: refusal)
    with pytest.raises(Refusal) as err:
        asyncio.run(hook.async_pre_call_hook(None, None, chat(max_tokens=-5), "acompletion"))
    assert err.value.param == "max_tokens"
