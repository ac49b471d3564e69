"""Routing rules of the cost router, loaded once from YAML (or a dict) and validated.

Errors name the field and what was expected.

Shape (every key but ``tiers`` has a default)::

    virtual_model: swarm-auto        # the only model name the router rewrites
    fallback_model: swarm-chat       # used when no candidate of a tier is served
    default_tier: simple             # tier of a request no rule matches
    metadata_key: task               # request metadata tag naming the tier (task: research)
    tiers:                           # tier -> model groups, first served one wins
      simple: [gemini-flash, swarm-chat]
      complex: [hermes-3-405b]
    keywords:                        # tier -> words or phrases; checked in keyword_order
      research: [research, cite sources]
    keyword_order: [research, roleplay, complex, batch]
    complex_min_chars: 4000          # prompts at least this long are complex
    complex_min_messages: 12         # conversations at least this long are complex
    available_models: [swarm-chat]   # groups the gateway serves; empty: trust the tiers
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TIER_NAMES = ("simple", "complex", "research", "roleplay", "batch")
_KNOWN_KEYS = frozenset(
    {
        "virtual_model",
        "fallback_model",
        "default_tier",
        "metadata_key",
        "tiers",
        "keywords",
        "keyword_order",
        "complex_min_chars",
        "complex_min_messages",
        "available_models",
    }
)


class RulesError(ValueError):
    """Invalid routing rules; the message names the field and what was expected."""


@dataclass(frozen=True)
class Rules:
    """Validated routing rules; build with :func:`rules_from_dict` or :func:`load_rules`."""

    tiers: Mapping[str, tuple[str, ...]]
    virtual_model: str = "swarm-auto"
    fallback_model: str = "swarm-chat"
    default_tier: str = "simple"
    metadata_key: str = "task"
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keyword_order: tuple[str, ...] = ("research", "roleplay", "complex", "batch")
    complex_min_chars: int = 4000
    complex_min_messages: int = 12
    available_models: frozenset[str] = frozenset()


def _str(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _positive_int(data: Mapping[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulesError(f"{key}: expected an integer >= 1, got {value!r}")
    return value


def _str_list(value: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or (not value and not allow_empty):
        kind = "list" if allow_empty else "non-empty list"
        raise RulesError(f"{where}: expected a {kind} of strings, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RulesError(f"{where}[{i}]: expected a non-empty string, got {item!r}")
    return tuple(value)


def _tier_map(value: Any, where: str, *, allow_empty_lists: bool) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise RulesError(f"{where}: expected a mapping of tier -> list, got {type(value).__name__}")
    result = {}
    for tier, items in value.items():
        if tier not in TIER_NAMES:
            raise RulesError(f"{where}.{tier}: unknown tier; allowed: {list(TIER_NAMES)}")
        result[tier] = _str_list(items, f"{where}.{tier}", allow_empty=allow_empty_lists)
    return result


def rules_from_dict(data: Any) -> Rules:
    """Validate a rules mapping (as read from YAML) into :class:`Rules`."""
    if not isinstance(data, Mapping):
        raise RulesError(f"rules: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise RulesError(f"rules: unknown keys {unknown}; allowed: {sorted(_KNOWN_KEYS)}")
    if "tiers" not in data:
        raise RulesError("tiers: required (a mapping of tier -> model groups)")
    tiers = _tier_map(data["tiers"], "tiers", allow_empty_lists=False)
    keywords = {
        tier: tuple(word.lower() for word in words)
        for tier, words in _tier_map(data.get("keywords", {}), "keywords", allow_empty_lists=True).items()
    }
    default_tier = _str(data, "default_tier", "simple")
    if default_tier not in tiers:
        raise RulesError(f"default_tier: '{default_tier}' has no entry in tiers {sorted(tiers)}")
    order = _str_list(data.get("keyword_order", list(Rules.keyword_order)), "keyword_order", allow_empty=True)
    for i, tier in enumerate(order):
        if tier not in TIER_NAMES:
            raise RulesError(f"keyword_order[{i}]: unknown tier '{tier}'; allowed: {list(TIER_NAMES)}")
    for tier in keywords:
        if keywords[tier] and tier not in order:
            raise RulesError(f"keywords.{tier}: the tier is missing from keyword_order {list(order)}")
    return Rules(
        tiers=tiers,
        virtual_model=_str(data, "virtual_model", Rules.virtual_model),
        fallback_model=_str(data, "fallback_model", Rules.fallback_model),
        default_tier=default_tier,
        metadata_key=_str(data, "metadata_key", Rules.metadata_key),
        keywords=keywords,
        keyword_order=order,
        complex_min_chars=_positive_int(data, "complex_min_chars", Rules.complex_min_chars),
        complex_min_messages=_positive_int(data, "complex_min_messages", Rules.complex_min_messages),
        available_models=frozenset(
            _str_list(data.get("available_models", []), "available_models", allow_empty=True)
        ),
    )


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the routing rules ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return rules_from_dict(data)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from exc
