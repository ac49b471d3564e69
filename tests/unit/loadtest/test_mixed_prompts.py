"""The mixed-traffic prompts (loadtests/prompts/mixed.json) land in the tier they are filed under
when the cost router classifies them with the role's default rules, so a swarm_auto.py run's share
per tier is the Locust mix and not an accident of wording."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "src"))

from aiswarm.router.classify import route  # noqa: E402
from aiswarm.router.rules import rules_from_dict  # noqa: E402

PROMPTS = json.loads((ROOT / "loadtests" / "prompts" / "mixed.json").read_text())
DEFAULTS = yaml.safe_load((ROOT / "roles" / "litellm" / "defaults" / "main.yml").read_text())


def _rules():
    data = dict(DEFAULTS["litellm_router_rules"])
    data["virtual_model"] = "swarm-auto"
    data["fallback_model"] = "swarm-chat"
    return rules_from_dict(data)


@pytest.mark.parametrize(("kind", "prompt"), [(k, p) for k, ps in PROMPTS.items() for p in ps])
def test_each_prompt_is_routed_to_its_tier(kind: str, prompt: str) -> None:
    body = {"model": "swarm-auto", "messages": [{"role": "user", "content": f"{prompt}\n(request 7)"}]}
    assert route(body, _rules()).tier == kind


def test_the_locust_mix_covers_every_tier_of_the_rules() -> None:
    assert set(PROMPTS) == set(DEFAULTS["litellm_router_rules"]["tiers"])
