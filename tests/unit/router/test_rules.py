"""Rules loading and validation: every error names the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aiswarm.router.rules import Rules, RulesError, load_rules, rules_from_dict

from .conftest import RULES_DATA


def test_full_rules_load(rules: Rules) -> None:
    assert rules.tiers["complex"] == ("hermes-405b", "swarm-chat")
    assert rules.keywords["roleplay"] == ("roleplay", "in character")
    assert "swarm-chat" in rules.available_models


def test_defaults_apply_with_only_tiers() -> None:
    rules = rules_from_dict({"tiers": {"simple": ["swarm-chat"]}})
    assert (rules.virtual_model, rules.fallback_model, rules.default_tier) == (
        "swarm-auto",
        "swarm-chat",
        "simple",
    )
    assert rules.complex_min_chars == 4000
    assert rules.available_models == frozenset()


def test_keywords_are_lowercased() -> None:
    rules = rules_from_dict({**RULES_DATA, "keywords": {"research": ["ReSearch"]}})
    assert rules.keywords["research"] == ("research",)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tiers": None}, "tiers:"),
        ({"tiers": {"cheap": ["x"]}}, "tiers.cheap"),
        ({"tiers": {"simple": []}}, "tiers.simple"),
        ({"tiers": {"simple": ["ok", ""]}}, "tiers.simple[1]"),
        ({"keywords": {"complex": "prove"}}, "keywords.complex"),
        ({"default_tier": "research", "tiers": {"simple": ["x"]}}, "default_tier"),
        ({"complex_min_chars": 0}, "complex_min_chars"),
        ({"complex_min_messages": True}, "complex_min_messages"),
        ({"virtual_model": ""}, "virtual_model"),
        ({"keyword_order": ["research", "poetry"]}, "keyword_order[1]"),
        ({"keyword_order": ["research"]}, "keywords.roleplay"),
        ({"available_models": "swarm-chat"}, "available_models"),
        ({"colour": "blue"}, "unknown keys ['colour']"),
    ],
)
def test_bad_rules_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(RulesError, match=field.replace("[", r"\[").replace("]", r"\]")):
        rules_from_dict({**RULES_DATA, **change})


def test_missing_tiers_is_required() -> None:
    data = {k: v for k, v in RULES_DATA.items() if k != "tiers"}
    with pytest.raises(RulesError, match="tiers: required"):
        rules_from_dict(data)


def test_not_a_mapping() -> None:
    with pytest.raises(RulesError, match="rules: expected a mapping, got list"):
        rules_from_dict([])


def test_load_rules_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(RULES_DATA))
    assert load_rules(path).tiers == rules_from_dict(RULES_DATA).tiers


def test_load_rules_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({**RULES_DATA, "complex_min_chars": -1}))
    with pytest.raises(RulesError, match=rf"{path}: complex_min_chars"):
        load_rules(path)


def test_load_rules_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("tiers: [unclosed")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
