"""Table of requests -> routing decisions for the pure classifier."""

from __future__ import annotations

from typing import Any

import pytest

from aiswarm.router.classify import PASSTHROUGH, Decision, prompt_text, route
from aiswarm.router.rules import Rules, rules_from_dict

from .conftest import RULES_DATA


def chat(text: str, model: str = "swarm-auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


CASES = [
    ("explicit local model", chat("prove it", model="swarm-chat"), PASSTHROUGH, "swarm-chat"),
    ("explicit cloud model", chat("hi", model="hermes-405b"), PASSTHROUGH, "hermes-405b"),
    ("no model at all", {"messages": [{"role": "user", "content": "hi"}]}, PASSTHROUGH, "None"),
    ("short greeting", chat("hello there"), "simple", "deepseek-free"),
    ("empty messages", {"model": "swarm-auto", "messages": []}, "simple", "deepseek-free"),
    ("research keyword", chat("Research the history of Miami"), "research", "swarm-chat"),
    ("research phrase", chat("Please cite  sources for this"), "research", "swarm-chat"),
    ("roleplay keyword", chat("Let's roleplay a pirate"), "roleplay", "dolphin"),
    ("roleplay phrase upper", chat("Stay IN CHARACTER please"), "roleplay", "dolphin"),
    ("complex keyword", chat("Prove that sqrt 2 is irrational"), "complex", "hermes-405b"),
    ("complex phrase", chat("walk me through it step by step"), "complex", "hermes-405b"),
    ("keyword inside a word is no match", chat("improve my essay"), "simple", "deepseek-free"),
    ("research wins over complex by order", chat("research and prove"), "research", "swarm-chat"),
    ("batch keyword", chat("bulk translate these"), "batch", "gemini-flash"),
    ("long prompt is complex", chat("x" * 200), "complex", "hermes-405b"),
    ("prompt just under threshold", chat("x" * 199), "simple", "deepseek-free"),
    (
        "long conversation is complex",
        {"model": "swarm-auto", "messages": [{"role": "user", "content": "ok"}] * 6},
        "complex",
        "hermes-405b",
    ),
    (
        "metadata task wins over keywords",
        chat("prove it", metadata={"task": "batch"}),
        "batch",
        "gemini-flash",
    ),
    ("metadata task case-insensitive", chat("hi", metadata={"task": "Research"}), "research", "swarm-chat"),
    ("unknown metadata task is ignored", chat("hi", metadata={"task": "poetry"}), "simple", "deepseek-free"),
    ("metadata not a mapping", chat("hi", metadata="task=batch"), "simple", "deepseek-free"),
    (
        "content as parts",
        {
            "model": "swarm-auto",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "roleplay"}]}],
        },
        "roleplay",
        "dolphin",
    ),
    (
        "system prompt keyword counts",
        {
            "model": "swarm-auto",
            "messages": [
                {"role": "system", "content": "You are in character as Bob"},
                {"role": "user", "content": "hi"},
            ],
        },
        "roleplay",
        "dolphin",
    ),
    ("text completion prompt", {"model": "swarm-auto", "prompt": "bulk job"}, "batch", "gemini-flash"),
    ("prompt as list", {"model": "swarm-auto", "prompt": ["a", "research b"]}, "research", "swarm-chat"),
]


@pytest.mark.parametrize(("request_body", "tier", "model"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_route_table(rules: Rules, request_body: dict[str, Any], tier: str, model: str) -> None:
    decision = route(request_body, rules)
    assert (decision.tier, decision.model) == (tier, model), decision.reason


def test_route_is_deterministic(rules: Rules) -> None:
    body = chat("Prove it step by step")
    assert {route(body, rules) for _attempt in range(5)} == {route(body, rules)}


def test_reason_names_the_rule(rules: Rules) -> None:
    assert route(chat("prove x"), rules).reason == "keyword 'prove'"
    assert route(chat("hi", metadata={"task": "batch"}), rules).reason == "metadata task=batch"
    assert route(chat("hi"), rules).reason == "default tier"


def test_unserved_candidates_fall_through_to_the_next() -> None:
    rules = rules_from_dict({**RULES_DATA, "available_models": ["gemini-flash", "swarm-chat"]})
    assert route(chat("hi"), rules) == Decision("simple", "gemini-flash", "default tier")


def test_no_candidate_served_gives_the_fallback() -> None:
    rules = rules_from_dict({**RULES_DATA, "available_models": ["swarm-chat"]})
    decision = route(chat("prove it"), rules)
    assert (decision.tier, decision.model) == ("complex", "swarm-chat")
    assert route(chat("roleplay"), rules).model == "swarm-chat"
    assert "fallback" in route(chat("roleplay"), rules).reason


def test_empty_available_models_trusts_the_tiers() -> None:
    rules = rules_from_dict({**RULES_DATA, "available_models": []})
    assert route(chat("hi"), rules).model == "deepseek-free"


def test_tier_without_entry_is_skipped_by_keywords() -> None:
    data = {**RULES_DATA, "tiers": {"simple": ["swarm-chat"]}, "available_models": []}
    rules = rules_from_dict(data)
    assert route(chat("prove " + "x" * 500), rules) == Decision("simple", "swarm-chat", "default tier")


def test_prompt_text_skips_non_text_parts() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {}}, {"text": "a"}]},
            "bad",
        ]
    }
    assert prompt_text(body) == "a"
