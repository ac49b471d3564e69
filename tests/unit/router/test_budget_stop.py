"""The spend guard in the cost router: stopped paid groups are skipped, and the decision says so."""

from __future__ import annotations

from typing import Any

from aiswarm.router.classify import Decision, route
from aiswarm.router.records import annotate, record_from_call, response_headers
from aiswarm.router.rules import Rules
from aiswarm.router.spend import stop_message

WHY = "the premium budget of $15.00 for 2026-06 is spent ($15.02)"


def ask(text: str, model: str = "swarm-auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_without_a_stop_the_paid_group_is_chosen(rules: Rules) -> None:
    assert route(ask("prove it step by step"), rules, {}) == Decision(
        "complex", "hermes-405b", "keyword 'prove'"
    )


def test_a_stopped_paid_group_is_skipped_for_the_next_one_and_the_reason_says_why(rules: Rules) -> None:
    decision = route(ask("prove it step by step"), rules, {"hermes-405b": WHY})
    assert (decision.tier, decision.model) == ("complex", "swarm-chat")
    assert decision.budget_stop == f"hermes-405b ({WHY})"
    assert decision.reason == f"keyword 'prove'; budget stop, skipped hermes-405b ({WHY})"


def test_every_candidate_stopped_falls_back_to_the_local_group(rules: Rules) -> None:
    blocked = {"dolphin": WHY, "hermes-405b": WHY}
    decision = route(ask("stay in character please"), rules, blocked)
    assert decision.model == "swarm-chat" and "fallback" in decision.reason
    assert decision.budget_stop == f"dolphin ({WHY}); hermes-405b ({WHY})"


def test_free_tiers_are_untouched_and_explicit_models_pass_through(rules: Rules) -> None:
    blocked = {"hermes-405b": WHY}
    assert route(ask("hello"), rules, blocked).model == "deepseek-free"
    explicit = route(ask("hello", model="hermes-405b"), rules, blocked)
    assert not explicit.rewritten and explicit.model == "hermes-405b"  # the hook refuses it with 429


def test_the_stop_reaches_metadata_the_decisions_log_and_the_response_headers(rules: Rules) -> None:
    data = ask("prove it")
    annotate(data, route(data, rules, {"hermes-405b": WHY}))
    assert data["metadata"]["aiswarm_route"]["budget_stop"] == f"hermes-405b ({WHY})"
    assert data["metadata"]["spend_logs_metadata"]["aiswarm_route"]["budget_stop"]
    assert response_headers(data) == {
        "x-aiswarm-route-tier": "complex",
        "x-aiswarm-route-model": "swarm-chat",
        "x-aiswarm-budget-stop": f"hermes-405b ({WHY})",
    }
    record = record_from_call({"litellm_params": {"metadata": data["metadata"]}}, None)
    assert record.budget_stop == f"hermes-405b ({WHY})" and record.model_group == "swarm-chat"


def test_headers_only_for_routed_requests_and_without_a_stop_no_stop_header(rules: Rules) -> None:
    assert response_headers(ask("hello", model="swarm-chat")) is None
    data = ask("hello")
    annotate(data, route(data, rules, {}))
    assert "x-aiswarm-budget-stop" not in (response_headers(data) or {})


def test_the_refusal_names_group_budget_and_the_way_out() -> None:
    message = stop_message("hermes-405b", WHY)
    assert "'hermes-405b' is a paid tier" in message and WHY in message
    assert "swarm-auto" in message and "litellm_spend_budgets_usd" in message
