"""The runner's order and safety, with a fake executor, a fake load and a fake clock."""

from __future__ import annotations

import copy
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from aiswarm_loadtest.chaos.__main__ import main
from aiswarm_loadtest.chaos.faults import FaultCommandError, PlanError
from aiswarm_loadtest.chaos.report import RunResult
from aiswarm_loadtest.chaos.runner import ChaosRunner, Inventory, LoadSpec, LocustLauncher, RunnerOptions
from aiswarm_loadtest.chaos.scenario import parse_scenario
from aiswarm_loadtest.records import RequestRecord, write_records

from .fakes import FakeExecutor
from .test_scenario import GOOD

T0 = 1000.0
DOC = {
    **GOOD,
    "timeline": {"warmup_s": 2, "fault_at_s": 5, "observe_after_restore_s": 6},
    "fault": {"kind": "kill_service", "target": {"group": "inference", "service": "vllm"}, "duration_s": 4},
    "expect": {
        "failover_within_s": 1.5,
        "max_failed_requests": 1,
        "failback_within_s": 1,
        "recover_within_s": 2,
    },
}
INVENTORY = Inventory.from_listing(
    {
        "all": {"children": ["swarm"]},
        "swarm": {"children": ["inference", "gateway"]},
        "inference": {"hosts": ["n1", "n2"]},
        "gateway": {"hosts": ["g1"]},
        "_meta": {
            "hostvars": {
                "n1": {"ansible_connection": "community.docker.docker", "ansible_host": "aiswarm-lab-n1"}
            }
        },
    }
)


class FakeClock:
    def __init__(self) -> None:
        self.t = T0
        self.hooks: list[tuple[float, Callable[[], None]]] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        due = [hook for hook in self.hooks if hook[0] <= self.t]
        self.hooks = [hook for hook in self.hooks if hook[0] > self.t]
        for _due_at, fn in due:
            fn()


def rec(t: float, ok: bool, backend: str) -> RequestRecord:
    return RequestRecord(
        kind="chat_stream", t_intended=t, t_start=t, t_end=t + 0.5, ok=ok, status=200 if ok else 0,
        t_first_token=t + 0.1 if ok else None, failure_class=None if ok else "error_before_first_token",
        backend=backend if ok else "",
    )  # fmt: skip


def healthy(spec: LoadSpec, start: float) -> list[RequestRecord]:
    return [rec(start + i, True, "vllm") for i in range(spec.run_time_s)]


def failover(spec: LoadSpec, start: float) -> list[RequestRecord]:
    """One request a second; the fault (start+5 .. start+9) fails once, then the fallback serves."""
    out = []
    for i in range(spec.run_time_s):
        t = start + i
        if i == 5:
            out.append(rec(t, False, ""))
        else:
            out.append(rec(t, True, "llamacpp" if 5 < i < 9 else "vllm"))
    return out


class FakeHandle:
    def __init__(self, launcher: FakeLauncher, spec: LoadSpec, start: float) -> None:
        self.launcher, self.spec, self.start = launcher, spec, start
        self.stopped = False

    def poll(self) -> int | None:
        return None

    def wait(self, timeout_s: float) -> int:
        records = self.launcher.make(self.spec, self.start)
        self.spec.run_dir.mkdir(parents=True, exist_ok=True)
        write_records(self.spec.run_dir / "requests.jsonl", records)
        return 0

    def stop(self) -> None:
        self.stopped = True
        self.wait(0)


class FakeLauncher:
    def __init__(self, clock: FakeClock, steady=healthy, main=failover) -> None:
        self.clock, self.steady, self.main = clock, steady, main
        self.handles: list[FakeHandle] = []

    def make(self, spec: LoadSpec, start: float) -> list[RequestRecord]:
        return (self.steady if spec.run_dir.name == "steady" else self.main)(spec, start)

    def start(self, spec: LoadSpec) -> FakeHandle:
        self.handles.append(FakeHandle(self, spec, self.clock.now()))
        return self.handles[-1]


def make_runner(tmp_path: Path, doc: dict | None = None, *, status: int = 200,
                executor: FakeExecutor | None = None,
                launcher_kw: dict | None = None):  # fmt: skip
    clock = FakeClock()
    probes: list[str] = []

    def probe(url: str, key: str, timeout: float) -> int:
        probes.append(url)
        return status

    scenario = parse_scenario(doc or DOC, "s.yaml")
    executor = executor or FakeExecutor()
    launcher = FakeLauncher(clock, **(launcher_kw or {}))
    options = RunnerOptions(gateway="http://127.0.0.1:4000", api_key="k", out_dir=tmp_path / "run")
    runner = ChaosRunner(
        scenario, executor, INVENTORY, launcher, options, clock=clock, probe=probe, log=lambda m: None
    )
    return runner, executor, launcher, clock, probes


def result_json(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "result.json").read_text())


def test_a_complete_run_injects_on_schedule_rolls_back_and_passes(tmp_path: Path) -> None:
    runner, executor, launcher, _clock, probes = make_runner(tmp_path)
    result = runner.run()
    assert probes == ["http://127.0.0.1:4000/v1/models"]
    assert executor.ran == ["inject kill_service@n1", "rollback kill_service@n1"]
    steady, load = (h.spec for h in launcher.handles)
    assert (steady.run_time_s, load.run_time_s) == (10, 15)  # window_s; fault_at 5 + duration 4 + observe 6
    assert load.run_dir == tmp_path / "run" / "load"
    t_load = launcher.handles[1].start
    assert result.faults[0]["t_start"] == t_load + 5 and result.faults[0]["t_end"] == t_load + 9
    m = result.measurements
    assert m is not None and m.primary_backend == "vllm"
    assert m.failed_since_fault == 1
    assert m.failover_s == pytest.approx(1.1)  # fallback's first token at +6.1
    assert m.failback_s == pytest.approx(0.1)  # primary's first token at +9.1
    assert result.outcome == "passed"
    data = result_json(tmp_path)
    assert data["passed"] is True and data["measurements"]["failover_s"] == pytest.approx(1.1)
    assert [e["action"] for e in data["ledger"]] == ["inject", "rollback"]
    assert (tmp_path / "run" / "timeline.png").exists()


def test_a_failed_gate_fails_the_run(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["expect"]["failover_within_s"] = 0.5
    result = make_runner(tmp_path, doc)[0].run()
    assert result.outcome == "failed"
    assert [g.name for g in result.gates if not g.passed] == ["failover_within_s"]


def test_no_fault_when_the_probe_fails(tmp_path: Path) -> None:
    runner, executor, launcher, _clock, _probes = make_runner(tmp_path, status=401)
    result = runner.run()
    assert result.outcome == "refused"
    assert executor.ran == [] and launcher.handles == []
    assert "probe /v1/models: HTTP 401, expected 200" in result_json(tmp_path)["notes"][0]


def test_no_fault_when_the_steady_state_load_misses_the_hypothesis(tmp_path: Path) -> None:
    def errors(spec: LoadSpec, start: float) -> list[RequestRecord]:
        return [rec(start + i, i % 2 == 0, "vllm") for i in range(10)]

    runner, executor, launcher, _clock, _probes = make_runner(tmp_path, launcher_kw={"steady": errors})
    result = runner.run()
    assert result.outcome == "refused" and executor.ran == []
    assert len(launcher.handles) == 1  # only the steady-state load ran
    assert "error rate 0.500 > max_error_rate 0.01" in result.notes[0]


def test_no_fault_when_the_steady_state_load_produced_nothing(tmp_path: Path) -> None:
    runner, executor, _launcher, _clock, _probes = make_runner(
        tmp_path, launcher_kw={"steady": lambda spec, start: []}
    )
    assert runner.run().outcome == "refused" and executor.ran == []


def test_an_exception_mid_fault_still_rolls_back(tmp_path: Path) -> None:
    runner, executor, launcher, clock, _probes = make_runner(tmp_path)

    def explode() -> None:
        raise RuntimeError("lost the controller's network")

    clock.hooks.append((T0 + 7, explode))  # steady state takes no fake time; the fault starts at T0 + 5
    with pytest.raises(RuntimeError, match="lost the controller"):
        runner.run()
    assert executor.ran == ["inject kill_service@n1", "rollback kill_service@n1"]
    assert launcher.handles[1].stopped
    data = result_json(tmp_path)
    assert data["outcome"] == "aborted" and data["open_faults"] == []
    assert "RuntimeError: lost the controller's network" in data["notes"][0]


def test_ctrl_c_mid_fault_rolls_back_once(tmp_path: Path) -> None:
    # Whatever handler the test process has (a shell's background job ignores SIGINT) comes back.
    before = signal.getsignal(signal.SIGINT)
    runner, executor, launcher, clock, _probes = make_runner(tmp_path)
    clock.hooks.append((T0 + 7, lambda: os.kill(os.getpid(), signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert executor.ran == ["inject kill_service@n1", "rollback kill_service@n1"]
    assert launcher.handles[1].stopped
    assert result_json(tmp_path)["outcome"] == "aborted"
    assert signal.getsignal(signal.SIGINT) is before


def test_a_failed_injection_is_rolled_back_and_aborts(tmp_path: Path) -> None:
    executor = FakeExecutor(fail_on=lambda step: step.argv[0] == "inject")
    runner = make_runner(tmp_path, executor=executor)[0]
    with pytest.raises(FaultCommandError):
        runner.run()
    assert executor.ran == ["inject kill_service@n1", "rollback kill_service@n1"]
    assert result_json(tmp_path)["outcome"] == "aborted"


def test_a_rollback_that_keeps_failing_is_reported_as_still_open(tmp_path: Path) -> None:
    executor = FakeExecutor(fail_on=lambda step: step.argv[0] == "rollback")
    runner = make_runner(tmp_path, executor=executor)[0]
    with pytest.raises(RuntimeError, match="rollback of kill_service@n1 failed"):
        runner.run()
    data = result_json(tmp_path)
    assert data["open_faults"] == ["kill_service@n1"] and data["outcome"] == "aborted"
    assert executor.ran.count("rollback kill_service@n1") >= 2  # retried on the way out


def test_plan_errors_come_before_anything_touches_the_swarm(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["fault"]["target"] = {"group": "gpu", "service": "vllm"}
    runner, executor, launcher, _clock, probes = make_runner(
        tmp_path, doc, executor=FakeExecutor(gateway_error="bad gw")
    )
    with pytest.raises(PlanError) as caught:
        runner.run()
    assert str(caught.value).splitlines() == [
        "bad gw",
        "s.yaml: fault.target.group: group 'gpu' is not in the inventory"
        " (groups: all, gateway, inference, swarm)",
    ]
    assert probes == [] and executor.ran == [] and launcher.handles == []


def test_pick_all_faults_every_host_of_the_group(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["fault"]["target"]["pick"] = "all"
    runner, executor, _launcher, _clock, _probes = make_runner(tmp_path, doc)
    runner.run()
    assert executor.ran == [
        "inject kill_service@n1", "inject kill_service@n2",
        "rollback kill_service@n1", "rollback kill_service@n2",
    ]  # fmt: skip


def _run_data_check(tmp_path: Path, check: dict, outputs: list[str]) -> tuple[RunResult, FakeExecutor]:
    """One run with `check` as data_check, `data_loss: false` expected, and what each data step prints."""
    doc = copy.deepcopy(DOC)
    doc["data_check"] = {"target": {"group": "gateway"}, **check}
    doc["expect"]["data_loss"] = False
    executor = FakeExecutor()
    executor.data_outputs = outputs
    return make_runner(tmp_path, doc, executor=executor)[0].run(), executor


def test_data_check_runs_before_and_after_and_gates_data_loss(tmp_path: Path) -> None:
    result, executor = _run_data_check(tmp_path, {"argv": ["count"], "compare": "not_less"}, ["5\n", "4\n"])
    assert executor.ran == [
        "data g1 count",
        "inject kill_service@n1",
        "rollback kill_service@n1",
        "data g1 count",
    ]
    assert result.outcome == "failed" and [g.name for g in result.gates if not g.passed] == ["data_loss"]


SEEDED = {"seed": ["put"], "argv": ["get"]}


def test_data_check_seed_writes_a_canary_once_before_the_first_read(tmp_path: Path) -> None:
    result, executor = _run_data_check(tmp_path, SEEDED, ["", "canary\n", "canary\n"])
    assert executor.ran == [
        "data g1 put",
        "data g1 get",
        "inject kill_service@n1",
        "rollback kill_service@n1",
        "data g1 get",
    ]
    assert result.outcome == "passed"


def test_data_check_seed_lost_canary_fails_the_gate(tmp_path: Path) -> None:
    result, _executor = _run_data_check(tmp_path, SEEDED, ["", "canary\n", "\n"])
    assert [g.name for g in result.gates if not g.passed] == ["data_loss"]
    assert "data check (equal): before 'canary', after ''" in result.notes


def test_inventory_resolution() -> None:
    assert INVENTORY.hosts("all") == ["n1", "n2", "g1"]
    assert INVENTORY.docker_containers() == {"n1": "aiswarm-lab-n1"}
    with pytest.raises(PlanError, match=r"fault\.target\.host: 'zz' is not in the inventory"):
        INVENTORY.resolve(parse_scenario(GOOD, "s").fault.target.__class__(host="zz"), "fault.target")
    empty = Inventory.from_listing({"inference": {"hosts": []}})
    with pytest.raises(PlanError, match="group 'inference' has no hosts"):
        empty.resolve(parse_scenario(GOOD, "s").fault.target, "fault.target")


def test_locust_command_line(tmp_path: Path) -> None:
    spec = LoadSpec("http://127.0.0.1:4000", 8, 4.0, 90, tmp_path, user_class="ChatUser", tags=("stream",))
    argv = LocustLauncher(locust=("locust",), extra_args=("--only-summary",)).argv(spec)
    assert argv == [
        "locust", "-f", "loadtests/chat_stream.py", "--headless", "-u", "8", "-r", "4", "-t", "90s",
        "--host", "http://127.0.0.1:4000", "--aiswarm-run-dir", str(tmp_path), "--tags", "stream",
        "--only-summary", "ChatUser",
    ]  # fmt: skip


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = sorted((Path(__file__).resolve().parents[3] / "loadtests" / "scenarios").glob("*.yaml"))
    assert main(["validate", *map(str, shipped)]) == 0
    bad = tmp_path / "kill_primary.yaml"
    bad.write_text("name: x\nfault: {kind: kil}\n", encoding="utf-8")
    assert main(["validate", str(bad), str(shipped[0])]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: fault.kind: expected one of stop_service" in err
    assert f"{bad}: timeline: required field missing" in err
    assert main(["validate", "--service", "oops", str(shipped[0])]) == 2


def test_cli_run_refuses_without_an_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("AISWARM_TEST_NO_KEY", raising=False)
    scenario = Path(__file__).resolve().parents[3] / "loadtests" / "scenarios" / "stop_redis.yaml"
    code = main(["run", str(scenario), "--api-key-env", "AISWARM_TEST_NO_KEY", "--out", str(tmp_path)])
    assert code == 2
    assert "--api-key-env AISWARM_TEST_NO_KEY: the variable is not set" in capsys.readouterr().err


def test_noisy_clients_run_beside_locust_with_the_key_in_the_environment(tmp_path: Path) -> None:
    spec = LoadSpec("http://127.0.0.1:4000", 8, 4.0, 90, tmp_path, api_key="sk-secret", noisy_clients=2)
    launcher = LocustLauncher(locust=("locust",))
    argv = launcher.noisy_argv(spec, 1)
    assert argv[1:] == [
        "-m", "aiswarm_loadtest.noisy", "--gateway", "http://127.0.0.1:4000",
        "--out", str(tmp_path / "noisy-1.jsonl"), "--duration", "90", "--api-key-env", "AISWARM_API_KEY",
    ]  # fmt: skip
    assert "sk-secret" not in " ".join(argv)


def test_noisy_logs_of_a_run_are_merged_in_time_order(tmp_path: Path) -> None:
    from aiswarm_loadtest.chaos.runner import read_noisy_logs

    (tmp_path / "noisy-0.jsonl").write_text('{"t": 3, "ok": true}\n{"t": 1, "ok": false}\n')
    (tmp_path / "noisy-1.jsonl").write_text('{"t": 2, "ok": true}\n\n')
    assert [line["t"] for line in read_noisy_logs(tmp_path)] == [1, 2, 3]
    assert read_noisy_logs(tmp_path / "missing") == []
