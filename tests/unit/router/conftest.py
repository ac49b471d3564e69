"""Make the node-side package under src/ importable, and share the routing rules the tests use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_SRC = Path(__file__).resolve().parents[3] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from aiswarm.router.rules import Rules, rules_from_dict  # noqa: E402

RULES_DATA: dict[str, Any] = {
    "virtual_model": "swarm-auto",
    "fallback_model": "swarm-chat",
    "default_tier": "simple",
    "metadata_key": "task",
    "tiers": {
        "simple": ["deepseek-free", "gemini-flash", "swarm-chat"],
        "complex": ["hermes-405b", "swarm-chat"],
        "research": ["swarm-chat", "hermes-405b"],
        "roleplay": ["dolphin", "hermes-405b"],
        "batch": ["gemini-flash", "swarm-chat"],
    },
    "keywords": {
        "research": ["research", "cite sources"],
        "roleplay": ["roleplay", "in character"],
        "complex": ["prove", "step by step"],
        "batch": ["bulk"],
    },
    "keyword_order": ["research", "roleplay", "complex", "batch"],
    "complex_min_chars": 200,
    "complex_min_messages": 6,
    "available_models": ["deepseek-free", "gemini-flash", "swarm-chat", "hermes-405b", "dolphin"],
}


@pytest.fixture
def rules() -> Rules:
    return rules_from_dict(RULES_DATA)
