"""LiteLLM proxy hook of the cost router.

Enabled by ``litellm_settings.callbacks: [aiswarm.router.hook.proxy_handler_instance]``.

Runs inside the gateway (LiteLLM imports this module at start-up, so bad rules stop the proxy
with the field named). Settings come from the environment:

- ``AISWARM_ROUTER_RULES``: the rules YAML (default ``/etc/aiswarm/litellm/router.yaml``);
- ``AISWARM_ROUTER_DECISIONS_LOG``: optional JSONL file; one record per successful call, the
  input of ``python -m aiswarm.router.report --records`` when the gateway runs without a database.

- ``AISWARM_SPEND_CONFIG``: optional spend settings (``aiswarm.router.spend``); with it every
  successful call is priced into the monthly ledger, and the spend guard applies: at a spent
  budget the router skips paid groups for the virtual model (the decision and the response
  headers ``x-aiswarm-route-*`` / ``x-aiswarm-budget-stop`` say so), a request naming a stopped
  paid group is refused with 429 naming the budget, and a fallback into one fails the same way
  (so when nothing free or local is left the client reads which budget is spent). A ledger that
  cannot be read is logged and does not stop traffic.

Each decision also counts in ``aiswarm_router_decisions_total{tier,model}`` on the proxy's
``/metrics`` (when prometheus_client is installed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from aiswarm.router.classify import route
from aiswarm.router.records import annotate, record_from_call, response_headers
from aiswarm.router.rules import Rules, load_rules
from aiswarm.router.spend import SpendError, SpendGuard, stop_message

try:
    from prometheus_client import Counter

    _DECISIONS: Counter | None = Counter(
        "aiswarm_router_decisions", "Requests routed by the aiswarm cost router", ["tier", "model"]
    )
except ImportError:
    _DECISIONS = None

DEFAULT_RULES_PATH = "/etc/aiswarm/litellm/router.yaml"
ROUTED_CALL_TYPES = frozenset({"completion", "acompletion", "text_completion", "atext_completion"})
log = logging.getLogger("aiswarm.router")


class CostRouter(CustomLogger):
    """Rewrites requests for the virtual model to the tier's model group and logs the outcome."""

    def __init__(
        self, rules: Rules, decisions_log: Path | None = None, spend: SpendGuard | None = None
    ) -> None:
        super().__init__()
        self.rules = rules
        self.decisions_log = decisions_log
        self.spend = spend

    @classmethod
    def from_env(cls) -> CostRouter:
        rules = load_rules(os.environ.get("AISWARM_ROUTER_RULES", DEFAULT_RULES_PATH))
        log_path = os.environ.get("AISWARM_ROUTER_DECISIONS_LOG")
        return cls(rules, Path(log_path) if log_path else None, SpendGuard.from_env())

    def _blocked(self) -> dict[str, str]:
        if self.spend is None:
            return {}
        try:
            return self.spend.blocked()
        except (SpendError, OSError) as exc:
            log.warning("spend guard: cannot read the ledger, no group is stopped: %s", exc)
            return {}

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str
    ) -> dict | None:
        if call_type not in ROUTED_CALL_TYPES:
            return data
        blocked = self._blocked()
        decision = route(data, self.rules, blocked)
        if decision.rewritten:
            annotate(data, decision)
            if _DECISIONS is not None:
                _DECISIONS.labels(tier=decision.tier, model=decision.model).inc()
            log.info("routed %s -> %s (%s)", self.rules.virtual_model, decision.model, decision.reason)
        elif decision.model in blocked:
            raise ProxyException(
                message=stop_message(decision.model, blocked[decision.model]),
                type="budget_exceeded",
                param="model",
                code=429,
            )
        return data

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: list | None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list:
        """A fallback into a stopped paid group fails with the budget named (the router tries the next)."""
        if self.spend is None or not self.spend.may_stop(model):
            return healthy_deployments  # the ledger is read only for a group a budget could stop
        blocked = self._blocked()
        if model in blocked:
            raise litellm.RateLimitError(
                message=stop_message(model, blocked[model]), llm_provider="aiswarm", model=model
            )
        return healthy_deployments

    async def async_post_call_response_headers_hook(
        self, data: dict, user_api_key_dict: Any, response: Any, request_headers: dict | None = None
    ) -> dict[str, str] | None:
        return response_headers(data)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if self.spend is not None:
            try:
                self.spend.record(kwargs, response_obj)
            except (SpendError, OSError) as exc:
                log.warning("spend guard: cannot write the ledger: %s", exc)
        if self.decisions_log is None:
            return
        try:
            line = record_from_call(kwargs, response_obj).to_json()
            with self.decisions_log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            log.warning("cannot append to %s: %s", self.decisions_log, exc)


proxy_handler_instance = CostRouter.from_env()
