"""The hook's pure helpers: annotating a request, building a record from a logged call."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from aiswarm.router.classify import Decision
from aiswarm.router.records import CallRecord, annotate, record_from_call

ROUTED = Decision("complex", "hermes-405b", "keyword 'prove'")


def test_annotate_rewrites_model_and_records_the_decision() -> None:
    data: dict[str, Any] = {
        "model": "swarm-auto",
        "metadata": {"tags": ["team-a"], "spend_logs_metadata": {"x": 1}},
    }
    annotate(data, ROUTED)
    route = {"tier": "complex", "model": "hermes-405b", "reason": "keyword 'prove'"}
    assert data["model"] == "hermes-405b"
    assert data["metadata"]["aiswarm_route"] == route
    assert data["metadata"]["spend_logs_metadata"] == {"x": 1, "aiswarm_route": route}
    assert data["metadata"]["tags"] == ["team-a", "aiswarm-route:complex"]


def test_annotate_creates_metadata_when_missing_or_invalid() -> None:
    data: dict[str, Any] = {"model": "swarm-auto", "metadata": "junk"}
    annotate(data, ROUTED)
    assert data["metadata"]["tags"] == ["aiswarm-route:complex"]


def test_annotate_leaves_passthrough_untouched() -> None:
    data = {"model": "swarm-chat", "metadata": {"a": 1}}
    annotate(data, Decision("passthrough", "swarm-chat", "explicit model"))
    assert data == {"model": "swarm-chat", "metadata": {"a": 1}}


def test_record_from_a_routed_call_with_object_usage() -> None:
    kwargs = {
        "litellm_call_id": "abc",
        "response_cost": 0.5,
        "litellm_params": {
            "metadata": {"model_group": "hermes-405b", "aiswarm_route": {"tier": "complex", "reason": "r"}}
        },
    }
    response = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=10, completion_tokens=20))
    record = record_from_call(kwargs, response)
    assert record == CallRecord("abc", "hermes-405b", "complex", "r", 10, 20, 0.5)
    assert json.loads(record.to_json())["tier"] == "complex"


def test_record_from_a_passthrough_call_with_dict_usage_and_no_cost() -> None:
    kwargs = {"model": "swarm-chat", "litellm_params": {}, "response_cost": None}
    record = record_from_call(kwargs, {"usage": {"prompt_tokens": 3, "completion_tokens": -1}})
    assert record == CallRecord("", "swarm-chat", "passthrough", "explicit model", 3, 0, None)


def test_record_without_usage() -> None:
    record = record_from_call({"litellm_params": {"metadata": None}}, None)
    assert (record.prompt_tokens, record.completion_tokens, record.spend) == (0, 0, None)
