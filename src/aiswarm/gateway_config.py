"""Check a generated LiteLLM config.yaml against the EnvironmentFile the gateway starts with.

The litellm role runs this as the `validate:` of config.yaml, after writing litellm.env::

    python -m aiswarm.gateway_config CONFIG ENV_FILE

It refuses a config that is not a mapping with a non-empty ``model_list`` and, the failure that
really happens, one that refers to an ``os.environ/NAME`` the environment file does not set:
LiteLLM would start and send an empty key. Exit codes: 0 good, 1 refused (each problem on
stderr, naming the variable, never a value), 2 usage.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_REF = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")


def env_refs(node: Any) -> Iterator[str]:
    """Every NAME of an ``os.environ/NAME`` value anywhere in the config, in document order."""
    if isinstance(node, dict):
        for value in node.values():
            yield from env_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_refs(value)
    elif isinstance(node, str) and (match := _REF.match(node)):
        yield match.group(1)


def env_names(text: str) -> set[str]:
    """Names set by a systemd EnvironmentFile (``NAME=value`` lines; comments and blanks skipped)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return names


def check(config_text: str, env_text: str) -> list[str]:
    """Problems of a config.yaml given the environment file's text; empty when it is good."""
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError as exc:
        return [f"config.yaml is not valid YAML ({exc})"]
    if not isinstance(config, dict) or not config.get("model_list"):
        return ["config.yaml: expected a mapping with a non-empty model_list"]
    defined = env_names(env_text)
    missing = sorted({name for name in env_refs(config) if name not in defined})
    return [
        f"config.yaml refers to os.environ/{name}, which the environment file does not set"
        for name in missing
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m aiswarm.gateway_config CONFIG ENV_FILE", file=sys.stderr)
        return 2
    problems = check(Path(argv[0]).read_text(), Path(argv[1]).read_text())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
