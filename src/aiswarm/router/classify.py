"""Deterministic request classification: which tier, and so which model group, serves a request.

:func:`route` is a pure function of the request body and the rules. Precedence:

1. a model other than the router's virtual model passes through untouched;
2. a metadata tag (``metadata: {task: research}``) naming a configured tier;
3. keywords, tier by tier in ``keyword_order`` (whole words or phrases, case-insensitive,
   searched in the text of every message or the prompt);
4. long prompts (``complex_min_chars``) or long conversations (``complex_min_messages``)
   are complex;
5. otherwise ``default_tier``.

The tier's first model group the gateway serves wins; none served gives ``fallback_model``.
A group the spend guard stopped (``blocked``: group -> why, see :mod:`aiswarm.router.spend`) is
skipped like an unserved one, and the decision says so in ``budget_stop``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiswarm.router.rules import Rules

PASSTHROUGH = "passthrough"


@dataclass(frozen=True)
class Decision:
    """Where a request goes and why."""

    tier: str
    model: str
    reason: str
    budget_stop: str = ""  # the paid groups skipped because a budget is spent, and why

    @property
    def rewritten(self) -> bool:
        return self.tier != PASSTHROUGH


def _texts(request: Mapping[str, Any]) -> Iterator[str]:
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        yield part["text"]
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        yield prompt
    elif isinstance(prompt, list):
        yield from (p for p in prompt if isinstance(p, str))


def prompt_text(request: Mapping[str, Any]) -> str:
    """All text of the request's messages (or prompt), joined by newlines."""
    return "\n".join(_texts(request))


@lru_cache(maxsize=256)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, phrase.split())) + r"(?!\w)", re.IGNORECASE)


def _pick(tier: str, rules: Rules, reason: str, blocked: Mapping[str, str]) -> Decision:
    skipped = []
    for model in rules.tiers.get(tier, ()):
        if rules.available_models and model not in rules.available_models:
            continue
        if model in blocked:
            skipped.append(f"{model} ({blocked[model]})")
            continue
        stop = "; ".join(skipped)
        return Decision(tier, model, f"{reason}; budget stop, skipped {stop}" if stop else reason, stop)
    stop = "; ".join(skipped)
    why = f"{reason}; no model of tier {tier} is served, fallback"
    return Decision(tier, rules.fallback_model, f"{why}; budget stop, skipped {stop}" if stop else why, stop)


def route(request: Mapping[str, Any], rules: Rules, blocked: Mapping[str, str] | None = None) -> Decision:
    """Classify one chat or text completion request body into a :class:`Decision`.

    ``blocked`` maps the paid groups a spent budget stopped to the reason; they are never chosen.
    """
    blocked = blocked or {}
    requested = request.get("model")
    if requested != rules.virtual_model:
        return Decision(PASSTHROUGH, str(requested), "explicit model")

    metadata = request.get("metadata")
    if isinstance(metadata, Mapping):
        tag = metadata.get(rules.metadata_key)
        if isinstance(tag, str) and tag.lower() in rules.tiers:
            return _pick(tag.lower(), rules, f"metadata {rules.metadata_key}={tag.lower()}", blocked)

    text = prompt_text(request)
    for tier in rules.keyword_order:
        if tier not in rules.tiers:
            continue
        for phrase in rules.keywords.get(tier, ()):
            if _phrase_pattern(phrase).search(text):
                return _pick(tier, rules, f"keyword '{phrase}'", blocked)

    if "complex" in rules.tiers:
        if len(text) >= rules.complex_min_chars:
            why = f"prompt of {len(text)} chars >= {rules.complex_min_chars}"
            return _pick("complex", rules, why, blocked)
        messages = request.get("messages")
        if isinstance(messages, list) and len(messages) >= rules.complex_min_messages:
            why = f"{len(messages)} messages >= {rules.complex_min_messages}"
            return _pick("complex", rules, why, blocked)

    return _pick(rules.default_tier, rules, "default tier", blocked)
