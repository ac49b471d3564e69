"""Mixed traffic through the cost router: users ask `swarm-auto` for simple, complex, research,
roleplay and batch work, in plain words the router classifies (no metadata hint).

locust -f loadtests/swarm_auto.py --headless -u 8 -r 4 -t 2m --host http://127.0.0.1:4000 \\
    --model swarm-auto --max-tokens 16

The mix is this file's task weights: 50 % simple, 15 % batch, 15 % research, 10 % complex and
10 % roleplay. The seed design names the tiers and the 80 % target but no traffic mix, so this one
is ours, chosen for a team's chat assistant; the savings the run proves hold for this mix.
Afterwards `python -m aiswarm.router.report` on the gateway's decisions log gives the share per
tier and the cost against an all-premium baseline (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user

from aiswarm_loadtest.locust_base import OpenAIUser

PROMPTS: dict[str, list[str]] = json.loads((Path(__file__).parent / "prompts" / "mixed.json").read_text())
MIX = {"simple": 50, "batch": 15, "research": 15, "complex": 10, "roleplay": 10}


def _ask(kind: str) -> Callable[[SwarmAutoUser], None]:
    def ask(user: SwarmAutoUser) -> None:
        user.stream_chat(f"auto_{kind}", user.messages(random.choice(PROMPTS[kind])), user.intended())

    ask.__name__ = f"auto_{kind}"
    return ask


class SwarmAutoUser(OpenAIUser):
    """Closed loop of streamed requests; each task's name in the stats is the kind it sent."""

    tasks: ClassVar = {_ask(kind): weight for kind, weight in MIX.items()}


if __name__ == "__main__":
    run_single_user(SwarmAutoUser)
