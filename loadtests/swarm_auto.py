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
from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user, task

from aiswarm_loadtest.locust_base import OpenAIUser

PROMPTS: dict[str, list[str]] = json.loads((Path(__file__).parent / "prompts" / "mixed.json").read_text())
MIX = {"simple": 50, "batch": 15, "research": 15, "complex": 10, "roleplay": 10}


class SwarmAutoUser(OpenAIUser):
    """Closed loop of streamed requests; each task's name in the stats is the kind it sent."""

    def _ask(self, kind: str) -> None:
        self.stream_chat(f"auto_{kind}", self.messages(random.choice(PROMPTS[kind])), self.intended())

    @task(MIX["simple"])
    def simple(self) -> None:
        self._ask("simple")

    @task(MIX["batch"])
    def batch(self) -> None:
        self._ask("batch")

    @task(MIX["research"])
    def research(self) -> None:
        self._ask("research")

    @task(MIX["complex"])
    def complex_task(self) -> None:
        self._ask("complex")

    @task(MIX["roleplay"])
    def roleplay(self) -> None:
        self._ask("roleplay")


if __name__ == "__main__":
    run_single_user(SwarmAutoUser)
