"""Test doubles shared by the chaos tests: a scripted command runner and a recording executor."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

from aiswarm_loadtest.chaos.faults import FaultCommandError, FaultPlan, Step, StepResult
from aiswarm_loadtest.chaos.scenario import Fault


class ScriptedRunner:
    """Answers commands from a table of (argv prefix -> (rc, stdout, stderr)); records every call."""

    def __init__(self, answers: Mapping[tuple[str, ...], tuple[int, str, str]] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[Mapping[str, str]] = []

    def __call__(
        self, argv: Sequence[str], timeout_s: float, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess:
        argv = tuple(argv)
        self.calls.append(argv)
        self.envs.append(env)
        for prefix, (rc, out, err) in self.answers.items():
            if argv[: len(prefix)] == prefix:
                return subprocess.CompletedProcess(argv, rc, out, err)
        return subprocess.CompletedProcess(argv, 0, "", "")


class FakeExecutor:
    """Plans one inject and one rollback step per fault and records what ran, in order."""

    name = "fake"

    def __init__(
        self, *, fail_on: Callable[[Step], bool] = lambda step: False, gateway_error: str | None = None
    ):
        self.ran: list[str] = []
        self.fail_on = fail_on
        self.gateway_error = gateway_error
        self.data_outputs: list[str] = []

    def plan(self, fault: Fault, node: str, rollback: str) -> FaultPlan:
        fid = f"{fault.kind}@{node}"
        return FaultPlan(fid, fault.kind, node, (Step(("inject", fid)),), (Step(("rollback", fid)),))

    def node_step(self, node: str, argv: Sequence[str]) -> Step:
        return Step(("data", node, *argv))

    def check_gateway(self, url: str) -> str | None:
        return self.gateway_error

    def run(self, step: Step) -> StepResult:
        self.ran.append(" ".join(step.argv))
        if self.fail_on(step):
            raise FaultCommandError(f"{' '.join(step.argv)}: exit 1: boom")
        out = self.data_outputs.pop(0) if step.argv[0] == "data" and self.data_outputs else ""
        return StepResult(step.argv, 0, out, "")
