"""The spec lint compares the spec's repeated defaults with defaults/main.yml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "check_argument_specs", Path(__file__).resolve().parents[2] / "lint" / "check_argument_specs.py"
)
assert _SPEC is not None and _SPEC.loader is not None
lint = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lint)


def _role(tmp_path: Path, spec_default: str, default: str) -> Path:
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      demo_port:\n        type: int\n"
        f"        description: Port.\n{spec_default}"
    )
    (role / "defaults" / "main.yml").write_text(f"demo_port: {default}\n")
    return role


@pytest.mark.parametrize(
    ("spec_default", "default", "problem"),
    [
        ("", "6379", None),
        ("        default: 6379\n", "6379", None),
        ("        default: 6380\n", "6379", "option 'demo_port' has default 6380 in the spec but 6379"),
        ("        default: 6379\n", '"{{ redis_port | default(6379) }}"', "repeats a templated default"),
    ],
    ids=["no-spec-default", "same", "drifted", "templated"],
)
def test_spec_defaults_must_match_the_defaults_file(tmp_path, spec_default, default, problem):
    problems = lint.check_role(_role(tmp_path, spec_default, default))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems
