"""Pure helpers of the gateway hook: annotate a request with its decision, turn a logged call into a record.

No LiteLLM import here, so these run and are tested anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aiswarm.router.classify import Decision

METADATA_KEY = "aiswarm_route"
TAG_PREFIX = "aiswarm-route:"


def annotate(data: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """Rewrite ``data["model"]`` for a routed request and record the decision in its metadata.

    The decision lands in ``metadata.aiswarm_route`` (with ``budget_stop`` when the spend guard
    made it skip paid groups), in ``metadata.spend_logs_metadata`` (which LiteLLM copies into its
    spend logs) and as a ``aiswarm-route:<tier>`` request tag (spend per tag). A pass-through
    request is returned unchanged.
    """
    if not decision.rewritten:
        return data
    route = {"tier": decision.tier, "model": decision.model, "reason": decision.reason}
    if decision.budget_stop:
        route["budget_stop"] = decision.budget_stop
    data["model"] = decision.model
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        data["metadata"] = metadata
    metadata[METADATA_KEY] = route
    spend_meta = metadata.get("spend_logs_metadata")
    spend_meta = spend_meta if isinstance(spend_meta, dict) else {}
    metadata["spend_logs_metadata"] = {**spend_meta, METADATA_KEY: route}
    tags = metadata.get("tags")
    metadata["tags"] = [*(tags if isinstance(tags, list) else []), f"{TAG_PREFIX}{decision.tier}"]
    return data


@dataclass(frozen=True)
class CallRecord:
    """One completed call as the report reads it (one JSON line in the decisions log)."""

    request_id: str
    model_group: str
    tier: str
    reason: str
    prompt_tokens: int
    completion_tokens: int
    spend: float | None
    budget_stop: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def token_count(value: Any) -> int:
    """A token count as LiteLLM reports it; anything but a whole number >= 0 counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_tokens(response: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a response's usage, a mapping or an object; (0, 0) without one."""
    usage = response.get("usage") if isinstance(response, Mapping) else getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    if isinstance(usage, Mapping):
        return token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    return token_count(getattr(usage, "prompt_tokens", 0)), token_count(
        getattr(usage, "completion_tokens", 0)
    )


def record_from_call(kwargs: Mapping[str, Any], response: Any) -> CallRecord:
    """Build a :class:`CallRecord` from LiteLLM's success-callback arguments."""
    params = kwargs.get("litellm_params")
    metadata = params.get("metadata") if isinstance(params, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    route = metadata.get(METADATA_KEY)
    route = route if isinstance(route, Mapping) else {}
    prompt_tokens, completion_tokens = usage_tokens(response)
    cost = kwargs.get("response_cost")
    return CallRecord(
        request_id=str(kwargs.get("litellm_call_id") or ""),
        model_group=str(metadata.get("model_group") or route.get("model") or kwargs.get("model") or ""),
        tier=str(route.get("tier", "passthrough")),
        reason=str(route.get("reason", "explicit model")),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        spend=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        budget_stop=str(route.get("budget_stop", "")),
    )


def response_headers(data: Mapping[str, Any]) -> dict[str, str] | None:
    """Headers that tell the client how the cost router routed its request, or None when it did not.

    ``x-aiswarm-route-tier`` and ``x-aiswarm-route-model``, and ``x-aiswarm-budget-stop`` with the
    paid groups a spent budget made it skip (ASCII only, as HTTP headers must be).
    """
    metadata = data.get("metadata")
    route = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(route, Mapping):
        return None
    headers = {
        "x-aiswarm-route-tier": str(route.get("tier")),
        "x-aiswarm-route-model": str(route.get("model")),
    }
    if route.get("budget_stop"):
        headers["x-aiswarm-budget-stop"] = str(route["budget_stop"]).encode("ascii", "replace").decode()
    return headers
