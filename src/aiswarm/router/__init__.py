"""Cost-optimizing router of the gateway: rules, classification, the LiteLLM hook and the spend report.

Import :mod:`aiswarm.router.hook` only inside the LiteLLM proxy (it needs litellm and builds its
instance from the environment at import).
"""

from __future__ import annotations

from aiswarm.router.classify import PASSTHROUGH, Decision, route
from aiswarm.router.rules import Rules, RulesError, load_rules, rules_from_dict

__all__ = ["PASSTHROUGH", "Decision", "Rules", "RulesError", "load_rules", "route", "rules_from_dict"]
