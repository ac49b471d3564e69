"""Fail when a role's meta/argument_specs.yml and defaults/main.yml disagree.

Every public default must be described in the spec (so it is validated and documented), and
every spec option must either have a default or be marked required (so nothing is silently
undefined). A spec may repeat a default for the role's documentation, but only with the value of
defaults/main.yml, and not where that value is a template (the spec could only show the template
text, and a copy would drift). Run from the repository root: `python tests/lint/check_argument_specs.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def check_role(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    defaults_file = role / "defaults" / "main.yml"
    if not spec_file.is_file():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    spec = yaml.safe_load(spec_file.read_text()) or {}
    options = spec.get("argument_specs", {}).get("main", {}).get("options", {}) or {}
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    defaults = defaults or {}
    problems = []
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: default '{name}' is not described in meta/argument_specs.yml")
    for name, option in sorted(options.items()):
        if name not in defaults and not option.get("required", False):
            problems.append(f"{role.name}: option '{name}' has no default and is not required")
        if "type" not in option:
            problems.append(f"{role.name}: option '{name}' has no type")
        if not option.get("description"):
            problems.append(f"{role.name}: option '{name}' has no description")
        if not name.startswith(f"{role.name}_"):
            problems.append(f"{role.name}: option '{name}' is not prefixed with '{role.name}_'")
        problems += _default_drift(role.name, name, option, defaults)
    return problems


def _is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _default_drift(role: str, name: str, option: dict, defaults: dict) -> list[str]:
    """A spec `default:` that differs from defaults/main.yml, or repeats a templated default."""
    if "default" not in option or name not in defaults:
        return []
    if _is_template(defaults[name]):
        return [f"{role}: option '{name}' repeats a templated default in the spec; remove the spec's default"]
    if option["default"] != defaults[name]:
        return [
            f"{role}: option '{name}' has default {option['default']!r} in the spec but "
            f"{defaults[name]!r} in defaults/main.yml"
        ]
    return []


def main() -> int:
    roles = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir() and not p.name.startswith("_"))
    problems = [problem for role in roles for problem in check_role(role)]
    for problem in problems:
        print(problem)
    print(f"argument specs: {len(roles)} roles checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
