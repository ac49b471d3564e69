"""LiteLLM proxy hook of the cost router.

Enabled by ``litellm_settings.callbacks: [aiswarm.router.hook.proxy_handler_instance]``.

Runs inside the gateway (LiteLLM imports this module at start-up, so bad rules stop the proxy
with the field named). Settings come from the environment:

- ``AISWARM_ROUTER_RULES``: the rules YAML (default ``/etc/aiswarm/litellm/router.yaml``);
- ``AISWARM_ROUTER_DECISIONS_LOG``: optional JSONL file; one record per successful call, the
  input of ``python -m aiswarm.router.report --records`` when the gateway runs without a database.

Each decision also counts in ``aiswarm_router_decisions_total{tier,model}`` on the proxy's
``/metrics`` (when prometheus_client is installed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from aiswarm.router.classify import route
from aiswarm.router.records import annotate, record_from_call
from aiswarm.router.rules import Rules, load_rules

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

    def __init__(self, rules: Rules, decisions_log: Path | None = None) -> None:
        super().__init__()
        self.rules = rules
        self.decisions_log = decisions_log

    @classmethod
    def from_env(cls) -> CostRouter:
        rules = load_rules(os.environ.get("AISWARM_ROUTER_RULES", DEFAULT_RULES_PATH))
        log_path = os.environ.get("AISWARM_ROUTER_DECISIONS_LOG")
        return cls(rules, Path(log_path) if log_path else None)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str
    ) -> dict | None:
        if call_type not in ROUTED_CALL_TYPES:
            return data
        decision = route(data, self.rules)
        if decision.rewritten:
            annotate(data, decision)
            if _DECISIONS is not None:
                _DECISIONS.labels(tier=decision.tier, model=decision.model).inc()
            log.info("routed %s -> %s (%s)", self.rules.virtual_model, decision.model, decision.reason)
        return data

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if self.decisions_log is None:
            return
        try:
            line = record_from_call(kwargs, response_obj).to_json()
            with self.decisions_log.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            log.warning("cannot append to %s: %s", self.decisions_log, exc)


proxy_handler_instance = CostRouter.from_env()
